"""The collector's second source: volunteers' store files (linewatch.db), each read by the
hardened reader of :mod:`kit.storefile` into the same records as InfluxDB's answers."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from kit.definitions import Quality
from kit.errors import SourceError
from kit.records import Dataset
from kit.storefile import StoreFile, shown


def expand(patterns: Iterable[str]) -> list[Path]:
    """Store files named by paths, directories (their linewatch.db) or glob patterns."""
    out: list[Path] = []
    for p in patterns:
        hits = sorted(glob.glob(os.path.expanduser(p))) if any(c in p for c in "*?[") else [p]
        if not hits:
            raise SourceError(f"store {shown(p)}: no file matches")
        for h in hits:
            path = Path(h)
            out.append(path / "linewatch.db" if path.is_dir() else path)
    return out


def read_stores(paths: Iterable[str | os.PathLike], start: float, end: float,
                on_error=None) -> tuple[Dataset, Quality]:
    """All the files' records as one Dataset. A file that cannot be read, at its opening or
    part way through, raises SourceError, or, with ``on_error``, is passed to it, counted as
    ``unreadable_store`` and named in ``Quality.unreadable``; nothing of it is kept, and the
    other files are read on."""
    q = Quality()
    parts: list[Dataset] = []
    for p in paths:
        try:
            f = StoreFile.open(p)
            try:
                ds, fq = f.read(start, end)
            finally:
                f.close()
        except SourceError as exc:
            if on_error is None:
                raise
            on_error(exc)
            q.rejected["unreadable_store"] += 1
            q.unreadable.append(str(exc))
            continue
        parts.append(ds)
        q.merge(fq)
    return merge(start, end, parts), q


def merge(start: float, end: float, parts: Iterable[Dataset]) -> Dataset:
    obs, eps, pings, speeds, hours, ep_cols, sp_cols, p_cols = [], [], [], [], [], [], [], []
    for d in parts:
        obs += d.obs
        eps += d.episodes
        pings += d.pings
        speeds += d.speeds
        hours += d.hours
        ep_cols += d.episode_cols
        sp_cols += d.speed_cols
        p_cols += d.ping_cols
    return Dataset(start, end, tuple(obs), tuple(eps), tuple(pings), tuple(speeds), tuple(hours),
                   tuple(ep_cols), tuple(sp_cols), tuple(p_cols))
