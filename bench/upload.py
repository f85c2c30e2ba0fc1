#!/usr/bin/env python3
"""Bytes an agent uploads to InfluxDB per month at the defaults, with ``influx.send = "all"`` and
with ``"summaries"``.

One simulated day per run, on a fake clock so it takes a minute, not a day: the real agent's jobs
(rounds every 10 s to the gateway and two internet targets with one DNS name, the minute job's
interface counters and self-metrics, the summaries job every minute) on a fake line (probes
passed by constructor; internet RTTs drawn from a log-normal around 45 ms, so each hour's
histogram is as wide as a real line's), with three ISP outages of 10 minutes; the real forwarder
every 10 s (``influx.push_interval_s``), gzip on, an 88-character token, posting to a local
HTTP server that counts every byte it receives: request line, headers and body. A month is the
day times 30. TLS adds about 30 bytes a request and a handshake per connection, not counted.

    python3 bench/upload.py --runs 3

Run it as root inside ``unshare -n`` or anywhere: its only traffic is to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.clock import FakeClock
from agent.config import parse
from agent.forward import make_forwarder
from agent.jobs.services import ServiceChecks
from agent.model import Sample
from agent.probes.contract import Network
from agent.runner import Agent

DAY_S = 86400
OUTAGES = ((9 * 3600, 600), (14 * 3600 + 1800, 600), (20 * 3600, 600))   # start in the day, length


class Counter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        self.rfile.read(n)
        head = len(self.requestline) + 2 + sum(len(k) + 2 + len(v) + 2 for k, v in self.headers.items()) + 2
        with self.server.lock:
            self.server.bytes += head + n
            self.server.requests += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # /ping
        self.send_response(204)
        self.send_header("X-Influxdb-Version", "v2.7.1")
        self.send_header("Content-Length", "0")
        self.end_headers()


class Line:
    """A line whose internet targets answer with log-normal RTTs, down during the outages."""

    def __init__(self, clock: FakeClock, day0: float, seed: int) -> None:
        self.clock, self.day0, self.rng = clock, day0, random.Random(seed)

    def down(self) -> bool:
        t = self.clock.now().timestamp() - self.day0
        return any(a <= t < a + n for a, n in OUTAGES)

    def echo(self, target, *, count, timeout_s, clock):
        gateway = str(target) == "192.168.1.1"
        ok = gateway or not self.down()
        f = {"sent": count, "received": count if ok else 0, "loss_pct": 0.0 if ok else 100.0}
        if ok:
            rtts = [(1.2 if gateway else 45.0) * self.rng.lognormvariate(0, 0.35) for _ in range(count)]
            f.update(rtt_min_ms=min(rtts), rtt_avg_ms=sum(rtts) / len(rtts), rtt_max_ms=max(rtts),
                     jitter_ms=sum(abs(a - b) for a, b in zip(rtts, rtts[1:])) / max(1, len(rtts) - 1))
        return Sample("ping", {"target": str(target), "method": "icmp_dgram"}, f, clock.now())

    def dns(self, name, *, servers, timeout_s, clock):
        ok = not self.down()
        f = {"success": ok, "answers": 2 if ok else 0}
        if ok:
            f.update(rtt_ms=20 * self.rng.lognormvariate(0, 0.3), rcode=0)
        else:
            f["error"] = "timeout"
        return Sample("dns", {"name": name, "server": servers[0]}, f, clock.now())

    def probes(self) -> Network:
        return Network(echo=self.echo, dns=self.dns, gateway=lambda: "192.168.1.1",
                       dns_servers=lambda: ["192.168.1.1"])


class PassingChecks:
    """A stand-in for the service checks (a real check needs the sites: the bench's traffic
    stays on 127.0.0.1): each returns the row a passing check of a site writes, with its
    timings, so the rows forwarded are the size they are on a real line."""

    def __init__(self, clock: FakeClock, seed: int) -> None:
        self.clock, self.rng = clock, random.Random(seed)

    def check(self, service) -> Sample:
        r = self.rng
        return Sample("service", {"target": service.target, "kind": service.kind, "step": "ok"},
                      {"ok": True, "addresses": r.randint(1, 4), "dns_ms": round(r.uniform(5, 80), 3),
                       "connect_ms": round(r.uniform(20, 200), 3),
                       "tls_ms": round(r.uniform(40, 400), 3), "http_ms": round(r.uniform(40, 400), 3),
                       "status_code": r.choice((200, 301, 302, 403)), "dns_agree": r.random() < 0.7},
                      self.clock.now())


def one_day(send: str, seed: int, services: bool = False) -> dict:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Counter)
    srv.lock, srv.bytes, srv.requests = threading.Lock(), 0, 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    os.environ["LINEWATCH_INFLUX_TOKEN"] = "x" * 88
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse(f'[agent]\nstate_dir = "{tmp}"\nregion = "PK-PB"\ncity = "Lahore"\n'
                    f'isp = "PTCL"\naccess = "dsl"\n[probe]\ntargets = ["1.1.1.1", "8.8.8.8"]\n'
                    f'[speedtest]\nenabled = false\n'
                    + ('' if services else '[services]\nurls = []\n') +
                    f'[influx]\nurl = "http://127.0.0.1:{srv.server_address[1]}"\n'
                    f'bucket = "lw"\norg = "ngo"\nsend = "{send}"\n')
        day0 = datetime(2026, 3, 2, tzinfo=UTC)
        clock = FakeClock(day0)
        line = Line(clock, day0.timestamp(), seed)
        agent = Agent(cfg, clock=clock, probes=line.probes())
        fwd = make_forwarder(cfg, agent.store, clock)
        checks = ServiceChecks(agent.ctx, line_up=lambda: True,
                               checker=PassingChecks(clock, seed)) if services else None
        rows = 0
        for step in range(DAY_S // 10):
            agent.rounds.run()
            if step % 6 == 0:
                agent.selfmetrics.run()
                agent.summaries.run()
                if checks is not None:
                    checks.run()      # the job runs every services.retry_s (60 s)
            rows += fwd.push().sent
            clock.advance(10)
        agent.summaries.run()   # the day's last hour, closed
        clock.advance(60)
        agent.summaries.run()
        rows += fwd.push().sent
        agent.store.close()
    srv.shutdown()
    return {"send": send + (" + services" if services else ""), "bytes_day": srv.bytes,
            "requests_day": srv.requests, "rows_day": rows,
            "mb_month": srv.bytes * 30 / 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--services", action="store_true",
                    help="also with the default sites' checks on (a stand-in checker passing "
                    "each), at the default interval")
    args = ap.parse_args()
    modes = [("all", False), ("summaries", False)] + \
        ([("all", True), ("summaries", True)] if args.services else [])
    out: dict[str, list] = {}
    for run in range(args.runs):
        for send, services in modes:
            r = one_day(send, seed=run, services=services)
            out.setdefault(r["send"], []).append(r)
            print(json.dumps(r), flush=True)
    print()
    print(f"| influx.send | MB a month (median of {args.runs}) | runs | requests a day | rows a day |")
    print("|---|---|---|---|---|")
    for send, rs in out.items():
        mb = [r["mb_month"] for r in rs]
        print(f"| `{send}` | **{statistics.median(mb):.2f}** | {' / '.join(f'{m:.2f}' for m in mb)} | "
              f"{statistics.median(r['requests_day'] for r in rs):.0f} | "
              f"{statistics.median(r['rows_day'] for r in rs):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
