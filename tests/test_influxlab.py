"""The fixtures in tests/influxlab.py and tests/statusserver.py work (real servers, real sockets).

Every fact a later test may rely on is checked here against the real server, so a different
influxd or victoria-metrics version shows up as a failure of this file first.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.influxlab import InfluxError, InfluxV1, VictoriaMetrics, influx_unavailable
from tests.statusserver import Reply, StatusServer


def post(url: str, body: str | bytes, headers: dict[str, str] | None = None,
         timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """POST with urllib; (status, headers, body), HTTP errors included."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def influx_auth(tmp_path):
    reason = influx_unavailable()
    if reason:
        pytest.skip(reason)
    with InfluxV1.create(tmp_path / "influx-auth", auth=True) as server:
        yield server


# -- InfluxDB 1.6.7 -------------------------------------------------------------------------------
def test_influx_write_and_read_back(influx):
    now = time.time_ns()
    status, headers, _ = post(
        f"{influx.url}/write?db={influx.database}&precision=ns",
        f'ping,target=a rtt_avg_ms=1.5,ok=true,msg="hi" {now}\n'
        f"ping,target=b rtt_avg_ms=2.5,ok=false {now + 1}\n")
    assert status == 204
    assert headers["X-Influxdb-Version"].startswith("1.6")

    [series] = influx.series('SELECT * FROM "ping" ORDER BY time', epoch="ns")
    assert series["name"] == "ping"
    rows = [dict(zip(series["columns"], row)) for row in series["values"]]
    assert rows == [
        {"time": now, "msg": "hi", "ok": True, "rtt_avg_ms": 1.5, "target": "a"},
        {"time": now + 1, "msg": None, "ok": False, "rtt_avg_ms": 2.5, "target": "b"},
    ]
    assert influx.count("ping", "rtt_avg_ms") == 2
    assert influx.count("ping", "msg") == 1
    assert influx.count("nothing_here", "rtt_avg_ms") == 0
    assert influx.series('SELECT * FROM "nothing_here"') == []

    # The same series and timestamp again overwrites: still two points.
    assert post(f"{influx.url}/write?db={influx.database}&precision=ns",
                f"ping,target=a rtt_avg_ms=9 {now}")[0] == 204
    assert influx.count("ping", "rtt_avg_ms") == 2

    with pytest.raises(InfluxError, match="database not found"):
        influx.query('SELECT * FROM "ping"', db="no_such_db")
    with pytest.raises(InfluxError, match="HTTP 400"):
        influx.query("SELEC nonsense")
    # No v2 write path in 1.x.
    assert post(f"{influx.url}/api/v2/write?bucket={influx.database}", "m v=1")[0] == 404


def test_influx_acknowledged_point_survives_kill(influx):
    url = f"{influx.url}/write?db={influx.database}&precision=ns"
    assert post(url, f"outage,cause=power duration_s=12i {time.time_ns()}")[0] == 204
    first = influx.proc.pid
    influx.kill()
    assert not influx.running
    with pytest.raises(OSError):  # down: connection refused
        post(url, "outage duration_s=1i", timeout=1)
    port = influx.port
    influx.start()
    assert influx.proc.pid != first
    assert influx.port == port
    assert influx.count("outage", "duration_s") == 1
    influx.stop()
    influx.start()
    assert influx.count("outage", "duration_s") == 1


def test_influx_auth_refuses_anonymous_and_accepts_writer(influx_auth):
    db = influx_auth
    url = f"{db.url}/write?db={db.database}&precision=ns"
    line = f"ping rtt_avg_ms=3.5 {time.time_ns()}"

    status, _headers, body = post(url, line)
    assert status == 401
    assert "error" in json.loads(body)
    assert post(url, line, basic(db.writer[0], "wrong"))[0] == 401
    assert db.count("ping", "rtt_avg_ms") == 0

    assert post(url, line, basic(*db.writer))[0] == 204
    assert db.count("ping", "rtt_avg_ms") == 1
    # The writer may not read.
    status, _, body = post(f"{db.url}/query?db={db.database}", "q=SELECT+*+FROM+ping",
                           {**basic(*db.writer),
                            "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403 and b"requires READ" in body


# -- VictoriaMetrics 1.79.5 -----------------------------------------------------------------------
def test_vm_v2_write_count_and_export(vm):
    now = time.time_ns()
    url = f"{vm.url}/api/v2/write?org=linewatch&bucket=linewatch&precision=ns"
    lines = (f'ping,target=a rtt_avg_ms=1.5,ok=true,up=false,msg="hi",sent=3i {now}\n'
             f"ping,target=b rtt_avg_ms=2.5 {now}\n")
    assert post(url, lines)[0] == 204
    assert vm.count("ping_rtt_avg_ms") == 2
    # Re-sent (influxdb-client retries): deduplicated, like InfluxDB's overwrite.
    assert post(url, lines)[0] == 204
    assert vm.count("ping_rtt_avg_ms") == 2

    found = {(s["metric"]["__name__"], s["metric"].get("target")): s for s in vm.export()}
    assert set(found) == {("ping_rtt_avg_ms", "a"), ("ping_rtt_avg_ms", "b"), ("ping_ok", "a"),
                          ("ping_up", "a"), ("ping_msg", "a"), ("ping_sent", "a")}
    a = found[("ping_rtt_avg_ms", "a")]
    assert a["values"] == [1.5] and a["timestamps"] == [now // 1_000_000]
    assert set(a["metric"]) == {"__name__", "target"}  # org and bucket add no label
    assert found[("ping_ok", "a")]["values"] == [1]
    assert found[("ping_up", "a")]["values"] == [0]
    assert found[("ping_sent", "a")]["values"] == [3]
    assert found[("ping_msg", "a")]["values"] == [0]  # a string field becomes 0 in 1.79.5
    assert vm.count("no_such_metric") == 0


def test_vm_drops_silently_what_it_cannot_take(vm, tmp_path):
    now = time.time_ns()
    url = f"{vm.url}/api/v2/write"
    # A raw newline inside a quoted string field cuts the line in two; both halves are dropped.
    assert post(url, f'dns,server=x error="line1\nline2",ok=false {now}')[0] == 204
    assert post(url, f"dns,server=y ok=true {now}")[0] == 204
    assert [s["metric"]["server"] for s in vm.export('{__name__="dns_ok"}')] == ["y"]
    assert "missing closing quote" in vm.log_text()
    # 40 days old: kept with our retention of 100 years ...
    old = now - 40 * 86400 * 10**9
    assert post(url, f"old v=1 {old}")[0] == 204
    assert vm.count("old_v") == 1
    # ... dropped, with 204, by VM's default retention of one month.
    with VictoriaMetrics.create(tmp_path / "vm-default-retention", retention=None) as short:
        assert post(f"{short.url}/api/v2/write", f"old v=1 {old}")[0] == 204
        assert short.count("old_v") == 0
        assert "outside the retention" in short.log_text()


def test_vm_stop_start_keeps_data(vm):
    assert post(f"{vm.url}/api/v2/write", f"power,source=ac on=true {time.time_ns()}")[0] == 204
    port = vm.port
    vm.stop()
    assert not vm.running
    vm.start()
    assert vm.port == port
    assert vm.count("power_on") == 1


# -- StatusServer ---------------------------------------------------------------------------------
def test_statusserver_ping_and_gzip_body():
    with StatusServer() as srv:
        with urllib.request.urlopen(f"{srv.url}/ping", timeout=2) as resp:
            assert resp.status == 204
            assert resp.headers["X-Influxdb-Version"] == "2.7.1"
        body = gzip.compress(b"m,t=a v=1 1\n\nm,t=b v=2 2\n")
        status, _, _ = post(f"{srv.url}/api/v2/write?org=o&bucket=b&precision=ns", body,
                            {"Content-Encoding": "gzip", "Authorization": "Token t0k"})
        assert status == 204
        [req] = srv.wait_requests(1)
        assert req.path == "/api/v2/write"
        assert req.query == {"org": "o", "bucket": "b", "precision": "ns"}
        assert req.headers["authorization"] == "Token t0k"
        assert req.headers["content-encoding"] == "gzip"
        assert req.lines == ["m,t=a v=1 1", "m,t=b v=2 2"]
        # A wrong path is recorded and answered 404, without using the script.
        assert post(f"{srv.url}/api/v2/writ", "m v=1")[0] == 404
        assert srv.wait_requests(2)[1].path == "/api/v2/writ"
    with StatusServer(version=None) as srv:
        req = urllib.request.Request(f"{srv.url}/ping", method="HEAD")
        with urllib.request.urlopen(req, timeout=2) as resp:
            assert resp.status == 204 and "X-Influxdb-Version" not in resp.headers


def test_statusserver_scripted_429_then_responder_then_default():
    with StatusServer() as srv:
        srv.script(Reply.json_error(429, "slow down", headers={"Retry-After": "2"}),
                   Reply(503, body="busy"))
        url = f"{srv.url}/api/v2/write?org=o&bucket=b"
        status, headers, body = post(url, "m v=1")
        assert status == 429
        assert headers["Retry-After"] == "2"
        assert json.loads(body) == {"code": "too many requests", "message": "slow down"}
        status, _, body = post(url, "m v=1")
        assert (status, body) == (503, b"busy")
        assert srv.pending == 0
        srv.responder = lambda req: Reply(400 if "bad" in req.lines[0] else 204)
        assert post(url, "bad v=1")[0] == 400
        srv.script(Reply.json_error(404, 'database not found: "x"', v1=True))
        status, headers, body = post(f"{srv.url}/write?db=x", "bad v=1")
        assert status == 404 and headers["X-Influxdb-Error"] == 'database not found: "x"'
        assert json.loads(body) == {"error": 'database not found: "x"'}
        srv.responder = None
        assert post(url, "bad v=1")[0] == 204
        assert len(srv.wait_requests(5)) == 5


@pytest.mark.serial   # bounds a timeout and a close to a second (tests/run.sh runs it alone)
def test_statusserver_hang_makes_client_time_out_and_close_is_quick():
    srv = StatusServer()
    try:
        srv.script(Reply(hang=True))
        t0 = time.monotonic()
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            post(f"{srv.url}/api/v2/write", "m v=1", timeout=0.5)
        assert 0.4 < time.monotonic() - t0 < 2
        assert srv.wait_requests(1)[0].lines == ["m v=1"]
        # The next write is answered again (the hanging one does not block the server).
        srv.script(Reply(hang=True))
        conn = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        conn.sendall(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nm v=1")
        srv.wait_requests(2)
        assert post(f"{srv.url}/write", "m v=2")[0] == 204
    finally:
        t0 = time.monotonic()
        srv.close()
        assert time.monotonic() - t0 < 1
    # The hanging connection is closed without an answer.
    assert conn.recv(100) == b""
    conn.close()
    srv.close()  # idempotent
