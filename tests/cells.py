"""Collector datasets made by hand for the statistics tests: the agents (units) of a cell, the hours
they watched, and a Dataset over a window."""

from __future__ import annotations

from kit.definitions import Unit
from kit.records import Dataset, ObsHour

# Monday 2026-11-02 00:00 PKT = 2026-11-01 19:00 UTC.
MON = 1_793_559_600
assert MON % 3600 == 0
DAY = 86400.0


def units(n, region="PK-SD", isp="PTCL", prefix="a"):
    return [Unit(f"{prefix}{i}", region, isp) for i in range(n)]


def watch(u, start, hours, per_hour=3600.0):
    return [ObsHour(u, int(start + h * 3600), per_hour) for h in range(hours)]


def ds_of(start, end, obs=(), eps=(), pings=(), speeds=()):
    return Dataset(start, end, tuple(obs), tuple(eps), tuple(pings), tuple(speeds))
