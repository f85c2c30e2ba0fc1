"""A bandwidth-shaped link with a speedtest.net-style server and iperf3 as the reference.

:class:`ShapedLink` builds two namespaces with a :class:`~tests.netlab.Lab`, joined by one veth
pair and shaped with ``tbf`` in both directions (see ../shared/TESTBED.md; netem is not there)::

    client (10.232.1.2) --eth0 [tbf]--- veth ---[tbf] eth0-- server (10.232.1.1)
                                                             :8080 tests.speedserver
                                                             :5201 iperf3 -s

Traffic from the server is the download, traffic from the client the upload. :class:`LabSpeedtest`
is speedtest-cli 2.1.3's ``Speedtest`` without its one call to speedtest.net (``get_config``),
aimed at the lab server; ``python -m tests.speedlab URL`` runs one test with it and prints JSON.

What was measured here (Debian 12, kernel 6.18 with HZ=250 and high-resolution timers, 2 cores;
iperf3 3.12, 4 streams, 10 s, receiver side) and why the code is shaped this way:

- The rate is what tbf enforces: Ethernet frames without FCS (14 + 20 + 32 bytes of headers per
  1448 bytes of TCP payload; timestamps are on). The most TCP payload that fits is therefore
  ``rate * 1448/1514`` = 95.64 % (:attr:`ShapedLink.goodput_bps`), and iperf3 gets exactly that,
  in both directions: 20 Mbit/s -> 19.16 .. 19.17, 100 -> 95.63 .. 95.73, 400 -> 382.6 .. 382.8
  (0.957 .. 0.958 of the rate, 3 runs each). That is 4.3 % under the rate, so tests compare with
  :attr:`~ShapedLink.goodput_bps` (within 0.2 % in every run) and with the rate (within 5 %).
- ``burst`` = max(64 KiB, rate/HZ). tc-tbf(8) asks for burst >= rate/HZ (10 KB at 20 Mbit/s,
  200 KB at 400), but this kernel's tbf wakes on a high-resolution timer: a 16 KiB burst still
  gave 0.9565 at 400 Mbit/s. Below 64 KiB tbf has to split veth's 64 KiB GSO packets (CPU; a
  few upload runs at 0.955); above rate/HZ the burst only adds a one-off head start at line
  rate: +0.25 % at 2*rate/HZ and +0.5 % at 4*rate/HZ over a 3 s run, nothing steady.
- ``limit`` = burst + 50 ms at the rate (a realistic access-line buffer). A 2-frame burst with
  a 10 ms queue loses so much that 20 Mbit/s gave 0.943 .. 0.954; 20 .. 200 ms queues with a
  burst of 16 KiB or more reach the ceiling (0.957 .. 0.961) in both directions. Runs made while
  other jobs loaded the 2 cores had single 3 s results down to 0.84 at 20 Mbit/s.
- Offloads stay on (no ethtool on these machines, and it is not needed): tbf charges a GSO packet
  the wire size of all its segments, which is why iperf3 lands on the ceiling.
- TCP is BBR: the host's default, inherited by new namespaces; a namespace may only pick from
  ``tcp_allowed_congestion_control`` (reno, bbr here; cubic gives EPERM). With 4 BBR streams
  into a 50 ms queue, iperf3 at 20 Mbit/s retransmits thousands of segments per 3 s run (tbf
  drops at the queue limit); goodput still sits on the ceiling.
- iperf3 3.12's server hung at the end of a test after a dozen runs (esnet/iperf#1735); from then
  on every client hangs after sending its cookie. Every :meth:`ShapedLink.iperf3` therefore gets
  a fresh one-off server (``iperf3 -s -1``): no hang in the 300-odd runs since.

speedtest-cli 2.1.3 against the lab server, ratio to iperf3 on the same link (6 runs per rate: 3
with the settings above, 3 with bursts of 64 KiB, 100 KB, 400 KB; no difference), bytes the
client counted, seconds per phase as the caller sees them, CPU of the client process:

    Mbit/s  download     upload       bytes down / up         seconds down / up   CPU s
      20    0.997-0.998  1.021-1.035  24.0 MB / 24.6-24.9 MB  10.03 / 10.16-10.25  1.3-1.9
     100    0.999        1.002-1.016  119.6 MB / 121.1-121.6  10.01 / 10.15-10.31  2.2-2.8
     400    0.999-1.000  0.999-1.000  409.4 MB / 151.5 MB     8.56 / 3.30-3.40     1.6-2.7

Before those, the three latency.txt requests take 5 .. 8 ms; a whole run is 20.4 s (12.1 s at
400 Mbit/s) including the Python start.

- Download is accurate: it counts the bytes its threads read within 10 s. The server had sent
  1.0 .. 3.7 MB more (socket buffers of the 8 transfers cut off at the end).
- Upload reads high on slow links: speedtest-cli counts bytes as it hands them to the socket
  (``HTTPUploaderData.read``), so what sits in the send buffers at the 10 s cut is counted though
  it arrives later. The server gets every one of those bytes (totals equal to the byte), but over
  10.3 .. 10.4 s at 20 Mbit/s: measured at the server, upload is the ceiling exactly (19.16).
- The tests are finite: 4 of each of the ten files (409,373,932 bytes) and 51 posts of 0.5, 1 and
  7 MiB (151,519,232 bytes, all pre-allocated in memory). Above ~330 Mbit/s (download) and ~120
  Mbit/s (upload) of goodput they run out of data before 10 s, as at 400 Mbit/s.
- ``download()`` switches the upload to 8 threads whenever download exceeded 100 kbit/s (the
  config says 2); ``get_best_server`` reports the sum of three latency.txt times divided by 6,
  i.e. half their mean (0.6 .. 1.0 ms here).
- CPU is no limit at 400 Mbit/s: the client process used 1.6 .. 2.7 s of CPU for the whole test,
  and both directions matched iperf3 to 0.1 %. With one or two busy loops on the 2 cores, 8 runs
  at 20, 100 and 400 Mbit/s stayed as above (within 0.5 %); once, with two, upload at 100 Mbit/s
  read 0.84 of the ceiling (not seen again): a test of speed-test figures wants a quiet machine.

Use::

    link = ShapedLink.create(lab, 100)            # lab: tests.netlab.Lab (the ``lab`` fixture)
    url = link.start_server()                      # http://10.232.1.1:8080/speedtest/upload.php
    link.iperf3("download")                        # bit/s, received
    result = link.speedtest()                      # speedtest-cli in the client namespace
    link.server_stats()                            # what the server moved
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import select
import signal
import subprocess
import sys
import time
import timeit
from pathlib import Path
from urllib.parse import urlsplit

import speedtest

from tests.netlab import Lab

REPO = Path(__file__).resolve().parents[1]
IPERF3 = "/usr/bin/iperf3"
CLIENT_IP = "10.232.1.2"
SERVER_IP = "10.232.1.1"
HTTP_PORT = 8080
IPERF_PORT = 5201
IFNAME = "eth0"

HZ = 250  # CONFIG_HZ of the test kernel
MIN_BURST = 64 * 1024  # one full GSO packet from veth
QUEUE_S = 0.05  # tbf queue on top of the burst, as time at the shaped rate
MTU = 1500
# TCP payload per full frame / bytes tbf charges per frame (Ethernet 14, IPv4 20, TCP 20 + 12
# bytes of timestamp option): the most an application can get through the shaped link.
PAYLOAD_SHARE = (MTU - 20 - 20 - 12) / (MTU + 14)


def iperf3_unavailable() -> str | None:
    """Why iperf3 cannot be used here, or None when it can."""
    if not os.access(IPERF3, os.X_OK):
        return f"{IPERF3} is not installed (apt-get install iperf3)"
    return None


def tbf_params(rate_mbit: float) -> dict[str, int]:
    """tbf settings for ``rate_mbit``: ``rate`` in bit/s, ``burst`` and ``limit`` in bytes."""
    if rate_mbit <= 0:
        raise ValueError(f"rate must be positive, not {rate_mbit}")
    rate = int(round(rate_mbit * 1e6))
    burst = max(MIN_BURST, math.ceil(rate / 8 / HZ))
    return {"rate": rate, "burst": burst, "limit": burst + math.ceil(rate / 8 * QUEUE_S)}


class ShapedLink:
    """Client and server namespaces joined by one veth pair, tbf-shaped both ways. Build it with
    :meth:`create`; the lab's ``close()`` removes the namespaces and every process started here."""

    def __init__(self, lab: Lab, client: str, server: str) -> None:
        self.lab = lab
        self.client = client
        self.server = server
        self.rate_mbit = 0.0
        self.tbf: dict[str, int] = {}
        self.server_url: str | None = None
        self.http_port = HTTP_PORT
        self._http: subprocess.Popen | None = None
        self._iperf: subprocess.Popen | None = None

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, lab: Lab, rate_mbit: float) -> ShapedLink:
        """Namespaces ``client`` (10.232.1.2/24) and ``server`` (10.232.1.1/24), shaped to
        ``rate_mbit`` in both directions."""
        client, server = lab.ns("client"), lab.ns("server")
        lab.veth(client, IFNAME, f"{CLIENT_IP}/24", server, IFNAME, f"{SERVER_IP}/24")
        link = cls(lab, client, server)
        link.set_rate(rate_mbit)
        return link

    def set_rate(self, rate_mbit: float, *, burst: int | None = None,
                 limit: int | None = None) -> None:
        """Replace both tbf qdiscs (:func:`tbf_params`; ``burst``/``limit`` override them)."""
        params = tbf_params(rate_mbit)
        if burst is not None:
            params["burst"] = burst
        if limit is not None:
            params["limit"] = limit
        for ns in (self.client, self.server):
            self.lab.run(ns, "tc", "qdisc", "replace", "dev", IFNAME, "root", "tbf",
                         "rate", f"{params['rate']}bit", "burst", str(params["burst"]),
                         "limit", str(params["limit"]))
        self.rate_mbit = float(rate_mbit)
        self.tbf = params

    @property
    def rate_bps(self) -> float:
        return self.rate_mbit * 1e6

    @property
    def goodput_bps(self) -> float:
        """The most TCP payload per second the shaped rate lets through (95.64 % of it)."""
        return self.rate_bps * PAYLOAD_SHARE

    def qdisc(self, ns: str) -> str:
        """``tc -s qdisc show`` of ``ns``'s link (sent bytes, drops, overlimits)."""
        return self.lab.run(ns, "tc", "-s", "qdisc", "show", "dev", IFNAME).stdout

    # -- running ----------------------------------------------------------------------------------
    def run_in_client(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        """``lab.run`` in the client namespace, from the repository root unless ``cwd`` given."""
        kw.setdefault("cwd", str(REPO))
        return self.lab.run(self.client, *cmd, **kw)

    def start_server(self, port: int = HTTP_PORT, timeout: float = 15) -> str:
        """Start tests.speedserver in the server namespace (all addresses, ``port``), wait until
        it answers, and return its URL as server lists give it:
        ``http://10.232.1.1:PORT/speedtest/upload.php``."""
        proc = self.lab.popen(self.server, sys.executable, "-m", "tests.speedserver",
                              "--host", "0.0.0.0", "--port", str(port), cwd=str(REPO))
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("ready "):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"speedserver did not start: {line!r} "
                               f"{proc.stderr.read().decode(errors='replace')}")
        self._http, self.http_port = proc, port
        self.server_url = f"http://{SERVER_IP}:{port}/speedtest/upload.php"
        self.server_stats()  # answers over HTTP, not only printed "ready"
        return self.server_url

    def server_stats(self, reset: bool = False) -> dict:
        """The server's byte counters (tests.speedserver ``GET /stats``), read inside the server
        namespace so the query does not cross the shaped link; ``reset`` zeroes them after."""
        code = ("import sys, urllib.request as u\n"
                "b = 'http://127.0.0.1:' + sys.argv[1]\n"
                "print(u.urlopen(b + '/stats', timeout=5).read().decode())\n"
                "if sys.argv[2] == '1':\n"
                "    u.urlopen(u.Request(b + '/stats/reset', data=b''), timeout=5).read()\n")
        r = self.lab.run(self.server, sys.executable, "-c", code, str(self.http_port),
                         "1" if reset else "0")
        return json.loads(r.stdout)

    def start_iperf3(self, port: int = IPERF_PORT, timeout: float = 10) -> None:
        """Start a one-off ``iperf3 -s -1`` on 10.232.1.1:``port`` (replacing the previous one)
        and wait until it listens. :meth:`iperf3` calls this itself before every run."""
        self._stop_iperf3(grace=0)
        proc = self.lab.popen(self.server, IPERF3, "-s", "-1", "-B", SERVER_IP, "-p", str(port))
        self._iperf = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"iperf3 -s exited: {proc.stderr.read().decode()}")
            if self.lab.run(self.server, "ss", "-Hltn", f"sport = :{port}").stdout.strip():
                return
            time.sleep(0.02)
        raise RuntimeError("iperf3 -s did not start listening")

    def _stop_iperf3(self, grace: float = 2) -> None:
        """Reap the one-off server (it ends by itself after its test); kill it if it does not."""
        proc, self._iperf = self._iperf, None
        if proc is None:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def iperf3_json(self, direction: str, seconds: float = 10, streams: int = 4,
                    port: int = IPERF_PORT) -> dict:
        """One iperf3 run from the client namespace (``-J``); ``download`` is ``-R`` (the server
        sends), ``upload`` the normal direction. Returns iperf3's JSON report."""
        if direction not in ("download", "upload"):
            raise ValueError(f"direction must be 'download' or 'upload', not {direction!r}")
        cmd = [IPERF3, "-c", SERVER_IP, "-p", str(port), "-J", "-t", str(seconds),
               "-P", str(streams)]
        if direction == "download":
            cmd.append("-R")
        self.start_iperf3(port)
        try:
            r = self.lab.run(self.client, *cmd, check=False, timeout=seconds + 30)
        finally:
            self._stop_iperf3()
        try:
            report = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 {direction}: {r.returncode}: {r.stderr.strip()}") from None
        if r.returncode != 0 or "error" in report:
            raise RuntimeError(f"iperf3 {direction}: {report.get('error', r.stderr.strip())}")
        return report

    def iperf3(self, direction: str, seconds: float = 10, streams: int = 4) -> float:
        """Throughput in bit/s as the receiver saw it (``end.sum_received.bits_per_second``)."""
        report = self.iperf3_json(direction, seconds, streams)
        return float(report["end"]["sum_received"]["bits_per_second"])

    def speedtest(self, *, download: bool = True, upload: bool = True, ping: bool = True,
                  timeout: float = 120) -> dict:
        """One speedtest-cli run in the client namespace against the lab server
        (:func:`run_speedtest` in a fresh process); its JSON result."""
        if self.server_url is None:
            raise RuntimeError("start_server() first")
        args = [a for a, on in (("--no-download", not download), ("--no-upload", not upload),
                                ("--no-ping", not ping)) if on]
        r = self.run_in_client(sys.executable, "-m", "tests.speedlab", self.server_url, *args,
                               timeout=timeout)
        return json.loads(r.stdout)


# -- speedtest-cli without speedtest.net -----------------------------------------------------------

# What Speedtest.get_config() makes of speedtest.net's configuration (threadcount=4, download
# threadsperurl=4, testlength=10 both ways, upload ratio=5, maxchunkcount=50, threads=2).
_UP_RATIO, _UP_MAXCHUNKCOUNT = 5, 50
_UP_SIZES = [32768, 65536, 131072, 262144, 524288, 1048576, 7340032][_UP_RATIO - 1:]
_UP_COUNT = int(math.ceil(_UP_MAXCHUNKCOUNT / len(_UP_SIZES)))
CLASSIC_CONFIG = {
    "client": {},
    "ignore_servers": [],
    "sizes": {"upload": _UP_SIZES,
              "download": [350, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000]},
    "counts": {"upload": _UP_COUNT, "download": 4},
    "threads": {"upload": 2, "download": 4 * 2},
    "length": {"upload": 10, "download": 10},
    "upload_max": _UP_COUNT * len(_UP_SIZES),
}


class LabSpeedtest(speedtest.Speedtest):
    """speedtest-cli's ``Speedtest`` with speedtest.net's usual configuration built in
    (:data:`CLASSIC_CONFIG`; ``config=`` still overrides parts of it) instead of downloaded, so
    it never contacts speedtest.net. Pick the server with :meth:`use_server`."""

    def get_config(self) -> dict:
        self.config.update(copy.deepcopy(CLASSIC_CONFIG))
        self.lat_lon = (0.0, 0.0)
        return self.config

    def use_server(self, url: str, ping: bool = True) -> dict:
        """Make ``url`` (``http://HOST:PORT/speedtest/upload.php``) the best server. ``ping``:
        measure its latency as speedtest-cli does (``get_best_server``, three latency.txt
        requests); else set it with latency 0."""
        server = {"url": url, "id": 0, "name": "lab", "sponsor": "lab", "d": 0, "latency": 0,
                  "host": urlsplit(url).netloc}
        if ping:
            return self.get_best_server([server])
        self._best.update(server)
        self.results.server = self._best
        self.results.ping = 0
        return self._best


def run_speedtest(url: str, *, download: bool = True, upload: bool = True,
                  ping: bool = True, config: dict | None = None) -> dict:
    """A whole speedtest-cli run (latency, download, upload, in that order, as its CLI does)
    against ``url``: speeds (bit/s), bytes, seconds per phase, CPU seconds of this process, and
    speedtest-cli's own ``results.dict()``."""
    st = LabSpeedtest(config=config)
    out: dict = {"url": url}
    t0 = timeit.default_timer()
    st.use_server(url, ping=ping)
    out["ping_ms"] = st.results.ping
    out["ping_s"] = timeit.default_timer() - t0
    if download:
        t0 = timeit.default_timer()
        out["download_bps"] = st.download()
        out["download_s"] = timeit.default_timer() - t0
        out["bytes_received"] = st.results.bytes_received
    out["upload_threads"] = st.config["threads"]["upload"]
    if upload:
        t0 = timeit.default_timer()
        out["upload_bps"] = st.upload()
        out["upload_s"] = timeit.default_timer() - t0
        out["bytes_sent"] = st.results.bytes_sent
    out["results"] = st.results.dict()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = ru.ru_utime + ru.ru_stime
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="One speedtest-cli run against a lab server; "
                                             "prints JSON (see run_speedtest).")
    ap.add_argument("url", help="http://HOST:PORT/speedtest/upload.php")
    ap.add_argument("--no-download", action="store_true")
    ap.add_argument("--no-upload", action="store_true")
    ap.add_argument("--no-ping", action="store_true")
    a = ap.parse_args(argv)
    print(json.dumps(run_speedtest(a.url, download=not a.no_download, upload=not a.no_upload,
                                   ping=not a.no_ping)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
