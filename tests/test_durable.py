"""State changes become durable before they are kept: one failed store write loses no episode.

In process, with the fakes of tests/fakenet.py (probes passed by constructor, a fake clock) and the
real store: the write of the round that closes an outage (or ends a power cut) fails in each way SQLite
can fail it, and the episode must still close at the instant the line came back, exactly once,
with its ``outage`` row in the outbox. The failures are injected into the real store's one write
path (``Store._write_now``), which is the only mock here: a full disk at exactly the closing round
cannot be arranged with a real file system in process. End to end, with a real full tmpfs, see
test_durable_netns.py.
"""

from __future__ import annotations

from datetime import UTC

import pytest

from agent.clock import FakeClock
from agent.config import parse
from agent.runner import Agent
from kit.errors import StoreCorrupt, StoreError, StoreUnwritable
from tests.fakenet import FakeNet, make_agent
from tests.hosttree import power_supply

FAILURES = {
    "disk-full": lambda: StoreUnwritable("linewatch.db: database or disk is full",
                                         "database or disk is full"),
    "locked": lambda: StoreUnwritable("linewatch.db: database is locked", "database is locked"),
    "other-error": lambda: StoreError("linewatch.db: database schema has changed"),
    "damaged": lambda: StoreCorrupt("linewatch.db: damaged database (database disk image is malformed)"),
    "bug": lambda: RuntimeError("an unexpected failure inside the write"),
}


class FailingWrites:
    """Makes the store's next ``n`` writes fail with ``make()`` (inside the transaction)."""

    def __init__(self, agent: Agent) -> None:
        self.agent, self.left, self.make = agent, 0, None
        self._wrap(agent.store)

    def _wrap(self, store) -> None:
        real = store._write_now

        def write_now(*a, **kw):
            if self.left > 0 and store is self.agent.store:
                self.left -= 1
                raise self.make()
            return real(*a, **kw)

        store._write_now = write_now

    def arm(self, kind: str, n: int = 1) -> None:
        self.make, self.left = FAILURES[kind], n


def job(agent: Agent, fn, name: str) -> None:
    """What the scheduler runs: the job inside the agent's guard (errors logged, counted)."""
    agent.guarded(fn, name)()


def tick(agent, clock, n, fail=None, kind=None):
    for _ in range(n):
        if fail is not None and kind is not None:
            fail.arm(kind)
            kind = None
        job(agent, agent.rounds.run, "round")
        clock.advance(10)


def outage_rows(agent):
    return list(agent.store.samples("outage"))


@pytest.mark.parametrize("kind", list(FAILURES))
@pytest.mark.parametrize("which", ["first-good", "closing"])
def test_a_failed_write_on_the_closing_rounds_loses_no_episode(tmp_path, kind, which):
    """close_after = 2: the first good round is the episode's end, the second closes it. Either
    write may fail; the episode still ends at the first good round, once."""
    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    fail = FailingWrites(agent)
    tick(agent, clock, 3)
    t_cut = clock.now()
    net.state = "isp"
    tick(agent, clock, 10)
    net.state = "up"
    t_back = clock.now()
    if which == "first-good":
        tick(agent, clock, 1, fail, kind)
        tick(agent, clock, 3)
    else:
        tick(agent, clock, 1)
        tick(agent, clock, 1, fail, kind)
        tick(agent, clock, 2)
    if kind == "damaged":
        FailingWrites(agent)  # the agent moved to a new store: nothing more fails
    (ep,) = agent.store.episodes()
    assert (ep.cause, ep.start, ep.end, ep.duration_s) == ("isp", t_cut, t_back, 100.0)
    (row,) = outage_rows(agent)
    assert row.fields["duration_s"] == 100.0 and row.tags["cause"] == "isp"
    rounds = list(agent.store.samples("round"))
    if kind != "damaged":  # a damaged file's rows are salvaged, the failed round's among them
        assert len(rounds) == 3 + 10 + 4  # every round is written, the failed one later


def test_many_failed_writes_in_a_row_still_close_once(tmp_path):
    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    fail = FailingWrites(agent)
    tick(agent, clock, 2)
    t_cut = clock.now()
    net.state = "lan"
    tick(agent, clock, 6)
    net.state = "up"
    t_back = clock.now()
    fail.arm("other-error", n=5)                      # five rounds in a row cannot be written
    tick(agent, clock, 8)
    assert agent.counters["round_failures"] == 5
    (ep,) = agent.store.episodes()
    assert (ep.start, ep.end) == (t_cut, t_back)
    assert len(outage_rows(agent)) == 1


def test_a_failed_write_never_leaves_the_episode_in_progress_after_a_restart(tmp_path):
    """The failed closing write, then the agent stops (the failure persists to the end): the
    store holds the episode as the last durable state had it, and the next start closes it at
    the last round that was written — never an episode in progress for ever."""
    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    fail = FailingWrites(agent)
    tick(agent, clock, 2)
    net.state = "isp"
    tick(agent, clock, 6)
    last_written = clock.now() - __import__("datetime").timedelta(seconds=10)
    net.state = "up"
    fail.arm("other-error", n=10**6)
    tick(agent, clock, 3)
    agent.store.close()
    clock.advance(600)
    again = make_agent(tmp_path, net, clock)
    tick(again, clock, 2)
    (ep,) = again.store.episodes()
    assert ep.end == last_written and ep.details.get("end_observed") is False
    assert len(outage_rows(again)) == 1


def power_agent(tmp_path, clock):
    sysfs = tmp_path / "sys"
    power_supply(sysfs, online="1", capacity=90)
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path / "state"}"\nsysfs = "{sysfs}"\n'
                f'rundir = "{tmp_path / "run"}"\n[power]\npoll_s = 5\n[outage]\nmomentary_max_s = 60\n')
    return Agent(cfg, clock=clock, probes=FakeNet().probes()), sysfs


def poll(agent, clock, n):
    for _ in range(n):
        job(agent, agent.power.run, "power")
        clock.advance(5)


@pytest.mark.parametrize("kind", list(FAILURES))
def test_a_failed_write_when_mains_return_loses_no_power_cut(tmp_path, kind):
    clock = FakeClock()
    agent, sysfs = power_agent(tmp_path, clock)
    fail = FailingWrites(agent)
    poll(agent, clock, 2)
    t_cut = clock.now()
    power_supply(sysfs, online="0", capacity=80)
    poll(agent, clock, 20)
    t_back = clock.now()
    power_supply(sysfs, online="1", capacity=79)
    fail.arm(kind)
    poll(agent, clock, 1)                             # the poll that sees mains again fails
    if kind == "damaged":
        FailingWrites(agent)
    poll(agent, clock, 3)
    eps = [e for e in agent.store.episodes() if e.type == "power"]
    assert [(e.cause, e.start, e.end) for e in eps] == [("ac_lost", t_cut, t_back)], eps
    rows = [s for s in agent.store.samples("outage") if s.tags.get("type") == "power"]
    assert len(rows) == 1


# -- the other paths from a measurement to the store ------------------------------------------

def test_a_speed_test_whose_write_fails_is_written_with_the_next_round(tmp_path, monkeypatch):
    """The result of a test (tens of MB moved: the budget counts it) survives a failed write,
    and the ISP it names tags rows only once the store holds it (durable first, then kept).
    The speed test itself is replaced by its outcome (no speedtest.net here); the store is real."""
    from agent.model import Sample
    from agent.probes import speedtest

    clock, net = FakeClock(), FakeNet()
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}"\nregion = "PK-PB"\nisp = "auto"\n'
                '[probe]\ninterval_s = 10\n[speedtest]\nserver_url = "http://127.0.0.1:9/speedtest/upload.php"\n')
    agent = Agent(cfg, clock=clock, probes=net.probes())
    fail = FailingWrites(agent)
    fields = {"status": "ok", "download_bps": 20e6, "upload_bps": 5e6, "bytes_sent": 10_000_000,
              "bytes_received": 40_000_000}
    monkeypatch.setattr(speedtest, "measure", lambda **kw: speedtest.Outcome(
        Sample("speedtest", {"source": "self_hosted"}, dict(fields), clock.now()), "Nayatel"))
    tick(agent, clock, 1)
    fail.arm("other-error")
    with pytest.raises(StoreError):
        agent.speedtests.measure(force=True)
    assert agent.tags.get("isp") is None                     # not kept: the store does not hold it
    tick(agent, clock, 1)                                    # the round's write carries the result
    (st,) = list(agent.store.samples("speedtest"))
    assert st.fields["bytes_received"] == 40_000_000 and st.tags["isp"] == "Nayatel"
    assert agent.speedtests.budget(clock.now())[0] == 50_000_000
    assert agent.store.get_state("isp_auto") is None         # the state key is the next test's to set
    agent.speedtests.measure(force=True)
    assert agent.tags["isp"] == "Nayatel" and agent.store.get_state("isp_auto") == "Nayatel"


def test_self_metrics_whose_write_fails_are_not_lost(tmp_path):
    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    fail = FailingWrites(agent)
    fail.arm("other-error")
    job(agent, agent.selfmetrics.run, "minute")
    assert agent.counters["job_failures"] == 1 and list(agent.store.samples("agent")) == []
    tick(agent, clock, 1)
    assert len(list(agent.store.samples("agent"))) == 1


def test_a_host_down_is_recorded_once_when_the_agent_stops_before_its_first_round(tmp_path):
    """The previous run's end is judged at start; if the agent stops again before a round
    overwrites the heartbeat, the next start must not record the same cut again."""
    import json

    from agent import power

    clock = FakeClock()
    procfs = tmp_path / "proc"
    (procfs / "sys/kernel/random").mkdir(parents=True)
    (procfs / "sys/kernel/random/boot_id").write_text("boot-1\n")
    (procfs / "stat").write_text(f"btime {int(clock.now().timestamp())}\n")
    run = tmp_path / "run"
    (run / "systemd/timesync").mkdir(parents=True)
    (run / "systemd/timesync/synchronized").write_text("")
    text = (f'[agent]\nstate_dir = "{tmp_path / "state"}"\nprocfs = "{procfs}"\nrundir = "{run}"\n'
            '[power]\nbattery = "off"\n')
    a = Agent(parse(text), clock=clock, probes=FakeNet().probes())
    a.power.recover()
    tick(a, clock, 3)
    a.store.close()                                     # the host dies: no clean exit
    clock.advance(1800)
    (procfs / "sys/kernel/random/boot_id").write_text("boot-2\n")
    (procfs / "stat").write_text(f"btime {int(clock.now().timestamp()) - 60}\n")
    for _ in range(2):                                  # started twice, stopped before a round
        b = Agent(parse(text), clock=clock, probes=FakeNet().probes())
        b.power.recover()
        b.store.close()
        clock.advance(5)
    c = Agent(parse(text), clock=clock, probes=FakeNet().probes())
    c.power.recover()
    (ep,) = [e for e in c.store.episodes() if e.type == "power"]
    assert ep.cause == power.HOST_DOWN
    rows = list(c.store.samples("outage"))
    assert len(rows) == 1, rows
    assert json.loads(c.store.get_state("pending_host_down") or '""') == ""


def test_a_long_full_disk_drops_raw_rows_never_an_outage_row(tmp_path):
    """The in-memory queue of a store that cannot be written is bounded; when it overflows,
    raw samples go first and a closed outage's row stays (it is what the collector and InfluxDB
    count). The full disk is the injected failure here (see the module's docstring)."""
    from datetime import datetime, timedelta

    from agent import store as store_mod
    from agent.model import Sample
    from agent.store import Store

    s = Store.open(tmp_path)
    real = s._write_now
    s._write_now = lambda *a, **kw: (_ for _ in ()).throw(
        StoreUnwritable("linewatch.db: database or disk is full", "database or disk is full"))
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    cap = store_mod.MAX_PENDING_SAMPLES
    s.write([Sample("outage", {"type": "connectivity"}, {"duration_s": 60.0}, t0)])
    for i in range(cap + 50):
        s.write([Sample("round", {}, {"interval_s": 10.0}, t0 + timedelta(seconds=10 * (i + 1)))])
    assert s.dropped_pending == 51 and s.trouble.pending_samples == cap
    s._write_now = real
    s.write()
    assert len(list(s.samples("outage"))) == 1
    assert len(list(s.samples("round"))) == cap - 1
    s.close()


def test_retention_counts_the_unsent_rows_it_deletes_in_the_same_transaction(tmp_path, monkeypatch):
    """Before, the count of unsent rows removed by retention was a second write after the
    deleting one: when that write failed, the rows were gone and uncounted."""
    from datetime import datetime, timedelta

    from agent.model import Sample
    from agent.store import Store

    s = Store.open(tmp_path)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    s.write([Sample("round", {}, {"interval_s": 10.0}, t0 + timedelta(seconds=i)) for i in range(30)])

    def refused(*a, **kw):
        raise StoreError("linewatch.db: database schema has changed")

    monkeypatch.setattr(s, "write", refused)           # any later write fails
    out = s.prune(t0 + timedelta(days=100), 90 * 86400, 10**9)
    assert out["expired"] == 30
    assert s.get_state("dropped_unsent") == "30"
    s.close()


def test_episode_changes_reach_the_hook_once_written_and_a_failing_listener_breaks_nothing(tmp_path):
    """The one episode hook (Context.announce): a listener hears each change once, after the
    store write that recorded it (never for a write that failed); a listener that raises is
    counted and neither the round nor the other listeners notice."""
    clock, net = FakeClock(), FakeNet()
    agent = make_agent(tmp_path, net, clock)
    fail = FailingWrites(agent)
    heard = []

    def listener(change):
        stored = {e.id: e for e in agent.store.episodes()}[change.episode.id]
        heard.append((change.kind, change.episode.type, change.episode.cause,
                      stored.end is not None))

    def broken(change):
        raise RuntimeError("a listener that fails")

    agent.ctx.listeners[:0] = [broken, listener]
    tick(agent, clock, 2)
    net.state = "isp"
    tick(agent, clock, 2)
    tick(agent, clock, 1, fail, "other-error")      # the round that opens it cannot be written
    assert heard == []
    tick(agent, clock, 2)
    net.state = "up"
    tick(agent, clock, 4)
    assert heard == [("opened", "connectivity", "isp", False), ("closed", "connectivity", "isp", True)]
    # the failed round and the two changes the broken listener could not take
    assert agent.counters["round_failures"] == 1 and agent.counters["job_failures"] == 1 + 2
