"""agent/jobs/alerts.py: the alert book over a real store, with channels that record.

The channels here are stand-ins that keep the Channel contract and record what they are given
(or fail as told): what is tested is the outbox, the debounce, the waiting while the line is
down, the restarts. The real channels are tested against real servers in
tests/test_alerts_web.py, tests/test_alerts_desktop.py and tests/test_alerts_mail.py, and the
whole chain in a namespace lab in tests/test_alerts_netns.py.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import config, outage
from agent.alerts.model import Alert, SendError
from agent.alerts.rules import Ups
from agent.clock import FakeClock
from agent.jobs.alerts import (
    AlertBook,
    Alerts,
    Heartbeat,
    RemoteAlerts,
    backoff_s,
    in_quiet_hours,
    ups_reading,
)
from agent.jobs.context import Context
from agent.model import Episode
from agent.store import ALERT_REFUSED, ALERT_REPLACED, ALERT_SENT, Store, Trouble
from tests.alertservers import UptimeKumaDouble, WebhookDouble

T0 = datetime(2026, 12, 5, 5, 0, tzinfo=UTC)


class Recorder:
    """A stand-in channel: records each alert; ``fail`` makes the next sends raise it."""

    def __init__(self, key: str, remote: bool) -> None:
        self.key, self.kind, self.remote = key, "recorder", remote
        self.got: list[Alert] = []
        self.fail: SendError | None = None

    def send(self, alert: Alert) -> str:
        if self.fail is not None:
            raise self.fail
        self.got.append(alert)
        return f"#{len(self.got)}"

    def state(self) -> str:
        return "ready"


CFG = """
[alerts]
min_duration_s = 60
time_zone = "Asia/Karachi"
[[alerts.channels]]
kind = "desktop"
[[alerts.channels]]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
[[alerts.channels]]
kind = "ntfy"
url = "http://127.0.0.1:9/topic"
events = ["outage_end"]
"""


class Lab:
    def __init__(self, tmp_path, text: str = CFG) -> None:
        self.tmp = tmp_path
        self.cfg = config.parse(text + f'\n[agent]\nid = "a1"\nstate_dir = "{tmp_path}"\n')
        self.clock = FakeClock(T0)
        self.down = False
        self.start()

    def start(self) -> None:
        """(Re)start: a new store handle and book, as a restarted agent makes them."""
        self.store = Store.open(self.tmp, now=self.clock.now())
        self.ctx = Context(self.cfg, self.clock, self.store, {"agent": "a1"})
        self.desk, self.hook, self.phone = (Recorder("desktop", False), Recorder("webhook", True),
                                            Recorder("ntfy", True))
        self.book = AlertBook(self.ctx, [self.desk, self.hook, self.phone],
                              self.cfg.alerts.channels, line_down=lambda: self.down,
                              ups=lambda: None)
        self.book.load(self.clock.now())  # as the wiring does when it builds the agent
        self.ctx.listeners.append(self.book.heard)
        self.local, self.remote = Alerts(self.ctx, self.book), RemoteAlerts(self.ctx, self.book)

    def episode(self, kind: str, ep: Episode) -> None:
        """As the rounds job does: the store write, then the announcement."""
        self.store.write(episodes=[ep])
        self.ctx.announce([outage.Change(kind, ep)])

    def outage(self, open_s: float) -> datetime:
        """An ISP outage while the line is counted down: open, ticked for 5 s and ``open_s``
        more, then closed and ticked once (its alerts queued). Returns its start."""
        start = self.clock.now()
        self.down = True
        self.episode("opened", conn_ep(start, None))
        self.tick()
        self.tick(open_s)
        self.episode("closed", conn_ep(start, self.clock.now()))
        self.tick()
        return start

    def tick(self, seconds: float = 5.0) -> None:
        self.clock.advance(seconds)
        self.local.run()
        self.remote.run()


def conn_ep(start: datetime, end: datetime | None, id="c1") -> Episode:
    length = ((end or start) - start).total_seconds()
    return Episode(id=id, type="connectivity", cause="isp", start=start, end=end,
                   duration_s=length, sustained=length > 300, details={"failed_rounds": 3})


def test_an_outage_desktop_at_once_remote_after_the_repair_once_each(tmp_path):
    lab = Lab(tmp_path)
    start = lab.clock.now()
    lab.down = True
    lab.episode("opened", conn_ep(start, None))
    for _ in range(11):
        lab.tick()
    assert [a.event for a in lab.desk.got] == []      # 55 s: not yet
    lab.tick()
    assert [a.event for a in lab.desk.got] == ["outage_start"]
    assert lab.hook.got == [] and lab.phone.got == []  # the line is down
    lab.tick(17 * 60)
    end = lab.clock.now()
    lab.episode("closed", conn_ep(start, end))
    lab.down = False
    lab.tick()
    assert [a.event for a in lab.desk.got] == ["outage_start", "outage_end"]
    assert [a.event for a in lab.hook.got] == ["outage_end"]   # the start was replaced
    assert [a.event for a in lab.phone.got] == ["outage_end"]  # its filter
    a = lab.hook.got[0]
    assert a.start == start and a.end == end and a.cause == "isp"
    assert a.text.startswith("Internet was down 10:00-10:18, 18 min: the ISP's side")
    for _ in range(5):
        lab.tick(60)
    assert len(lab.hook.got) == 1 and len(lab.desk.got) == 2
    states = lab.store.alerts_by_state()
    assert states["webhook"] == {ALERT_SENT: 1, ALERT_REPLACED: 1}


def test_a_server_on_the_lan_gets_the_start_during_the_outage_and_then_its_end(tmp_path):
    """A webhook on this network (``on_lan``) is reached while the ISP is down: it gets the
    start at once, as the desktop does, then the end; the ntfy channel on the internet waits,
    and gets the one message that says both."""
    lab = Lab(tmp_path, CFG.replace('url = "http://127.0.0.1:9/hook"\n',
                                    'url = "http://127.0.0.1:9/hook"\non_lan = true\n')
              .replace('events = ["outage_end"]\n', ""))
    start = lab.clock.now()
    lab.down = True
    lab.episode("opened", conn_ep(start, None))
    for _ in range(12):
        lab.tick()
    assert [a.event for a in lab.desk.got] == ["outage_start"]
    assert [a.event for a in lab.hook.got] == ["outage_start"]   # on the LAN: not held back
    assert lab.phone.got == []                                   # on the internet: waits
    lab.tick(10 * 60)
    lab.episode("closed", conn_ep(start, lab.clock.now()))
    lab.down = False
    lab.tick()
    assert [a.event for a in lab.hook.got] == ["outage_start", "outage_end"]
    assert [a.event for a in lab.phone.got] == ["outage_end"]    # the start was replaced
    assert lab.store.alerts_by_state()["ntfy"] == {ALERT_SENT: 1, ALERT_REPLACED: 1}


def test_a_lan_server_out_of_reach_during_the_outage_is_tried_again_as_the_line_comes_back(
        tmp_path):
    """A LAN outage (the router is off, on a power cut) can take the LAN's own server with it:
    its sends fail and its retries are spaced out to 10 min. When the connectivity outage
    closes the line is back: the LAN channel gets the power cut's start, still open, at the
    next tick, not at the end of that wait (the outage's end replaces its unsent start)."""
    lab = Lab(tmp_path, CFG.replace('url = "http://127.0.0.1:9/hook"\n',
                                    'url = "http://127.0.0.1:9/hook"\non_lan = true\n'))
    lab.hook.fail = SendError("connection refused", retry=True)
    start = lab.clock.now()
    lab.down = True
    lab.episode("opened", conn_ep(start, None))
    lab.episode("opened", Episode(id="p1", type="power", cause="ac_lost", start=start, end=None,
                                  duration_s=0.0, sustained=False, details={"source": "battery"}))
    for _ in range(8 * 12):                    # 8 min of ticks: the waits grow to 10 min
        lab.tick()
    assert lab.hook.got == [] and lab.ctx.counters["alert_errors"] >= 5
    lab.hook.fail = None                       # the router is back; the power cut goes on
    lab.episode("closed", conn_ep(start, lab.clock.now()))
    lab.down = False
    lab.tick()
    assert sorted(a.event for a in lab.hook.got) == ["outage_end", "power_start"]


def test_a_restart_sends_what_waited_once_and_nothing_twice(tmp_path):
    lab = Lab(tmp_path)
    lab.outage(665)               # queued for the webhook, the line still counted down
    assert lab.hook.got == []
    lab.store.close()             # the agent stops (or is killed) here
    lab.start()
    lab.down = False
    lab.tick()
    lab.tick()
    assert [a.event for a in lab.hook.got] == ["outage_end"]
    assert lab.desk.got == []     # sent before the restart, not again
    lab.store.close()
    lab.start()
    for _ in range(3):
        lab.tick()
    assert lab.hook.got == [] and lab.desk.got == []


def test_a_blip_gives_nothing(tmp_path):
    lab = Lab(tmp_path)
    start = lab.clock.now()
    lab.episode("opened", conn_ep(start, None))
    lab.tick(20)
    lab.episode("closed", conn_ep(start, lab.clock.now()))
    for _ in range(20):
        lab.tick()
    assert lab.desk.got == [] and lab.hook.got == [] and lab.store.alerts_by_state() == {}


def test_retry_with_backoff_then_once_and_a_refusal_is_kept_with_its_reason(tmp_path):
    lab = Lab(tmp_path)
    start = lab.clock.now()
    lab.hook.fail = SendError("connection refused", retry=True)
    lab.phone.fail = SendError("401 unauthorized", retry=False)
    lab.episode("opened", conn_ep(start, None))
    lab.tick(65)
    lab.episode("closed", conn_ep(start, lab.clock.now()))
    lab.tick()
    lab.tick()
    assert lab.hook.got == [] and lab.phone.got == []
    lab.hook.fail = None
    lab.tick(5)
    assert lab.hook.got == []     # waits out its backoff (15 s, then 30 s)
    lab.tick(60)
    # the start failed and was still queued when the end came: the end replaced it
    assert [a.event for a in lab.hook.got] == ["outage_end"]
    assert lab.store.alerts_by_state()["ntfy"] == {ALERT_REFUSED: 1}
    assert lab.ctx.counters["alerts_refused"] == 1 and lab.ctx.counters["alert_errors"] >= 3
    recent = [r for r in lab.store.alerts_recent() if r[0] == "ntfy"]
    assert recent[0][5] == "401 unauthorized"


def test_quiet_hours_hold_then_send(tmp_path):
    text = CFG.replace('kind = "desktop"', 'kind = "desktop"\nquiet_hours = "09:00-11:00"')
    lab = Lab(tmp_path, text)
    start = lab.clock.now()  # 10:00 in Karachi: quiet
    lab.episode("opened", conn_ep(start, None))
    lab.tick(65)
    lab.tick(600)
    lab.episode("closed", conn_ep(start, lab.clock.now()))
    lab.tick()
    assert lab.desk.got == [] and [a.event for a in lab.hook.got] == ["outage_start", "outage_end"]
    lab.tick(3600)            # 11:11: quiet hours over, one message (the end replaced the start)
    assert [a.event for a in lab.desk.got] == ["outage_end"]


def test_store_trouble_goes_from_memory(tmp_path):
    lab = Lab(tmp_path)
    lab.tick()
    # as the store says it after a write failed (the next write that works clears it)
    lab.store.trouble = Trouble(lab.clock.now(), "disk full")
    lab.tick()
    assert [a.event for a in lab.desk.got] == ["store_trouble"]
    lab.tick()
    assert len(lab.desk.got) == 1


@pytest.mark.parametrize("attempts, after, expected", [
    (1, None, 15), (2, None, 30), (6, None, 480), (10, None, 600), (3, 120, 120), (1, 1e6, 3600)])
def test_backoff(attempts, after, expected):
    assert backoff_s(attempts, after) == expected


@pytest.mark.parametrize("hhmm, quiet, expected", [
    ("23:30", (1380, 420), True), ("06:59", (1380, 420), True), ("07:00", (1380, 420), False),
    ("12:00", (540, 1080), True), ("18:00", (540, 1080), False), ("12:00", None, False)])
def test_quiet_hours(hhmm, quiet, expected):
    h, m = map(int, hhmm.split(":"))
    assert in_quiet_hours(T0.replace(hour=h, minute=m), quiet) is expected


def test_old_history_is_not_alerted(tmp_path):
    # an episode from before alerts were configured stays quiet
    lab = Lab(tmp_path)
    old = conn_ep(T0 - timedelta(hours=3), T0 - timedelta(hours=2), id="old")
    lab.store.write(episodes=[old])
    lab.store.close()
    lab.start()
    lab.tick()
    assert lab.desk.got == []


def test_a_slow_speed_test_the_digest_and_a_replaced_store(tmp_path):
    from agent.model import Sample
    from agent.store import STATE_RECOVERED

    text = CFG.replace("[alerts]", '[alerts]\ndigest_at = "10:30"')
    text = text.replace('events = ["outage_end"]', 'events = ["digest"]')
    lab = Lab(tmp_path, text + "[report]\nplan_download_mbps = 20\n")
    lab.tick()
    t = lab.clock.now()
    lab.store.write([Sample("speedtest", {"source": "speedtest.net"},
                            {"status": "ok", "download_bps": 4.2e6}, t),
                     Sample("speedtest", {"source": "speedtest.net"},
                            {"status": "ok", "download_bps": 18e6}, t + timedelta(seconds=1))])
    lab.tick(61)    # the speed tests are read once a minute
    assert [a.event for a in lab.desk.got] == ["speed_below_plan"]
    assert lab.desk.got[0].details["plan_mbps"] == 20
    lab.tick(30 * 60)  # 10:31 in Karachi: the digest
    assert [a.event for a in lab.phone.got] == ["digest"]
    assert "1 speed test(s)" not in lab.phone.got[0].text  # two tests, and their median
    assert "2 speed test(s), median 11 Mbit/s down." in lab.phone.got[0].text
    assert [a.event for a in lab.desk.got] == ["speed_below_plan", "digest"]   # events empty: all
    lab.tick(3600)
    assert len(lab.phone.got) == 1     # once a day
    # a damaged store moved aside and replaced: an alert from the state the store keeps
    lab.store.write(state={STATE_RECOVERED: json.dumps({"time": lab.clock.now().isoformat(),
                                                        "moved_to": "/x/linewatch.db.damaged"})})
    lab.store.recovered_from = Path("/x/linewatch.db.damaged-20261205")
    lab.tick()
    (damaged,) = [a for a in lab.desk.got if a.event == "store_trouble"]
    assert damaged.cause == "damaged" and "linewatch.db.damaged-20261205" in damaged.text


def test_the_ups_reading_as_the_rules_take_it():
    from agent.model import Sample
    from agent.power import Reading

    r = Reading("ups", True, 41.0, "OB LB", Sample("power", {"source": "ups"},
                                                      {"runtime_s": 380, "charge_pct": 41.0}, T0))
    assert ups_reading([Reading("battery", False, 90.0), r]) == Ups(41.0, 380.0, True)
    assert ups_reading([Reading("battery", True, 90.0)]) is None


def test_the_heartbeat_job_against_a_push_monitor(tmp_path):
    with UptimeKumaDouble("PushTok3n") as kuma:
        lab = Lab(tmp_path, CFG.replace("[alerts]", f'[alerts]\nheartbeat_url = '
                                        f'"{kuma.url}/api/push/PushTok3n?status=up&msg=OK"'))
        beat = Heartbeat(lab.ctx)
        beat.run()
        assert beat.failing is None and beat.last_ok == lab.clock.now()
        assert kuma.requests[0].query == {"status": ["up"], "msg": ["OK"]}
        lab.cfg = config.parse(CFG.replace("[alerts]", f'[alerts]\nheartbeat_url = '
                                           f'"{kuma.url}/api/push/Wrong0ne?status=up"'))
        lab.ctx.cfg = lab.cfg
        beat.run()
        assert beat.failing is not None and "Wrong0ne" not in beat.failing
        assert lab.ctx.counters["alert_errors"] >= 1


def test_a_full_disk_neither_loses_nor_repeats_an_alert(tmp_path, mount_point):
    """The store on a 1 MB tmpfs filled to its last block while alerts are queued: a sent
    alert that cannot be marked sent is not sent again, and is marked once there is room."""
    lab = Lab(mount_point)
    start = lab.clock.now()
    lab.down = True
    lab.episode("opened", conn_ep(start, None))
    lab.tick(65)
    lab.tick(600)
    lab.episode("closed", conn_ep(start, lab.clock.now()))
    lab.tick()                                   # queued for the remote channels
    filler = mount_point / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)   # fill it to its last block
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    lab.down = False
    for _ in range(10):
        lab.tick()
    assert [a.event for a in lab.hook.got] == ["outage_end"]   # once, though not marked yet
    assert ("webhook" in {k for _, k in lab.book.unmarked}), "the disk was not full enough"
    filler.unlink()
    lab.tick()
    assert lab.book.unmarked == {}
    assert lab.store.alerts_by_state()["webhook"] == {ALERT_SENT: 1, ALERT_REPLACED: 1}
    lab.store.close()
    lab.start()
    for _ in range(3):
        lab.tick()
    assert lab.hook.got == []


def test_the_outbox_is_salvaged_from_a_damaged_store(tmp_path):
    import sqlite3

    from agent.salvage import salvage
    from kit.storeschema import DB_NAME, SCHEMA

    lab = Lab(tmp_path)
    start = lab.clock.now()
    lab.down = True
    lab.episode("opened", conn_ep(start, None))
    lab.tick(65)                   # sent to the desktop, waiting for the remote channels
    lab.store.close()
    dst = sqlite3.connect(":memory:")
    dst.executescript(SCHEMA)
    out = salvage(tmp_path / DB_NAME, dst)
    assert out["alerts"] == {"kept": 2, "lost": 0}     # ntfy takes only outage_end
    rows = dict(dst.execute("SELECT channel, state FROM alerts").fetchall())
    assert rows == {"desktop": ALERT_SENT, "webhook": 0}
    # a store made before the outbox existed lost nothing of it
    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript(SCHEMA.split("CREATE TABLE IF NOT EXISTS alerts")[0])
    old.close()
    dst2 = sqlite3.connect(":memory:")
    dst2.executescript(SCHEMA)
    assert salvage(tmp_path / "old.db", dst2)["alerts"] == {"kept": 0, "lost": 0}


def test_a_start_that_rang_always_gets_its_end_and_remote_channels_never_the_stale_start(tmp_path):
    lab = Lab(tmp_path)
    start = lab.clock.now()
    lab.down = True
    lab.episode("opened", conn_ep(start, None))
    lab.tick(61)                                   # 61 s open: the start rang on the desktop
    assert [a.event for a in lab.desk.got] == ["outage_start"]
    # it closes at its first good round: 55 s long, under the debounce
    lab.episode("closed", conn_ep(start, start + timedelta(seconds=55)))
    lab.down = False
    lab.clock.advance(1)
    lab.remote.run()                               # the remote job first, before `alerts` ran
    assert [a.event for a in lab.hook.got] == ["outage_end"]
    lab.tick()
    assert [a.event for a in lab.desk.got] == ["outage_start", "outage_end"]
    assert [a.event for a in lab.hook.got] == ["outage_end"]


def test_a_channel_added_later_gets_nothing_from_before_and_a_removed_ones_alerts_expire(tmp_path):
    lab = Lab(tmp_path)
    lab.outage(660)                                # queued for the webhook and ntfy
    lab.store.close()
    # the next day's config: the webhook gone, a second desktop added; a slow speed test of
    # three hours ago is in the store
    lab.cfg = config.parse(CFG.replace('[[alerts.channels]]\nkind = "webhook"\n'
                                       'url = "http://127.0.0.1:9/hook"\n',
                                       '[[alerts.channels]]\nkind = "desktop"\nname = "two"\n')
                           + f'\n[agent]\nid = "a1"\nstate_dir = "{tmp_path}"\n'
                           + "[report]\nplan_download_mbps = 20\n")
    lab.start()
    from agent.model import Sample

    lab.store.write([Sample("speedtest", {"source": "speedtest.net"},
                            {"status": "ok", "download_bps": 1e6},
                            lab.clock.now() - timedelta(hours=3))])
    two = Recorder("two", False)
    lab.book = AlertBook(lab.ctx, [lab.desk, two, lab.phone], lab.cfg.alerts.channels,
                         line_down=lambda: False, ups=lambda: None)
    lab.book.load(lab.clock.now())
    lab.local, lab.remote = Alerts(lab.ctx, lab.book), RemoteAlerts(lab.ctx, lab.book)
    lab.down = False
    for _ in range(15):
        lab.tick()
    assert two.got == [] and lab.desk.got == []
    assert [a.event for a in lab.phone.got] == ["outage_end"]     # what waited for it still goes
    states = lab.store.alerts_by_state()
    assert states["webhook"] == {ALERT_REPLACED: 1, 4: 1}          # expired: no such channel


def test_an_episode_the_agent_stopped_watching_does_not_say_back(tmp_path):
    lab = Lab(tmp_path)
    start = lab.clock.now()
    lab.episode("opened", conn_ep(start, None))
    lab.tick(65)
    ep = conn_ep(start, start + timedelta(seconds=180))
    ep = Episode(**{**ep.__dict__, "details": {"end_observed": False}})
    lab.episode("closed", ep)
    lab.tick()
    (start_a, end_a) = lab.desk.got
    assert start_a.event == "outage_start"
    assert end_a.event == "outage_end" and end_a.title == "The internet outage: no longer watched"
    assert "stopped watching at 10:03" in end_a.text and "back" not in end_a.text.lower()


def test_a_power_cut_that_took_the_machine_down_is_alerted_after_the_boot(tmp_path):
    """The agent finds at start that the machine was off (its last heartbeat, then a new boot):
    the host-down episode comes through the episode hook, and a webhook (real, on loopback)
    hears "This machine was off"."""
    from agent.runner import Agent
    from tests.fakenet import FakeNet, tick
    from tests.hosttree import boot, time_synced

    clock, procfs, rundir = FakeClock(T0), tmp_path / "proc", tmp_path / "run"
    boot(procfs, "boot-1", clock.now() - timedelta(hours=1))
    time_synced(rundir)
    with WebhookDouble() as hook:
        cfg = config.parse(
            f'[agent]\nid = "a1"\nstate_dir = "{tmp_path / "state"}"\nprocfs = "{procfs}"\n'
            f'rundir = "{rundir}"\n[power]\nbattery = "off"\n[services]\nurls = []\n'
            f'[alerts]\ntime_zone = "Asia/Karachi"\n[[alerts.channels]]\nkind = "webhook"\n'
            f'url = "{hook.url}/in"\n')
        a = Agent(cfg, clock=clock, probes=FakeNet().probes())
        a.power.recover()
        tick(a, clock, 2)
        a.store.close()                                   # the machine dies
        clock.advance(3 * 3600)
        boot(procfs, "boot-2", clock.now() - timedelta(seconds=60))
        a = Agent(cfg, clock=clock, probes=FakeNet().probes())
        a.power.recover()
        a.alerts.run()
        a.remote_alerts.run()
        a.store.close()
        (req,) = hook.requests
    got = req.json()
    assert (got["event"], got["type"], got["cause"]) == ("power_end", "power", "host_down")
    assert got["title"] == "This machine was off for 2 h 59 min" and got["end"] is not None
