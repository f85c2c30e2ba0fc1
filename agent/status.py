"""What ``linewatch status`` reports, read from the store (the running agent keeps it current).

:func:`availability` is pure: the share of observed rounds in which the line was not down.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Iterable

from agent.config import Config
from agent.model import Episode, Sample

DAY = timedelta(hours=24)


def availability(statuses: Iterable[str]) -> tuple[float | None, int]:
    """(percent of rounds that were up or degraded, rounds counted); error rounds are not
    observations. None when nothing was observed."""
    seen = up = 0
    for s in statuses:
        if s == "error":
            continue
        seen += 1
        up += s != "down"
    return (100.0 * up / seen if seen else None), seen


def overlap_s(episodes: Iterable[Episode], start: datetime, end: datetime) -> float:
    """Seconds of the episodes that fall inside [start, end] (in-progress ones run to ``end``)."""
    total = 0.0
    for e in episodes:
        a = max(e.start, start)
        b = min(e.end or end, end)
        total += max(0.0, (b - a).total_seconds())
    return total


def collect(cfg: Config, now: datetime | None = None) -> dict:
    from agent.cli import _dns_row, _iso, _ping_row, episode_json
    from agent.runner import STATE_CLEAN_EXIT, STATE_HEARTBEAT, agent_id
    from agent.store import Store

    now = now or datetime.now(timezone.utc)
    store = Store.open(cfg.state_dir)
    try:
        rounds = list(store.samples("round", since=now - DAY))
        last = rounds[-1] if rounds else _latest(store.latest("round"))
        targets, dns = [], []
        if last is not None:
            # The probes of the last round start at or just after its timestamp.
            targets = [_ping_row(s) for s in store.latest("ping") if s.time >= last.time]
            dns = [_dns_row(s) for s in store.latest("dns") if s.time >= last.time]
        eps = store.episodes(since=now - DAY)
        av, n = availability(str(r.fields.get("status")) for r in rounds)
        rows, oldest = store.backlog()
        hb = json.loads(store.get_state(STATE_HEARTBEAT) or "null")
        clean = json.loads(store.get_state(STATE_CLEAN_EXIT) or "null")
        age = (now - last.time).total_seconds() if last else None
        running = age is not None and age <= 3 * cfg.probe.interval_s + 30 and not (clean or {}).get("clean")
        return {
            "agent": {"id": agent_id(cfg), **{k: getattr(cfg.agent, k) or None
                                              for k in ("region", "city", "isp", "access")}},
            "running": running,
            "last_round": None if last is None else {
                "time": _iso(last.time), "age_s": round(age, 1), "status": last.fields.get("status"),
                "cause": last.fields.get("cause"), "duration_s": last.fields.get("duration_s")},
            "heartbeat": hb,
            "targets": sorted(targets, key=lambda t: (t["role"] != "gateway", t["target"] or "")),
            "dns": dns,
            "episodes_in_progress": [episode_json(e) for e in eps if e.end is None],
            "availability_24h_pct": None if av is None else round(av, 3),
            "rounds_24h": n,
            "outage_s_24h": round(overlap_s([e for e in eps if e.type == "connectivity"],
                                            now - DAY, now), 1),
            "store": {"path": str(store.path), "bytes": store.file_bytes(), "rows": store.count(),
                      "backlog_rows": rows, "oldest_unsent": _iso(oldest) if oldest else None},
        }
    finally:
        store.close()


def _latest(samples: list[Sample]) -> Sample | None:
    return max(samples, key=lambda s: s.time) if samples else None
