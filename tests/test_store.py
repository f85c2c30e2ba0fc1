"""The SQLite store: ordering, outbox, episodes, retention, size cap, corruption, permissions."""

import os
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from agent.model import Episode, Sample
from agent.store import DB_NAME, Store
from tests.fakenet import outbox

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ping(i: int, target="1.1.1.1", t=None) -> Sample:
    return Sample("ping", {"target": target, "agent": "a1", "city": "ملتان, \"x\"=y"},
                  {"sent": 3, "received": 3 - i % 2, "loss_pct": 0.0, "rtt_avg_ms": 1.5 + i},
                  t or T0 + timedelta(seconds=10 * i))


def test_files_are_private(tmp_path):
    s = Store.open(tmp_path / "state")
    s.write([ping(0)])
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "state" / DB_NAME).st_mode) == 0o600
    s.close()


def test_wal_mode(store):
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"


def test_samples_round_trip_in_order(store):
    written = [ping(i, target=t) for i in range(50) for t in ("1.1.1.1", "8.8.8.8")]
    store.write(written)
    got = outbox(store, 1000)
    assert [s for _, s in got] == written
    assert [i for i, _ in got] == sorted(i for i, _ in got)


def test_outbox_marks_sent_and_pages(store):
    store.write([ping(i) for i in range(25)])
    first = outbox(store, 10)
    assert len(first) == 10
    store.mark_sent(i for i, _ in first)
    rows, oldest = store.backlog()
    assert rows == 15 and oldest == T0 + timedelta(seconds=100)
    rest = outbox(store, 100)
    assert [s.time for _, s in rest] == [T0 + timedelta(seconds=10 * i) for i in range(10, 25)]
    # paging after the last row of the previous page, without marking
    page = store.outbox(limit=5, after=(rest[4][1].time_ns, rest[4][0]))
    assert page[0][0] == rest[5][0]


def test_lean_outbox_is_the_outbox_without_the_series_text(store):
    store.write([ping(i, target=f"10.0.0.{i % 3}") for i in range(12)])
    full = store.outbox(100)
    assert store.outbox_lean(100) == [(i, sid, f, ns, None) for i, sid, _, _, f, ns in full]
    assert store.outbox_lean(4, after=(full[5][5], full[5][0])) == [
        (i, sid, f, ns, None) for i, sid, _, _, f, ns in full[6:10]]
    assert {store.series_text(sid) for _, sid, *_ in full} == {(m, t) for _, _, m, t, _, _ in full}
    assert store.series_text(10_000) is None


def test_episode_in_progress_is_updated_in_place_then_closed(store):
    ep = Episode("connectivity:1", "connectivity", "isp", T0, None, 30.0, False, {"failed_rounds": 3})
    store.write(episodes=[ep])
    store.write(episodes=[Episode("connectivity:1", "connectivity", "isp", T0, None, 60.0, False, {})])
    (cur,) = store.episodes()
    assert cur.end is None and cur.duration_s == 60
    done = Episode("connectivity:1", "connectivity", "lan", T0, T0 + timedelta(seconds=400), 400.0, True, {})
    store.write(episodes=[done])
    (cur,) = store.episodes()
    assert cur == done
    assert store.episodes(type="power") == []
    assert store.episodes(since=T0 + timedelta(days=1)) == []


def test_round_transaction_is_atomic(store):
    with pytest.raises(TypeError):
        store.write([ping(0), Sample("ping", {}, {"bad": object()}, T0)])  # not JSON-serialisable
    assert store.count() == 0
    store.write([ping(1)], state={"k": "v"})
    assert store.count() == 1 and store.get_state("k") == "v"


def test_latest_per_series(store):
    store.write([ping(i, target=t) for i in range(5) for t in ("a", "b")])
    latest = {s.tags["target"]: s for s in store.latest("ping")}
    assert latest["a"].time == latest["b"].time == T0 + timedelta(seconds=40)


def test_retention_keeps_episode_samples_and_counts_unsent_drops(store):
    old = [ping(i, t=T0 - timedelta(days=100) + timedelta(seconds=i)) for i in range(10)]
    outage = Sample("outage", {"type": "connectivity"}, {"duration_s": 400.0}, T0 - timedelta(days=100))
    old += [ping(i, t=T0 - timedelta(days=99) + timedelta(seconds=i)) for i in range(3)]
    store.write(old + [outage] + [ping(i) for i in range(5)])
    ids = [i for i, s in outbox(store) if s.time > T0 - timedelta(days=99, seconds=1)
           and s.measurement == "ping" and s.time < T0]
    store.mark_sent(ids[:2])                                          # sent: dropping them loses nothing
    store.quarantine([(ids[2], 400, "bad row", "ping x=1")], T0)      # refused: dropping it does
    res = store.prune(T0 + timedelta(hours=1), retention_s=90 * 86400, max_bytes=10**9)
    assert res["expired"] == 13 and res["dropped_unsent"] == 11
    assert store.get_state("dropped_unsent") == "11"
    assert [s.measurement for _, s in outbox(store)] == ["outage"] + ["ping"] * 5


def test_size_cap_drops_oldest_raw_rows_first(store):
    for day in range(20):
        store.write([ping(i, t=T0 + timedelta(days=day, seconds=i)) for i in range(500)])
    before = store.size_bytes()
    res = store.prune(T0 + timedelta(days=21), retention_s=365 * 86400, max_bytes=before // 2)
    assert res["over_size"] > 0
    assert store.size_bytes() <= before // 2
    remaining = [s.time for _, s in outbox(store)]
    assert min(remaining) > T0 + timedelta(days=5)   # the oldest went first
    assert max(remaining) >= T0 + timedelta(days=19)  # the newest stayed


def test_corrupt_file_is_moved_aside(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    (d / DB_NAME).write_bytes(b"this is not a database" * 500)
    s = Store.open(d, now=T0)
    assert s.recovered_from == d / f"{DB_NAME}.corrupt-20261101T000000Z"
    assert s.recovered_from.exists()
    s.write([ping(0)])
    assert s.count() == 1
    s.close()


def test_damaged_pages_detected(tmp_path):
    d = tmp_path / "state"
    s = Store.open(d)
    s.write([ping(i) for i in range(2000)])
    s.close()
    raw = bytearray((d / DB_NAME).read_bytes())
    for off in range(4096 * 2, len(raw), 4096):  # scribble over every b-tree page header
        raw[off:off + 16] = b"\xff" * 16
    (d / DB_NAME).write_bytes(bytes(raw))
    for suffix in ("-wal", "-shm"):
        p = d / (DB_NAME + suffix)
        if p.exists():
            p.unlink()
    s2 = Store.open(d, now=T0)
    try:
        # either noticed at open (moved aside) or on first use (StoreCorrupt)
        if s2.recovered_from is None:
            from kit.errors import StoreCorrupt
            with pytest.raises(StoreCorrupt):
                s2.outbox(limit=5000)
    finally:
        s2.close()


def test_concurrent_reader_process_sees_committed_rounds(tmp_path):
    d = tmp_path / "state"
    s = Store.open(d)
    s.write([ping(i) for i in range(3)])
    out = subprocess.run([sys.executable, "-c",
                          "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                          "print(c.execute('select count(*) from samples').fetchone()[0])",
                          str(d / DB_NAME)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"
    s.close()


def test_newer_schema_refused(tmp_path):
    d = tmp_path / "state"
    Store.open(d).close()
    c = sqlite3.connect(d / DB_NAME)
    c.execute("PRAGMA user_version=99")
    c.commit()
    c.close()
    from kit.errors import StoreError
    with pytest.raises(StoreError, match="newer linewatch"):
        Store.open(d)


def test_a_schema_1_store_is_upgraded_in_place(tmp_path):
    """Stores written before the forwarder existed: the outbox index changes, the quarantine
    table appears, and the unsent rows are still unsent, oldest first."""
    d = tmp_path / "state"
    s = Store.open(d)
    s.write([ping(2), ping(1), ping(0)])
    s.close()
    c = sqlite3.connect(d / DB_NAME)
    c.execute("DROP TABLE quarantine")
    c.execute("DROP INDEX samples_outbox")
    c.execute("CREATE INDEX samples_unsent ON samples (id) WHERE sent = 0")
    c.execute("PRAGMA user_version=1")
    c.commit()
    c.close()
    s = Store.open(d)
    try:
        assert s._query("PRAGMA user_version")[0][0] == 2
        names = {r[0] for r in s._query("SELECT name FROM sqlite_master")}
        assert "quarantine" in names and "samples_outbox" in names and "samples_unsent" not in names
        assert [r[5] for r in s.outbox(10)] == [ping(i).time_ns for i in (0, 1, 2)]
        assert s.quarantined() == (0, [])
    finally:
        s.close()


def test_quarantine_and_requeue(store):
    store.write([ping(i) for i in range(4)])
    ids = [r[0] for r in store.outbox(10)]
    assert store.quarantine([(ids[1], 400, "bad", "line 1")], T0) == 1
    assert store.quarantine([(ids[1], 400, "again", "line 1")], T0) == 0  # already set aside
    assert [r[0] for r in store.outbox(10)] == [ids[0], ids[2], ids[3]]
    n, recent = store.quarantined()
    assert n == 1 and recent[0]["message"] == "again" and store.backlog()[0] == 3
    store.mark_sent([ids[0], ids[1]])  # a quarantined row is not marked sent by mistake
    assert store._query("SELECT sent FROM samples WHERE id = ?", (ids[1],))[0][0] == 2
    assert store.requeue_quarantined() == 1 and store.quarantined()[0] == 0
    assert [r[0] for r in store.outbox(10)] == [ids[1], ids[2], ids[3]]


def test_field_sets_made_at_write_time_are_what_encoding_at_send_time_makes(store):
    from kit.lineproto import Encoder, field_set_or_none

    plain = [ping(i, target=f"10.0.0.{i % 3}") for i in range(6)]
    odd = [Sample("dns", {"name": "x"}, {"success": True, "rcode": 0, "note": 'a "b"\\c'}, T0),
           Sample("ping", {"target": "nan"}, {"rtt_avg_ms": float("nan")}, T0)]
    store.write(plain[:3])                     # before a server was configured: no field sets
    store.field_set = field_set_or_none
    store.write(plain[3:] + odd)
    lean = store.outbox_lean(100)
    made = [r for r in lean if r[4] is not None]
    assert len(made) == 4 and all(r[2] is None for r in made)  # the NaN row has none
    assert 'success=true,rcode=0i,note="a \\"b\\"\\\\c"' in [r[4] for r in made]
    ids, lines, bad = Encoder().encode_lean(lean, store.series_text)
    old = Encoder().encode_rows(store.outbox(100))
    assert list(zip(ids, lines)) == [(i, ln) for i, ln in old if isinstance(ln, str)]
    assert len(bad) == 1 and "not a finite number" in str(bad[0][1])
    # sent: the rows' field sets no longer apply, and housekeeping drops them
    store.mark_sent(ids)
    assert store.outbox_lean(100) == [r for r in lean if r[0] == bad[0][0]]
    store.prune(T0 + timedelta(days=1), retention_s=10 * 86400, max_bytes=1 << 30)
    (n,), = store._query("SELECT count(*) FROM outbox_lines")
    assert n == 0


def test_a_field_set_counts_only_for_its_own_row(store):
    from kit.lineproto import field_set_or_none

    store.field_set = field_set_or_none
    store.write([ping(1)])
    [(_, _, _, _, fs)] = store.outbox_lean()
    assert fs is not None
    # a line left behind (an older agent deleted the row, the id was used again) never applies
    with store._tx() as c:
        c.execute("UPDATE outbox_lines SET time_ns = time_ns + 1")
    [(_, _, fields, _, fs)] = store.outbox_lean()
    assert fs is None and fields is not None
    # and housekeeping drops lines of rows no longer waiting
    with store._tx() as c:
        c.execute("UPDATE outbox_lines SET time_ns = time_ns - 1")
        c.execute("UPDATE samples SET sent = 2")
    store.prune(T0 + timedelta(days=1), retention_s=10 * 86400, max_bytes=1 << 30)
    (n,), = store._query("SELECT count(*) FROM outbox_lines")
    assert n == 0


def test_status_says_the_summary_of_the_hour_in_progress_waits_since_now(store):
    """Only the summary of the hour in progress waits (rewritten a minute ago, the next push not
    yet due): ``status`` says it waits since now, not since the hour began."""
    from agent.config import Config
    from agent.status import forward_summary, iso

    hour = T0.replace(minute=0)
    store.put_summaries([Sample("hourly", {"agent": "a1"}, {"observed_s": 60.0}, hour)],
                        hour_ns=int(hour.timestamp()) * 10**9, forward=True)
    now = hour + timedelta(minutes=27)
    rows, oldest = store.backlog()
    out = forward_summary(Config(), None, rows, oldest, (0, []), now)
    assert out["backlog_rows"] == 1 and out["oldest_unsent_age_s"] == 0.0
    assert out["oldest_unsent"] == iso(now)


def test_backlog_goes_back_to_the_oldest_raw_row_not_to_a_daily_rows_midnight(store):
    noon = T0 + timedelta(hours=12)
    store.put_summaries([Sample("daily", {"agent": "a1"}, {"hours": 1}, T0)],
                        hour_ns=int(T0.timestamp()) * 10**9, forward=True, measurement="daily")
    # only the day's row waits: since its day's end at the earliest (it is rewritten all day)
    assert store.backlog() == (1, T0 + timedelta(days=1))
    hour = noon.replace(minute=0)
    store.put_summaries([Sample("hourly", {"agent": "a1"}, {"observed_s": 60.0}, hour)],
                        hour_ns=int(hour.timestamp()) * 10**9, forward=True)
    # an hour's summary: since that hour's end (a trial showed "oldest 27m old" for the summary
    # of the hour in progress, rewritten a minute before and waiting for the next push)
    assert store.backlog() == (2, hour + timedelta(hours=1))
    store.write([ping(0, t=noon + timedelta(minutes=5))])
    assert store.backlog() == (3, noon + timedelta(minutes=5))


def test_push_says_the_summary_of_the_hour_in_progress_waits_since_now(tmp_path):
    """``linewatch push`` reports the backlog left as ``status`` does: the summary of the hour
    in progress, still waiting (here the server is down), waits since now, not since the hour
    began. The server is a loopback port nothing listens on."""
    import socket

    from agent.clock import FakeClock
    from agent.config import parse
    from agent.jobs.push import push_now

    with socket.socket() as s:       # a free loopback port, closed again: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}"\n[influx]\nurl = "http://127.0.0.1:{port}"\n'
                'bucket = "linewatch"\n')
    hour = T0.replace(minute=0)
    st = Store.open(tmp_path)
    st.put_summaries([Sample("hourly", {"agent": "a1"}, {"observed_s": 60.0}, hour)],
                     hour_ns=int(hour.timestamp()) * 10**9, forward=True)
    st.close()
    now = hour + timedelta(minutes=27)
    done = push_now(cfg, clock=FakeClock(now))
    assert done.backlog_rows == 1 and done.oldest_unsent == now
