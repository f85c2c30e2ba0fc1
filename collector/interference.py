"""Blocking across agents: per region, ISP and target, how many of the lines that checked a
site or VPN endpoint found it blocked while they were up, how long and how (by step); regional
interference events; and the checks as OONI-style web_connectivity measurements.

The agents' data: their ``service`` rows (one per check, made only while the line was up) and
their ``interference`` episodes (runs of checks failing at one step: agent/interference.py).
Pure over records (:class:`CheckDay`, :class:`Blocked`); the readers at the end turn InfluxDB's
answers or a store file into them. Stdlib only.

Figures follow the rest of the collector: one line, one vote (a line that checked a target
counts once, however often it checked); a cell (region x ISP x target) with fewer lines
checking than the publication floor (``min_agents``) says only that it is suppressed; the
share of lines that found the target blocked carries a Wilson score interval at the configured
confidence.

A regional interference event is the signature of a network blocking, not of a site down:
episodes of one target with one cause, on one ISP of one region, starting within
``event_window_s`` of each other, on at least ``event_min_agents`` lines and at least
``event_min_share`` of that ISP's lines that checked the target that day; it counts the lines
on *other* ISPs of the region (those at or over the floor) whose checks of the target all
passed that day (the evidence that the target itself was up). Events are listed only where the
ISP's lines checking reach the floor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import NormalDist, median
from typing import Any

from collector.settings import Settings
from kit.definitions import Quality

DAY_S = 86400
Unit = tuple[str, str, str, str, str]       # agent, region, isp, target, kind
DayKey = tuple[str, str, str, str, str, int]  # a unit and its day
STEPS = ("dns", "tcp", "tls", "http", "vpn", "throttled")
SKIPPED = "skipped"       # a check that could not be made (its keys, its control): no finding
CAUSES = ("dns", "tcp", "tls", "http", "throttled", "vpn")


@dataclass(frozen=True)
class CheckDay:
    """One line's checks of one target on one UTC day (``day``: days since 1970), counted by
    step (``ok`` or the step that failed)."""

    agent: str
    region: str
    isp: str
    target: str
    kind: str
    day: int
    steps: tuple[tuple[str, int], ...]

    @property
    def checks(self) -> int:
        """Checks made (one that could not be made is none)."""
        return sum(n for s, n in self.steps if s != SKIPPED)

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.steps if s not in ("ok", SKIPPED))


@dataclass(frozen=True)
class Blocked:
    """One interference episode of one line (closed: only closed episodes are forwarded)."""

    agent: str
    region: str
    isp: str
    target: str
    kind: str
    cause: str
    how: str
    start: float
    duration_s: float
    failed_checks: int

    @property
    def end(self) -> float:
        return self.start + self.duration_s


Cell = tuple[str, str, str, str]    # region, isp, target, lane ("throttle" or "")
THROTTLE = "throttle"


def _lane(kind: str) -> str:
    """Throttling checks of a name are a figure of their own, apart from its blocking checks."""
    return THROTTLE if kind == THROTTLE else ""


def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a share k/n."""
    if n <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def figures(days: Iterable[CheckDay], blocked: Iterable[Blocked], s: Settings
            ) -> list[dict[str, Any]]:
    """A cell per (region, ISP, target) that any line checked, sorted; see the module's text."""
    checking: dict[Cell, set[str]] = defaultdict(set)
    checks: dict[Cell, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kinds: dict[Cell, str] = {}
    for d in days:
        if not d.checks:
            continue                      # nothing checked that day: the line did not check it
        key = (d.region, d.isp, d.target, _lane(d.kind))
        checking[key].add(d.agent)
        kinds.setdefault(key, d.kind)
        for step, n in d.steps:
            if step != SKIPPED:
                checks[key][step] += n
    eps: dict[Cell, list[Blocked]] = defaultdict(list)
    for b in blocked:
        eps[(b.region, b.isp, b.target, _lane(b.kind))].append(b)
    out = []
    for key in sorted(set(checking) | set(eps)):
        region, isp, target, lane = key
        lines = checking.get(key, set()) | {b.agent for b in eps.get(key, ())}
        cell: dict[str, Any] = {"region": region, "isp": isp, "target": target,
                                "throttling": lane == THROTTLE}
        if len(lines) < s.min_agents:
            cell["suppressed"] = True
            out.append(cell)
            continue
        mine = eps.get(key, [])
        hit = {b.agent for b in mine}
        lo, hi = wilson(len(hit), len(lines), s.confidence)
        by_cause: dict[str, int] = defaultdict(int)
        for b in mine:
            by_cause[b.cause] += 1
        main = max(by_cause, key=lambda c: (by_cause[c], c)) if by_cause else ""
        hows = [b.how for b in mine if b.cause == main]
        counted = checks.get(key, {})
        total = sum(counted.values())
        cell.update({
            "kind": kinds.get(key) or (mine[0].kind if mine else ""),
            "lines_checking": len(lines), "lines_blocked": len(hit),
            "share_blocked": round(len(hit) / len(lines), 4),
            "share_blocked_low": round(lo, 4), "share_blocked_high": round(hi, 4),
            "episodes": len(mine),
            "blocked_h": round(sum(b.duration_s for b in mine) / 3600, 3),
            "median_episode_min": round(median(b.duration_s for b in mine) / 60, 1) if mine
            else None,
            "main_cause": main, "main_how": max(set(hows), key=lambda h: (hows.count(h), h))
            if hows else "",
            "episodes_by_cause": {c: by_cause[c] for c in CAUSES if by_cause.get(c)},
            "checks": total,
            "failed_checks_by_step": {st: counted[st] for st in STEPS if counted.get(st)},
        })
        out.append(cell)
    return out


def events(days: Sequence[CheckDay], blocked: Sequence[Blocked], s: Settings
           ) -> tuple[list[dict[str, Any]], int]:
    """Regional interference events (see the module's text), by start; and how many were left
    out because the ISP's lines checking the target were under the floor."""
    checking: dict[tuple[str, str, str, str, int], set[str]] = defaultdict(set)
    clean: dict[tuple[str, str, str, int], dict[str, set[str]]] = \
        defaultdict(lambda: defaultdict(set))
    for d in days:
        if not d.checks:
            continue
        lane = _lane(d.kind)
        checking[(d.region, d.isp, d.target, lane, d.day)].add(d.agent)
        if d.failed == 0 and d.checks:
            clean[(d.region, d.target, lane, d.day)][d.isp].add(d.agent)
    groups: dict[tuple[str, str, str, str, str], list[Blocked]] = defaultdict(list)
    for b in blocked:
        groups[(b.region, b.isp, b.target, _lane(b.kind), b.cause)].append(b)
    out: list[dict[str, Any]] = []
    unlisted = 0
    for (region, isp, target, lane, cause), eps in sorted(groups.items()):
        eps.sort(key=lambda b: (b.start, b.agent))
        i = 0
        while i < len(eps):
            window = [b for b in eps[i:] if b.start - eps[i].start <= s.event_window_s]
            lines = {b.agent for b in window}
            day = int(eps[i].start // DAY_S)
            on_isp = checking.get((region, isp, target, lane, day), set()) | lines
            if len(lines) < s.event_min_agents or len(lines) < s.event_min_share * len(on_isp):
                i += 1
                continue
            i += len(window)
            if len(on_isp) < s.min_agents:
                unlisted += 1
                continue
            # other ISPs' lines whose checks all passed that day (ISPs over the floor only)
            elsewhere = {other: len(agents) for other, agents in
                         clean.get((region, target, lane, day), {}).items() if other != isp
                         and len(checking.get((region, other, target, lane, day), ()))
                         >= s.min_agents}
            hows = [b.how for b in window]
            out.append({
                "region": region, "isp": isp, "target": target,
                "throttling": lane == THROTTLE, "cause": cause,
                "how": max(set(hows), key=lambda h: (hows.count(h), h)),
                "start": _iso(window[0].start), "end": _iso(max(b.end for b in window)),
                "lines": len(lines), "lines_checking": len(on_isp),
                "share": round(len(lines) / len(on_isp), 4),
                "elsewhere_clean_lines": sum(elsewhere.values()),
                "elsewhere_isps": sorted(elsewhere),
            })
    out.sort(key=lambda e: (e["start"], e["region"], e["isp"], e["target"]))
    return out, unlisted


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def aggregate(days: Sequence[CheckDay], blocked: Sequence[Blocked], s: Settings, start: float,
              end: float, quality: Quality) -> dict[str, Any]:
    """The command's result: the cells, the events and the data quality."""
    evs, unlisted = events(days, blocked, s)
    return {"window": {"start": _iso(start), "end": _iso(end)},
            "settings": {"min_agents": s.min_agents, "confidence": s.confidence,
                         "event_window_s": s.event_window_s, "event_min_share": s.event_min_share,
                         "event_min_agents": s.event_min_agents},
            "cells": figures(days, blocked, s), "events": evs,
            "events_under_floor": unlisted, "data_quality": quality.as_dict()}


# -- OONI-style measurements --------------------------------------------------------------------

@dataclass(frozen=True)
class CheckRow:
    """One check (a ``service`` row) for the export."""

    agent: str
    region: str
    isp: str
    target: str
    kind: str
    step: str
    time: float
    fields: dict[str, Any]


# The agent's failure words as OONI's failure strings (their data formats, df-007-errors), by
# the step that failed and how; anything else becomes "unknown_failure <how>".
OONI_FAILURE = {
    "timeout": "generic_timeout_error", "reset": "connection_reset",
    "refused": "connection_refused", "unreachable": "host_unreachable",
    "network": "network_unreachable", "closed": "eof_error",
    "cert": "ssl_invalid_certificate", "alert": "ssl_failed_handshake",
    "error": "ssl_failed_handshake", "malformed": "unknown_failure malformed",
}
OONI_DNS_FAILURE = {
    "timeout": "generic_timeout_error", "nxdomain": "dns_nxdomain_error",
    "no_answer": "dns_no_answer", "servfail": "dns_servfail_error",
    "refused": "dns_refused_error", "bogon": "dns_bogon_error",
}
OONI_BLOCKING = {"dns": "dns", "tcp": "tcp_ip", "tls": "http-failure", "http": "http-failure"}


def ooni_measurement(row: CheckRow, *, software_version: str, secret: bytes,
                     asn: str = "AS0") -> dict[str, Any]:
    """One site check as a measurement in OONI's base data format (df-000) with the main test
    keys of their web_connectivity (ts-017), so findings can be set beside theirs. What the
    agent does not keep is null (the site's address) or left out (raw DNS answers, HTTP
    bodies); the agent's own words are under ``x_linewatch``. No address of the volunteer
    (``probe_ip`` is 127.0.0.1, as OONI writes when not shared) and no agent name: the report
    id holds a keyed hash of the agent and the day (``secret``: random for each export), so one
    line's checks of a day group together in one export without naming it, and cannot be
    linked to the agent or across exports. ``probe_cc`` is the region code's country."""
    f = row.fields
    how = str(f.get("how") or "")
    table = OONI_DNS_FAILURE if row.step == "dns" else OONI_FAILURE
    failure = None if row.step == "ok" else table.get(how, f"unknown_failure {how or row.step}")
    t = datetime.fromtimestamp(row.time, UTC)
    day = t.strftime("%Y%m%d")
    report = hmac.new(secret, f"{row.agent}\0{day}".encode(), hashlib.sha256).hexdigest()[:16]
    probe_cc = row.region.split("-", 1)[0] if "-" in row.region else "ZZ"
    host, _, port_text = row.target.rpartition(":") if row.target.count(":") == 1 \
        else (row.target, "", "443")
    port = int(port_text) if port_text.isdigit() else 443
    tcp_failed = row.step == "tcp"
    keys: dict[str, Any] = {
        "accessible": row.step == "ok",
        "blocking": False if row.step == "ok" else OONI_BLOCKING.get(row.step),
        "control_failure": None,
        "dns_consistency": None if "dns_agree" not in f else
        ("consistent" if f["dns_agree"] else "inconsistent"),
        "dns_experiment_failure": failure if row.step == "dns" else None,
        "http_experiment_failure": failure if row.step in ("tls", "http") else None,
        "tcp_connect": [] if row.step == "dns" else [{
            "ip": None, "port": port,
            "status": {"failure": failure if tcp_failed else None, "success": not tcp_failed},
            "t": round(float(f["connect_ms"]) / 1000, 6) if "connect_ms" in f else None}],
        "tls_handshakes": [] if row.step in ("dns", "tcp") else [{
            "address": f"{host}:{port}", "failure": failure if row.step == "tls" else None,
            "network": "tcp", "server_name": host,
            "t": round(float(f["tls_ms"]) / 1000, 6) if "tls_ms" in f else None}],
        "x_linewatch": {"step": row.step, "how": how or None,
                        "control_tls": f.get("control_tls"),
                        "status_code": f.get("status_code")},
    }
    return {
        "annotations": {"engine_name": "linewatch", "engine_version": software_version,
                        "region": row.region, "isp": row.isp},
        "data_format_version": "0.2.0", "input": f"https://{row.target}/",
        "measurement_start_time": t.strftime("%Y-%m-%d %H:%M:%S"),
        "probe_asn": asn, "probe_cc": probe_cc, "probe_ip": "127.0.0.1",
        "probe_network_name": row.isp,
        "report_id": f"{day}T000000Z_webconnectivity_{probe_cc}_{asn.removeprefix('AS')}_n1_"
                     f"{report}",
        "software_name": "linewatch", "software_version": software_version, "test_helpers": {},
        "test_keys": keys, "test_name": "web_connectivity",
        "test_runtime": round(sum(float(f.get(k) or 0) for k in
                                  ("dns_ms", "connect_ms", "tls_ms", "http_ms")) / 1000, 6),
        "test_start_time": t.strftime("%Y-%m-%d %H:%M:%S"), "test_version": "linewatch-1",
    }


def ooni_lines(rows: Iterable[CheckRow], lines_by_cell: dict[tuple[str, str, str], int],
               s: Settings, *, software_version: str, asns: dict[str, str] | None = None
               ) -> Iterator[str]:
    """JSON lines, one measurement per site check, of cells (region x ISP x target) at or over
    the floor only, as for the figures: a check of a site few lines check could name them."""
    secret = os.urandom(32)
    for r in rows:
        if r.kind != "site" or lines_by_cell.get((r.region, r.isp, r.target), 0) < s.min_agents:
            continue
        yield json.dumps(ooni_measurement(r, software_version=software_version, secret=secret,
                                          asn=(asns or {}).get(r.isp, "AS0")),
                         sort_keys=True, separators=(",", ":"))


# -- readers: InfluxDB's answers and store files into the records above ------------------------

_TAGS = ("agent", "region", "isp", "target", "kind")
MAX_COUNT = 10_000_000


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _range(start: float, end: float) -> str:
    return f"time >= {int(start * 1e9)} AND time < {int(end * 1e9)}"


def day_query(start: float, end: float) -> str:
    """Each line's checks of each target per UTC day, by step."""
    by = ", ".join(_ident(t) for t in (*_TAGS, "step"))
    return (f'SELECT count("ok") AS "n" FROM "service" WHERE {_range(start, end)} '
            f"GROUP BY time(1d), {by} fill(none)")


def episode_query(start: float, end: float) -> str:
    """The interference episodes that began in the window."""
    by = ", ".join(_ident(t) for t in (*_TAGS[:4], "kind", "cause"))
    return (f'SELECT "duration_s", "how", "failed_checks" FROM "outage" WHERE "type" = '
            f"'interference' AND {_range(start, end)} GROUP BY {by}")


def row_query(start: float, end: float) -> str:
    """The site checks themselves, for the export."""
    by = ", ".join(_ident(t) for t in (*_TAGS[:4], "step"))
    return (f'SELECT * FROM "service" WHERE "kind" = \'site\' AND {_range(start, end)} '
            f"GROUP BY {by}")


def _unit(tags: dict[str, Any], q: Quality, regions: set[str], n: int) -> Unit | None:
    """The line and target of a series (agent, region, isp, target, kind: "" when absent);
    None, with its ``n`` rows counted, when it has no agent or target or an unknown region."""
    # deferred: the tag unescaping is only for answers read here
    from kit.lineproto import unescape_tag

    a, r, i, t, k = (unescape_tag(str(tags.get(key) or "")) for key in _TAGS)
    got: Unit = (a, r, i, t, k)
    if not got[0] or not got[3]:
        q.rejected["interference_untagged"] += n
        return None
    if got[1] not in regions:
        q.rejected["unknown_region"] += n
        q.unknown_regions[got[1] or "(none)"] += n
        return None
    return got


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def days_from(series: Iterable[dict[str, Any]], regions: set[str], q: Quality) -> list[CheckDay]:
    """:func:`day_query`'s series as records; a row with a count that is not a whole number in
    range, or a time outside the answer's days, is counted as ``bad_row``."""
    counts: dict[DayKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for ser in series:
        tags = ser["tags"]
        unit = _unit(tags, q, regions, len(ser["values"]))
        if unit is None:
            continue
        step = str(tags.get("step") or "")
        if step not in ("ok", SKIPPED, *STEPS):
            q.rejected["unknown_step"] += len(ser["values"])
            continue
        cols = ser["columns"]
        if "time" not in cols or "n" not in cols:
            q.rejected["bad_row"] += len(ser["values"])
            continue
        ti, ni = cols.index("time"), cols.index("n")
        for row in ser["values"]:
            t, n = _number(row[ti] if len(row) > ti else None), \
                _number(row[ni] if len(row) > ni else None)
            if t is None or n is None or n != int(n) or not 0 < n <= MAX_COUNT:
                q.rejected["bad_row"] += 1
                continue
            counts[(*unit, int(t // 1000 // DAY_S))][step] += int(n)
            q.accepted["service_days"] += 1
    return _days(counts)


def _days(counts: dict[DayKey, dict[str, int]]) -> list[CheckDay]:
    return [CheckDay(a, r, i, t, k, day, tuple(sorted(v.items())))
            for (a, r, i, t, k, day), v in sorted(counts.items())]


def blocked_from(series: Iterable[dict[str, Any]], regions: set[str], q: Quality) -> list[Blocked]:
    """:func:`episode_query`'s series as records; rows without a duration (a number >= 0) or a
    cause of the agent's are counted as ``bad_row`` or ``unknown_cause``."""
    out = []
    for ser in series:
        tags = ser["tags"]
        unit = _unit(tags, q, regions, len(ser["values"]))
        if unit is None:
            continue
        cause = str(tags.get("cause") or "")
        if cause not in CAUSES:
            q.rejected["unknown_cause"] += len(ser["values"])
            continue
        cols = ser["columns"]
        for row in ser["values"]:
            got = dict(zip(cols, row))
            t, d = _number(got.get("time")), _number(got.get("duration_s"))
            checks = _number(got.get("failed_checks"))
            if t is None or d is None or d < 0:
                q.rejected["bad_row"] += 1
                continue
            out.append(Blocked(unit[0], unit[1], unit[2], unit[3], unit[4], cause,
                               str(got.get("how") or "")[:32], t / 1000, d,
                               int(checks) if checks is not None and checks >= 0 else 0))
            q.accepted["interference_episodes"] += 1
    return out


def _typed(got: dict[str, Any]) -> dict[str, Any]:
    """The fields of a check the export uses, each of its type (others are left out)."""
    return {k: v for k, v in got.items() if k in _ROW_FIELDS and v is not None and (
        isinstance(v, bool) if _ROW_FIELDS[k] is bool else
        isinstance(v, str) and len(v) <= 32 if _ROW_FIELDS[k] is str else
        _number(v) is not None)}


_ROW_FIELDS = {"ok": bool, "how": str, "dns_ms": float, "connect_ms": float, "tls_ms": float,
               "http_ms": float, "status_code": float, "addresses": float, "dns_agree": bool,
               "control_tls": bool}


def rows_from(series: Iterable[dict[str, Any]], regions: set[str], q: Quality) -> Iterator[CheckRow]:
    """:func:`row_query`'s series as check rows; fields of the wrong type are left out."""
    for ser in series:
        tags = ser["tags"]
        unit = _unit(tags, q, regions, len(ser["values"]))
        if unit is None:
            continue
        step = str(tags.get("step") or "")
        cols = ser["columns"]
        for row in ser["values"]:
            got = dict(zip(cols, row))
            t = _number(got.get("time"))
            if t is None or step not in ("ok", *STEPS):    # skipped: no check to export
                q.rejected["bad_row" if step != SKIPPED else "skipped_check"] += 1
                continue
            yield CheckRow(unit[0], unit[1], unit[2], unit[3], "site", step, t / 1000,
                           _typed(got))


def read_store(path: str, start: float, end: float, regions: set[str], q: Quality
               ) -> tuple[list[CheckDay], list[Blocked], list[CheckRow]]:
    """One store file's checks, episodes and site checks in [start, end), through the hardened
    reader (kit.storefile: the schema checked first, sizes and time bounded); its rows of
    other agents are refused (``foreign_agent``), as for the other figures."""
    # deferred: the store-file reader, for this source only
    from kit.storefile import StoreFile

    f = StoreFile.open(path)
    try:
        a, b = int(start * 1e9), int(end * 1e9)
        series = f.series("service")
        # the file's agent: the one with the most rounds (kit.storefile), or, in a file of
        # checks alone, the one with the most of them
        owner = f.owner or _most_checks(f, series)
        day_series: dict[DayKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        rows: list[CheckRow] = []
        units: list[tuple[int, Unit]] = []
        for sid, tags in series.items():
            (n_rows,), = f.query("SELECT count(*) FROM samples WHERE series_id = ? AND "
                                 "time_ns >= ? AND time_ns < ?", (sid, a, b))
            if owner is None or tags.get("agent") != owner:
                q.rejected["foreign_agent"] += n_rows
                continue
            unit = _unit(tags, q, regions, n_rows)
            if unit is None:
                continue
            step = str(tags.get("step") or "")
            for t_ns, text in f.query("SELECT time_ns, CASE WHEN length(fields) <= 4096 THEN "
                                      "fields END FROM samples WHERE series_id = ? AND time_ns "
                                      ">= ? AND time_ns < ? AND typeof(time_ns) = 'integer'",
                                      (sid, a, b)):
                try:
                    fields = json.loads(text) if text else None
                except ValueError:
                    fields = None
                if not isinstance(fields, dict) or step not in ("ok", SKIPPED, *STEPS):
                    q.rejected["bad_row"] += 1
                    continue
                day_series[(*unit, t_ns // 1_000_000_000 // DAY_S)][step] += 1
                q.accepted["service_rows"] += 1
                if unit[4] == "site" and step != SKIPPED:
                    rows.append(CheckRow(unit[0], unit[1], unit[2], unit[3], "site", step,
                                         t_ns / 1e9, _typed(fields)))
            units.append((sid, unit))
        days = _days(day_series)
        blocked = []
        where = units[-1][1] if units else None
        for start_ns, end_ns, cause, details in f.query(
                "SELECT start_ns, end_ns, cause, CASE WHEN length(details) <= 4096 THEN details "
                "END FROM episodes WHERE type = 'interference' AND end_ns IS NOT NULL AND "
                "start_ns >= ? AND start_ns < ?", (a, b)):
            try:
                d = json.loads(details) if details else {}
            except ValueError:
                d = None
            if where is None or not isinstance(d, dict) or cause not in CAUSES or \
                    not isinstance(start_ns, int) or not isinstance(end_ns, int) or \
                    end_ns < start_ns or not isinstance(d.get("target"), str):
                q.rejected["bad_row"] += 1
                continue
            checks = d.get("failed_checks")
            blocked.append(Blocked(where[0], where[1], where[2], d["target"],
                                   str(d.get("kind") or ""), cause, str(d.get("how") or "")[:32],
                                   start_ns / 1e9, (end_ns - start_ns) / 1e9,
                                   checks if isinstance(checks, int) and checks >= 0 else 0))
            q.accepted["interference_episodes"] += 1
        return days, blocked, rows
    finally:
        f.close()


def _most_checks(f: Any, series: dict[int, dict[str, Any]]) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for sid, tags in series.items():
        (n,), = f.query("SELECT count(*) FROM samples WHERE series_id = ?", (sid,))
        counts[str(tags.get("agent") or "")] += n
    counts.pop("", None)
    return max(counts, key=lambda a: (counts[a], a)) if counts else None


def merge_days(days: Iterable[CheckDay]) -> list[CheckDay]:
    """Records of one line, target and day from several answers or sources as one."""
    counts: dict[DayKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in days:
        for step, n in d.steps:
            counts[(d.agent, d.region, d.isp, d.target, d.kind, d.day)][step] += n
    return _days(counts)
