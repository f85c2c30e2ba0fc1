"""The speed-test lab itself: the classic speedtest.net server (tests/speedserver.py), the
tbf-shaped link with iperf3 as reference, and speedtest-cli 2.1.3 run against them
(tests/speedlab.py, which also records what was measured). The server tests run anywhere; the
link tests need root and network namespaces (the ``lab`` fixture skips without them), the iperf3
ones also /usr/bin/iperf3. The whole file takes about 65 s, 40 of them two speedtest-cli runs."""

from __future__ import annotations

import io
import json
import select
import socket
import subprocess
import sys
import time
import urllib.request
import zlib

import pytest
import speedtest

from tests import speedlab
from tests.speedlab import CLASSIC_CONFIG, LabSpeedtest, ShapedLink
from tests.speedserver import SpeedServer

# Runs alone (tests/run.sh): rates over a shaped link are bounded to a few per cent.
pytestmark = pytest.mark.serial

REPO = speedlab.REPO


@pytest.fixture
def srv():
    with SpeedServer() as s:
        yield s


def _get(srv, path, **kw):
    return urllib.request.urlopen(srv.base + path, timeout=10, **kw)


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- the server, in-process -----------------------------------------------------------------------

def test_url_is_the_upload_endpoint(srv):
    assert srv.url == f"http://127.0.0.1:{srv.port}/speedtest/upload.php"


def test_latency_txt(srv):
    with _get(srv, "/speedtest/latency.txt?x=1700000000000.0") as r:
        assert r.status == 200
        assert r.read() == b"test=test"
    assert srv.stats["latency"]["requests"] == 1


@pytest.mark.parametrize("n, size", [(350, 245_388), (4000, 31_625_365), (123, 2 * 123 * 123)])
def test_random_jpg_sizes(srv, n, size):
    with _get(srv, f"/speedtest/random{n}x{n}.jpg?x=1.0") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "image/jpeg"
        assert int(r.headers["Content-Length"]) == size
        body = r.read()
    assert len(body) == size
    head = body[:1 << 20]
    assert len(zlib.compress(head)) > 0.99 * len(head)  # incompressible
    assert _wait(lambda: srv.stats["download"]["completed"] == 1)
    assert srv.stats["download"]["bytes"] == size


def test_client_leaving_early_is_quiet(srv, capfd):
    for _ in range(3):
        r = _get(srv, "/speedtest/random4000x4000.jpg?x=2")
        assert len(r.read(10240)) == 10240
        r.close()
    assert _wait(lambda: srv.stats["download"]["aborted"] == 3)
    d = srv.stats["download"]
    assert d["completed"] == 0 and 3 * 10240 <= d["bytes"] < 3 * 31_625_365
    with _get(srv, "/speedtest/latency.txt") as r:  # still serving
        assert r.read() == b"test=test"
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_upload_php(srv):
    body = b"content1=" + b"0123456789ABCDEF" * 65536
    req = urllib.request.Request(srv.url + "?x=3", data=body,
                                 headers={"Content-length": str(len(body))})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        assert r.read() == b"size=%d" % len(body)
    up = srv.stats["upload"]
    assert (up["requests"], up["bytes"], up["completed"], up["aborted"]) == (1, len(body), 1, 0)


def test_truncated_upload_is_counted_and_quiet(srv, capfd):
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"POST /speedtest/upload.php HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 1000000\r\n\r\n" + b"x" * 5000)
    assert _wait(lambda: srv.stats["upload"]["aborted"] == 1)
    assert srv.stats["upload"]["bytes"] == 5000
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_stats_endpoint_and_reset(srv):
    _get(srv, "/speedtest/latency.txt").read()
    # The server counts a request after its answer is sent: the client can be quicker.
    assert _wait(lambda: srv.stats["latency"]["completed"] == 1)
    with _get(srv, "/stats") as r:
        assert json.loads(r.read()) == srv.stats
    urllib.request.urlopen(urllib.request.Request(srv.base + "/stats/reset", data=b""),
                           timeout=10).read()
    assert srv.stats["latency"]["requests"] == 0


def test_runs_as_a_program():
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "tests.speedserver", "--host", "127.0.0.1",
                          "--port", str(port)], cwd=str(REPO), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 15)
        assert ready, p.stderr.read() if p.poll() is not None else "no output"
        assert p.stdout.readline().strip() == \
            f"ready http://127.0.0.1:{port}/speedtest/upload.php"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/speedtest/latency.txt?x=1",
                                    timeout=10) as r:
            assert r.read() == b"test=test"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
            assert json.loads(r.read())["latency"]["requests"] == 1
    finally:
        p.kill()
        p.wait(timeout=10)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- speedtest-cli against the server, in-process (short test lengths) ----------------------------

class _ConfigResponse(io.BytesIO):
    code = 200

    def getheader(self, name, default=None):
        return default


def test_classic_config_is_what_get_config_makes(monkeypatch):
    # speedtest.net's config as speedtest-cli's own get_config parses it, served without network.
    xml = (b'<?xml version="1.0" encoding="UTF-8"?><settings>'
           b'<client ip="192.0.2.1" lat="0" lon="0" isp="lab"/>'
           b'<server-config threadcount="4" ignoreids=""/>'
           b'<download testlength="10" initialtest="250K" mintestsize="250K" threadsperurl="4"/>'
           b'<upload testlength="10" ratio="5" initialtest="0" mintestsize="32K" threads="2" '
           b'maxchunksize="512K" maxchunkcount="50" threadsperurl="4"/>'
           b'</settings>')
    monkeypatch.setattr(speedtest, "catch_request", lambda req, opener=None:
                        (_ConfigResponse(xml), False))
    real = speedtest.Speedtest().config
    assert {k: v for k, v in real.items() if k != "client"} == \
        {k: v for k, v in CLASSIC_CONFIG.items() if k != "client"}
    assert LabSpeedtest().config == CLASSIC_CONFIG


def test_speedtest_cli_against_the_server(srv, monkeypatch):
    small = {"sizes": {"download": [350, 1000], "upload": [524288]},
             "counts": {"download": 2, "upload": 4}, "upload_max": 4,
             "length": {"download": 5, "upload": 5}}
    # speedtest-cli prints why a latency.txt try failed only in debug mode: on a failure
    # below, the captured output says whether it was a transport error or a wrong answer.
    monkeypatch.setattr(speedtest, "DEBUG", True)
    st = LabSpeedtest(config=small)
    tries = 0
    while True:
        tries += 1
        best = st.use_server(srv.url)
        # A wrong latency.txt answer fails every try (3600 s each); a try lost to a starved
        # CI machine (the client's 10 s timeout) is transport, not the server: try again.
        if 0 < st.results.ping < 1000 or tries == 3:
            break
    assert best["url"] == srv.url and best["host"] == f"127.0.0.1:{srv.port}"
    assert 0 < st.results.ping < 1000, f"latency.txt failed {tries} times running"
    # The server counts a request after its answer is sent: the client can be quicker.
    assert _wait(lambda: srv.stats["latency"]["completed"] >= 3)
    lat = srv.stats["latency"]
    assert lat["bytes"] == lat["completed"] * len(b"test=test")  # every answer was test=test
    down = st.download()
    assert st.results.bytes_received == 2 * (245_388 + 1_986_284)
    assert _wait(lambda: srv.stats["download"]["completed"] == 4)
    assert srv.stats["download"]["bytes"] == st.results.bytes_received
    assert down > 0 and st.config["threads"]["upload"] == 8  # speedtest-cli's switch
    up = st.upload()
    assert up > 0 and st.results.bytes_sent == 4 * 524288
    assert _wait(lambda: srv.stats["upload"]["completed"] == 4)
    assert srv.stats["upload"]["bytes"] == 4 * 524288
    assert st.results.dict()["server"]["sponsor"] == "lab"


def test_set_mini_server_finds_the_upload_script(srv):
    # A request lost to a starved CI machine (speedtest-cli's 10 s timeout) fails a try; a server
    # that answers wrongly fails every one. Three tries.
    for tries in (1, 2, 3):
        try:
            [server] = LabSpeedtest().set_mini_server(srv.base + "/")
            break
        except (speedtest.SpeedtestMiniConnectFailure, speedtest.InvalidSpeedtestMiniServer):
            if tries == 3:
                raise
    assert server["url"] == srv.url
    assert srv.stats["other"]["requests"] >= 1   # it read the page that names the extension


# -- the shaped link -------------------------------------------------------------------------------

def _need_iperf3():
    reason = speedlab.iperf3_unavailable()
    if reason:
        pytest.skip(reason)


_OVER_THE_LINK = """
import http.client, json, sys
host = sys.argv[1]
out = {}
c = http.client.HTTPConnection(host, timeout=10)
c.request("GET", "/speedtest/latency.txt?x=1.0"); r = c.getresponse()
out["latency"] = [r.status, r.read().decode()]
c = http.client.HTTPConnection(host, timeout=10)
c.request("GET", "/speedtest/random350x350.jpg?x=2.0"); r = c.getresponse()
out["random"] = [r.status, r.getheader("Content-Length"), len(r.read())]
body = b"content1=" + b"A" * (1048576 - 9)
c = http.client.HTTPConnection(host, timeout=10)
c.request("POST", "/speedtest/upload.php?x=3.0", body=body); r = c.getresponse()
out["upload"] = [r.status, r.read().decode()]
print(json.dumps(out))
"""


@pytest.mark.netns
def test_link_is_shaped_both_ways_and_serves(lab):
    link = ShapedLink.create(lab, 100)
    for ns in (link.client, link.server):
        qd = link.qdisc(ns)
        assert "qdisc tbf" in qd and "rate 100Mbit" in qd, qd
    url = link.start_server()
    assert url == "http://10.232.1.1:8080/speedtest/upload.php"
    r = link.run_in_client(sys.executable, "-c", _OVER_THE_LINK, "10.232.1.1:8080")
    assert json.loads(r.stdout) == {"latency": [200, "test=test"],
                                    "random": [200, "245388", 245_388],
                                    "upload": [200, "size=1048576"]}
    stats = link.server_stats()
    assert stats["upload"]["bytes"] == 1048576 and stats["download"]["bytes"] == 245_388
    link.set_rate(20)
    assert "rate 20Mbit" in link.qdisc(link.server)


@pytest.mark.netns
@pytest.mark.parametrize("rate", [20, 100])
def test_iperf3_gets_the_shaped_rate(lab, rate):
    _need_iperf3()
    link = ShapedLink.create(lab, rate)
    for direction in ("download", "upload"):
        bps = link.iperf3(direction, seconds=5)
        # 95.6 % of the rate is the TCP payload ceiling (headers); iperf3 sits on it.
        assert bps == pytest.approx(link.goodput_bps, rel=0.02), direction
        assert bps == pytest.approx(link.rate_bps, rel=0.05), direction


@pytest.mark.netns
@pytest.mark.parametrize("rate", [20, 100])
def test_speedtest_cli_over_the_shaped_link(lab, rate):
    link = ShapedLink.create(lab, rate)
    link.start_server()
    t0 = time.monotonic()
    res = link.speedtest()
    elapsed = time.monotonic() - t0
    seen = {k: v for k, v in res.items() if k != "results"}
    assert elapsed < 40, seen
    # Download: accurate to the goodput ceiling (measured 0.998 .. 0.999 of iperf3).
    assert res["download_bps"] == pytest.approx(link.goodput_bps, rel=0.03), seen
    # Upload reads high on slow links: bytes still in the send buffers at the cut count
    # (measured 1.002 .. 1.035 of iperf3).
    assert 0.97 * link.goodput_bps < res["upload_bps"] < 1.07 * link.goodput_bps, seen
    assert 9.9 < res["download_s"] < 11 and 9.9 < res["upload_s"] < 11.5, seen
    assert res["upload_threads"] == 8, seen
    assert 0 < res["ping_ms"] < 50, seen
    assert res["results"]["server"]["url"] == link.server_url
    # What the client counted against what the server moved.
    assert _wait(lambda: link.server_stats()["upload"]["bytes"] == res["bytes_sent"], 10), \
        (link.server_stats()["upload"], res["bytes_sent"])
    stats = link.server_stats()
    assert stats["latency"]["completed"] == 3
    sent = stats["download"]["bytes"]
    assert res["bytes_received"] <= sent < res["bytes_received"] + 8 * 4 * 2**20
    # Moved at the server in the 10 s window, the upload is right on the ceiling.
    up = stats["upload"]
    assert 8 * up["bytes"] / (up["last_at"] - up["first_at"]) == \
        pytest.approx(link.goodput_bps, rel=0.03)
    assert stats["other"]["requests"] == 0
