#!/usr/bin/env python3
"""Power-cut detection latency: from a sensor flip to the recorded start, and from the flip back to
the recorded end. Target (issue #3): at most one poll interval (power.poll_s, default 5 s).

The real agent (`linewatch run`, default poll_s = 5 s) watches:

* battery: a prepared sysfs tree whose AC `online` file the script flips;
* ups: a real NUT server (upsd + dummy-ups, tests/nutlab.py) whose state file the script flips.
  Two figures: from the moment upsd serves the new status (found by polling upsd every 50 ms:
  the agent's own latency, which the target is about) and from the file write (end to end,
  including dummy-ups noticing its file: it compares modification times in whole seconds and
  re-reads at most once a second, about 0.6 s on average; a real UPS driver polls its hardware
  every couple of seconds too).

Flips happen at random moments relative to the agent's poll schedule; each episode lasts 8-14 s.
Latency = recorded time - flip time (the recorded start/end is the time of the poll that saw the
change). Reported: median and maximum over all flips, per source, and the poll interval as the
reference. Probes only touch 127.0.0.1.

    python3 bench/power_latency.py --flips 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLL_S = 5.0


def now() -> datetime:
    return datetime.now(UTC)


def run_agent(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config),
                             "--log-level", "warning"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def episodes(config: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "agent", "outages", "--type", "power", "--json",
                          "--since", "1d", "--config", str(config)],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def base_config(tmp: Path, extra: str) -> Path:
    cfg = tmp / "config.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp / "state"}"\nsysfs = "{tmp / "sys"}"\n'
                   '[probe]\ngateway = "off"\ntargets = ["127.0.0.1:9"]\ndns_names = []\n'
                   '[speedtest]\nenabled = false\n[services]\nurls = []\n'
                   f'[power]\npoll_s = {POLL_S}\n{extra}')
    return cfg


def measure(flip_on, flip_off, config: Path, flips: int, rng: random.Random,
            served: list | None = None) -> list[tuple[float, float]]:
    """Latencies (start, end) per flip, from the flip. ``flip_on``/``flip_off`` may return the
    moment the sensor served the change; those moments are appended to ``served`` and latencies
    from them are returned there too (as a list of (start, end))."""
    agent = run_agent(config)
    marks, seen = [], []
    try:
        time.sleep(POLL_S + 1)
        for _ in range(flips):
            time.sleep(rng.uniform(0, POLL_S))          # a random phase against the poll schedule
            t_on = now()
            s_on = flip_on()
            time.sleep(rng.uniform(8, 14))
            t_off = now()
            s_off = flip_off()
            time.sleep(POLL_S + 2)
            marks.append((t_on, t_off))
            seen.append((s_on, s_off))
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    eps = sorted(episodes(config), key=lambda e: e["start"])
    if len(eps) != len(marks):
        raise RuntimeError(f"expected {len(marks)} episodes, got {len(eps)}: {eps}")
    out = []
    for (t_on, t_off), (s_on, s_off), e in zip(marks, seen, eps):
        start = datetime.fromisoformat(e["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(e["end"].replace("Z", "+00:00"))
        out.append(((start - t_on).total_seconds(), (end - t_off).total_seconds()))
        if served is not None and s_on and s_off:
            served.append(((start - s_on).total_seconds(), (end - s_off).total_seconds()))
    return out


def battery(flips: int, rng: random.Random) -> list[tuple[float, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="lwlat"))
    from tests.hosttree import power_supply

    ac = power_supply(tmp / "sys", online="1", capacity=90)
    return measure(lambda: (ac / "online").write_text("0\n"), lambda: (ac / "online").write_text("1\n"),
                   base_config(tmp, 'battery = "auto"\n'), flips, rng)


def ups(flips: int, rng: random.Random, served: list) -> list[tuple[float, float]] | None:
    from tests.nutlab import NutServer, nut_unavailable

    if nut_unavailable():
        return None
    tmp = Path(tempfile.mkdtemp(prefix="lwlat"))
    (tmp / "nut").mkdir()
    server = NutServer.create(tmp / "nut", status="OL", charge=100)
    try:
        cfg = base_config(tmp, f'battery = "off"\nups = "{server.url()}"\n')
        def flip(status: str):
            def run():
                server.set(status=status, charge=90)
                server.wait_status(status, timeout_s=10)   # polls upsd every 50 ms
                return now()
            return run

        return measure(flip("OB"), flip("OL"), cfg, flips, rng, served)
    finally:
        server.close()


def summary(name: str, lat: list[tuple[float, float]]) -> dict:
    starts, ends = [a for a, _ in lat], [b for _, b in lat]
    d = {"source": name, "flips": len(lat), "start_median_s": statistics.median(starts),
         "start_max_s": max(starts),
         "end_median_s": statistics.median(ends), "end_max_s": max(ends), "poll_s": POLL_S}
    d["within_one_poll"] = max(starts + ends) <= POLL_S
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flips", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    results = [summary("battery", battery(args.flips, rng))]
    served: list = []
    u = ups(args.flips, rng, served)
    if u is None:
        print("ups: skipped (Network UPS Tools is not installed: apt-get install nut-server nut-client)")
    else:
        results.append(summary("ups, from upsd serving it", served))
        results.append(summary("ups, from the file write", u))
    print(f"power detection latency, poll_s = {POLL_S:g} (reference: one poll interval)")
    print(f"{'source':28} {'flips':>5} {'start med':>10} {'start max':>10} {'end med':>8} {'end max':>8}"
          "  within one poll")
    for r in results:
        print(f"{r['source']:28} {r['flips']:>5} {r['start_median_s']:>9.2f}s {r['start_max_s']:>9.2f}s"
              f" {r['end_median_s']:>7.2f}s {r['end_max_s']:>7.2f}s"
              f"  {'yes' if r['within_one_poll'] else 'NO'}")
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / "power_latency.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
