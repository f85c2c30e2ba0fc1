"""The aggregation's result as a table, CSV, JSON, and as ``regional_*`` points (pure)."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime

from collector import figures

# The identity columns of a CSV row; `region_name` comes with `region`. The figures follow
# (collector.figures.csv_columns).
IDENTITY = ("region", "region_name", "isp", "city", "access", "period_start", "period_end",
            "suppressed")


def to_json(result: dict) -> str:
    """The cells as a JSON list (the contract of ``aggregate --format json``)."""
    return json.dumps(result["cells"], ensure_ascii=False, indent=1, allow_nan=False) + "\n"


def to_csv(result: dict) -> str:
    """One row per cell: identity, then each figure with ``_ci_low``/``_ci_high``. The profiles
    (by hour, by weekday, heat map) are in the JSON and the report only."""
    by = [k for k in IDENTITY if k not in ("period_start", "period_end", "suppressed")
          and k in result.get("by", []) + (["region_name"] if "region" in result.get("by", []) else [])]
    cols = by + ["period_start", "period_end", "suppressed"] + figures.csv_columns()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for cell in result["cells"]:
        row = []
        for c in cols:
            if c.endswith("_ci_low") or c.endswith("_ci_high"):
                ci = cell.get(c.rsplit("_ci_", 1)[0] + "_ci")
                v = None if not ci else ci[0 if c.endswith("_low") else 1]
            else:
                v = cell.get(c)
            row.append("" if v is None else ("true" if v is True else "false" if v is False else v))
        w.writerow(row)
    return buf.getvalue()


def _fmt(v, digits: int = 2, scale: float = 1.0) -> str:
    if v is None:
        return "-"
    return f"{v * scale:.{digits}f}"


def to_table(result: dict) -> str:
    """Human-readable: the headline figures per cell, regional events, data quality."""
    by = result["by"]
    s = result["settings"]
    head = [k.upper() if k != "isp" else "ISP" for k in by] + [
        "PERIOD", "AGENTS", "LINES", "SAIFI", "SAIDI_MIN", "CAIDI_MIN", "MAIFI", "ASAI", "NET_AVAIL_%",
        "NET_OUT/AGENT", "NET_MIN/AGENT", "RTT_P50_MS", "DOWN_P50_MBPS"]
    rows = []
    for c in result["cells"]:
        ident = [str(c.get(k, "")) or "-" for k in by] + [c["period_start"][:10]]
        if c["suppressed"]:
            rows.append(ident + [suppressed_text(c, s)])
            continue
        rows.append(ident + [
            str(c["agents"]), str(c.get("sites", c["agents"])), _fmt(c["power_saifi"]),
            _fmt(c["power_saidi_min"], 1),
            _fmt(c["power_caidi_min"], 1), _fmt(c["power_maifi"]), _fmt(c["power_asai"], 4),
            _fmt(c["internet_availability"], 3, 100), _fmt(c["internet_outages_per_agent"]),
            _fmt(c["internet_outage_min_per_agent"], 1), _fmt(c["rtt_p50_ms"], 1),
            _fmt(c["download_p50_bps"], 1, 1e-6)])
    widths = [max([len(head[i])] + [len(r[i]) for r in rows if i < len(r) and len(r) == len(head)])
              for i in range(len(head))]
    out = [f"linewatch regional reliability  {result['window']['start']} .. {result['window']['end']}"
           f"  (time zone {s['timezone']}, sustained > {s['momentary_max_s']:g} s)", ""]
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in rows:
        if len(r) == len(head):
            out.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        else:
            n = len(by) + 1
            out.append("  ".join(v.ljust(w) for v, w in zip(r[:n], widths)) + "  " + r[n])
    if not rows:
        out.append("(no agent observed in the window)")
    out += ["", "95 % intervals (bootstrap over agents) are in --format json and csv."]
    out += ["", "Regional events"]
    if result["events"]:
        for e in result["events"]:
            out.append(f"  {e['start']}  {e['region']}  {e['type']:<12} {e['cause']:<10} "
                       f"{e.get('sites_affected', e['agents_affected'])}/"
                       f"{e.get('sites_observed', e['agents_observed'])} lines "
                       f"({e['agents_affected']}/{e['agents_observed']} agents), median "
                       f"{e['median_duration_min']:.0f} min, {', '.join(e['isps'])}")
    else:
        out.append("  none")
    if result.get("events_suppressed"):
        out.append(f"  ({result['events_suppressed']} more in regions with fewer than "
                   f"{s['min_agents']} lines watching: not listed)")
    out += ["", "Data quality"] + ["  " + line for line in quality_lines(result["data_quality"])]
    return "\n".join(out) + "\n"


def suppressed_text(cell: dict, settings: dict) -> str:
    """Why a cell shows no figure, in words (its ``suppressed_reason``)."""
    if cell.get("suppressed_reason") == "min_watch_h":
        return (f"suppressed (fewer than {settings['min_agents']} lines watched "
                f"{settings.get('min_watch_h', 0):g} h or more)")
    return f"suppressed (fewer than {settings['min_agents']} lines)"


def quality_lines(q: dict) -> list[str]:
    acc = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in q.get("accepted", {}).items())
    out = [f"accepted: {acc or 'nothing'}"]
    for kind in ("rejected", "clipped"):
        items = q.get(kind) or {}
        out.append(f"{kind}: " + (", ".join(f"{k} {v}" for k, v in items.items()) or "none"))
    read = q.get("read") or {}
    if read:
        out.append(f"read: {read.get('agents_from_summaries', 0)} agents from hourly summaries "
                   f"({read.get('agent_hours_from_summaries', 0)} agent-hours), "
                   f"{read.get('agents_from_raw_rows', 0)} agents from raw rows, no hourly "
                   f"summaries ({read.get('agent_hours_from_raw_rows', 0)} agent-hours)")
    if q.get("unknown_region_codes"):
        out.append("unknown region codes: " + ", ".join(
            f"{k} ({v})" for k, v in q["unknown_region_codes"].items()))
    if q.get("unreadable_stores"):
        out.append("unreadable: " + "; ".join(q["unreadable_stores"]))
    return out


def _epoch_ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp()) * 1_000_000_000


def _fields(cell: dict, declared) -> dict:
    """The fields of one ``regional_*`` point: each ``declared`` figure the cell has (None and
    NaN left out) as its type, with its interval's ends when it has both, and for a line figure
    the lines it rests on."""
    fields: dict = {}
    for f in declared:
        v = cell.get(f.name)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        fields[f.name] = int(v) if f.type == "integer" else float(v)
        ci = cell.get(f.name + "_ci") if f.interval else None
        if ci and None not in ci:
            fields[f.name + "_ci_low"], fields[f.name + "_ci_high"] = float(ci[0]), float(ci[1])
        if f.basis and cell.get(f.name + "_sites") is not None:
            fields[f.name + "_sites"] = int(cell[f.name + "_sites"])
    return fields


def regional_points(result: dict) -> list[tuple[str, dict, dict, int]]:
    """(measurement, tags, fields, time_ns) for dashboards, time = the period's start:
    ``regional_power``, ``regional_internet``, ``regional_line`` (figures with ``_ci_low`` and
    ``_ci_high``), ``regional_load_shedding`` (share per hour and weekday), ``regional_events``,
    and ``regional_coverage`` (agents, or suppressed without figures). Rewriting a period
    overwrites its points (same series and time)."""
    period = result["period"]
    by = result["by"]
    out = []
    for c in result["cells"]:
        tags = {k: c[k] for k in by if c.get(k)}
        tags["period"] = period
        t = _epoch_ns(c["period_start"])
        if c["suppressed"]:
            out.append((figures.COVERAGE, tags, {"suppressed": True}, t))
            continue
        out.append((figures.COVERAGE, tags, {"suppressed": False,
                                              **_fields(c, figures.written_to(figures.COVERAGE))},
                    t))
        for meas in (figures.POWER, figures.INTERNET, figures.LINE):
            fields = _fields(c, figures.written_to(meas))
            if fields:
                out.append((meas, tags, fields, t))
        for wd, row in enumerate(c.get("load_shedding_heatmap") or []):
            for hour, share in enumerate(row):
                if share is not None:
                    out.append((figures.LOAD_SHEDDING, {**tags, "weekday": str(wd),
                                                        "hour": f"{hour:02d}"},
                                {"share": float(share)}, t))
    for e in result["events"]:
        out.append((figures.EVENTS, {"region": e["region"], "type": e["type"],
                                     "scope": e["scope"]},
                    {"agents_affected": e["agents_affected"], "agents_observed": e["agents_observed"],
                     "sites_affected": e["sites_affected"], "sites_observed": e["sites_observed"],
                     "share": float(e["share"] or 0.0), "cause": e["cause"],
                     "median_duration_min": float(e["median_duration_min"]),
                     "end_unix_ms": _epoch_ns(e["end"]) // 1_000_000}, _epoch_ns(e["start"])))
    return out


def interference_table(result: dict) -> str:
    """``linewatch-collector interference``: the cells (region x ISP x target), then the
    regional events."""
    s = result["settings"]
    head = ["REGION", "ISP", "TARGET", "LINES", "BLOCKED", "SHARE_%", "95%_INTERVAL", "EPISODES",
            "BLOCKED_H", "HOW"]
    rows = []
    for c in result["cells"]:
        ident = [c["region"] or "-", c["isp"] or "-",
                 c["target"] + (" (throttling)" if c.get("throttling") else "")]
        if c.get("suppressed"):
            rows.append(ident + [f"(fewer than {s['min_agents']} lines checking: suppressed)"])
            continue
        how = f"{c['main_cause']}: {c['main_how']}" if c["main_cause"] else "-"
        rows.append(ident + [str(c["lines_checking"]), str(c["lines_blocked"]),
                             _fmt(c["share_blocked"], 1, 100),
                             f"{_fmt(c['share_blocked_low'], 1, 100)}-"
                             f"{_fmt(c['share_blocked_high'], 1, 100)}",
                             str(c["episodes"]), _fmt(c["blocked_h"], 2), how])
    widths = [max([len(head[i])] + [len(r[i]) for r in rows if len(r) == len(head)])
              for i in range(len(head))]
    out = [f"linewatch blocking while the line was up  {result['window']['start']} .. "
           f"{result['window']['end']}", ""]
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in rows:
        out.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if not rows:
        out.append("(no site or VPN server was checked in this window)")
    out += ["", f"regional interference events ({len(result['events'])}; "
                f"{result['events_under_floor']} under the floor, not listed):"]
    for e in result["events"]:
        elsewhere = (f"; passed on {e['elsewhere_clean_lines']} line(s) of "
                     f"{', '.join(e['elsewhere_isps'])} that day") if e["elsewhere_isps"] else ""
        out.append(f"  {e['start']} .. {e['end']}  {e['region']} / {e['isp']}: {e['target']} "
                   f"{e['cause']}: {e['how']} on {e['lines']} of {e['lines_checking']} lines"
                   f"{elsewhere}")
    return "\n".join(out) + "\n"
