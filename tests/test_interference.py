"""The interference state machine (agent/interference.py, pure): a reference over whole runs
of checks, property-tested, and the rules one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from agent.interference import Check, State, step

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _run(checks, open_after, through_json=False):
    state, changes = State(), []
    for c in checks:
        state, got = step(state, c, open_after)
        changes += got
        if through_json:
            state = State.from_json(state.to_json())
    return state, changes


def _reference(checks, open_after):
    """Episodes by a different reading: per target, the line-up checks cut into runs of one
    cause; a run of at least open_after checks is an episode from its first check to the next
    counted check of the target (open when there is none)."""
    out = []
    for target in sorted({c.target for c in checks}):
        # a check that could not be made (its keys unreadable) is no evidence either way
        mine = [c for c in checks if c.target == target and c.line_up and c.how != "keys"]
        i = 0
        while i < len(mine):
            c = mine[i]
            if c.step == "ok":
                i += 1
                continue
            cause = "vpn" if c.kind in ("tcp", "wireguard") else c.step
            j = i
            while j < len(mine) and mine[j].step != "ok" and \
                    ("vpn" if mine[j].kind in ("tcp", "wireguard") else mine[j].step) == cause:
                j += 1
            if j - i >= open_after:
                end = mine[j].time if j < len(mine) else None
                out.append((target, cause, c.time, end, j - i, mine[j - 1].how))
            i = j
    return sorted(out, key=lambda e: (e[0], e[2]))


KINDS = {"vpn:443": "tcp", "wg.test:51820/udp": "wireguard"}
checks = st.lists(st.tuples(st.sampled_from(["a.test", "b.test", *KINDS]),
                            st.sampled_from(["ok", "ok", "dns", "tls", "tcp"]),
                            st.sampled_from(["reset", "timeout", "mismatch", "keys"]),
                            st.booleans(), st.integers(1, 900)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(checks, st.integers(1, 4), st.booleans())
def test_episodes_are_the_runs_of_failures_at_one_step(raw, open_after, through_json):
    t, seq = T0, []
    for target, stp, how, up, gap in raw:
        t += timedelta(seconds=gap)
        kind = KINDS.get(target, "site")
        seq.append(Check(target, kind, stp, "" if stp == "ok" else how, t, up))
    _, changes = _run(seq, open_after, through_json)
    opened = [c.episode for c in changes if c.kind == "opened"]
    closed = {c.episode.id: c.episode for c in changes if c.kind == "closed"}
    assert len({e.id for e in opened}) == len(opened)
    assert set(closed) <= {e.id for e in opened}            # closed once, and only if opened
    got = []
    for e in opened:
        done = closed.get(e.id)
        assert e.end is None and e.type == "interference"
        if done is not None:
            assert done.duration_s >= 0 and done.end == done.start + timedelta(seconds=done.duration_s)
            assert done.start == e.start
        got.append((e.details["target"], e.cause, e.start, done.end if done else None,
                    done.details["failed_checks"] if done else None,
                    done.details["how"] if done else None))
    want = _reference(seq, open_after)
    got.sort(key=lambda e: (e[0], e[2]))
    assert [g[:4] for g in got] == [w[:4] for w in want]
    for g, w in zip(got, want):
        if g[3] is not None:
            assert g[4:] == w[4:]
    # per target, episodes never overlap
    for target in {g[0] for g in got}:
        mine = sorted((g for g in got if g[0] == target), key=lambda g: g[2])
        for a, b in zip(mine, mine[1:]):
            assert a[3] is not None and a[3] <= b[2]


def _c(minute, step_="tls", how="reset", up=True, target="sni.test", kind="site"):
    return Check(target, kind, step_, how, T0 + timedelta(minutes=minute), up)


def test_a_blocked_site_opens_after_open_after_and_closes_when_it_passes():
    seq = [_c(0), _c(5), _c(10, up=False), _c(15, "ok", "", up=False), _c(20), _c(25, "ok", "")]
    state, ch = State(), []
    for c in seq:
        state, got = step(state, c, 3)
        ch.append([(x.kind, x.episode.cause) for x in got])
    assert ch == [[], [], [], [], [("opened", "tls")], [("closed", "tls")]]
    _, changes = _run(seq, 3)
    ep = changes[-1].episode
    assert ep.start == T0 and ep.end == T0 + timedelta(minutes=25) and ep.duration_s == 1500
    assert ep.details == {"target": "sni.test", "how": "reset", "failed_checks": 3}
    assert ep.sustained and ep.id == changes[0].episode.id


def test_checks_while_the_line_is_down_change_nothing():
    state, _ = step(State(), _c(0), 2)
    assert step(state, _c(5, "dns", "timeout", up=False), 2) == (state, [])
    assert step(state, _c(5, "ok", "", up=False), 2) == (state, [])


def test_a_new_method_of_blocking_ends_the_episode_and_counts_afresh():
    _, changes = _run([_c(0), _c(5), _c(10, "dns", "mismatch"), _c(15, "dns", "mismatch")], 2)
    assert [(c.kind, c.episode.cause, c.episode.start.minute) for c in changes] == [
        ("opened", "tls", 0), ("closed", "tls", 0), ("opened", "dns", 10)]
    assert changes[1].episode.end == T0 + timedelta(minutes=10)


def test_an_endpoint_s_failures_are_vpn_interference():
    _, changes = _run([_c(0, "tcp", "refused", target="vpn.example.org:443", kind="tcp")], 1)
    assert changes[0].episode.cause == "vpn"
    assert changes[0].episode.details["how"] == "refused"


def test_a_blip_is_no_episode_and_the_state_survives_json():
    state, changes = _run([_c(0), _c(5, "ok", ""), _c(10), _c(15, "ok", "")], 2)
    assert changes == [] and state == State()
    state, _ = _run([_c(0), _c(5)], 3)
    assert State.from_json(state.to_json()) == state
    assert State.from_json("not json") == State() and State.from_json('{"x": 5}') == State()
    with pytest.raises(ValueError):
        step(State(), _c(0), 0)


def test_a_names_throttling_is_counted_apart_from_its_blocking():
    """zoom.us checked as a site (passing) and, as SNI, for throttling (slow): the site's
    passing checks do not end the throttling episode, and its details say so."""
    seq, t = [], T0
    for _ in range(3):
        t += timedelta(minutes=1)
        seq += [Check("zoom.us", "site", "ok", "", t),
                Check("zoom.us", "throttle", "throttled", "slow", t + timedelta(seconds=5))]
    state, changes = _run(seq, 3)
    assert [(c.kind, c.episode.cause, c.episode.details) for c in changes] == [
        ("opened", "throttled", {"target": "zoom.us", "how": "slow", "failed_checks": 3,
                                 "kind": "throttle"})]
    assert changes[0].episode.id.startswith("interference:zoom.us:throttle:")
    assert state.get("zoom.us") is None and state.get("zoom.us throttle").open
    # a neutral download that failed is no evidence either way; a good ratio ends it
    state, got = step(state, Check("zoom.us", "throttle", "throttled", "control", t), 3)
    assert got == [] and state.get("zoom.us throttle").count == 3
    state, got = step(state, Check("zoom.us", "throttle", "ok", "", t + timedelta(hours=6)), 3)
    assert [(c.kind, c.episode.duration_s) for c in got] == [("closed", 6 * 3600 + 115)]
