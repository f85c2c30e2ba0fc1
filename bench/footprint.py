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

``--forward builtin,influxdb-client``: the same, once per value of ``influx.client``, with the
agent forwarding every round (``influx.push_interval_s`` 10 s, its default) to a VictoriaMetrics
(Debian's) on the agent host's loopback, in the lab; each client runs from a clean venv holding
what it needs (bench/cleanvenv.py: linewatch, with the influxdb-client extra for that client).
``none`` is the agent without a server; ``alerts`` is the agent without a server but with six
alert channels configured (desktop, ntfy, Telegram, a webhook, e-mail, and the desktop again
under another name), none of which has anything to say during the run (issue 18: RSS within 2 MB
of the same agent without them until an alert fires).

Samples /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime+stime, children included for the
fping loop) every 5 s. Steady state = the second half of the run. Several runs go in parallel,
each in its own lab (CPU time is per process, so runs sharing cores do not inflate it).
Targets (issue #2): RSS <= 30 MB, CPU <= 0.2 % of one core; (issue 16) RSS while forwarding
<= 30 MB.

    python3 bench/footprint.py --minutes 10 --runs 3 [--forward none,builtin,influxdb-client]
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

from bench import cleanvenv  # noqa: E402
from tests import netlab  # noqa: E402
from tests.influxlab import VICTORIA_METRICS  # noqa: E402

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




def make_venv(client: str) -> Path:
    venv = Path(tempfile.mkdtemp(prefix="lwbench-venv"))
    return cleanvenv.make(venv / "venv", ("influxdb-client",) if client == "influxdb-client" else ())


VM_PORT = 8428


def start_vm(lab: netlab.Lab, ns: str, python: Path, tmp: Path) -> None:
    """VictoriaMetrics on the agent host's loopback (127.0.0.1:8428); returns once it answers."""
    lab.popen(ns, str(VICTORIA_METRICS), "-storageDataPath", str(tmp / "vm"),
              "-httpListenAddr", f"127.0.0.1:{VM_PORT}", "-retentionPeriod=100y", "-loggerLevel=WARN",
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if lab.run(ns, str(python), "-c", "import urllib.request as u; "
                   f"u.urlopen('http://127.0.0.1:{VM_PORT}/health', timeout=1)", check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("VictoriaMetrics did not start in the lab")


def one_run(python: Path, minutes: float, out: dict, idx: int, client: str = "none") -> None:
    lab = netlab.Lab()
    try:
        net = netlab.standard(lab)
        netlab.start_dnsmasq(net)
        tmp = Path(tempfile.mkdtemp(prefix="lwbench"))
        cfg = tmp / "config.toml"
        influx = ""
        env = dict(os.environ)
        if client == "alerts":
            influx = ('[alerts]\n'
                      '[[alerts.channels]]\nkind = "desktop"\nurl = "unix:path=/nonexistent/bus"\n'
                      '[[alerts.channels]]\nkind = "desktop"\nname = "second"\n'
                      '[[alerts.channels]]\nkind = "ntfy"\nurl = "http://198.51.100.1:8081/t"\n'
                      '[[alerts.channels]]\nkind = "telegram"\nurl = "http://198.51.100.1:8082"\n'
                      'chat_id = "1"\n'
                      '[[alerts.channels]]\nkind = "webhook"\nurl = "http://198.51.100.1:8083/h"\n'
                      '[[alerts.channels]]\nkind = "email"\nurl = "smtp://198.51.100.1:587"\n'
                      'to = ["a@example.org"]\n')
            env["LINEWATCH_ALERT_TELEGRAM_SECRET"] = "123:bench"
        elif client != "none":
            start_vm(lab, net.agent, python, tmp)
            influx = (f'[influx]\nurl = "http://127.0.0.1:{VM_PORT}"\nbucket = "linewatch"\n'
                      f'client = "{client}"\n')
        cfg.write_text(
            f'[agent]\nstate_dir = "{tmp / "state"}"\n'
            '[probe]\ntargets = ["198.51.100.1", "198.51.100.2"]\n'
            'dns_names = ["example.test"]\ndns_servers = ["198.51.100.53"]\n'
            '[speedtest]\nenabled = false\n[services]\nurls = []\n' + influx)
        agent = lab.popen(net.agent, str(python), "-m", "agent", "run", "--config", str(cfg),
                          "--log-level", "warning", cwd=tmp, env=env,
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

        backlog = None
        if client not in ("none", "alerts"):
            import sqlite3  # deferred: only the forwarding runs read the store

            c = sqlite3.connect(f"file:{tmp / 'state' / 'linewatch.db'}?mode=ro", uri=True)
            backlog = c.execute("SELECT count(*) FROM samples WHERE sent = 0").fetchone()[0]
            c.close()
        out[idx] = {
            "client": client, "unsent_rows_at_end": backlog,
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
    ap.add_argument("--forward", type=lambda v: tuple(v.split(",")), default=("none",),
                    help="influx.client values to run with a server (none: without one; alerts: "
                         "without one, with alert channels), comma-separated")
    args = ap.parse_args()
    if netlab.netns_unavailable():
        sys.exit(f"cannot run: {netlab.netns_unavailable()}")
    pythons = {c: make_venv(c) for c in args.forward}
    results: dict[int, dict] = {}
    jobs = [(c, i) for c in args.forward for i in range(args.runs)]
    threads = [threading.Thread(target=one_run, args=(pythons[c], args.minutes, results, n, c))
               for n, (c, i) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = [results[i] for i in sorted(results)]
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        sys.exit(f"runs failed: {errors}")
    keys = ["agent_rss_mb", "agent_rss_max_mb", "bare_python_rss_mb", "agent_cpu_pct", "fping_cpu_pct"]
    print(f"footprint: {args.runs} runs x {args.minutes:g} min each of {', '.join(args.forward)}, "
          "default cadence (10 s, 3 echoes x 3 targets, 1 name)")
    print(f"{'client':>16} {'RSS MB':>8} {'max MB':>8} {'bare py MB':>10} {'agent CPU %':>12} "
          f"{'fping CPU %':>12} {'unsent':>7}")
    for r in runs:
        print(f"{r['client']:>16} {r['agent_rss_mb']:8.1f} {r['agent_rss_max_mb']:8.1f}"
              f" {r['bare_python_rss_mb']:10.1f} {r['agent_cpu_pct']:12.3f} {r['fping_cpu_pct']:12.3f}"
              f" {r['unsent_rows_at_end'] if r['unsent_rows_at_end'] is not None else '-':>7}")
    medians = {}
    for client in args.forward:
        mine = [r for r in runs if r["client"] == client]
        med = {k: statistics.median(r[k] for r in mine) for k in keys}
        med["rss_ratio_vs_bare_python"] = med["agent_rss_mb"] / med["bare_python_rss_mb"]
        if client == "alerts" and "none" in args.forward:
            plain = statistics.median(r["agent_rss_mb"] for r in runs if r["client"] == "none")
            med["rss_over_none_mb"] = med["agent_rss_mb"] - plain
            print(f"alerts: {med['rss_over_none_mb']:+.2f} MB over the agent without them "
                  "(target: within 2)")
        med["cpu_ratio_vs_fping"] = (med["agent_cpu_pct"] / med["fping_cpu_pct"]
                                     if med["fping_cpu_pct"] else None)
        med["store_bytes_per_hour"] = statistics.median(r["store_bytes"] for r in mine) / (args.minutes / 60)
        medians[client] = med
        print(f"{client}: median RSS {med['agent_rss_mb']:.1f} MB "
              f"(target <= 30; {med['rss_ratio_vs_bare_python']:.2f}x a bare"
              f" interpreter), CPU {med['agent_cpu_pct']:.3f} % of one core (target <= 0.2;"
              f" fping doing the same echoes: {med['fping_cpu_pct']:.3f} %);"
              f" store growth {med['store_bytes_per_hour'] / 1e6:.2f} MB/hour")
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / "footprint.json").write_text(
        json.dumps({"runs": runs, "median": medians, "minutes": args.minutes}, indent=2))


if __name__ == "__main__":
    main()
