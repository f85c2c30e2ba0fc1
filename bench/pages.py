#!/usr/bin/env python3
"""The report pages with large inputs: CPU seconds to render a regional page of 300 cells (300
hour-of-day heat maps) and a worker's line page of 30 days with 2,000 outages, median of several
runs, each in a fresh interpreter. The inputs are the test suite's samples made large
(tests/test_pages.py, ``large_inputs``).

``--vs REF_TREE`` renders the same inputs with another tree's code (a worktree of the commit to
compare against) in alternation, and says whether both trees' pages are identical byte for byte.

    python3 bench/pages.py --runs 5 [--vs /path/to/other/tree]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in each tree's interpreter: renders both pages from the pickled inputs, prints one JSON line.
RENDER = r"""
import hashlib, json, pickle, sys, time
from agent.report.page import line_report
from collector.regional_page import region_report
region, line = pickle.load(open(sys.argv[1], "rb"))
out = {}
for name, make, arg in (("region", region_report, region), ("line", line_report, line)):
    start = time.process_time()
    doc = make(arg)
    out[name] = {"cpu_s": time.process_time() - start, "bytes": len(doc),
                 "sha256": hashlib.sha256(doc.encode()).hexdigest()}
print(json.dumps(out))
"""


def inputs() -> tuple[dict, dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    import test_pages as tp  # deferred: the samples live with the tests

    return tp.large_inputs()


def render(tree: Path, data: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", RENDER, str(data)], cwd=tree, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--vs", type=Path, help="another tree to render the same inputs with")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs: at least 1")
    if args.vs and not (args.vs / "collector" / "regional_page.py").is_file():
        ap.error(f"--vs {args.vs}: not a linewatch tree (no collector/regional_page.py)")
    trees = {"this": ROOT} | ({"ref": args.vs.resolve()} if args.vs else {})
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "inputs.pickle"
        data.write_bytes(pickle.dumps(inputs()))
        runs: dict[str, list[dict]] = {k: [] for k in trees}
        for i in range(args.runs):
            order = list(trees) if i % 2 == 0 else list(trees)[::-1]
            for k in order:
                runs[k].append(render(trees[k], data))
    summary: dict[str, object] = {"runs": args.runs}
    for k, rs in runs.items():
        for page in ("region", "line"):
            cpu = [r[page]["cpu_s"] for r in rs]
            summary[f"{k}.{page}.cpu_s.median"] = round(statistics.median(cpu), 3)
            summary[f"{k}.{page}.cpu_s.all"] = [round(c, 3) for c in cpu]
            summary[f"{k}.{page}.bytes"] = rs[0][page]["bytes"]
    if args.vs:
        for page in ("region", "line"):
            summary[f"{page}.ratio"] = round(summary[f"this.{page}.cpu_s.median"]
                                             / summary[f"ref.{page}.cpu_s.median"], 3)
            summary[f"{page}.identical"] = sum(
                a[page]["sha256"] == b[page]["sha256"] for a, b in zip(runs["this"], runs["ref"]))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
