#!/usr/bin/env python3
"""Footprint of the agent at the default cadence: steady-state RSS and CPU share of one core.

Builds the standard namespace lab (agent, gateway, internet host with dnsmasq), then runs in the
agent namespace, side by side for the same wall time:

* the agent (`linewatch run`, default config but for the lab's targets and DNS server);
* reference 1, memory: a bare Python interpreter that only sleeps (the floor any Python agent has);
* reference 2, CPU: fping doing the same echoes as the agent's rounds (gateway + 2 targets,
  3 echoes each, every 10 s), started by a shell loop.

The agent runs from a fresh virtual environment holding only linewatch and its dependencies, as the
README's Quick start installs it (a Python with many packages installed costs more at import time:
some libraries scan every installed distribution's metadata). The bare interpreter is that
venv's Python too.

Samples /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime+stime, children included for the
fping loop) every 5 s. Steady state = the second half of the run. Several runs go in parallel,
each in its own lab (CPU time is per process, so runs sharing cores do not inflate it).
Targets (issue #2): RSS <= 30 MB, CPU <= 0.2 % of one core.

    python3 bench/footprint.py --minutes 10 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import netlab  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_s(pid: int, children: bool = False) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(f[11]) + int(f[12])  # utime, stime
    if children:
        ticks += int(f[13]) + int(f[14])  # cutime, cstime of waited-for children
    return ticks / TICK




def make_venv() -> Path:
    venv = Path(tempfile.mkdtemp(prefix="lwbench-venv"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(ROOT)], check=True)
    return venv / "bin" / "python"


def one_run(python: Path, minutes: float, out: dict, idx: int) -> None:
    lab = netlab.Lab()
    try:
        net = netlab.standard(lab)
        netlab.start_dnsmasq(net)
        tmp = Path(tempfile.mkdtemp(prefix="lwbench"))
        cfg = tmp / "config.toml"
        cfg.write_text(
            f'[agent]\nstate_dir = "{tmp / "state"}"\n'
            '[probe]\ntargets = ["198.51.100.1", "198.51.100.2"]\n'
            'dns_names = ["example.test"]\ndns_servers = ["198.51.100.53"]\n')
        agent = lab.popen(net.agent, str(python), "-m", "agent", "run", "--config", str(cfg),
                          "--log-level", "warning", cwd=tmp,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare = lab.popen(net.agent, str(python), "-c", "import time; time.sleep(1e6)",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fping_loop = lab.popen(
            net.agent, "sh", "-c",
            "while :; do fping -q -C 3 -p 250 -t 2000 10.231.1.1 198.51.100.1 198.51.100.2 "
            ">/dev/null 2>&1; sleep 9.5; done",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        series = {"t": [], "agent_rss": [], "agent_cpu": [], "bare_rss": [], "fping_cpu": []}
        t_end = time.monotonic() + minutes * 60
        while time.monotonic() < t_end:
            time.sleep(5)
            if agent.poll() is not None:
                raise RuntimeError("the agent exited during the benchmark")
            series["t"].append(time.monotonic())
            series["agent_rss"].append(rss_bytes(agent.pid))
            series["agent_cpu"].append(cpu_s(agent.pid))
            series["bare_rss"].append(rss_bytes(bare.pid))
            series["fping_cpu"].append(cpu_s(fping_loop.pid, children=True))
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(timeout=30)
        half = len(series["t"]) // 2
        span = series["t"][-1] - series["t"][half]

        def share(key):
            return 100.0 * (series[key][-1] - series[key][half]) / span

        out[idx] = {
            "agent_rss_mb": statistics.median(series["agent_rss"][half:]) / 1e6,
            "agent_rss_max_mb": max(series["agent_rss"]) / 1e6,
            "bare_python_rss_mb": statistics.median(series["bare_rss"][half:]) / 1e6,
            "agent_cpu_pct": share("agent_cpu"),
            "fping_cpu_pct": share("fping_cpu"),
            "steady_window_s": span,
            "store_bytes": sum(p.stat().st_size for p in (tmp / "state").glob("linewatch.db*")),
        }
    except Exception as exc:  # noqa: BLE001 (reported in the results, not hidden)
        out[idx] = {"error": repr(exc)}
    finally:
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if netlab.netns_unavailable():
        sys.exit(f"cannot run: {netlab.netns_unavailable()}")
    python = make_venv()
    results: dict[int, dict] = {}
    threads = [threading.Thread(target=one_run, args=(python, args.minutes, results, i))
               for i in range(args.runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = [results[i] for i in sorted(results)]
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        sys.exit(f"runs failed: {errors}")
    keys = ["agent_rss_mb", "agent_rss_max_mb", "bare_python_rss_mb", "agent_cpu_pct", "fping_cpu_pct"]
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    med["rss_ratio_vs_bare_python"] = med["agent_rss_mb"] / med["bare_python_rss_mb"]
    med["cpu_ratio_vs_fping"] = med["agent_cpu_pct"] / med["fping_cpu_pct"] if med["fping_cpu_pct"] else None
    med["store_bytes_per_hour"] = statistics.median(r["store_bytes"] for r in runs) / (args.minutes / 60)
    print(f"footprint: {args.runs} runs x {args.minutes:g} min, "
          "default cadence (10 s, 3 echoes x 3 targets, 1 name)")
    print(f"{'run':>4} {'RSS MB':>8} {'max MB':>8} {'bare py MB':>10} {'agent CPU %':>12} "
          f"{'fping CPU %':>12}")
    for i, r in enumerate(runs):
        print(f"{i:>4} {r['agent_rss_mb']:8.1f} {r['agent_rss_max_mb']:8.1f} {r['bare_python_rss_mb']:10.1f}"
              f" {r['agent_cpu_pct']:12.3f} {r['fping_cpu_pct']:12.3f}")
    print(f"median: RSS {med['agent_rss_mb']:.1f} MB "
          f"(target <= 30; {med['rss_ratio_vs_bare_python']:.2f}x a bare"
          f" interpreter), CPU {med['agent_cpu_pct']:.3f} % of one core (target <= 0.2;"
          f" fping doing the same echoes: {med['fping_cpu_pct']:.3f} %)")
    print(f"store growth: {med['store_bytes_per_hour'] / 1e6:.2f} MB/hour")
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / "footprint.json").write_text(
        json.dumps({"runs": runs, "median": med, "minutes": args.minutes}, indent=2))


if __name__ == "__main__":
    main()
