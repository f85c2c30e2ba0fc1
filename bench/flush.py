#!/usr/bin/env python3
"""Flushing a 72-hour backlog to VictoriaMetrics (the v2 write path, influxdb-client): points per
second and the agent's peak memory while it flushes.

The backlog: 72 hours at the default cadence, written through the real store with the agent's
real row shapes: every 10 s a round (gateway and two internet targets with all ping fields, one
DNS name, the round verdict), every minute two interfaces' counters and the agent's own metrics,
all with the five common tags. 25,920 rounds, about 147,000 rows. One pristine copy is made and
each run starts from a copy of it.

Per run, each against a fresh VictoriaMetrics (Debian's 1.79.5) in a temp dir:

* ``push``: ``linewatch push --json`` from a clean venv (linewatch and its dependencies only, as
  the README installs it). Points per second as it reports them (the push loop), the wall time of
  the whole command, and its peak RSS (``ru_maxrss`` from wait4).
* ``agent``: ``linewatch run`` (probing loopback) with the same backlog: its push job flushes it
  at start while rounds go on. Time until the backlog is down to the rows of the last seconds,
  and the agent's peak RSS (VmHWM) during the flush, and its RSS afterwards.
* reference: the same lines, in the same batches of 5,000, gzip-compressed as influxdb-client
  does, posted by a minimal standard-library client; the encoding is done before the clock starts.
  This is what the server and HTTP allow; linewatch's share of it is the ratio.

Every run checks that VictoriaMetrics holds exactly as many round points as the store.
Targets (issue #4): >= 50,000 points/s, peak RSS during the flush <= 60 MB.

    python3 bench/flush.py --runs 5
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

from agent.model import Sample  # noqa: E402
from agent.store import DB_NAME, Store  # noqa: E402
from kit.lineproto import Encoder  # noqa: E402
from tests.influxlab import VictoriaMetrics, vm_unavailable  # noqa: E402

HOURS = 72
TAGS = {"agent": "3f9a0c1d2e4b", "region": "PK-PB", "city": "Lahore", "isp": "PTCL", "access": "fibre"}


def build_backlog(state_dir: Path, end: datetime) -> int:
    """72 hours of the agent's rows, ending at ``end``. Returns the row count."""
    store = Store.open(state_dir)
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
    n = store.count()
    store.close()
    return n


def make_venv(tmp: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(ROOT)], check=True)
    return venv / "bin" / "python"


def store_rows(state: Path, measurement: str) -> int:
    c = sqlite3.connect(state / DB_NAME)
    try:
        return c.execute("SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id"
                         " WHERE r.measurement = ?", (measurement,)).fetchone()[0]
    finally:
        c.close()


def backlog(state: Path) -> int:
    c = sqlite3.connect(f"file:{state / DB_NAME}?mode=ro", uri=True, timeout=5)
    try:
        return c.execute("SELECT count(*) FROM samples WHERE sent = 0").fetchone()[0]
    finally:
        c.close()


def config(tmp: Path, state: Path, vm: VictoriaMetrics) -> Path:
    p = tmp / "lw.toml"
    p.write_text(f'[agent]\nstate_dir = "{state}"\n[probe]\ngateway = "off"\n'
                 f'targets = ["127.0.0.1:{vm.port}"]\ndns_names = []\n[power]\nbattery = "off"\n'
                 f'[influx]\nurl = "{vm.url}"\nbucket = "linewatch"\norg = "bench"\n')
    return p


def run_push(python: Path, pristine: Path, tmp: Path) -> dict:
    state = tmp / "state-push"
    shutil.copytree(pristine, state)
    with VictoriaMetrics.create(tmp / "vm-push") as vm:
        cfg = config(tmp, state, vm)
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


def run_agent(python: Path, pristine: Path, tmp: Path, rows: int) -> dict:
    state = tmp / "state-agent"
    shutil.copytree(pristine, state)
    with VictoriaMetrics.create(tmp / "vm-agent") as vm:
        cfg = config(tmp, state, vm)
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
    # so the rate is over the rows after it (rows - one batch).
    flush_s = flushed_at - started_at
    return {"flush_s_incl_start": flushed_at, "flush_s": flush_s,
            "points_per_s": (rows - 5000) / flush_s,
            "peak_rss_mb": max(hwm, st["VmHWM"]) / 2**20, "rss_after_mb": st["VmRSS"] / 2**20,
            "round_points_arrived": arrived}


def run_reference(pristine: Path, tmp: Path) -> dict:
    store = Store.open(pristine)
    enc = Encoder()
    batches = []
    while True:
        rows = store.outbox(5000)
        if not rows:
            break
        lines = [ln for _, ln in enc.encode_rows(rows)]
        batches.append(("\n".join(lines) + "\n").encode())
        store.mark_sent([r[0] for r in rows])
    store.close()
    c = sqlite3.connect(pristine / DB_NAME)  # back to pristine: everything unsent
    c.execute("UPDATE samples SET sent = 0")
    c.commit()
    c.close()
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
        print("making a clean venv ...", flush=True)
        python = make_venv(tmp)
        results = []
        for i in range(args.runs):
            r = {"push": run_push(python, pristine, tmp), "reference": run_reference(pristine, tmp),
                 "agent": run_agent(python, pristine, tmp, rows)}
            r["ratio"] = r["push"]["points_per_s"] / r["reference"]["points_per_s"]
            results.append(r)
            print(f"run {i + 1}: push {r['push']['points_per_s']:.0f} pts/s "
                  f"(wall {r['push']['wall_points_per_s']:.0f}), peak {r['push']['peak_rss_mb']:.1f} MB; "
                  f"agent flush {r['agent']['flush_s']:.2f} s ({r['agent']['points_per_s']:.0f} pts/s), "
                  f"peak {r['agent']['peak_rss_mb']:.1f} MB, "
                  f"after {r['agent']['rss_after_mb']:.1f} MB; "
                  f"reference {r['reference']['points_per_s']:.0f} "
                  f"pts/s; ratio {r['ratio']:.2f}", flush=True)

        def med(path):
            vals = [r[path[0]][path[1]] if len(path) == 2 else r[path[0]] for r in results]
            return statistics.median(vals), vals
        summary = {k: med(p) for k, p in {
            "push_points_per_s": ("push", "points_per_s"),
            "push_wall_points_per_s": ("push", "wall_points_per_s"),
            "push_peak_rss_mb": ("push", "peak_rss_mb"), "agent_flush_s": ("agent", "flush_s"),
            "agent_points_per_s": ("agent", "points_per_s"), "agent_peak_rss_mb": ("agent", "peak_rss_mb"),
            "agent_rss_after_mb": ("agent", "rss_after_mb"),
            "reference_points_per_s": ("reference", "points_per_s"), "ratio": ("ratio",)}.items()}
        print("\nmedians of", args.runs, "runs:")
        for k, (m, vals) in summary.items():
            print(f"  {k:26s} {m:12.2f}   ({' / '.join(f'{v:.2f}' for v in vals)})")
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "flush.json").write_text(json.dumps({"rows": rows, "store_mb": size / 1e6, "runs": results,
                                                    "medians": {k: m for k, (m, _) in summary.items()}},
                                                   indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
