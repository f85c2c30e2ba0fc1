"""What a hostile store file costs the collector: time and peak memory of the real commands.

The file is the one from the security review: a few kilobytes of SQLite whose ``samples.fields``
is a generated column, ``printf('%.*c', 300000000, 'x')`` (every read of it builds a 300 MB
string), with 8 hours of rounds, pings and speed tests of one agent (tests/hostile.py, ``bomb``).
A second variant wraps the payload in valid JSON, so a reader that parses fields gets through
every row instead of failing at the first. References in the same run: an ordinary file of the
same rows (the agent's schema), and, for what the reader's checks cost on real data, one agent's
30 days of 10-second rounds written by the real store (tests/fleet.py; ``--days``, 0: none).

Each file is read by ``linewatch-collector report --store FILE`` and ``aggregate --store FILE
--format json``, ``--runs`` times, by this checkout and by the code of ``--before`` (a git
revision, taken with ``git archive``; empty: this checkout only). Each command runs as a child of
a small launcher process (a bare interpreter, so the child's peak is not this script's), which
takes its wall time and its peak RSS from ``wait4`` (``ru_maxrss``).

    python3 bench/hostile_store.py [--runs 3] [--before f3a8efd] [--days 30] [--timeout 600]

Results: bench/results/hostile-<UTC timestamp>.json and a table of medians on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import hostile  # noqa: E402
from tests.fleet import Fleet, fleet_start  # noqa: E402

BIN = Path(sys.executable).parent
# Runs the command given as its arguments; prints [exit code, wall s, peak RSS KiB, stderr's end].
LAUNCHER = """\
import json, os, subprocess, sys, time
t = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, ru = os.wait4(p.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), time.monotonic() - t, ru.ru_maxrss,
                  err.decode(errors="replace")[-400:]]))
"""


def checkout(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (this repository) under ``into``."""
    tar = into / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), rev], check=True)
    with tarfile.open(tar) as t:
        t.extractall(into / rev, filter="data")
    return into / rev


def measure(code: Path, args: list[str], timeout: float, env: dict) -> dict:
    cmd = [sys.executable, "-c", LAUNCHER, str(BIN / "linewatch-collector"), *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env={**env, "PYTHONPATH": str(code)})
    except subprocess.TimeoutExpired:
        return {"exit": None, "wall_s": timeout, "peak_mb": None, "stderr": "timeout"}
    rc, wall, peak, err = json.loads(p.stdout)
    return {"exit": rc, "wall_s": wall, "peak_mb": peak / 1024,
            "stderr": err.strip().splitlines()[-1] if err.strip() else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", default="f3a8efd",
                    help="git revision to compare with (empty: this checkout only)")
    ap.add_argument("--days", type=int, default=30, help="days of the large ordinary store")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lw-hostile-"))
    start = fleet_start(3)
    files = {
        "issue": hostile.bomb(work / "issue.db", start),
        "json": hostile.bomb(work / "json.db", start, payload=hostile.BOMB_JSON),
        "ordinary": hostile.craft(work / "ordinary.db",
                                  **hostile.line("ordinary", start, 8, round_s=3600)),
    }
    if a.days:
        fleet = Fleet(agents=1, days=a.days, start=fleet_start(a.days + 1), round_s=10, seed=3)
        rows = fleet.write_store(0, work / "large")
        files[f"{a.days}d"] = work / "large" / "linewatch.db"
        print(f"large ordinary store: {rows} rows, {files[f'{a.days}d'].stat().st_size} bytes")
    codes = {"after": ROOT}
    if a.before:
        codes = {"before": checkout(a.before, work), **codes}
    cfg = work / "c.toml"
    cfg.write_text("[collector]\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    results = []
    for run in range(a.runs):
        for fname, path in files.items():
            for cmd in ("report", "aggregate"):
                since = f"{a.days + 2}d" if fname == f"{a.days}d" else "7d"
                args = [cmd, "--config", str(cfg), "--since", since, "--store", str(path)]
                args += ["--out", str(work / "r.html")] if cmd == "report" else ["--format", "json"]
                for code_name, code in codes.items():
                    r = measure(code, args, a.timeout, env)
                    r.update(code=code_name, file=fname, command=cmd, run=run,
                             file_bytes=path.stat().st_size)
                    results.append(r)
                    print(f"run {run + 1}: {code_name:<6} {cmd:<9} {fname:<8} exit {r['exit']} "
                          f"{r['wall_s']:7.2f} s {r['peak_mb'] or 0:8.1f} MB  {r['stderr'][:90]}",
                          flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"hostile-{stamp}.json").write_text(json.dumps(results, indent=1))
    print(f"\n{'code':<7} {'command':<10} {'file':<9} {'wall s (median; runs)':<34} "
          f"{'peak RSS MB (median; runs)':<34} exit")
    for code_name in codes:
        for fname in files:
            for cmd in ("report", "aggregate"):
                rs = [r for r in results if (r["code"], r["file"], r["command"]) ==
                      (code_name, fname, cmd)]
                walls = [r["wall_s"] for r in rs]
                peaks = [r["peak_mb"] for r in rs if r["peak_mb"] is not None]
                w = f"{statistics.median(walls):.2f} ({' / '.join(f'{x:.2f}' for x in walls)})"
                m = (f"{statistics.median(peaks):.0f} ({' / '.join(f'{x:.0f}' for x in peaks)})"
                     if peaks else "-")
                print(f"{code_name:<7} {cmd:<10} {fname:<9} {w:<34} {m:<34} "
                      f"{sorted({r['exit'] for r in rs}, key=str)}")
    print(f"\nfiles: {', '.join(f'{k} {v.stat().st_size} bytes' for k, v in files.items())}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
