#!/usr/bin/env python3
"""Speed-test accuracy against iperf3 on a tbf-shaped link, bytes moved and the agent's CPU time
per test.

Two namespaces joined by a veth pair shaped with tbf in both directions (tests/speedlab.py): the
classic speed-test endpoints (tests/speedserver.py) and an iperf3 server in one, the client in the
other. For each rate (20, 100, 400 Mbit/s) and run: iperf3 download and upload (4 streams, 10 s),
then one speed test through linewatch's wrapper (``agent.probes.speedtest.measure``, speedtest-cli
2.1.3 underneath, the agent's own configuration) in a fresh Python process in the client
namespace, which reports its own CPU time (user + system, all threads) for the test alone.

Figures per rate, medians of the runs: speed test / iperf3 for download and upload (target >=
0.95), bytes moved per test, CPU seconds per test.

    python3 bench/speedtest.py --runs 3     # after `bash tests/run.sh` made .venv
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.netlab import Lab, netns_unavailable  # noqa: E402
from tests.speedlab import ShapedLink  # noqa: E402

ONE_TEST = """
import json, resource, sys
from agent.clock import SystemClock
from agent.probes.speedtest import measure
r0 = resource.getrusage(resource.RUSAGE_SELF)
out = measure(server_url=sys.argv[1], clock=SystemClock())
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({**out.sample.fields,
                  "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}))
"""


def one_rate(rate: int, runs: int, python: str) -> dict:
    lab = Lab()
    try:
        link = ShapedLink.create(lab, rate)
        url = link.start_server()
        link.start_iperf3()
        rows = []
        for i in range(runs):
            ref_down, ref_up = link.iperf3("download"), link.iperf3("upload")
            r = link.run_in_client(python, "-c", ONE_TEST, url, cwd=str(ROOT), timeout=300)
            res = json.loads(r.stdout)
            if res["status"] != "ok":
                raise RuntimeError(f"speed test failed at {rate} Mbit/s: {res}")
            row = {"iperf3_down_bps": ref_down, "iperf3_up_bps": ref_up,
                   "down_bps": res["download_bps"], "up_bps": res["upload_bps"],
                   "down_ratio": res["download_bps"] / ref_down, "up_ratio": res["upload_bps"] / ref_up,
                   "bytes": res["bytes_received"] + res["bytes_sent"],
                   "bytes_received": res["bytes_received"], "bytes_sent": res["bytes_sent"],
                   "duration_s": res["duration_s"], "cpu_s": res["cpu_s"]}
            rows.append(row)
            print(f"  {rate} Mbit/s run {i + 1}: down {row['down_bps'] / 1e6:.1f} (iperf3 "
                  f"{ref_down / 1e6:.1f}, x{row['down_ratio']:.3f}), up {row['up_bps'] / 1e6:.1f} "
                  f"(iperf3 {ref_up / 1e6:.1f}, x{row['up_ratio']:.3f}), {row['bytes'] / 1e6:.0f} MB, "
                  f"{row['duration_s']:.1f} s, CPU {row['cpu_s']:.2f} s", flush=True)
            time.sleep(1)
        return {"rate_mbit": rate, "runs": rows,
                "median": {k: statistics.median(r[k] for r in rows) for k in rows[0]}}
    finally:
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rates", default="20,100,400")
    venv = ROOT / ".venv" / "bin" / "python"
    ap.add_argument("--python", default=str(venv) if venv.exists() else sys.executable,
                    help="Python with linewatch installed (default: the test venv, .venv)")
    args = ap.parse_args()
    reason = netns_unavailable()
    if reason:
        sys.exit(reason)
    results = []
    for rate in (int(x) for x in args.rates.split(",")):
        print(f"{rate} Mbit/s ...", flush=True)
        results.append(one_rate(rate, args.runs, args.python))
    print(f"\nmedians of {args.runs} runs:")
    print("rate      down/iperf3  up/iperf3   iperf3 down / up (Mbit/s)   MB per test   CPU s per test")
    for r in results:
        m = r["median"]
        print(f"{r['rate_mbit']:4d} Mbit/s  {m['down_ratio']:.3f}        {m['up_ratio']:.3f}      "
              f"{m['iperf3_down_bps'] / 1e6:6.1f} / {m['iperf3_up_bps'] / 1e6:6.1f}             "
              f"{m['bytes'] / 1e6:7.0f}       {m['cpu_s']:.2f}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "speedtest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
