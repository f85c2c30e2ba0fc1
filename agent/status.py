"""What ``linewatch status`` and ``linewatch outages`` report, read from the store (the running
agent keeps it current). Read-only: nothing here creates, moves or changes a file.

The 24-hour availability is :func:`kit.definitions.availability`, the one definition the line
report and the collector use too: 1 - connectivity outage seconds / watched seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from agent import lock, speedplan
from agent.config import Config
from agent.model import Episode, Sample, from_ns
from agent.statekeys import (
    STATE_FORWARD,
    STATE_HEARTBEAT,
    STATE_PENDING,
    STATE_POWER_SENSORS,
    STATE_SPEED_NEXT,
)
from agent.store import STATE_RECOVERED, Store
from kit import definitions
from kit.errors import StoreError, StoreMissing
from kit.secret import redact_value
from kit.words import THIN_WATCH_H

DAY = timedelta(hours=24)
SPEEDTEST_WINDOW = timedelta(days=62)  # the tests read back for this month's data


def overlap_s(episodes: Iterable[Episode], start: datetime, end: datetime) -> float:
    """Seconds of the episodes that fall inside [start, end] (in-progress ones run to ``end``)."""
    total = 0.0
    for e in episodes:
        a = max(e.start, start)
        b = min(e.end or end, end)
        total += max(0.0, (b - a).total_seconds())
    return total


def open_store(cfg: Config, running: bool | None) -> Store:
    """The store, read-only; ``running`` is whether an agent holds the state dir's lock (None:
    cannot tell). Raises StoreMissing when there is none, StoreCorrupt when it is damaged."""
    return Store.open_readonly(cfg.state_dir, live=running is not False)


def collect(cfg: Config, now: datetime | None = None) -> dict:
    """Everything ``status`` shows. Reads the store read-only (never creates, moves or changes
    it); an agent runs when it holds the state dir's lock (:mod:`agent.lock`).

    Raises StoreCorrupt (one line with what to do) for a damaged store; a missing store is an
    empty status, not an error."""
    now = now or datetime.now(UTC)
    held = lock.holder(cfg.state_dir)
    record = held.record or {}
    base = {
        "agent": {"id": read_agent_id(cfg), **{k: getattr(cfg.agent, k) or None
                                               for k in definitions.PLACE_TAGS}},
        "running": held.running,
        "pid": held.pid if held.running else None,
        "store_trouble": ({"reason": record["store_error"], "since": record.get("store_error_since")}
                          if held.running and record.get("store_error") else None),
    }
    try:
        store = open_store(cfg, held.running)
    except StoreMissing:
        return {**base, "last_round": None, "heartbeat": None, "targets": [], "dns": [],
                "episodes_in_progress": [], "power": power_summary(None), "availability_24h_pct": None,
                "watched_h_24h": 0.0, "thin_data": True, "rounds_24h": 0, "outage_s_24h": 0.0,
                "store": None, "store_recovered": None,
                "forward": forward_summary(cfg, None, 0, None, (0, []), now),
                "speedtest": speedtest_summary(cfg, [], None, now),
                "alerts": _alerts_summary(cfg, {})}
    try:
        return {**base, **_from_store(cfg, store, now)}
    finally:
        store.close()


def _from_store(cfg: Config, store: Store, now: datetime) -> dict:
    """The part of ``status`` that the store holds."""
    rounds = list(store.samples("round", since=now - DAY))
    last = rounds[-1] if rounds else _latest(store.latest("round"))
    targets, dns = [], []
    if last is not None:
        # The probes of the last round start at or just after its timestamp.
        targets = [ping_row(s) for s in store.latest("ping") if s.time >= last.time]
        dns = [dns_row(s) for s in store.latest("dns") if s.time >= last.time]
    eps = store.episodes(since=now - DAY)
    watched = [r for r in rounds if r.fields.get("status") != "error"]  # rounds with a verdict
    # Seconds watched as the line report and the collector count them (docs/methodology.md,
    # "Availability"): every round's interval, an `error` round's too (the agent was watching).
    watched_s = sum(float(r.fields.get("interval_s") or cfg.probe.interval_s) for r in rounds)
    outage_s = overlap_s([e for e in eps if e.type == "connectivity"], now - DAY, now)
    av = definitions.availability(outage_s, watched_s)
    rows, oldest = store.backlog()
    age = (now - last.time).total_seconds() if last else None
    return {
        "last_round": None if last is None else {
            "time": iso(last.time), "age_s": round(age, 1), "status": last.fields.get("status"),
            "cause": last.fields.get("cause"), "duration_s": last.fields.get("duration_s")},
        "heartbeat": json.loads(store.get_state(STATE_HEARTBEAT) or "null"),
        "targets": sorted(targets, key=lambda t: (t["role"] != "gateway", t["target"] or "")),
        "dns": dns,
        "episodes_in_progress": [episode_json(e) for e in eps if e.end is None],
        "power": power_summary(json.loads(store.get_state(STATE_POWER_SENSORS) or "null"),
                               bool(store.get_state(STATE_PENDING))),
        "availability_24h_pct": None if av is None else round(100 * av, 3),
        "watched_h_24h": round(watched_s / 3600, 2),
        "thin_data": watched_s / 3600 < THIN_WATCH_H,  # kit.words: one threshold with the report
        "rounds_24h": len(watched),
        "outage_s_24h": round(outage_s, 1),
        "store": {"path": str(store.path), "bytes": store.file_bytes(), "rows": store.count(),
                  "backlog_rows": rows, "oldest_unsent": iso(oldest) if oldest else None,
                  "kept_local_rows": store.kept_local()},
        "store_recovered": json.loads(store.get_state(STATE_RECOVERED) or "null"),
        "forward": forward_summary(cfg, store.get_state(STATE_FORWARD), rows, oldest,
                                   store.quarantined(5), now),
        "speedtest": speedtest_summary(cfg, list(store.samples("speedtest", since=now - SPEEDTEST_WINDOW)),
                                       store.get_state(STATE_SPEED_NEXT), now),
        "alerts": _alerts_summary(cfg, _alerts_by_state(store)),
    }


def _alerts_by_state(store: Store) -> dict[str, dict[int, int]]:
    try:
        return store.alerts_by_state()
    except StoreError as exc:
        if "no such table" not in str(exc):
            raise
        return {}  # a store made before alerts existed


def _alerts_summary(cfg: Config, by_state: dict[str, dict[int, int]]) -> dict:
    """The channels and their outbox: alerts sent, waiting, refused..., per channel."""
    channels = {}
    for sec in cfg.alerts.channels:
        name = sec.name or sec.kind
        counts = by_state.get(name, {})
        channels[name] = {"kind": sec.kind, **{s: counts.get(i, 0)
                                               for i, s in enumerate(ALERT_STATES)}}
    return {"channels": channels, "heartbeat": bool(cfg.alerts.heartbeat_url)}


def episodes_since(cfg: Config, since: datetime, types: set[str] | None) -> list[dict]:
    """The episodes since ``since`` as ``outages`` prints them, of the ``types`` (None: all);
    none when there is no store yet (a quiet week looks the same)."""
    try:
        store = open_store(cfg, lock.holder(cfg.state_dir).running)
    except StoreMissing:
        return []
    try:
        eps = store.episodes(since=since)
    finally:
        store.close()
    return [episode_json(e) for e in eps if types is None or e.type in types]


ALERT_STATES = ("queued", "sent", "replaced", "refused", "expired")  # agent.store's ALERT_*


def alert_outbox(cfg: Config, last: int = 20) -> dict:
    """The alert outbox as ``alerts list`` shows it: per channel, alerts by state; the newest
    ``last`` alerts with the channel's answer. Empty when there is no store or no outbox yet."""
    out: dict = {"channels": {}, "alerts": []}
    try:
        store = open_store(cfg, lock.holder(cfg.state_dir).running)
    except StoreMissing:
        return out
    try:
        by_state = _alerts_by_state(store)
        recent = store.alerts_recent(last) if by_state else []
    finally:
        store.close()
    for channel, counts in sorted(by_state.items()):
        out["channels"][channel] = {name: counts.get(i, 0) for i, name in enumerate(ALERT_STATES)}
    out["alerts"] = [{"channel": c, "event": e, "state": ALERT_STATES[st] if 0 <= st < 5 else str(st),
                      "attempts": n, "done": iso(from_ns(d)) if d is not None else None, "note": note}
                     for c, e, st, n, d, note in recent]
    return out


def read_agent_id(cfg: Config) -> str | None:
    """The agent's id without creating one: the configured id, else the saved one, else None."""
    if cfg.agent.id:
        return cfg.agent.id
    try:
        return (cfg.state_dir / "agent_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def forward_summary(cfg: Config, saved: str | None, backlog_rows: int, oldest: datetime | None,
                    quarantined: tuple[int, list[dict]], now: datetime) -> dict:
    """Forwarding to InfluxDB for ``status``: ``state`` disabled (no influx.url) | idle (nothing
    tried yet) | ok | retrying (no answer or 429/5xx: backing off) | stopped (the server refused
    us: token, permission, bucket), the backlog and the last error. Never the token."""
    st = json.loads(saved or "{}") or {}
    n_q, recent = quarantined
    if oldest is not None:
        oldest = min(oldest, now)    # the summary of the hour in progress waits since now
    out = {
        "enabled": bool(cfg.influx.url),
        "url": redact_value(cfg.influx.url) or None,
        "api": cfg.influx.api,
        "server": st.get("server") or None,
        "state": "disabled",
        "backlog_rows": backlog_rows,
        "oldest_unsent": iso(oldest) if oldest else None,
        "oldest_unsent_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
        "last_success": st.get("last_success"),
        "last_error": st.get("last_error"),
        "next_try": st.get("next_try_time"),
        "stopped_reason": st.get("halted"),
        "sent_rows": st.get("sent_total", 0),
        "quarantined_rows": n_q,
        "quarantined": [{"time": iso(q["time"]), "status": q["status"], "message": q["message"],
                         "line": q["line"]} for q in recent],
    }
    if cfg.influx.url:
        if st.get("halted"):
            out["state"] = "stopped"
        elif st.get("attempt"):
            out["state"] = "retrying"
        elif st.get("last_success"):
            out["state"] = "ok"
        else:
            out["state"] = "idle"
    return out


def speedtest_summary(cfg: Config, tests: list[Sample], next_due: str | None, now: datetime) -> dict:
    """Speed tests for ``status``: the last result (or failure), the last skip, the next test and
    the data used this month against the budget."""
    done = [t for t in tests if t.fields.get("status") in ("ok", "failed")]
    skips = [t for t in tests if t.fields.get("status") == "skipped"]
    used = speedplan.used_bytes(((t.time, int(t.fields.get("bytes_sent", 0) or 0)
                                  + int(t.fields.get("bytes_received", 0) or 0)) for t in tests), now)

    def row(t: Sample | None) -> dict | None:
        if t is None:
            return None
        return {"time": iso(t.time), **{k: v for k, v in t.fields.items()},
                **({"server": t.tags["server"]} if "server" in t.tags else {})}
    return {
        "enabled": cfg.speedtest.enabled,
        "server": redact_value(cfg.speedtest.server_url) or "speedtest.net",
        "last": row(done[-1] if done else None),
        "last_skip": row(skips[-1] if skips else None),
        "next": next_due if cfg.speedtest.enabled else None,
        "month_used_mb": round(used / 1e6, 1),
        "monthly_budget_mb": cfg.speedtest.monthly_budget_mb,
    }


def iso(t: datetime) -> str:
    """ISO 8601 in UTC with a Z."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ping_row(s: Sample) -> dict:
    """A ping sample as a flat row (the `targets` entries of `probe` and `status` --json)."""
    f = s.fields
    row = {"target": s.tags.get("target"), "role": s.tags.get("role"), "method": s.tags.get("method"),
           "time": iso(s.time)}
    for k in ("sent", "received", "loss_pct", "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "jitter_ms"):
        row[k] = f.get(k)
    return row


def dns_row(s: Sample) -> dict:
    """A dns sample as a flat row (the `dns` entries of `probe` and `status` --json)."""
    f = s.fields
    return {"name": s.tags.get("name"), "server": s.tags.get("server"), "success": f.get("success"),
            "rtt_ms": f.get("rtt_ms"), "rcode": f.get("rcode"), "error": f.get("error"),
            "time": iso(s.time)}


def episode_json(e: Episode) -> dict:
    """An episode as `outages --json` prints it: ISO 8601 UTC times, `end` null while in progress."""
    d = {"id": e.id, "type": e.type, "cause": e.cause, "start": iso(e.start),
         "end": iso(e.end) if e.end else None, "duration_s": e.duration_s, "sustained": e.sustained}
    d.update({k: v for k, v in e.details.items() if k not in d})
    return d


def power_summary(sensors: dict | None, pending_host_down: bool = False) -> dict:
    """The power state for ``status``: ``state`` mains | battery | ups | unknown (no sensor
    applies), the latest reading of each sensor, sensor warnings and the clock's trust."""
    readings = (sensors or {}).get("readings", [])
    on = [r for r in readings if r.get("on_battery")]
    if on:
        state = "ups" if any(r["source"] == "ups" for r in on) else "battery"
    elif any(r.get("on_battery") is False for r in readings):
        state = "mains"
    else:
        state = "unknown"
    return {"state": state, "sensors": readings, "warnings": (sensors or {}).get("errors", {}),
            "clock": (sensors or {}).get("clock"), "host_down_pending_time_sync": pending_host_down}


def _latest(samples: list[Sample]) -> Sample | None:
    return max(samples, key=lambda s: s.time) if samples else None
