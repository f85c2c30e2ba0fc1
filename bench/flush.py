#!/usr/bin/env python3
"""Flushing a 72-hour backlog to VictoriaMetrics (the v2 write path): points per second and the
agent's memory while it flushes, through each of the two clients for /api/v2/write
(``influx.client``: ``builtin``, the standard-library writer, and ``influxdb-client``).

The backlog: 72 hours at the default cadence, written through the real store with the agent's
real row shapes, as an agent with a server configured writes them (each row's line-protocol field
set beside it): every 10 s a round (gateway and two internet targets with all ping fields, one
DNS name, the round verdict), every minute two interfaces' counters and the agent's own metrics,
all with the five common tags; 25,920 rounds, 142,560 rows; then the ``hourly`` and ``daily``
rows the agent's summaries job wrote meanwhile (it runs while the server is away). One pristine
copy is made and each run starts from a copy of it.

Per run and client, each against a fresh VictoriaMetrics (Debian's 1.79.5) in a temp dir:

* ``push``: ``linewatch push --json`` from a clean venv (linewatch and its dependencies only, as
  the README installs it, with the influxdb-client extra for that client; bench/cleanvenv.py).
  Points per second as it reports them (the push loop), the wall time of the whole command, and
  its peak RSS (VmHWM, polled).
* ``agent``: ``linewatch run`` (probing loopback) with the same backlog: its push job flushes it
  at start while rounds go on. Time until the backlog is down to the rows of the last seconds,
  and the agent's peak RSS (VmHWM) during the flush, and its RSS afterwards.
* reference (once per run): the same lines, in batches of 5,000, gzip-compressed (level 9,
  as influxdb-client does), posted by a minimal standard-library client; the encoding is done
  before the clock starts. This is what the server and HTTP allow; linewatch's share of it is the
  ratio, ``push`` over the reference of the same run.

Every run checks that VictoriaMetrics holds exactly as many round points as the store.
Targets (issue #4): >= 50,000 points/s, peak RSS during the flush <= 60 MB; (issue 16, the builtin
client) ratio >= 0.8, RSS during the flush <= 30 MB.

    python3 bench/flush.py --runs 5 [--clients builtin,influxdb-client]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.clock import FakeClock  # noqa: E402
from agent.config import parse  # noqa: E402
from agent.jobs.context import Context  # noqa: E402
from agent.jobs.summaries import Summaries  # noqa: E402
from agent.model import Sample  # noqa: E402
from agent.store import DB_NAME, Store  # noqa: E402
from bench import cleanvenv  # noqa: E402
from kit.influxconfig import InfluxSection  # noqa: E402
from kit.lineproto import Encoder, field_set_or_none  # noqa: E402
from tests.influxlab import VictoriaMetrics, vm_unavailable  # noqa: E402

HOURS = 72
TAGS = {"agent": "3f9a0c1d2e4b", "region": "PK-PB", "city": "Lahore", "isp": "PTCL", "access": "fibre"}


def build_backlog(state_dir: Path, end: datetime) -> int:
    """72 hours of the agent's rows, ending at ``end``, written as an agent with a server
    configured writes them (each row's field set beside it). Returns the row count."""
    store = Store.open(state_dir)
    store.field_set = field_set_or_none
    rounds = HOURS * 360
    chunk: list[Sample] = []
    rx = tx = 0
    for i in range(rounds):
        t = end - timedelta(seconds=10 * (rounds - i))
        lossy = i % 97 == 0
        for target, role in (("192.168.1.1", "gateway"), ("1.1.1.1", "internet"), ("8.8.8.8", "internet")):
            f = {"sent": 3, "received": 2 if lossy else 3, "loss_pct": 33.333 if lossy else 0.0,
                 "rtt_min_ms": 9.812 + i % 7, "rtt_avg_ms": 11.403 + i % 11, "rtt_max_ms": 14.227 + i % 13,
                 "jitter_ms": 0.731 + (i % 5) / 10}
            tags = {**TAGS, "target": target, "method": "icmp_dgram", "role": role}
            chunk.append(Sample("ping", tags, f, t))
        chunk.append(Sample("dns", {**TAGS, "name": "google.com", "server": "192.168.1.1"},
                            {"success": True, "rtt_ms": 21.604 + i % 9, "rcode": 0, "answers": 1}, t))
        chunk.append(Sample("round", TAGS, {"status": "degraded" if lossy else "up", "duration_s": 0.612,
                                            "interval_s": 10.0, "probe_errors": 0}, t))
        if i % 6 == 0:
            rx += 1_250_000
            tx += 310_000
            for iface in ("wlan0", "eth0"):
                chunk.append(Sample("netio", {**TAGS, "interface": iface}, {
                    "rx_bytes": rx, "tx_bytes": tx, "rx_packets": rx // 900, "tx_packets": tx // 300,
                    "rx_errors": 0, "tx_errors": 0, "rx_drops": 3, "tx_drops": 0,
                    "rx_bytes_delta": 1_250_000, "tx_bytes_delta": 310_000, "interval_s": 60.0,
                    "up": True, "speed_mbps": 1000}, t))
            chunk.append(Sample("agent", TAGS, {
                "uptime_s": 10.0 * i, "rss_bytes": 22_020_096, "cpu_s": 0.004 * i, "store_bytes": 1000 * i,
                "backlog_rows": 5 * i, "dropped_unsent": 0, "dropped_host_down": 0, "quarantined_rows": 0,
                "clock_steps": 0, "rounds": i, "round_failures": 0, "probe_errors": 0, "job_failures": 0,
                "sensor_errors": 0, "pushed_rows": 0, "push_errors": i // 6}, t))
        if len(chunk) >= 20_000:
            store.write(chunk)
            chunk = []
    store.write(chunk)
    summarise(store, end)
    n = store.count()
    store.close()
    return n


def summarise(store: Store, end: datetime) -> int:
    """The ``hourly`` and ``daily`` rows the agent's summaries job wrote while the backlog grew
    (it runs whether or not the server answers), so the agent started on the backlog flushes it
    as it would after an outage instead of first summarising the hours: the job run at ``end``
    until it has caught up (a day per run). Returns the summary rows written."""
    ctx = Context(cfg=parse(""), clock=FakeClock(end), store=store, tags=dict(TAGS))
    job = Summaries(ctx)
    written = 0
    for _ in range(HOURS // 24 + 2):
        written += job.run()
    return written


CLIENTS = ("builtin", "influxdb-client")


def make_venv(tmp: Path, client: str) -> Path:
    extras = ("influxdb-client",) if client == "influxdb-client" else ()
    return cleanvenv.make(tmp / f"venv-{client}", extras)


def store_rows(state: Path, measurement: str) -> int:
    c = sqlite3.connect(state / DB_NAME)
    try:
        return c.execute("SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id"
                         " WHERE r.measurement = ?", (measurement,)).fetchone()[0]
    finally:
        c.close()


def field_sets(state: Path) -> int:
    """Rows of the store with the field set the agent writes beside a row bound for a server."""
    c = sqlite3.connect(f"file:{state / DB_NAME}?mode=ro", uri=True)
    try:
        return c.execute("SELECT count(*) FROM outbox_lines").fetchone()[0]
    finally:
        c.close()


def backlog(state: Path) -> int:
    c = sqlite3.connect(f"file:{state / DB_NAME}?mode=ro", uri=True, timeout=5)
    try:
        return c.execute("SELECT count(*) FROM samples WHERE sent = 0").fetchone()[0]
    finally:
        c.close()


def config(tmp: Path, state: Path, vm: VictoriaMetrics, client: str) -> Path:
    p = tmp / "lw.toml"
    p.write_text(f'[agent]\nstate_dir = "{state}"\n[probe]\ngateway = "off"\n'
                 f'targets = ["127.0.0.1:{vm.port}"]\ndns_names = []\n[power]\nbattery = "off"\n'
                 f'[speedtest]\nenabled = false\n[services]\nurls = []\n'
                 f'[influx]\nurl = "{vm.url}"\nbucket = "linewatch"\norg = "bench"\nclient = "{client}"\n')
    return p


def run_push(python: Path, pristine: Path, tmp: Path, client: str) -> dict:
    state = tmp / "state-push"
    shutil.copytree(pristine, state)
    with VictoriaMetrics.create(tmp / "vm-push") as vm:
        cfg = config(tmp, state, vm, client)
        t0 = time.perf_counter()
        p = subprocess.Popen([str(python), "-m", "agent", "push", "--json", "--config", str(cfg)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # VmHWM, polled: wait4's ru_maxrss would count the moment between fork and exec, when
        # the child still has this (large) benchmark process's memory.
        hwm = 0
        while p.poll() is None:
            try:
                hwm = max(hwm, vm_status(p.pid).get("VmHWM", 0))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.01)
        out, err = p.communicate()
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"push failed: {out}\n{err}")
        rep = json.loads(out)
        stored = store_rows(state, "round")
        arrived = vm.wait_count("round_duration_s", stored)
        if arrived != stored:
            raise RuntimeError(f"round points: {arrived} in VictoriaMetrics, {stored} in the store")
    shutil.rmtree(state)
    return {"rows": rep["sent"], "push_s": rep["seconds"], "points_per_s": rep["sent"] / rep["seconds"],
            "wall_s": wall, "wall_points_per_s": rep["sent"] / wall, "peak_rss_mb": hwm / 2**20,
            "requests": rep["requests"]}


def vm_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) * 1024
    return out


def run_agent(python: Path, pristine: Path, tmp: Path, rows: int, client: str) -> dict:
    state = tmp / "state-agent"
    shutil.copytree(pristine, state)
    with VictoriaMetrics.create(tmp / "vm-agent") as vm:
        cfg = config(tmp, state, vm, client)
        t0 = time.perf_counter()
        p = subprocess.Popen([str(python), "-m", "agent", "run", "--config", str(cfg)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            hwm, started_at, flushed_at = 0, None, None
            deadline = t0 + 300
            while time.perf_counter() < deadline:
                hwm = max(hwm, vm_status(p.pid).get("VmHWM", 0))
                left = backlog(state)
                if started_at is None and left < rows:  # the push job's first batch was marked
                    started_at = time.perf_counter() - t0
                if left < 50:  # what a few seconds of new rounds add
                    flushed_at = time.perf_counter() - t0
                    break
                time.sleep(0.02)
            if flushed_at is None or started_at is None:
                raise RuntimeError("the agent did not flush its backlog within 5 minutes")
            time.sleep(20)  # two more push intervals: the steady state after the flush
            st = vm_status(p.pid)
        finally:
            p.send_signal(2)
            _, err = p.communicate(timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"agent exited {p.returncode}: {err[-2000:]}")
        arrived = vm.wait_count("round_duration_s", store_rows(state, "round"))
    shutil.rmtree(state)
    # From the first batch marked to the backlog flushed: the first batch's own time is not in it,
    # so the rate is over the rows after it (rows - one batch of the default size).
    flush_s = flushed_at - started_at
    return {"flush_s_incl_start": flushed_at, "flush_s": flush_s,
            "points_per_s": (rows - InfluxSection().batch_size) / flush_s,
            "peak_rss_mb": max(hwm, st["VmHWM"]) / 2**20, "rss_after_mb": st["VmRSS"] / 2**20,
            "round_points_arrived": arrived}


def run_reference(pristine: Path, tmp: Path) -> dict:
    # Read page after page, never marked: the pristine copy stays as it is (its rows unsent,
    # each with the field set the agent wrote beside it) for the next run.
    store = Store.open(pristine)
    enc = Encoder()
    batches = []
    after = None
    while True:
        rows = store.outbox(5000, after)
        if not rows:
            break
        after = (rows[-1][5], rows[-1][0])
        lines = [ln for _, ln in enc.encode_rows(rows)]
        batches.append(("\n".join(lines) + "\n").encode())
    store.close()
    n = sum(b.count(b"\n") for b in batches)
    with VictoriaMetrics.create(tmp / "vm-ref") as vm:
        conn = http.client.HTTPConnection("127.0.0.1", vm.port, timeout=60)
        t0 = time.perf_counter()
        for body in batches:
            conn.request("POST", "/api/v2/write?bucket=linewatch&org=bench&precision=ns",
                         body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
            r = conn.getresponse()
            r.read()
            if r.status != 204:
                raise RuntimeError(f"reference write: {r.status}")
        dt = time.perf_counter() - t0
        conn.close()
    return {"rows": n, "seconds": dt, "points_per_s": n / dt,
            "raw_mb": sum(map(len, batches)) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--clients", type=lambda v: tuple(v.split(",")), default=CLIENTS,
                    help="influx.client values to measure, comma-separated (default: both)")
    args = ap.parse_args()
    reason = vm_unavailable()
    if reason:
        sys.exit(reason)
    tmp = Path(tempfile.mkdtemp(prefix="lwbench-flush"))
    try:
        print("building the 72-hour backlog ...", flush=True)
        pristine = tmp / "pristine"
        t0 = time.perf_counter()
        rows = build_backlog(pristine, datetime.now(UTC))
        size = (pristine / DB_NAME).stat().st_size
        print(f"  {rows} rows, {size / 1e6:.1f} MB store, built in {time.perf_counter() - t0:.0f} s",
              flush=True)
        print("making the clean venvs ...", flush=True)
        pythons = {c: make_venv(tmp, c) for c in args.clients}
        results = []
        made = field_sets(pristine)
        for i in range(args.runs):
            if field_sets(pristine) != made:  # what an agent with a server writes, every run
                raise RuntimeError("the pristine backlog lost the rows' field sets")
            r: dict = {"reference": run_reference(pristine, tmp)}
            ref = r["reference"]["points_per_s"]
            for c in args.clients:
                push = run_push(pythons[c], pristine, tmp, c)
                agent = run_agent(pythons[c], pristine, tmp, rows, c)
                r[c] = {"push": push, "agent": agent, "ratio": push["points_per_s"] / ref,
                        "agent_ratio": agent["points_per_s"] / ref}
                print(f"run {i + 1} {c}: push {push['points_per_s']:.0f} pts/s "
                      f"(wall {push['wall_points_per_s']:.0f}), peak {push['peak_rss_mb']:.1f} MB; "
                      f"agent flush {agent['flush_s']:.2f} s ({agent['points_per_s']:.0f} pts/s), "
                      f"peak {agent['peak_rss_mb']:.1f} MB, after {agent['rss_after_mb']:.1f} MB; "
                      f"reference {ref:.0f} pts/s; ratio {r[c]['ratio']:.2f}", flush=True)
            results.append(r)

        def med(path):
            vals = []
            for r in results:
                v = r
                for k in path:
                    v = v[k]
                vals.append(v)
            return statistics.median(vals), vals
        figures = {
            "push_points_per_s": ("push", "points_per_s"),
            "push_wall_points_per_s": ("push", "wall_points_per_s"),
            "push_peak_rss_mb": ("push", "peak_rss_mb"), "agent_flush_s": ("agent", "flush_s"),
            "agent_points_per_s": ("agent", "points_per_s"), "agent_peak_rss_mb": ("agent", "peak_rss_mb"),
            "agent_rss_after_mb": ("agent", "rss_after_mb"), "ratio": ("ratio",),
            "agent_ratio": ("agent_ratio",)}
        summary = {"reference_points_per_s": med(("reference", "points_per_s"))}
        for c in args.clients:
            summary.update({f"{c} {k}": med((c, *p)) for k, p in figures.items()})
        print("\nmedians of", args.runs, "runs:")
        for k, (m, vals) in summary.items():
            print(f"  {k:40s} {m:12.2f}   ({' / '.join(f'{v:.2f}' for v in vals)})")
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "flush.json").write_text(json.dumps({"rows": rows, "store_mb": size / 1e6, "runs": results,
                                                    "medians": {k: m for k, (m, _) in summary.items()}},
                                                   indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
