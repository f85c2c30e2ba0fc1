"""Power sensing, pure parts: sysfs parsing, power episodes, the host-down decision, clock trust."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from agent import power
from agent.platform.linux import Linux, parse_power_supply
from agent.power import Heartbeat, PowerTracker, Reading, host_down
from tests.hosttree import power_supply

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize("supplies, expected", [
    ({}, None),
    ({"AC": {"type": "Mains", "online": "1"},
      "BAT0": {"type": "Battery", "capacity": "87", "status": "Charging"}},
     Reading("battery", False, 87.0, "Charging")),
    ({"AC": {"type": "Mains", "online": "0"},
      "BAT0": {"type": "Battery", "capacity": "64", "status": "Discharging"}},
     Reading("battery", True, 64.0, "Discharging")),
    ({"ADP1": {"type": "Mains", "online": "0"}, "ucsi": {"type": "USB", "online": "1"},
      "BAT1": {"type": "Battery", "capacity": "50"}},
     Reading("battery", False, 50.0, None)),                                                # USB-C charging
    ({"BAT0": {"type": "Battery", "status": "Discharging",
               "energy_now": "30000000", "energy_full": "40000000"}},
     Reading("battery", True, 75.0, "Discharging")),                                        # no AC device
    ({"BAT0": {"type": "Battery", "status": "Unknown"}}, Reading("battery", None, None, "Unknown")),
    ({"BAT0": {"type": "Battery", "present": "0"}, "hidpp": {"type": "Battery", "present": "0"}}, None),
    ({"AC": {"type": "Mains", "online": "0"}}, Reading("battery", True, None, None)),  # UPS-less desktop PSU
], ids=["none", "on-mains", "on-battery", "usb-c", "energy-only", "unknown", "absent", "mains-only"])
def test_parse_power_supply(supplies, expected):
    assert parse_power_supply(supplies) == expected


def test_read_power_supply_from_a_prepared_tree(tmp_path):
    power_supply(tmp_path, online="0", capacity=42, status="Discharging")
    assert Linux(sysfs=str(tmp_path)).ac_power() == Reading("battery", True, 42.0, "Discharging")
    assert Linux(sysfs=str(tmp_path / "nothing")).ac_power() is None


@pytest.mark.parametrize("files, expected", [
    ([], power.NO_SYNC_SERVICE),
    (["systemd/timesync/"], power.UNSYNCED),
    (["systemd/timesync/synchronized"], power.SYNCED),
    (["chrony/"], power.UNSYNCED),
    (["ntpd.pid"], power.UNSYNCED),
], ids=["no-service", "timesyncd-waiting", "timesyncd-synced", "chrony", "ntpd"])
def test_clock_state(tmp_path, files, expected):
    for f in files:
        p = tmp_path / f
        if f.endswith("/"):
            p.mkdir(parents=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("")
    assert Linux(rundir=str(tmp_path)).clock_state() == expected
    assert power.clock_trusted(expected) == (expected != power.UNSYNCED)


def polls(pattern, interval=5.0, charge0=100.0, wall_steps=None, source="battery"):
    """'m' mains, 'b' battery, '?' unknown; one poll every ``interval`` s; charge drops on battery."""
    out, charge, wall = [], charge0, 0.0
    for i, ch in enumerate(pattern):
        wall += (wall_steps or {}).get(i, 0.0)
        if ch == "b":
            charge -= 1
        on = {"m": False, "b": True, "?": None}[ch]
        out.append((Reading(source, on, charge), T0 + timedelta(seconds=i * interval + wall),
                    1000.0 + i * interval))
    return out


def run(ps, state=None):
    state = state or PowerTracker()
    changes = []
    for r, t, m in ps:
        state, ch = power.step(state, [r], t, m, momentary_max_s=300, max_gap_s=60)
        changes += ch
    return state, changes


def closed(changes):
    return [e for k, e in changes if k == "closed"]


def test_power_episode_bounds_and_charges():
    ps = polls("mmbbbbbmm")
    _, changes = run(ps)
    (ep,) = closed(changes)
    assert (ep.type, ep.cause, ep.details["source"]) == ("power", "ac_lost", "battery")
    assert ep.start == ps[2][1] and ep.end == ps[7][1] and ep.duration_s == 25
    assert ep.details["charge_start_pct"] == 99 and ep.details["charge_end_pct"] == 95
    assert not ep.sustained


def test_unknown_readings_change_nothing():
    _, changes = run(polls("mb??bm"))
    (ep,) = closed(changes)
    assert ep.duration_s == 20


def test_two_sources_are_independent():
    state = PowerTracker()
    seq = [([Reading("battery", True, 90), Reading("ups", False, 100)], 0),
           ([Reading("battery", True, 89), Reading("ups", True, 99)], 5),
           ([Reading("battery", False, 89), Reading("ups", True, 98)], 10),
           ([Reading("battery", False, 90), Reading("ups", False, 98)], 15)]
    changes = []
    for readings, s in seq:
        state, ch = power.step(state, readings, T0 + timedelta(seconds=s), 1000.0 + s, momentary_max_s=300,
                               max_gap_s=60)
        changes += ch
    eps = {e.details["source"]: e for e in closed(changes)}
    assert eps["battery"].duration_s == 10 and eps["ups"].duration_s == 10
    assert eps["ups"].start == T0 + timedelta(seconds=5)


def test_gap_closes_at_last_poll_seen():
    ps = polls("mbbb")
    r, _t, _m = polls("m")[0]
    ps.append((r, ps[-1][1] + timedelta(hours=1), ps[-1][2] + 3600))
    _, changes = run(ps)
    (ep,) = closed(changes)
    assert ep.end == ps[3][1] and ep.details["end_observed"] is False


def test_state_round_trips():
    state, _ = run(polls("mmbb"))
    assert PowerTracker.from_json(state.to_json()) == state
    assert power.on_battery(state)
    (ep,) = power.in_progress(state, 300)
    assert ep.end is None and ep.duration_s == 5


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="mmbb?", max_size=80),
       st.dictionaries(st.integers(0, 79), st.sampled_from([-3600.0, -2.0, 7.0, 86400.0 * 365 * 56]),
                       max_size=3),
       st.integers(0, 80))
def test_power_episodes_under_clock_steps_and_restarts(pattern, steps, cut):
    ps = polls(pattern, wall_steps=steps)
    whole, ch_whole = run(ps)
    first, ch1 = run(ps[:cut])
    second, ch2 = run(ps[cut:], PowerTracker.from_json(first.to_json()))
    assert (second, ch1 + ch2) == (whole, ch_whole)      # a restart anywhere changes nothing
    eps = closed(ch_whole)
    assert len({e.id for e in eps}) == len(eps)
    for e in eps:
        assert e.duration_s >= 0 and e.end >= e.start
        assert e.end - e.start == timedelta(seconds=e.duration_s)


# -- host down --------------------------------------------------------------------------------

HB = Heartbeat(T0, 5000.0, "boot-A")
BOOT = T0 + timedelta(minutes=47)


@pytest.mark.parametrize("prev, clean, boot_now, btime, clock_ok, kind", [
    (None, False, "boot-A", BOOT, True, "none"),
    (HB, True, "boot-A", BOOT, True, "none"),             # agent stopped cleanly
    (HB, False, "boot-A", BOOT, True, "agent_gap"),       # agent crashed, host stayed up
    (HB, True, "boot-B", BOOT, True, "none"),             # clean shutdown and reboot
    (HB, False, "boot-B", BOOT, True, "host_down"),       # power cut
    (HB, False, "boot-B", BOOT, False, "defer"),          # ... but the clock is not synced yet
    (HB, False, "boot-B", None, True, "defer"),           # boot time unreadable
], ids=["first-start", "clean-stop", "agent-crash", "clean-shutdown", "power-cut", "unsynced", "no-btime"])
def test_host_down_decision(prev, clean, boot_now, btime, clock_ok, kind):
    now = BOOT + timedelta(minutes=2)
    d = host_down(prev, clean, boot_now, btime, now, 5030.0, clock_ok)
    assert d.kind == kind, d.reason
    if kind == "host_down":
        ep = d.episode
        assert (ep.type, ep.cause, ep.details["source"]) == ("power", "host_down", "host")
        assert (ep.start, ep.end, ep.duration_s) == (T0, BOOT, 47 * 60) and ep.sustained
    if kind == "agent_gap":
        assert d.episode.type == "agent_gap" and d.episode.duration_s == 30
        assert d.episode.end == now


@settings(max_examples=300, deadline=None)
@given(st.floats(-86400 * 400, 86400 * 400), st.floats(0, 1e6), st.booleans())
def test_host_down_never_negative_nor_before_heartbeat(boot_offset_s, mono_now, prev_clock_ok):
    prev = Heartbeat(T0, 5000.0, "boot-A", prev_clock_ok)
    btime = T0 + timedelta(seconds=boot_offset_s)
    d = host_down(prev, False, "boot-B", btime, btime + timedelta(seconds=60), mono_now, True)
    ep = d.episode
    assert d.kind == "host_down"
    assert ep.start >= prev.time and ep.end >= ep.start and ep.duration_s >= 0
    assert ep.details.get("boot_before_heartbeat", False) == (btime < prev.time)
    assert ep.details.get("start_uncertain", False) == (not prev_clock_ok)


def test_heartbeat_round_trip_and_boot_time(tmp_path):
    assert Heartbeat.from_json(HB.to_json()) == HB
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1793512800\nprocesses 7\n")
    assert Linux(procfs=str(tmp_path)).boot_time() == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    assert Linux(procfs=str(tmp_path / "missing")).boot_time() is None


def test_power_sustained_follows_the_published_duration():
    state = PowerTracker()
    state, _ = power.step(state, [Reading("battery", True, 90)], T0, 1000.0, momentary_max_s=5, max_gap_s=60)
    state, ch = power.step(state, [Reading("battery", False, 89)], T0 + timedelta(seconds=5.0004), 1005.0004,
                           momentary_max_s=5, max_gap_s=60)
    (_kind, ep), = ch
    assert ep.duration_s == 5.0 and ep.sustained is False
