"""The collector at scale: 1,000 agents x 30 days in a real InfluxDB 1.6.7, aggregated end to end.

Steps (figures: medians of ``--runs`` runs with min-max, each with a reference measured in the
same run):

1. Generation: the synthetic fleet's line protocol (tests/fleet.py), timed alone, with one
   process and with ``--workers`` processes.
2. Cadence: influxd 1.6.7's ingest rate is measured on a sample of the fleet (``--calibrate``
   agents); the finest round cadence whose whole fleet fits in ``--write-budget-s`` is chosen,
   unless ``--round-s`` names one.
3. Write: the fleet into a fresh influxd (tests.influxlab.InfluxV1, in a temp dir), gzip, several
   connections; time, points, points/s, the server's data and WAL directory sizes.
4. End to end, ``--runs`` times: ``linewatch-collector --config CFG aggregate --since 30d --by
   region,isp --format json`` as a child process: wall time and peak RSS (VmHWM, polled: wait4's
   ru_maxrss would count the moment between fork and exec, when the child still is this process),
   and the most it and its parsing workers (collector.apart) held at once (their VmRSS, polled).
   Reference in the same run: the collector's own InfluxQL queries (collector.influxql.queries,
   sent as its Reader sends them) timed against the server alone, so the report can tell server
   time from collector time; and a plain ``SELECT count(...) ... GROUP BY agent``.
5. Statistics alone (not with ``--summaries``), ``--runs`` times: ``collector.stats.aggregate`` over
   ``Fleet.episode_dataset(--episodes)``; reference: a plain Python loop summing the same
   episodes' durations per region.

    python bench/collector.py [--runs 5] [--agents 1000] [--days 30] [--round-s 300|auto]
    python bench/collector.py --summaries [--runs 3] [--agents 1000] [--days 30]
    python bench/collector.py --summaries --agents 10000 --days 90 --server-dir DIR [--runs 3]
    python bench/collector.py --summaries --agents 10000 --days 90 --server-dir DIR --cold-only \
        --vs REF_TREE --runs 4 --skip-generation

``--server-dir``: influxd's data is kept in DIR, written slice by slice (resumable: a 10,000 x 90
fleet is 22 M rows, about an hour to generate on 2 cores) and reused by later runs, which measure
against the fleet's own window (its start is kept in DIR/fleet.json).

``--vs REF_TREE``: each cold run is paired with one by the collector of another tree (a git
worktree of the commit to compare against), alternating which goes first, on the same server;
the summary gives both trees' medians, their ratios and in how many runs their JSON was
identical byte for byte. ``--cold-only`` leaves out the cache-filling and warm runs and the
server-alone reference queries (a 10,000 x 90 pair of cold runs is about 3 minutes).

``--summaries``: the fleet as agents with ``influx.send = "summaries"`` write it at the default
10 s cadence (bench/summaryfleet.py: one ``hourly`` row per agent-hour, the ``outage`` and
``speedtest`` rows; checked first against tests/hourlyfleet.py on ``--check-agents`` agents), no
calibration, no statistics-alone step; the targets are issue 16's.

The collector runs as ``python -m collector.cli`` of this tree (``sys.executable``, PYTHONPATH
this tree), so a worktree measures its own code.

Results: bench/results/collector-<UTC timestamp>.json and a summary table on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from summaryfleet import SummaryFleet, check  # noqa: E402  (bench/, the script's own directory)

from tests.fleet import Fleet, fleet_start  # noqa: E402
from tests.influxlab import InfluxV1, influx_unavailable  # noqa: E402

COLLECTOR = [sys.executable, "-m", "collector.cli"]
CADENCES = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TARGET_WALL_S, TARGET_RSS_MB, TARGET_STATS_S = 30.0, 500.0, 2.0
# issue 16, on summaries: 1,000 x 30 days cold <= 10 s, warm <= 3 s; 10,000 x 90 days cold <= 60 s,
# peak RSS <= 1 GB
SUMMARY_COLD_S, SUMMARY_COLD_BIG_S, SUMMARY_WARM_S, SUMMARY_RSS_MB = 10.0, 60.0, 3.0, 1024.0


def med(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def vm_hwm(pid: int, key: str = "VmHWM") -> int:
    """VmHWM (peak resident set) of ``pid`` in bytes (``key`` "VmRSS": the resident set now);
    0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree_rss(pid: int) -> int:
    """The resident sets of ``pid`` and its children (the collector's parsing workers), now,
    in bytes."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        kids = []
    return vm_hwm(pid, "VmRSS") + sum(vm_hwm(int(k), "VmRSS") for k in kids)


# -- 1. generation --------------------------------------------------------------------------------
def time_generation(fleet: Fleet, workers: int) -> dict:
    t0 = time.perf_counter()
    points = size = 0
    for chunk in fleet.lines(chunk=20_000, workers=workers):
        points += chunk.count(b"\n")
        size += len(chunk)
    dt = time.perf_counter() - t0
    return {"workers": workers, "seconds": dt, "points": points, "mb": size / 1e6,
            "points_per_s": points / dt}


# -- 2./3. writing ----------------------------------------------------------------------------------
def write(fleet: Fleet, server: InfluxV1, args, agents=None) -> dict:
    st = fleet.write_influx(server.url, server.database, agents=agents, batch_lines=args.batch,
                            threads=args.threads, workers=args.workers)
    st["points_per_s"] = st["points"] / st["seconds"]
    return st


def write_kept(fleet: Fleet, server: InfluxV1, args) -> dict:
    """With ``--server-dir``: write the agents not written yet, ``--slice`` at a time, each
    slice noted in ``progress.jsonl`` beside the server's data once acknowledged (an interrupted
    write goes on where it stopped; a fleet of 10,000 x 90 days is 22 M rows). Returns the sums
    over every slice, whenever written."""
    progress = server.dir / "progress.jsonl"
    done = ([json.loads(ln) for ln in progress.read_text().splitlines() if ln.strip()]
            if progress.exists() else [])
    have = {d["lo"] for d in done}
    for lo in range(0, fleet.n, args.slice):
        if lo in have:
            continue
        st = write(fleet, server, args, agents=range(lo, min(lo + args.slice, fleet.n)))
        st["lo"] = lo
        with progress.open("a") as f:
            f.write(json.dumps(st) + "\n")
        done.append(st)
        print(f"  agents {lo}-{min(lo + args.slice, fleet.n) - 1}: {st['points']:,} points in "
              f"{st['seconds']:.0f} s", flush=True)
    keys = ("points", "bytes", "gzip_bytes", "requests", "seconds", "generate_s")
    out = {k: sum(d[k] for d in done) for k in keys}
    out["points_per_s"] = out["points"] / out["seconds"]
    out["slices"] = len(done)
    return out


def calibrate(args, start: int, tmp: Path) -> dict:
    """Ingest rate of influxd on ``args.calibrate`` agents at 300 s (about 16,000 points each)."""
    sample = Fleet(args.calibrate, args.days, start, round_s=300.0, seed=args.seed)
    with InfluxV1.create(tmp / "influx-calibrate") as server:
        st = write(sample, server, args)
    full = Fleet(args.agents, args.days, start, round_s=300.0, seed=args.seed)
    # points per agent scale with 1/round_s (two rows a round); the rest (outage, speedtest) is small
    per_agent_300 = st["points"] / args.calibrate
    est = {}
    for c in CADENCES:
        pts = per_agent_300 * 300.0 / c * full.n
        est[str(c)] = {"points": pts, "write_s": pts / st["points_per_s"]}
    return {"sample_agents": args.calibrate, "points": st["points"], "seconds": st["seconds"],
            "points_per_s": st["points_per_s"], "estimates": est}


# -- 4. end to end --------------------------------------------------------------------------------
def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M")


def run_collector(cfg: Path, timeout_s: float, cache: str, cache_home: Path,
                  window: tuple[float, float], root: Path = ROOT) -> dict:
    """One ``aggregate`` over the fleet's ``window`` (start, end in seconds) by the collector of
    the tree ``root``. ``cache``: "off" (cold: every query goes to the server) or "use" (warm:
    closed days come from the collector's cache, filled by an earlier run)."""
    argv = [*COLLECTOR, "--config", str(cfg), "aggregate", "--since", _iso(window[0]), "--until",
            _iso(window[1]), "--by", "region,isp", "--format", "json", "--cache", cache]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        p = subprocess.Popen(argv, stdout=out_f, stderr=err_f, cwd=str(root),
                             env={**os.environ, "XDG_CACHE_HOME": str(cache_home),
                                  "PYTHONPATH": str(root)})
        hwm = tree = 0
        deadline = t0 + timeout_s
        while p.poll() is None:
            hwm = max(hwm, vm_hwm(p.pid))
            tree = max(tree, tree_rss(p.pid))
            if time.perf_counter() > deadline:
                p.kill()
                p.wait()
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")
    # peak_tree_rss_mb: the most the collector and its parsing workers held at once (polled)
    res = {"wall_s": wall, "peak_rss_mb": hwm / 2**20, "peak_tree_rss_mb": tree / 2**20,
           "returncode": p.returncode, "tree": str(root),
           "json_sha256": hashlib.sha256(out.encode()).hexdigest()[:12],
           "stderr_tail": err[-3000:]}
    if p.returncode != 0:
        res["error"] = f"exit {p.returncode}" if wall < timeout_s else f"killed after {timeout_s:.0f} s"
        return res
    try:
        doc = json.loads(out)
    except ValueError as exc:
        res["error"] = f"stdout is not JSON: {exc}: {out[:300]!r}"
        return res
    cells = doc if isinstance(doc, list) else doc.get("cells") if isinstance(doc, dict) else None
    res["json_shape"] = ("list" if isinstance(doc, list) else
                         "object with keys " + ", ".join(sorted(doc)) if isinstance(doc, dict)
                         else type(doc).__name__)
    if isinstance(cells, list):
        res["cells"] = len(cells)
        res["cells_suppressed"] = sum(1 for c in cells if isinstance(c, dict) and c.get("suppressed"))
        # a suppressed cell (fewer agents than the publication floor) carries no figures at all
        res["agents_total"] = sum(int(c.get("agents") or 0) for c in cells if isinstance(c, dict))
        published = [c for c in cells if isinstance(c, dict) and not c.get("suppressed")]
        res["cell_keys"] = sorted(published[0])[:80] if published else []
    else:
        res["error"] = "the JSON holds no list of cells"
    return res


def post_query(server: InfluxV1, q: str, params: dict) -> tuple[float, int, int]:
    """(seconds, answer bytes, series) for one /query, read to the end."""
    body = urllib.parse.urlencode({"q": q}).encode()
    url = f"{server.url}/query?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as resp:
        data = resp.read()
    dt = time.perf_counter() - t0
    series = 0
    for line in data.splitlines():
        if line.strip():
            doc = json.loads(line)
            for r in doc.get("results") or []:
                if r.get("error"):
                    raise RuntimeError(f"query failed: {r['error']}: {q[:200]}")
                series += len(r.get("series") or [])
    return dt, len(data), series


def reference_queries(server: InfluxV1, now: float, days: int = 30, summaries: bool = False,
                      old_shapes: bool = True) -> dict:
    """The server alone: the collector's own queries as its Reader sends them (when importable),
    and a plain count grouped by agent (of ``hourly`` rows with ``summaries``)."""
    start = now - days * 86400
    out: dict = {}
    field, meas = ("observed_s", "hourly") if summaries else ("interval_s", "round")
    plain = (f'SELECT count("{field}") FROM "{meas}" WHERE time >= {int(start)}s AND time < {int(now)}s '
             'GROUP BY "agent"')

    dt, size, series = post_query(server, plain, {"db": server.database, "epoch": "s"})
    out["count_by_agent"] = {"seconds": dt, "bytes": size, "series": series}
    try:
        from collector.influxql import queries
    except Exception as exc:  # noqa: BLE001 - another engineer's module, maybe not there yet
        out["collector_queries_error"] = f"{type(exc).__name__}: {exc}"
        return out
    per_kind: dict = {}
    params = {"db": server.database, "epoch": "s", "chunked": "true", "chunk_size": "20000"}
    for kind, q in queries(start, now):
        dt, size, series = post_query(server, q, params)
        k = per_kind.setdefault(kind, {"seconds": 0.0, "bytes": 0, "series": 0, "queries": 0})
        k["seconds"] += dt
        k["bytes"] += size
        k["series"] += series
        k["queries"] += 1
    out["collector_queries"] = per_kind
    out["collector_queries_s"] = sum(k["seconds"] for k in per_kind.values())
    if not old_shapes:
        return out
    if summaries:
        # The latency as read before daily rows: the server's sums of the hourly rows per
        # agent-day, every agent, one query a week (now asked only for agent-days without one).
        from collector.influxql import day_runs, days_of, hourly_latency_query
        t = b = 0
        for a, z in day_runs(days_of(start, now)):
            dt, size, _ = post_query(server, hourly_latency_query(a, z)[1], params)
            t, b = t + dt, b + size
        out["hourly_sums_reference"] = {"seconds": t, "bytes": b}
    # Where the server's time goes: the same ping queries with mean/max instead of percentile().
    t = 0.0
    for kind, q in queries(start, now):
        if kind == "ping":
            q2 = re.sub(r'percentile\(("rtt_avg_ms"), 50\)', r"mean(\1)", q)
            q2 = re.sub(r'percentile\(("rtt_avg_ms"), 95\)', r"max(\1)", q2)
            if q2 != q:
                t += post_query(server, q2, params)[0]
    out["ping_queries_without_percentile_s"] = t
    return out


# -- 5. statistics alone ---------------------------------------------------------------------------
def stats_runs(args) -> dict:
    from collector import stats

    t0 = time.perf_counter()
    ds = Fleet.episode_dataset(args.episodes, agents=args.agents, days=args.days, seed=args.seed)
    build_s = time.perf_counter() - t0
    runs = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        result = stats.aggregate(ds, stats.Settings(), by=("region", "isp"), period="all")
        dt = time.perf_counter() - t0
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        for e in ds.episodes:
            r = e.unit.region
            sums[r] = sums.get(r, 0.0) + e.duration_s
        ref = time.perf_counter() - t0
        cells = result.get("cells") if isinstance(result, dict) else result
        runs.append({"aggregate_s": dt, "reference_s": ref, "ratio": dt / ref,
                     "cells": len(cells) if isinstance(cells, list) else None})
        print(f"  stats run {i + 1}: aggregate {dt:.2f} s, reference loop {ref:.3f} s ({dt / ref:.1f}x)",
              flush=True)
    return {"episodes": len(ds.episodes), "obs_hours": len(ds.obs), "build_s": build_s, "runs": runs,
            "aggregate_s": med([r["aggregate_s"] for r in runs]),
            "reference_s": med([r["reference_s"] for r in runs]),
            "ratio": med([r["ratio"] for r in runs])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--round-s", default="auto",
                    help="round cadence of the fleet, or 'auto': the finest that fits --write-budget-s")
    ap.add_argument("--write-budget-s", type=float, default=300.0)
    ap.add_argument("--calibrate", type=int, default=100, help="agents written to measure the ingest rate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bad", action="store_true", help="include the fleet's bad records")
    ap.add_argument("--workers", type=int, default=2, help="processes generating lines while writing")
    ap.add_argument("--threads", type=int, default=2, help="connections writing to influxd")
    ap.add_argument("--batch", type=int, default=20_000, help="lines per write request")
    ap.add_argument("--episodes", type=int, default=1_000_000)
    ap.add_argument("--collector-timeout-s", type=float, default=600.0)
    ap.add_argument("--skip-generation", action="store_true", help="do not time generation alone")
    ap.add_argument("--summaries", action="store_true",
                    help='the fleet as agents with influx.send = "summaries" write it (10 s rounds)')
    ap.add_argument("--server-dir", default="",
                    help="keep influxd's data here: write only the agents not written yet (resumable, "
                         "--slice agents at a time) and reuse them on later runs")
    ap.add_argument("--slice", type=int, default=250, help="agents per write with --server-dir")
    ap.add_argument("--skip-old-shapes", action="store_true",
                    help="reference: time only the collector's own queries, not the query shapes "
                         "it no longer sends (the hourly sums per agent-day: 11 minutes a run at "
                         "10,000 x 90)")
    ap.add_argument("--vs", default="",
                    help="a reference tree (a git worktree of another commit): each cold run is "
                         "paired with its collector's, alternating which goes first")
    ap.add_argument("--cold-only", action="store_true",
                    help="cold runs only: no cache-filling or warm run, no server-alone reference")
    ap.add_argument("--check-agents", type=int, default=3,
                    help="with --summaries: agents whose fast hourly rows are checked against "
                         "tests/hourlyfleet.py first")
    args = ap.parse_args()
    reason = influx_unavailable()
    if reason:
        sys.exit(reason)

    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                                "kernel": platform.release(), "load_at_start": os.getloadavg()},
                    "args": vars(args)}
    start = fleet_start(args.days)
    kept = Path(args.server_dir) if args.server_dir else None
    if kept is not None:
        # The fleet a kept server holds: its start is the day it was first written.
        marker = kept / "fleet.json"
        want = {"agents": args.agents, "days": args.days, "seed": args.seed,
                "summaries": args.summaries, "round_s": args.round_s}
        if marker.exists():
            held = json.loads(marker.read_text())
            if {k: held.get(k) for k in want} != want:
                sys.exit(f"{kept} holds another fleet ({held}); use another --server-dir")
            start = held["start"]
        else:
            kept.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({**want, "start": start}))
    tmp = Path(tempfile.mkdtemp(prefix="lwbench-collector"))
    try:
        # 2. cadence
        if args.summaries:
            round_s = 10.0 if args.round_s == "auto" else float(args.round_s)
            report["cadence_choice"] = "summaries: the agent's default 10 s, no calibration"
        elif args.round_s == "auto":
            print(f"calibrating influxd's ingest rate on {args.calibrate} agents x {args.days} days "
                  "at 300 s ...", flush=True)
            cal = calibrate(args, start, tmp)
            report["calibration"] = cal
            fits = [c for c in CADENCES if cal["estimates"][str(c)]["write_s"] <= args.write_budget_s]
            round_s = min(fits) if fits else max(CADENCES)
            print(f"  {cal['points_per_s']:,.0f} points/s; estimated write of the whole fleet:", flush=True)
            for c in CADENCES:
                e = cal["estimates"][str(c)]
                print(f"    {c:5.0f} s rounds: {e['points'] / 1e6:7.1f} M points, "
                      f"{e['write_s'] / 60:6.1f} min{'   <- chosen' if c == round_s else ''}", flush=True)
            report["cadence_choice"] = (f"finest of {list(CADENCES)} whose estimated write fits "
                                        f"{args.write_budget_s:.0f} s at the measured rate")
        else:
            round_s = float(args.round_s)
            report["cadence_choice"] = "given on the command line"
        report["round_s"] = round_s
        if args.summaries:
            fleet = SummaryFleet(args.agents, args.days, start, round_s=round_s, seed=args.seed)
            if args.check_agents:
                t0 = time.perf_counter()
                chk = check(fleet, args.check_agents)
                chk["seconds"] = time.perf_counter() - t0
                report["summary_rows_check"] = chk
                print(f"hourly and daily rows of {chk['agents']} agents against tests/hourlyfleet.py: "
                      f"{chk['rows']:,} hourly and {chk['daily_rows']:,} daily rows, "
                      f"{chk['n_mismatches']} mismatches", flush=True)
                if chk["n_mismatches"]:
                    print("\n".join(chk["mismatches"]), flush=True)
                    sys.exit("the fast hourly rows are not summarise's")
        else:
            fleet = Fleet(args.agents, args.days, start, round_s=round_s, seed=args.seed, bad=args.bad)
        units = fleet.units()
        expected_cells = len({(u.region, u.isp) for u in units})
        report["fleet"] = {"agents": fleet.n, "days": fleet.days, "start": fleet.start, "end": fleet.end,
                           "round_s": round_s, "expected_cells": expected_cells,
                           "send": "summaries" if args.summaries else "all"}

        # 1. generation alone
        if not args.skip_generation:
            report["generation"] = []
            for w in sorted({1, args.workers}):
                g = time_generation(fleet, w)
                report["generation"].append(g)
                print(f"generation, {w} process(es): {g['points']:,} lines ({g['mb']:,.0f} MB) in "
                      f"{g['seconds']:.1f} s = {g['points_per_s']:,.0f} lines/s", flush=True)

        # 3. write
        # a kept 10,000 x 90 server opens its shards for a minute or more before it answers
        server = InfluxV1.create(kept if kept is not None else tmp / "influx",
                                 timeout_s=600 if kept is not None else 20)
        try:
            print(f"writing {fleet.n} agents x {fleet.days} days at {round_s:g} s rounds to influxd 1.6.7 "
                  f"({args.threads} connections, {args.workers} generating processes) ...", flush=True)
            w = write_kept(fleet, server, args) if kept is not None else write(fleet, server, args)
            w["data_dir_bytes"] = dir_bytes(server.dir / "data")
            w["wal_dir_bytes"] = dir_bytes(server.dir / "wal")
            w["load_after"] = os.getloadavg()
            agent_months = fleet.n * fleet.days / 30
            w["bytes_per_agent_month"] = (w["data_dir_bytes"] + w["wal_dir_bytes"]) / agent_months
            report["write"] = w
            print(f"  {w['points']:,} points in {w['seconds']:.1f} s = {w['points_per_s']:,.0f} points/s "
                  f"(generation inside: {w['generate_s']:.1f} s); data {w['data_dir_bytes'] / 1e6:,.0f} MB, "
                  f"WAL {w['wal_dir_bytes'] / 1e6:,.0f} MB ({w['bytes_per_agent_month'] / 1e3:,.0f} kB "
                  f"per agent-month); {w['gzip_bytes'] / 1e6:,.0f} MB sent gzipped",
                  flush=True)

            # 4. end to end
            cfg = tmp / "collector.toml"
            # influx.timeout_s (default 10 s, the write timeout) is also the query connection's
            # socket timeout: a weekly hourly query that takes longer to its first byte failed a
            # cold run (2026-12-06); the bench raises it to the most the key allows (300 s).
            cfg.write_text(f'[influx]\nurl = "{server.url}"\ndatabase = "{server.database}"\n'
                           f'timeout_s = {min(300.0, args.collector_timeout_s):g}\n\n[collector]\n')
            e2e = []
            days, summ = fleet.days, args.summaries
            window = (float(fleet.start), float(fleet.start + days * 86400))
            cache_home = tmp / "cache"
            warm, paired, paired_warm = [], [], []
            vs = Path(args.vs).resolve() if args.vs else None
            if not args.cold_only:
                first = run_collector(cfg, args.collector_timeout_s, "use", cache_home, window)
                if vs is not None:      # the reference tree fills a cache of its own
                    run_collector(cfg, args.collector_timeout_s, "use", tmp / "cache-vs", window, vs)
                report["first_run_filling_cache"] = first
                print(f"  first run (fills the cache): {first['wall_s']:.1f} s, "
                      f"peak {first['peak_rss_mb']:.0f} MB", flush=True)
            for i in range(args.runs):
                # alternate which goes first, so neither always meets a warm server cache
                ref = None
                if i % 2 == 0 and not args.cold_only:
                    ref = reference_queries(server, window[1], days, summ, not args.skip_old_shapes)
                if vs is not None and i % 2 == 1:
                    paired.append(run_collector(cfg, args.collector_timeout_s, "off", cache_home,
                                                window, vs))
                r = run_collector(cfg, args.collector_timeout_s, "off", cache_home, window)
                if vs is not None and i % 2 == 0:
                    paired.append(run_collector(cfg, args.collector_timeout_s, "off", cache_home,
                                                window, vs))
                if i % 2 == 1 and not args.cold_only:
                    ref = reference_queries(server, window[1], days, summ, not args.skip_old_shapes)
                if ref is not None:
                    r["reference"] = ref
                e2e.append(r)
                srv = ref.get("collector_queries_s") if ref else None
                print(f"  run {i + 1}: cold (no cache) {r['wall_s']:.1f} s, "
                      f"peak {r['peak_rss_mb']:.0f} MB (with its workers {r['peak_tree_rss_mb']:.0f} MB), "
                      f"cells {r.get('cells')}, agents {r.get('agents_total')}, "
                      f"{r.get('cells_suppressed')} cells suppressed"
                      + (f"; server alone: its queries {srv if srv is None else round(srv, 1)} s, "
                         f"count by agent {ref['count_by_agent']['seconds']:.2f} s" if ref else "")
                      + (f"  ERROR {r['error']}" if "error" in r else ""), flush=True)
                if vs is not None:
                    v = paired[-1]
                    same = v.get("json_sha256") == r.get("json_sha256")
                    print(f"         {vs.name}: cold {v['wall_s']:.1f} s, peak {v['peak_rss_mb']:.0f} MB; "
                          f"JSON {'identical' if same else 'DIFFERENT'}"
                          + (f"  ERROR {v['error']}" if "error" in v else ""), flush=True)
                if "error" in r:
                    print(r["stderr_tail"], flush=True)
                    break
                if args.cold_only:
                    continue
                if vs is not None and i % 2 == 1:       # the warm runs alternate too
                    paired_warm.append(run_collector(cfg, args.collector_timeout_s, "use",
                                                     tmp / "cache-vs", window, vs))
                w = run_collector(cfg, args.collector_timeout_s, "use", cache_home, window)
                warm.append(w)
                if vs is not None and i % 2 == 0:
                    paired_warm.append(run_collector(cfg, args.collector_timeout_s, "use",
                                                     tmp / "cache-vs", window, vs))
                print(f"  run {i + 1}: warm (closed days from the cache) {w['wall_s']:.1f} s, "
                      f"peak {w['peak_rss_mb']:.0f} MB"
                      + (f"  ERROR {w['error']}" if "error" in w else ""), flush=True)
                if vs is not None:
                    v = paired_warm[-1]
                    same = v.get("json_sha256") == w.get("json_sha256")
                    print(f"         {vs.name}: warm {v['wall_s']:.1f} s, peak {v['peak_rss_mb']:.0f} MB; "
                          f"JSON {'identical' if same else 'DIFFERENT'}", flush=True)
            if vs is not None:
                report["end_to_end_vs"] = {"tree": str(vs), "runs": paired, "warm": paired_warm}
            report["end_to_end_warm"] = warm
            report["end_to_end"] = e2e
            after = {"data_dir_bytes": dir_bytes(server.dir / "data"),
                     "wal_dir_bytes": dir_bytes(server.dir / "wal")}
            after["bytes_per_agent_month"] = sum(after.values()) / agent_months
            report["server_size_after_runs"] = after
        finally:
            server.close()

        # 5. statistics alone (not with summaries: the same step as without)
        try:
            if not args.summaries:
                print(f"statistics alone: {args.episodes:,} episodes ...", flush=True)
                report["stats"] = stats_runs(args)
        except Exception:  # noqa: BLE001 - another engineer's module: report, do not hide
            report["stats_error"] = traceback.format_exc()
            print(report["stats_error"], flush=True)

        summarise(report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = out / f"collector-{stamp}.json"
        path.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nresults: {path}")


def summarise(report: dict) -> None:
    ok = [r for r in report.get("end_to_end", []) if "error" not in r]
    rows = []
    cold_t, warm_t, rss_t = TARGET_WALL_S, TARGET_WALL_S, TARGET_RSS_MB
    if report["fleet"].get("send") == "summaries":
        big = report["fleet"]["agents"] > 1000 or report["fleet"]["days"] > 30
        cold_t = SUMMARY_COLD_BIG_S if big else SUMMARY_COLD_S
        warm_t, rss_t = SUMMARY_WARM_S, SUMMARY_RSS_MB
    if ok:
        wall = med([r["wall_s"] for r in ok])
        rss = med([r["peak_rss_mb"] for r in ok])
        refs = [r.get("reference") for r in ok]
        srv = [x.get("collector_queries_s") if x else None for x in refs]
        cnt = med([x["count_by_agent"]["seconds"] for x in refs if x]) if any(refs) else None
        report["summary"] = {"collector_wall_s": wall, "collector_peak_rss_mb": rss,
                             "collector_peak_tree_rss_mb": med([r["peak_tree_rss_mb"] for r in ok]),
                             "count_by_agent_s": cnt}
        rows.append(("aggregate, cold (--cache off), wall", f"{wall['median']:.1f} s",
                     f"{wall['min']:.1f}-{wall['max']:.1f}", f"<= {cold_t:.0f} s"))
        rows.append(("aggregate, cold, peak RSS", f"{rss['median']:.0f} MB",
                     f"{rss['min']:.0f}-{rss['max']:.0f}", f"<= {rss_t:.0f} MB"))
        warm = [r for r in report.get("end_to_end_warm", []) if "error" not in r]
        if warm:
            ww, wr = med([r["wall_s"] for r in warm]), med([r["peak_rss_mb"] for r in warm])
            report["summary"]["warm_wall_s"], report["summary"]["warm_peak_rss_mb"] = ww, wr
            rows.append(("aggregate, warm (closed days cached), wall", f"{ww['median']:.1f} s",
                         f"{ww['min']:.1f}-{ww['max']:.1f}", f"<= {warm_t:.0f} s"))
            rows.append(("aggregate, warm, peak RSS", f"{wr['median']:.0f} MB",
                         f"{wr['min']:.0f}-{wr['max']:.0f}", f"<= {rss_t:.0f} MB"))
        vs = report.get("end_to_end_vs")
        if vs:
            v_ok = [r for r in vs["runs"] if "error" not in r]
            if v_ok:
                vw, vr = med([r["wall_s"] for r in v_ok]), med([r["peak_rss_mb"] for r in v_ok])
                same = sum(a.get("json_sha256") == b.get("json_sha256") for a, b in zip(ok, v_ok))
                report["summary"]["vs"] = {"tree": vs["tree"], "wall_s": vw, "peak_rss_mb": vr,
                                           "wall_ratio": wall["median"] / vw["median"],
                                           "rss_ratio": rss["median"] / vr["median"],
                                           "json_identical_runs": same}
                name = Path(vs["tree"]).name
                rows.append((f"  paired: {name}, cold, wall", f"{vw['median']:.1f} s",
                             f"{vw['min']:.1f}-{vw['max']:.1f}",
                             f"this tree {wall['median'] / vw['median']:.2f}x"))
                rows.append((f"  paired: {name}, cold, peak RSS", f"{vr['median']:.0f} MB",
                             f"{vr['min']:.0f}-{vr['max']:.0f}",
                             f"this tree {rss['median'] / vr['median']:.2f}x"))
                rows.append(("  paired: JSON identical, runs", f"{same} of {min(len(ok), len(v_ok))}",
                             "", ""))
                warm_ok = [r for r in report.get("end_to_end_warm", []) if "error" not in r]
                vw_ok = [r for r in vs.get("warm", []) if "error" not in r]
                if warm_ok and vw_ok:
                    a, b = med([r["wall_s"] for r in warm_ok]), med([r["wall_s"] for r in vw_ok])
                    report["summary"]["vs"]["warm_wall_s"] = b
                    report["summary"]["vs"]["warm_wall_ratio"] = a["median"] / b["median"]
                    rows.append((f"  paired: {name}, warm, wall", f"{b['median']:.2f} s",
                                 f"{b['min']:.2f}-{b['max']:.2f}",
                                 f"this tree {a['median'] / b['median']:.2f}x"))
        if srv and None not in srv:
            s = med(srv)
            report["summary"]["server_queries_s"] = s
            rows.append(("  reference: its queries, server alone", f"{s['median']:.1f} s",
                         f"{s['min']:.1f}-{s['max']:.1f}", ""))
            for kind in ("dday", "hobs", "dping", "hping", "obs", "ping", "episode", "speed"):
                v = [r["reference"]["collector_queries"].get(kind, {}).get("seconds", 0.0) for r in ok]
                m = med(v)
                report["summary"][f"server_{kind}_queries_s"] = m
                rows.append((f"    of which {kind} queries", f"{m['median']:.1f} s",
                             f"{m['min']:.1f}-{m['max']:.1f}", ""))
            if all("hourly_sums_reference" in r["reference"] for r in ok):
                m = med([r["reference"]["hourly_sums_reference"]["seconds"] for r in ok])
                report["summary"]["server_hourly_sums_reference_s"] = m
                rows.append(("  reference: the old hourly sums per agent-day", f"{m['median']:.1f} s",
                             f"{m['min']:.1f}-{m['max']:.1f}", ""))
            if all("ping_queries_without_percentile_s" in r["reference"] for r in ok):
                v = med([r["reference"]["ping_queries_without_percentile_s"] for r in ok])
                report["summary"]["server_ping_without_percentile_s"] = v
                rows.append(("    ping queries, mean/max for percentile()", f"{v['median']:.1f} s",
                             f"{v['min']:.1f}-{v['max']:.1f}", ""))
        if cnt:
            rows.append(("  reference: count by agent", f"{cnt['median']:.2f} s",
                         f"{cnt['min']:.2f}-{cnt['max']:.2f}", ""))
        rows.append(("cells (suppressed) / agents in published cells",
                     f"{ok[0].get('cells')} ({ok[0].get('cells_suppressed')}) / {ok[0].get('agents_total')}",
                     "",
                     f"{report['fleet']['expected_cells']} region x ISP pairs / {report['fleet']['agents']}"))
    st = report.get("stats")
    if st:
        a, r = st["aggregate_s"], st["reference_s"]
        report.setdefault("summary", {})["stats_s"] = a
        rows.append((f"stats.aggregate, {st['episodes']:,} episodes", f"{a['median']:.2f} s",
                     f"{a['min']:.2f}-{a['max']:.2f}", f"<= {TARGET_STATS_S:.0f} s"))
        rows.append(("  reference: sum per region, plain loop", f"{r['median']:.3f} s",
                     f"{r['min']:.3f}-{r['max']:.3f}", f"ratio {st['ratio']['median']:.1f}x"))
    w = report.get("write")
    print("\nsummary" + (f" ({len(ok)} runs)" if ok else ""))
    if w:
        print(f"  write: {w['points']:,} points at {report['round_s']:g} s rounds in {w['seconds']:.0f} s "
              f"({w['points_per_s']:,.0f} points/s); influxd data {w['data_dir_bytes'] / 1e6:,.0f} MB + WAL "
              f"{w['wal_dir_bytes'] / 1e6:,.0f} MB = {w['bytes_per_agent_month'] / 1e3:,.0f} kB per "
              "agent-month")
    for name, m, rng, tgt in rows:
        print(f"  {name:44s} {m:>14s}  {rng:>13s}  {tgt}")


if __name__ == "__main__":
    main()
