#!/usr/bin/env python3
"""Local store growth per day at the default cadence, and the agent's CPU time per round spent
outside the network (classification, outage tracking, the SQLite transaction).

Writes simulated days of rounds through the real agent code (the round and self-metrics jobs, the real
store, echo statistics from agent.probes.stats) with a fake clock and fake probes that return
realistic RTTs, so a day takes seconds instead of 24 hours. Reference in the same run: the same
samples as compact line protocol text (what the InfluxDB sink will send), to show the store's
overhead. Medians over several runs.

    python3 bench/store_growth.py --days 1 --runs 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.clock import FakeClock  # noqa: E402
from agent.config import parse  # noqa: E402
from agent.model import Sample, from_ns  # noqa: E402
from agent.probes.contract import Network  # noqa: E402
from agent.probes.stats import echo_stats  # noqa: E402
from agent.runner import Agent  # noqa: E402


def fake_probes(rng: random.Random) -> Network:
    def echo(target, *, count, timeout_s, clock):
        base = 2.0 if str(target).startswith("192.168.") else 35.0
        rtts = [None if rng.random() < 0.01 else base + rng.expovariate(1 / 4.0) for _ in range(count)]
        return Sample("ping", {"target": str(target), "method": "icmp_dgram"}, echo_stats(count, rtts),
                      clock.now())

    def dns(name, *, servers, timeout_s, clock):
        return Sample("dns", {"name": name, "server": servers[0]},
                      {"success": True, "rtt_ms": 20 + rng.expovariate(1 / 10.0), "rcode": 0, "answers": 4},
                      clock.now())

    return Network(echo=echo, dns=dns, gateway=lambda: "192.168.1.1", dns_servers=lambda: ["192.168.1.1"])


def line_bytes(s: Sample) -> int:
    tags = ",".join(f"{k}={v}" for k, v in sorted(s.tags.items()))
    fields = ",".join(f"{k}={v}" for k, v in s.fields.items())
    return len(f"{s.measurement},{tags} {fields} {s.time_ns}\n".encode())


def one(days: float, seed: int) -> dict:
    d = tempfile.mkdtemp(prefix="lwgrowth")
    cfg = parse(f'[agent]\nstate_dir = "{d}"\n'
                'region = "PK-PB"\ncity = "Lahore"\nisp = "PTCL"\naccess = "dsl"\n')
    clock = FakeClock()
    agent = Agent(cfg, clock=clock, probes=fake_probes(random.Random(seed)))
    rounds = int(days * 86400 / cfg.probe.interval_s)
    cpu0 = time.process_time()
    for i in range(rounds):
        agent.rounds.run()
        clock.advance(cfg.probe.interval_s)
        if i % 6 == 0:
            agent.selfmetrics.run()
    cpu = time.process_time() - cpu0
    agent.store._query("PRAGMA wal_checkpoint(TRUNCATE)")
    used = agent.store.size_bytes()
    lp = sum(line_bytes(Sample(m, json.loads(t), json.loads(f), from_ns(ns)))
             for _, _, m, t, f, ns in agent.store.outbox(limit=10**9))
    agent.store.close()
    return {"store_mb_per_day": used / days / 1e6, "line_protocol_mb_per_day": lp / days / 1e6,
            "cpu_ms_per_round": 1000 * cpu / rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = [one(args.days, seed) for seed in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    cap_days = 1024 / med["store_mb_per_day"]
    print(f"store growth: {args.runs} runs x {args.days:g} simulated day(s) at the default cadence")
    for i, r in enumerate(runs):
        print(f"  run {i}: store {r['store_mb_per_day']:.2f} MB/day, "
              f"line protocol {r['line_protocol_mb_per_day']:.2f}"
              f" MB/day, {r['cpu_ms_per_round']:.2f} ms CPU per round (store + logic)")
    ratio = med["store_mb_per_day"] / med["line_protocol_mb_per_day"]
    print(f"median: {med['store_mb_per_day']:.2f} MB/day in the store ({ratio:.2f}x"
          f" the same data as line protocol); 90 days = {90 * med['store_mb_per_day']:.0f} MB;"
          f" the default 1024 MB cap holds {cap_days:.0f} days; "
          f"{med['cpu_ms_per_round']:.2f} ms CPU per round")
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / "store_growth.json").write_text(json.dumps({"runs": runs, "median": med}, indent=2))


if __name__ == "__main__":
    main()
