"""Forwarding to real servers (shared/TESTBED.md): the v2 path (through the builtin client and
through influxdb-client) into Debian's VictoriaMetrics, the v1 path into Debian's InfluxDB 1.6.7
read back with InfluxQL; a server killed in the middle of a backlog flush; tag escaping round
trips; real refusals (a field type conflict, a wrong password, a missing database); and the
running agent forwarding after the server comes back."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from agent.clock import SystemClock
from agent.config import parse
from agent.forward import Forwarder
from agent.model import Sample
from agent.store import Store
from kit.influx import Sink, Token
from kit.lineproto import unescape_tag
from tests.influxlab import InfluxV1, VictoriaMetrics, influx_unavailable

NOW = datetime.now(UTC).replace(microsecond=0)
TAGS = {"agent": "3f9a0c1d2e4b", "region": "PK-KP", "city": "ڈیرہ اسماعیل خان",
        "isp": 'Nayatel, "Fibre" = 1 Gbps', "access": "fibre"}
AWKWARD = {  # every character class the issue names, in tag values
    "space": "Dera Ismail Khan",
    "comma": "PTCL, Nayatel",
    "equals": "speed=fast",
    "quotes": 'say "hi" \'there\'',
    "newline": "two\nlines",
    "urdu": "ڈیرہ اسماعیل خان",
    "mixed": 'a, b=c "d"\ne لاہور\tf',
}


def backlog_samples(n_rounds: int, end: datetime = NOW) -> list[Sample]:
    """The agent's row shapes at the default cadence, ``n_rounds`` rounds ending at ``end``."""
    out = []
    for i in range(n_rounds):
        t = end - timedelta(seconds=10 * (n_rounds - i))
        for target, role in (("192.168.1.1", "gateway"), ("1.1.1.1", "internet"), ("8.8.8.8", "internet")):
            out.append(Sample("ping", {**TAGS, "target": target, "method": "icmp_dgram", "role": role},
                              {"sent": 3, "received": 3, "loss_pct": 0.0, "rtt_min_ms": 10.0 + i % 7,
                               "rtt_avg_ms": 11.5 + i % 5, "rtt_max_ms": 14.25, "jitter_ms": 0.5}, t))
        out.append(Sample("dns", {**TAGS, "name": "google.com", "server": "192.168.1.1"},
                          {"success": True, "rtt_ms": 20.5, "rcode": 0, "answers": 1}, t))
        out.append(Sample("round", TAGS, {"status": "up", "duration_s": 0.6, "interval_s": 10.0,
                                          "probe_errors": 0}, t))
        if i % 6 == 0:
            out.append(Sample("agent", TAGS, {"uptime_s": 10.0 * i, "rss_bytes": 22_000_000,
                                              "backlog_rows": i}, t))
    return out


def forwarder(store, url, token=None, **influx):
    lines = "".join(f'{k} = {json.dumps(v)}\n' for k, v in influx.items())
    cfg = parse(f'[influx]\nurl = "{url}"\n{lines}')
    return Forwarder(store, Sink(cfg.influx, Token(token, "test")), SystemClock(),
                     batch_size=cfg.influx.batch_size)


def store_counts(store) -> Counter:
    """Rows per (measurement, sorted tags) in the store."""
    c = Counter()
    for (m, tags, n) in store._query("SELECT r.measurement, r.tags, count(*) FROM samples s JOIN series r"
                                     " ON r.id = s.series_id GROUP BY s.series_id"):
        c[(m, tuple(sorted(json.loads(tags).items())))] += n
    return c


def influx_counts(srv: InfluxV1, field_of: dict[str, str]) -> Counter:
    """Points per series, read back with InfluxQL (tag values decoded as linewatch reads them)."""
    c = Counter()
    for meas, field in field_of.items():
        for s in srv.series(f'SELECT count("{field}") FROM "{meas}" GROUP BY *'):
            tags = tuple(sorted((k, unescape_tag(v)) for k, v in s.get("tags", {}).items() if v != ""))
            c[(meas, tags)] += s["values"][0][1]
    return c


def vm_counts(srv: VictoriaMetrics, field_of: dict[str, str], expect: Counter | None = None) -> Counter:
    """Points per series in VictoriaMetrics; with ``expect``, waits (up to 15 s) for the totals
    to arrive (see VictoriaMetrics.wait_count)."""
    if expect is not None:
        for meas, field in field_of.items():
            srv.wait_count(f"{meas}_{field}", sum(n for (m, _), n in expect.items() if m == meas))
    c = Counter()
    for meas, field in field_of.items():
        for s in srv.export(f'{{__name__="{meas}_{field}"}}'):
            tags = tuple(sorted((k, unescape_tag(v)) for k, v in s["metric"].items() if k != "__name__"))
            c[(meas, tags)] += len(s["timestamps"])
    return c


FIELD_OF = {"ping": "rtt_avg_ms", "dns": "rtt_ms", "round": "duration_s", "agent": "uptime_s"}
# The two clients for /api/v2/write (influx.client); the v1 /write path has one.
CLIENTS = pytest.mark.parametrize("client", ["builtin", "influxdb-client"])


# -- the two write paths ------------------------------------------------------------------------

def test_v1_path_into_influxdb_1_6_7(influx, store):
    store.write(backlog_samples(600))
    fw = forwarder(store, influx.url, database=influx.database, batch_size=1000)
    rep = fw.push()
    assert rep.outcome == "done" and rep.sent == store.count() and rep.requests == -(-store.count() // 1000)
    assert fw.sink.server.api == "v1" and fw.sink.server.version.startswith("1.6.7")
    assert influx_counts(influx, FIELD_OF) == store_counts(store)
    # Types survive: integers stay integers, booleans booleans, floats exact.
    row = influx.series('SELECT * FROM "dns" LIMIT 1')[0]
    got = dict(zip(row["columns"], row["values"][0]))
    assert got["rcode"] == 0 and got["success"] is True and got["rtt_ms"] == 20.5
    kinds = {v[0]: v[1] for v in influx.series('SHOW FIELD KEYS FROM "ping"')[0]["values"]}
    assert kinds["sent"] == "integer" and kinds["rtt_avg_ms"] == "float"


@CLIENTS
def test_v2_path_into_victoriametrics(vm, store, client):
    store.write(backlog_samples(600))
    fw = forwarder(store, vm.url, bucket="linewatch", org="ngo", batch_size=1000, client=client)
    rep = fw.push()
    assert rep.outcome == "done" and rep.sent == store.count()
    assert fw.sink.server.api == "v2"  # VictoriaMetrics gives no version: the modern API
    assert vm_counts(vm, FIELD_OF, store_counts(store)) == store_counts(store)
    # Booleans arrive as 0/1; the values themselves, exactly.
    dns = vm.export('{__name__="dns_success"}')
    assert dns and set(dns[0]["values"]) == {1}
    rtt = vm.export('{__name__="ping_rtt_avg_ms",target="1.1.1.1"}')[0]
    assert sorted(set(rtt["values"])) == [11.5, 12.5, 13.5, 14.5, 15.5]


# -- tag escaping ---------------------------------------------------------------------------------

def awkward_samples():
    return [Sample("ping", {**TAGS, "target": "1.1.1.1", "note": value},
                   {"rtt_avg_ms": float(i), "sent": 3}, NOW - timedelta(seconds=i))
            for i, value in enumerate(AWKWARD.values())]


def test_tag_escaping_round_trips_through_influxdb_1_6_7(influx, store):
    store.write(awkward_samples())
    assert forwarder(store, influx.url, database=influx.database).push().sent == len(AWKWARD)
    rows = influx.series('SELECT "rtt_avg_ms", "note", "city", "isp" FROM "ping"')[0]
    cols = rows["columns"]
    got = {unescape_tag(dict(zip(cols, v))["note"]) for v in rows["values"]}
    assert got == set(AWKWARD.values())
    first = dict(zip(cols, rows["values"][0]))
    assert unescape_tag(first["city"]) == TAGS["city"] and unescape_tag(first["isp"]) == TAGS["isp"]


@CLIENTS
def test_tag_escaping_round_trips_through_victoriametrics(vm, store, client):
    store.write(awkward_samples())
    assert forwarder(store, vm.url, bucket="b", client=client).push().sent == len(AWKWARD)
    series = vm.export('{__name__="ping_rtt_avg_ms"}')
    assert {unescape_tag(s["metric"]["note"]) for s in series} == set(AWKWARD.values())
    assert all(unescape_tag(s["metric"]["city"]) == TAGS["city"] for s in series)
    assert all(unescape_tag(s["metric"]["isp"]) == TAGS["isp"] for s in series)


# -- a server killed in the middle of a flush -----------------------------------------------------

def _flush_with_a_kill(store, srv, kill, make_forwarder):
    """Flush in a thread; kill the server once some batches are acknowledged; restart it; flush
    the rest. Returns the reports."""
    total = store.count()
    fw = make_forwarder()
    reports = []
    t = threading.Thread(target=lambda: reports.append(fw.push()))
    t.start()
    deadline = time.monotonic() + 60
    while store.backlog()[0] > total * 0.6 and time.monotonic() < deadline:
        time.sleep(0.005)
    kill()
    t.join(60)
    assert reports and reports[0].outcome == "retry", reports  # the kill interrupted the flush
    left = store.backlog()[0]
    assert 0 < left < total
    srv.start()
    again = make_forwarder().push()
    assert again.outcome == "done" and store.backlog()[0] == 0
    return reports[0], again


def test_influxdb_killed_mid_flush_every_row_arrives_exactly_once(influx, store):
    store.write(backlog_samples(3000))
    rep1, rep2 = _flush_with_a_kill(
        store, influx, influx.kill,
        lambda: forwarder(store, influx.url, database=influx.database, batch_size=500))
    assert rep1.sent + rep2.sent == store.count()
    assert influx_counts(influx, FIELD_OF) == store_counts(store)


@CLIENTS
def test_victoriametrics_stopped_mid_flush_every_row_arrives_exactly_once(vm, store, client):
    # SIGTERM, not SIGKILL: VictoriaMetrics acknowledges a write before it is on disk and flushes
    # its buffers on a graceful stop only (a kill loses its last second, whoever the client).
    store.write(backlog_samples(3000))
    rep1, rep2 = _flush_with_a_kill(
        store, vm, vm.stop, lambda: forwarder(store, vm.url, bucket="b", batch_size=500, client=client))
    assert rep1.sent + rep2.sent == store.count()
    assert vm_counts(vm, FIELD_OF, store_counts(store)) == store_counts(store)


# -- real refusals ----------------------------------------------------------------------------------

def test_a_field_type_conflict_quarantines_only_that_row(influx, store):
    store.write(backlog_samples(100))
    # The same field as a string: InfluxDB refuses it (400, field type conflict) and keeps the rest.
    store.write([Sample("round", TAGS, {"status": "up", "duration_s": "slow"}, NOW - timedelta(seconds=505))])
    rep = forwarder(store, influx.url, database=influx.database, batch_size=200).push()
    assert rep.outcome == "done" and rep.quarantined == 1 and rep.sent == store.count() - 1
    n, recent = store.quarantined()
    assert n == 1 and recent[0]["status"] == 400 and "conflict" in recent[0]["message"]
    assert 'duration_s="slow"' in recent[0]["line"]
    assert influx.count("round", "duration_s") == 100


def test_wrong_password_and_missing_database_stop_forwarding(tmp_path, store):
    reason = influx_unavailable()
    if reason:
        pytest.skip(reason)
    store.write(backlog_samples(10))
    with InfluxV1.create(tmp_path / "auth", auth=True) as srv:
        user, _ = srv.writer
        fw = forwarder(store, srv.url, token=f"{user}:wrong", database=srv.database)
        rep = fw.push()
        assert rep.outcome == "halt" and "refused the token (401)" in fw.state.halted
        assert store.backlog()[0] == store.count()
        fw = forwarder(store, srv.url, token=":".join(srv.writer), database="nope")
        rep = fw.push()
        assert (rep.outcome == "halt" and "(404)" in fw.state.halted
                and "database not found" in fw.state.halted)
        fw = forwarder(store, srv.url, token=":".join(srv.writer), database=srv.database)
        assert fw.push().sent == store.count()
        assert srv.count("round", "duration_s") == 10


# -- the running agent ----------------------------------------------------------------------------

def _agent_config(tmp_path, url, extra=""):
    p = tmp_path / "agent.toml"
    p.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\nregion = "PK-SD"\ncity = "کراچی"\n'
                 f'[probe]\ninterval_s = 1\ntimeout_s = 0.5\ngateway = "off"\n'
                 f'targets = ["127.0.0.1:{url.rsplit(":", 1)[1]}"]\ndns_names = []\nnetio_interval_s = 5\n'
                 f'[power]\nbattery = "off"\n[speedtest]\nenabled = false\n[services]\nurls = []\n'
                 f'[influx]\nurl = "{url}"\n{extra}push_interval_s = 1\n')
    return p


def test_the_agent_forwards_what_it_recorded_while_the_server_was_down(tmp_path, influx):
    influx.stop()
    cfg = _agent_config(tmp_path, influx.url, f'database = "{influx.database}"\n')
    # A token the server (auth off) ignores: it must not show up in the agent's debug log.
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "LINEWATCH_INFLUX_TOKEN": "tok-9f8e7d6c5b4a"}
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--log-level", "debug", "--config",
                              str(cfg)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(6)  # rounds are recorded; every push fails: the server is down
        influx.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = json.loads(subprocess.run([sys.executable, "-m", "agent", "status", "--json", "--config",
                                            str(cfg)], capture_output=True, text=True, env=env).stdout)
            if st["forward"]["state"] == "ok" and st["forward"]["backlog_rows"] == 0:
                break
            time.sleep(0.5)
        assert st["forward"]["state"] == "ok", st["forward"]
    finally:
        agent.send_signal(signal.SIGINT)
        out, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0, out
    assert "InfluxDB write failed (connection refused)" in out
    assert "tok-9f8e7d6c5b4a" not in out
    store = Store.open(tmp_path / "state")
    try:
        rounds = sum(1 for _ in store.samples("round"))
        backlog, _ = store.backlog()
    finally:
        store.close()
    # Rows written after the last push (the final round, the exit) may wait for the next start.
    assert backlog <= 5
    got = influx.count("round", "duration_s")
    assert rounds - 5 <= got <= rounds and got >= 5
    cities = influx.series('SHOW TAG VALUES FROM "round" WITH KEY = "city"')
    assert cities[0]["values"] == [["city", "کراچی"]]
