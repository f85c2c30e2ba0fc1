#!/usr/bin/env python3
"""The worker's line report over a year of one agent's data (``linewatch report --since 365d``
reads agent.report.line.summarise): seconds per report, median of several runs.

The store: a year of hourly summaries as the agent keeps them (kit.hourly.summarise over a
simulated hour: 360 rounds at the default 10 s, two internet targets with log-normal RTTs, so
each row's histogram is as wide as a real line's), 300 connectivity outages and 200 power cuts
over the year, and the last 7 days of raw rows at the default cadence (retention keeps 90 days
by default; older raw rows are gone, which is why a year needs the summaries). Reference in the
same run: the 7 raw days reported from the raw rows (the short-window path), and the year read
through the raw path where raw rows exist (what the report cost before, per day of raw rows).

    python3 bench/line_report.py --runs 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.model import Episode, Sample
from agent.report import line
from agent.store import Store
from kit import hourly

DAY0 = datetime(2025, 12, 1, tzinfo=UTC)
DAYS, RAW_DAYS = 365, 7


def build(path: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    store = Store.open(path)
    tags = {"agent": "a1b2c3d4e5f6", "site": "a1b2c3d4e5f6", "region": "PK-PB", "isp": "PTCL"}
    batch = []
    for h in range(DAYS * 24):
        t = DAY0 + timedelta(hours=h)
        pings = [{"sent": 3, "received": 3, "loss_pct": 0.0,
                  "rtt_avg_ms": 45 * rng.lognormvariate(0, 0.35)} for _ in range(720)]
        rounds = [{"status": "up", "interval_s": 10.0}] * 360
        f = hourly.summarise(int(t.timestamp()), rounds=rounds, pings=pings,
                             dns=[{"success": True}] * 360, now=t.timestamp() + 3600)
        batch.append(Sample("hourly", tags, f, t))
    store.write(batch)
    raw = []
    r0 = DAY0 + timedelta(days=DAYS - RAW_DAYS)
    for i in range(RAW_DAYS * 8640):
        t = r0 + timedelta(seconds=10 * i)
        raw.append(Sample("round", tags, {"status": "up", "interval_s": 10.0, "online": 1}, t))
        for target in ("1.1.1.1", "8.8.8.8"):
            raw.append(Sample("ping", {**tags, "target": target, "role": "internet",
                                       "method": "icmp_dgram"},
                              {"sent": 3, "received": 3, "loss_pct": 0.0,
                               "rtt_avg_ms": 45 * rng.lognormvariate(0, 0.35)}, t))
        if len(raw) > 50_000:
            store.write(raw)
            raw = []
    store.write(raw)
    eps = []
    for i in range(300):
        a = DAY0 + timedelta(seconds=rng.uniform(0, DAYS * 86400 - 7200))
        d = rng.uniform(60, 5400)
        eps.append(Episode(f"connectivity:{i}", "connectivity", "isp", a, a + timedelta(seconds=d),
                           d, d > 300))
    for i in range(200):
        a = DAY0 + timedelta(seconds=rng.uniform(0, DAYS * 86400 - 7200))
        d = rng.uniform(600, 7200)
        eps.append(Episode(f"power:{i}", "power", "ac_lost", a, a + timedelta(seconds=d), d, True,
                           {"source": "ups"}))
    store.write(episodes=eps)
    store.close()


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build(Path(tmp))
        built = time.perf_counter() - t0
        db = Path(tmp) / "linewatch.db"
        end = (DAY0 + timedelta(days=DAYS)).timestamp()
        year = timed(lambda: line.summarise(db, end - DAYS * 86400, end, end), args.runs)
        week = timed(lambda: line.summarise(db, end - RAW_DAYS * 86400, end, end), args.runs)
        got = line.summarise(db, end - DAYS * 86400, end, end)
        assert got["read_from"] == "hourly" and len(got["daily"]) >= DAYS
        print(f"store built in {built:.1f} s ({db.stat().st_size / 1e6:.0f} MB)")
        print(f"| window | path | seconds (median of {args.runs}) | runs |")
        print("|---|---|---|---|")
        for name, path, xs in (("365 days", "hourly summaries", year),
                               ("7 days", "raw rows (reference)", week)):
            print(f"| {name} | {path} | **{statistics.median(xs):.3f}** | "
                  f"{' / '.join(f'{x:.3f}' for x in xs)} |")
        print(f"raw path per day of raw rows: {statistics.median(week) / RAW_DAYS:.3f} s "
              f"(a year of raw rows at that rate: {statistics.median(week) / RAW_DAYS * DAYS:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
