"""tests/run.sh's suite in two parts: how each part's exit code makes the command's. pytest is
replaced by a stub that notes each call and exits as told, because what is under test is the
runner's own control flow, and a real pytest cannot be made to exit 2 (interrupted by Ctrl-C)
or 3 on demand."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _suite(tmp_path: Path, codes: list[int], *args: str) -> tuple[int, list[str]]:
    log = tmp_path / "calls"
    stub = tmp_path / "python"
    stub.write_text('#!/bin/sh\necho "$*" >> "$STUB_LOG"\n'
                    'n=$(wc -l < "$STUB_LOG")\n'
                    'exit $(echo "$STUB_CODES" | cut -d" " -f"$n")\n')
    stub.chmod(0o755)
    env = {**os.environ, "LINEWATCH_TEST_PYTHON": str(stub), "STUB_LOG": str(log),
           "STUB_CODES": " ".join(map(str, codes))}
    p = subprocess.run(["bash", str(ROOT / "tests" / "run.sh"), "--suite", *args], env=env,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(("codes", "want", "parts"), [
    ([0, 0], 0, 2),
    ([1, 0], 1, 2),     # failures in the first part: the timing ones still run, to show theirs
    ([0, 1], 1, 2),
    ([5, 0], 5, 2),     # no tests collected is a failure too
    ([0, 5], 5, 2),
    ([2, 0], 2, 1),     # interrupted (Ctrl-C): the second part is not started
    ([3, 0], 3, 1),     # pytest's internal error
    ([4, 0], 4, 1),     # a usage error
])
def test_each_part_decides_the_exit_code(tmp_path, codes, want, parts):
    code, calls = _suite(tmp_path, codes)
    assert code == want and len(calls) == parts, calls
    assert "-m not serial" in calls[0] and "-n " in calls[0]
    if parts == 2:
        assert "-m serial" in calls[1] and "--cov-append" in calls[1]


def test_arguments_run_pytest_once_with_them(tmp_path):
    code, calls = _suite(tmp_path, [3], "-k", "nothing")
    assert code == 3 and calls == ["-m pytest --cov --cov-report=term-missing:skip-covered -k nothing"]
