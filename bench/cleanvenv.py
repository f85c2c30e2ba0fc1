"""A clean venv for the benchmarks: linewatch and its dependencies only, as the README installs it.

A Python with many packages installed costs more at import time (some libraries scan every
installed distribution's metadata), so the agent is measured from a venv that holds nothing else.

Made without a download: linewatch's packages (kit, agent, collector) are copied from this tree,
and each dependency's installed files (its RECORD) from the environment running the benchmark,
which ``pip install -e ".[test]"`` (tests/run.sh) filled. ``extras`` adds an extra's
dependencies (``("influxdb-client",)``). The benchmarks run in network namespaces without a route
out, where ``pip install`` could not reach an index anyway.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kit", "agent", "collector")


def requirements(extras: tuple[str, ...] = ()) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def closure(reqs: list[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions ``reqs`` need, with what they need in turn (markers for this
    interpreter; no extras of theirs)."""
    env = {**default_environment(), "extra": ""}
    todo, seen, out = list(reqs), set(), []
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate(env)):
            continue
        seen.add(name)
        dist = metadata.distribution(req.name)
        out.append(dist)
        todo += [Requirement(r) for r in dist.requires or []]
    return out


def make(venv: Path, extras: tuple[str, ...] = ()) -> Path:
    """A venv at ``venv`` with linewatch (and ``extras``); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    for dist in closure(requirements(extras)):
        for f in dist.files or []:   # paths relative to the site-packages it is installed in
            if f.parts[0] == ".." or "__pycache__" in f.parts:   # scripts in bin/: we run python -m
                continue
            src = Path(str(dist.locate_file(f)))
            if src.is_file():
                (purelib / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, purelib / f)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, purelib / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    # Compiled once, as pip does at install: the first start is not the one measured, but the
    # runs should not differ by who wrote the .pyc files.
    subprocess.run([str(python), "-m", "compileall", "-q", str(purelib)], check=True)
    return python
