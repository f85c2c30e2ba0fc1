"""The collector on hourly summaries against the collector on the raw rows of the same fleet.

One synthetic fleet (tests/fleet.py) at the agent's default 10 s cadence, small enough to write
raw (``--agents`` x ``--days``, 40 x 14 by default), into two databases of one influxd 1.6.7
(tests.influxlab.InfluxV1):

``raw``        every row the agents write (``round``, ``ping``, ``outage``, ``speedtest``): agents
               without summaries, which the collector reads from raw rows;
``summaries``  what agents with ``influx.send = "summaries"`` send: the ``hourly`` rows made by
               :func:`kit.hourly.summarise` from those very raw rows (tests/hourlyfleet.py), the
               ``daily`` rows merged from them, the ``outage`` and ``speedtest`` rows.

``python -m collector.cli aggregate`` of this tree runs on each (``--cache off``, the fleet's
whole days as the window, ``collector.min_agents = 1`` so no cell is suppressed), for several
cell splits (``--splits``), and every published cell's figures are compared: availability,
outage minutes, SAIDI, SAIFI, CAIDI, MAIFI (and every other figure that is not a latency one) must
be exact (the max absolute difference is reported); RTT p50/p95 within 2 % (the max relative
difference is reported).

    python bench/accuracy_summaries.py [--agents 40] [--days 14] [--seed 1]

Results: bench/results/accuracy-summaries-<UTC timestamp>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.jobs.context import episode_sample  # noqa: E402
from kit import lineproto  # noqa: E402
from tests.fleet import Fleet, fleet_start  # noqa: E402
from tests.hourlyfleet import daily_samples, hourly_samples, lines, write_influx  # noqa: E402
from tests.influxlab import InfluxV1, influx_unavailable  # noqa: E402

EXACT = ("internet_availability", "internet_outage_min_per_agent", "power_saidi_min", "power_saifi",
         "power_caidi_min", "power_maifi")
LATENCY = ("rtt_p50_ms", "rtt_p95_ms")
LATENCY_TARGET = 0.02
SPLITS = {"region,isp/all": ("region,isp", "all"), "region/day": ("region", "day"),
          "region,isp,city,access/all": ("region,isp,city,access", "all")}


def summary_lines(fleet: Fleet) -> tuple[bytes, dict]:
    """What the fleet's agents send with influx.send = "summaries", and the row counts."""
    out, n = [], {"hourly": 0, "daily": 0, "outage": 0, "speedtest": 0}
    for i in range(fleet.n):
        hs = hourly_samples(fleet, i)
        ds = daily_samples(hs)
        n["hourly"] += len(hs)
        n["daily"] += len(ds)
        out.append(lines(hs + ds))
        tags = fleet.specs[i].tags
        extra = [episode_sample(e, tags) for e in fleet.episodes(i)]
        extra += [s for s in fleet.samples(i) if s.measurement == "speedtest"]
        n["outage"] += sum(1 for s in extra if s.measurement == "outage")
        n["speedtest"] += sum(1 for s in extra if s.measurement == "speedtest")
        # with their own nanoseconds (hourlyfleet.lines stamps whole seconds: right for an hour)
        out.append(b"".join((lineproto.line(s.measurement, s.tags, s.fields, s.time_ns) + "\n").encode()
                            for s in extra))
    return b"".join(out), n


def aggregate(cfg: Path, since: str, until: str, by: str, period: str) -> list[dict]:
    argv = [sys.executable, "-m", "collector.cli", "--config", str(cfg), "aggregate", "--since", since,
            "--until", until, "--by", by, "--period", period, "--format", "json", "--cache", "off"]
    p = subprocess.run(argv, capture_output=True, text=True, cwd=str(ROOT), timeout=1800,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr[-2000:]}")
    doc = json.loads(p.stdout)
    return doc if isinstance(doc, list) else doc["cells"]


def cell_key(c: dict, by: str) -> tuple:
    return tuple(str(c.get(k)) for k in by.split(",")) + (str(c.get("period_start") or ""),)


def value(v):
    """A figure's value: a number, or the point estimate of a figure given with an interval."""
    if isinstance(v, dict):
        for k in ("value", "estimate", "point"):
            if k in v:
                return v[k]
    return v


def compare(raw: list[dict], summ: list[dict], by: str) -> dict:
    a = {cell_key(c, by): c for c in raw}
    b = {cell_key(c, by): c for c in summ}
    out: dict = {"cells_raw": len(a), "cells_summaries": len(b),
                 "cells_only_one_side": sorted(map(str, set(a) ^ set(b)))[:10], "figures": {}}
    for key in sorted(set(a) & set(b)):
        ca, cb = a[key], b[key]
        for name in sorted(set(ca) | set(cb)):
            va, vb = value(ca.get(name)), value(cb.get(name))
            f = out["figures"].setdefault(name, {"cells": 0, "max_abs": 0.0, "max_rel": 0.0,
                                                 "differ": 0, "worst": None, "unlike": 0})
            if isinstance(va, bool) or isinstance(vb, bool) or not (
                    isinstance(va, (int, float)) and isinstance(vb, (int, float))):
                if va != vb:
                    f["unlike"] += 1
                    f["worst"] = f["worst"] or [str(key), repr(va)[:80], repr(vb)[:80]]
                continue
            f["cells"] += 1
            if math.isnan(va) and math.isnan(vb):
                continue
            d = abs(va - vb)
            rel = d / abs(va) if va else (0.0 if d == 0 else math.inf)
            if d:
                f["differ"] += 1
            if d > f["max_abs"]:
                f["max_abs"], f["worst"] = d, [str(key), va, vb]
            f["max_rel"] = max(f["max_rel"], rel)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=40)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--round-s", type=float, default=10.0)
    args = ap.parse_args()
    reason = influx_unavailable()
    if reason:
        sys.exit(reason)
    start = fleet_start(args.days)
    fleet = Fleet(args.agents, args.days, start, round_s=args.round_s, seed=args.seed)
    since = datetime.fromtimestamp(fleet.start, UTC).strftime("%Y-%m-%d")
    until = datetime.fromtimestamp(fleet.end, UTC).strftime("%Y-%m-%d")
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "args": vars(args),
                    "window": [since, until], "splits": {}}
    with tempfile.TemporaryDirectory(prefix="lwbench-accsum") as tmp_s:
        tmp = Path(tmp_s)
        with InfluxV1.create(tmp / "influx", database="raw") as server:
            t0 = time.perf_counter()
            st = fleet.write_influx(server.url, "raw", threads=2, workers=2)
            report["raw_write"] = {"points": st["points"], "seconds": time.perf_counter() - t0}
            print(f"raw: {st['points']:,} rows written", flush=True)
            server.query('CREATE DATABASE "summaries"', db="")
            t0 = time.perf_counter()
            body, counts = summary_lines(fleet)
            gen = time.perf_counter() - t0
            write_influx(server.url, "summaries", body)
            report["summaries_write"] = {**counts, "generate_s": gen}
            print(f"summaries: {counts} written (summarise over the raw rows: {gen:.0f} s)", flush=True)
            cfgs = {}
            for db in ("raw", "summaries"):
                cfgs[db] = tmp / f"{db}.toml"
                cfgs[db].write_text(f'[influx]\nurl = "{server.url}"\ndatabase = "{db}"\n\n'
                                    "[collector]\nmin_agents = 1\n")
            for name, (by, period) in SPLITS.items():
                t0 = time.perf_counter()
                raw = aggregate(cfgs["raw"], since, until, by, period)
                t_raw = time.perf_counter() - t0
                t0 = time.perf_counter()
                summ = aggregate(cfgs["summaries"], since, until, by, period)
                t_summ = time.perf_counter() - t0
                cmp = compare(raw, summ, by)
                cmp["seconds"] = {"raw": t_raw, "summaries": t_summ}
                report["splits"][name] = cmp
                print(f"\n{name}: {cmp['cells_raw']} cells from raw rows ({t_raw:.1f} s), "
                      f"{cmp['cells_summaries']} from summaries ({t_summ:.1f} s)", flush=True)
                for fig in EXACT + LATENCY:
                    f = cmp["figures"].get(fig)
                    if f is None:
                        print(f"  {fig:32s} absent", flush=True)
                        continue
                    tgt = (f"<= {LATENCY_TARGET:.0%} rel" if fig in LATENCY else "exact")
                    print(f"  {fig:32s} cells {f['cells']:4d}  differ {f['differ']:4d}  "
                          f"max abs {f['max_abs']:.3g}  max rel {f['max_rel']:.3g}  ({tgt})", flush=True)
                others = {k: v for k, v in cmp["figures"].items() if k not in EXACT + LATENCY
                          and (v["differ"] or v["unlike"])}
                for k, v in sorted(others.items()):
                    print(f"  other: {k:25s} differ {v['differ']} unlike {v['unlike']} max abs "
                          f"{v['max_abs']:.3g} max rel {v['max_rel']:.3g} e.g. {v['worst']}", flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"accuracy-summaries-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
