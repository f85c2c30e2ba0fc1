#!/usr/bin/env python3
"""What the service checks add to the agent, how fast blocking is detected, and how often a
clean line is called blocked.

Each run builds two censor labs (tests/censorlab.py: real dnsmasq resolvers, a real HTTPS site
with a test CA, a middlebox that resets a ClientHello by the name in it) and runs the agent
(`linewatch run`, from a clean venv as the README installs it) in each for the same wall time,
side by side:

* "off": ``[services] urls = []`` (the reference);
* "on": six sites that work (ok.test, fine.test through the middlebox, a.test to d.test),
  checked every ``--interval`` seconds (retry 10 s, open_after 3, the default).

In "on", the middlebox starts resetting fine.test at a third of the run and stops at two thirds.
Reported per run: the steady-state RSS (median of the second half) and CPU share of one core of
both agents (the CPU of the agent's children, where the checks run, included); for the
injected block, the interference episode's start and end against the injected ones and when
the agent opened it (the third failed check); and every other interference episode (a false
positive: the other sites never fail).

    python3 bench/interference.py --minutes 6 --runs 2 --interval 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cleanvenv  # noqa: E402
from bench.footprint import cpu_s, rss_bytes  # noqa: E402
from tests import censorlab, netlab  # noqa: E402

SITES = ["https://ok.test/", "https://fine.test/", *(f"https://{n}/" for n in censorlab.CLEAN)]


def _config(tmp: Path, ca: Path, on: bool, interval: float) -> Path:
    cfg = tmp / "config.toml"
    services = (f"urls = {json.dumps(SITES)}\nresolver = \"{censorlab.SECOND_DNS}\"\n"
                f"ca_file = {json.dumps(str(ca))}\ncontrol_sni = \"control.test\"\n"
                f"interval_s = {interval}\nretry_s = 10\ntimeout_s = 3\n") if on else "urls = []\n"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp / "state"}"\n'
                   '[probe]\ntargets = ["198.51.100.1", "198.51.100.2"]\ndns_names = []\n'
                   f'dns_servers = ["{censorlab.SYSTEM_DNS}"]\n[power]\nbattery = "off"\n'
                   '[speedtest]\nenabled = false\n[services]\n' + services)
    return cfg


def _checks(db: Path, target: str) -> list[tuple[float, bool]]:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = c.execute("SELECT s.time_ns, s.fields FROM samples s JOIN series r ON r.id = "
                         "s.series_id WHERE r.measurement = 'service' AND json_extract(r.tags, "
                         "'$.target') = ? ORDER BY s.time_ns", (target,)).fetchall()
    finally:
        c.close()
    return [(t / 1e9, bool(json.loads(f)["ok"])) for t, f in rows]


def _episodes(db: Path) -> list[dict]:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = c.execute("SELECT start_ns, end_ns, cause, details FROM episodes WHERE type = "
                         "'interference' ORDER BY start_ns").fetchall()
    finally:
        c.close()
    return [{"start": s / 1e9, "end": e / 1e9 if e else None, "cause": cause,
             **json.loads(d)} for s, e, cause, d in rows]


def one_agent(python: Path, on: bool, minutes: float, interval: float, out: dict) -> None:
    lab = netlab.Lab()
    try:
        tmp = Path(tempfile.mkdtemp(prefix="lwbench-int"))
        censor = censorlab.build(lab, tmp)
        cfg = _config(tmp, censor.ca, on, interval)
        agent = lab.popen(censor.net.agent, str(python), "-m", "agent", "run", "--config",
                          str(cfg), "--log-level", "warning", cwd=tmp,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        total = minutes * 60
        block_at, unblock_at = total / 3, 2 * total / 3
        injected: dict[str, float] = {}
        rss, cpu, ts = [], [], []
        while (now := time.monotonic() - t0) < total:
            time.sleep(5)
            if agent.poll() is not None:
                raise RuntimeError("the agent exited during the benchmark")
            ts.append(time.monotonic())
            rss.append(rss_bytes(agent.pid))
            cpu.append(cpu_s(agent.pid, children=True))   # the checks run in children
            if on and "block" not in injected and now >= block_at:
                censorlab.block(censor, "sni.test", "fine.test")
                injected["block"] = time.time()
            if on and "unblock" not in injected and now >= unblock_at:
                censorlab.block(censor, "sni.test")
                injected["unblock"] = time.time()
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(timeout=30)
        half = len(ts) // 2
        res = {"rss_mb": statistics.median(rss[half:]) / 1e6,
               "cpu_pct": 100.0 * (cpu[-1] - cpu[half]) / (ts[-1] - ts[half])}
        if on:
            db = tmp / "state" / "linewatch.db"
            eps = _episodes(db)
            mine = [e for e in eps if e.get("target") == "fine.test"]
            res["false_positives"] = [e for e in eps if e.get("target") != "fine.test"]
            res["checks"] = sum(len(_checks(db, t.split("/")[2])) for t in SITES)
            if len(mine) == 1:
                ep = mine[0]
                checks = _checks(db, "fine.test")
                failed = [t for t, ok in checks if not ok and t >= injected["block"]]
                res["start_after_block_s"] = ep["start"] - injected["block"]
                res["opened_after_block_s"] = failed[2] - injected["block"] if len(failed) > 2 \
                    else None
                res["end_after_unblock_s"] = (ep["end"] - injected["unblock"]) if ep["end"] \
                    else None
            res["fine_test_episodes"] = len(mine)
            res["injected"] = {k: datetime.fromtimestamp(v).isoformat() for k, v in injected.items()}
        out["on" if on else "off"] = res
    except Exception as exc:  # noqa: BLE001 (reported in the results, not hidden)
        out["on" if on else "off"] = {"error": repr(exc)}
    finally:
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=6)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--interval", type=float, default=60)
    args = ap.parse_args()
    python = cleanvenv.make(Path(tempfile.mkdtemp(prefix="lwbench-venv")) / "venv", ())
    results = []
    for _ in range(args.runs):
        out: dict = {}
        threads = [threading.Thread(target=one_agent, args=(python, on, args.minutes,
                                                            args.interval, out))
                   for on in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps(out, indent=1), flush=True)
        results.append(out)
    ok = [r for r in results if "error" not in r["on"] and "error" not in r["off"]]
    if not ok:
        return

    def med(key: str, side: str) -> float:
        vals = [r[side][key] for r in ok if r[side].get(key) is not None]
        return statistics.median(vals) if vals else float("nan")
    print(f"RSS: off {med('rss_mb', 'off'):.1f} MB, on {med('rss_mb', 'on'):.1f} MB; "
          f"CPU: off {med('cpu_pct', 'off'):.3f} %, on {med('cpu_pct', 'on'):.3f} % of a core")
    print(f"block: episode start - injected {med('start_after_block_s', 'on'):.1f} s, opened "
          f"{med('opened_after_block_s', 'on'):.1f} s after it; end - lifted "
          f"{med('end_after_unblock_s', 'on'):.1f} s; false positives "
          f"{sum(len(r['on']['false_positives']) for r in ok)} in "
          f"{sum(r['on']['checks'] for r in ok)} checks")


if __name__ == "__main__":
    main()
