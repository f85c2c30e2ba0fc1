"""The NGO's regional page: one collector result (cells x periods, events, data quality) as a
self-contained HTML page, :func:`region_report` (built on the HTML kit, kit/html).

The identity columns follow the result's ``by``; a suppressed cell shows why and no figure; the
data-quality counters and the default method are worded in :mod:`collector.regional_text`.

Just over the house's 400 lines: the page's sections in reading order (its prose is in
regional_text.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from collector import figures
from collector.regional_text import QUALITY_COUNTERS, default_method
from kit.definitions import INTERNET_CAUSES
from kit.html import frame
from kit.html.fmt import (
    CAUSE_LABELS,
    DASH,
    EPISODE_KINDS,
    WEEKDAYS,
    as_dict,
    as_list,
    esc,
    fmt_ci,
    fmt_freq,
    fmt_int,
    fmt_mbit,
    fmt_min,
    fmt_num,
    fmt_pct,
    fmt_range,
    fmt_time,
    name_html,
    num,
    parse_time,
    region_html,
    utc_offset,
    zone,
)
from kit.html.svg import CAUSE_COLORS, POWER_AMBER, Bar, svg_columns, svg_hbar, svg_heatmap

# How the page writes each format of collector.figures.PAGE_FORMATS.
FORMATS: dict[str, Callable[[object], str]] = {
    "int": fmt_int, "num1": fmt_min, "num2": fmt_freq, "pct": fmt_pct,
    "pct1": lambda v: fmt_pct(v, 1), "mbit": lambda v: fmt_mbit(v, unit=False),
}


def _columns(table: str) -> tuple[tuple[str, str, str, Callable[[object], str]], ...]:
    """(key, column heading, expansion for <abbr>, formatter) of a figures table, left to right,
    as collector/figures.py declares them."""
    return tuple((key, label, expl, FORMATS[fmt]) for key, label, expl, fmt
                 in figures.page_columns(table))


# The headline table, and the second one: work hours and line quality, same layout.
HEADLINE = _columns("headline")
QUALITY_COLUMNS = _columns("quality")

SETTING_LABELS = {
    "min_agents": ("Publication floor", lambda v: f"{fmt_int(v)} lines per cell"),
    "min_watch_h": ("Watching needed", lambda v: f"{fmt_num(v, 0)} h per line (at most half "
                    "the period)"),
    "momentary_max_s": ("Momentary cuts", lambda v: f"up to {fmt_int(v)} s"),
    "work_hours": ("Work hours", esc),
    "timezone": ("Time zone", esc),
    "speed_threshold_bps": ("Speed threshold", fmt_mbit),
}


def region_report(result: Mapping) -> str:
    """The NGO's page for one collector result (shape in the module's callers and tests).

    Tolerates missing optional keys: no cells, all suppressed, no events, profiles of nulls, no
    data quality, no methodology (a default text is written from the settings). Cells are shown
    in the order given; the identity columns follow ``by`` (default region, ISP)."""
    result = as_dict(result)
    settings = as_dict(result.get("settings"))
    window = as_dict(result.get("window"))
    tz, tz_label = zone(settings.get("timezone"), window.get("start"))
    title = str(result.get("title") or "linewatch regional reliability report")
    by = [k for k in as_list(result.get("by")) if isinstance(k, str)] or ["region", "isp"]
    period = str(result.get("period") or "all")
    cells = [c for c in as_list(result.get("cells")) if isinstance(c, dict)]
    shown = [c for c in cells if not c.get("suppressed")]
    names = {c.get("region"): c.get("region_name") for c in cells if c.get("region_name")}
    floor = fmt_int(settings.get("min_agents")) if num(settings.get("min_agents")) is not None \
        else "the minimum number of"
    watch = (f"{fmt_num(settings.get('min_watch_h'), 0)} h" if num(settings.get("min_watch_h"))
             is not None else "long enough")
    ctx = _RegionCtx(tz=tz, by=by, period=period, names=names, floor=floor, watch=watch)

    sections = [
        ("headline", "Headline figures", _headline(cells, ctx)),
        ("regions", "Charts by region", _region_charts(shown, ctx)),
        ("load-shedding", "Load shedding by hour", _load_shedding(shown, ctx)),
        ("events", "Regional events", _events_table(as_list(result.get("events")), ctx)),
        ("data-quality", "Data quality", _quality_table(as_dict(result.get("data_quality")))),
        ("method", "Method and limits",
         frame.paragraphs(result.get("methodology")) if result.get("methodology")
         else default_method(settings, tz_label)),
    ]
    start, end = window.get("start"), window.get("end")
    facts = [("Window", esc(fmt_range(start, end, tz))),
             ("Time zone", f"{esc(tz_label)} ({utc_offset(tz, parse_time(start))})"),
             ("Cells", f"{len(cells):,} ({len(cells) - len(shown):,} suppressed), by "
                       f"{esc(', '.join(by))}, period: {esc(period)}"),
             ("Generated", esc(fmt_time(result.get("generated_at"), tz)))]
    for key, value in settings.items():
        if key == "timezone":
            continue
        label, fmt = SETTING_LABELS.get(key, (key.replace("_", " "), esc))
        facts.append((label, fmt(value)))
    toc = frame.toc([(sid, h) for sid, h, _ in sections])
    header = (f"<header>\n<h1>{esc(title)}</h1>\n"
              '<p class="lede">Power and internet reliability measured by volunteers\' '
              f"linewatch agents.</p>\n{frame.facts(facts)}\n{toc}\n</header>")
    body = header + "\n<main>\n" + "".join(frame.section(*s) for s in sections) + "</main>\n" + \
        f'<footer>{esc(title)} {DASH} generated {esc(fmt_time(result.get("generated_at"), tz))}' \
        f" ({esc(tz_label)}). Self-contained page: no scripts, no external resources.</footer>"
    return frame.page(title, body, "@media print{@page{size:A4 landscape}}")


@dataclass(frozen=True)
class _RegionCtx:
    tz: tzinfo
    by: list[str]
    period: str
    names: Mapping[object, object]
    floor: str
    watch: str = "long enough"


def _period_label(cell: Mapping, ctx: _RegionCtx) -> str:
    if ctx.period == "all":
        return "whole window"
    start = parse_time(cell.get("period_start"))
    if start is None:
        return DASH
    d = start.astimezone(ctx.tz).date()
    if ctx.period == "day":
        return f"{WEEKDAYS[d.weekday()]} {d.isoformat()}"
    if ctx.period == "week":
        return f"week of {d.isoformat()}"
    if ctx.period == "month":
        return d.strftime("%Y-%m")
    end = parse_time(cell.get("period_end"))
    return f"{d.isoformat()} {DASH} {end.astimezone(ctx.tz).date().isoformat()}" if end else \
        d.isoformat()


def _cell_name(cell: Mapping, ctx: _RegionCtx, with_region: bool = False) -> str:
    """Plain text naming a cell within its region (for chart labels and tooltips)."""
    parts = [str(cell.get(k) or DASH) for k in ctx.by if k != "region"]
    if with_region and "region" in ctx.by:
        parts.insert(0, str(cell.get("region_name") or cell.get("region") or DASH))
    if ctx.period != "all":
        parts.append(_period_label(cell, ctx))
    return " \u00b7 ".join(parts) or "all agents"


def _identity_cells(cell: Mapping, ctx: _RegionCtx) -> str:
    out = []
    for k in ctx.by:
        if k == "region":
            code = cell.get("region")
            name = cell.get("region_name") or ctx.names.get(code)
            inner = (f'{name_html(name)}<span class="code">{esc(code)}</span>' if name and code
                     else name_html(name or code))
            out.append(f'<th scope="row">{inner}</th>')
        else:
            out.append(f"<td>{name_html(cell.get(k))}</td>")
    if ctx.period != "all":   # with one period for the whole window the header already says it
        out.append(f'<td class="nw">{esc(_period_label(cell, ctx))}</td>')
    return "".join(out)


def _figures_table(cells: Sequence[Mapping], ctx: _RegionCtx, columns, caption: str,
                   suppressed_text: bool) -> str:
    head = "".join(f"<th scope=\"col\">{esc(k.capitalize() if k != 'isp' else 'ISP')}</th>"
                   for k in ctx.by)
    if ctx.period != "all":
        head += '<th scope="col">Period</th>'
    head += "".join(f'<th scope="col" class="n"><abbr title="{esc(expl)}">{esc(label)}</abbr></th>'
                    for _, label, expl, _ in columns)
    rows = []
    for c in cells:
        ident = _identity_cells(c, ctx)
        if c.get("suppressed"):
            if suppressed_text:
                rows.append(f'<tr>{ident}<td class="suppressed" colspan="{len(columns)}">'
                            f"suppressed: {esc(_suppressed_why(c, ctx))}</td></tr>")
            continue
        figs = "".join(f'<td class="n">{esc(fmt(c.get(key)))}{fmt_ci(c.get(key + "_ci"), fmt)}'
                       f"{_basis(c, key)}</td>" for key, _, _, fmt in columns)
        rows.append(f"<tr>{ident}{figs}</tr>")
    if not rows:
        return ""
    return (f'<div class="scroll"><table class="figures"><caption>{esc(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _suppressed_why(cell: Mapping, ctx: _RegionCtx) -> str:
    if cell.get("suppressed_reason") == "min_watch_h":
        return f"fewer than {ctx.floor} lines watched {ctx.watch} or more"
    return f"fewer than {ctx.floor} lines"


def _basis(cell: Mapping, key: str) -> str:
    """"from 1 of 6 lines" under a figure that rests on fewer lines than the cell has (a
    download median when only one line ran speed tests)."""
    n, total = num(cell.get(key + "_sites")), num(cell.get("sites"))
    if n is None or total is None or n >= total or cell.get(key) is None:
        return ""
    return f'<br><small class="muted">from {fmt_int(n)} of {fmt_int(total)} lines</small>'


def _headline(cells: Sequence[Mapping], ctx: _RegionCtx) -> str:
    if not cells:
        return '<p class="muted">No cells: no agent reported in this window.</p>'
    intro = ("<p>One row per cell. Small figures in brackets are 95 % bootstrap intervals over "
             "lines. Power indices follow IEEE 1366 with one line (site) as one customer: agents "
             "behind one router count once "
             '(see <a href="#method">Method and limits</a>).</p>')
    main = _figures_table(cells, ctx, HEADLINE, "Power and internet reliability by cell", True)
    shown = [c for c in cells if not c.get("suppressed")]
    if not shown:
        return intro + main + (f'<p class="muted">Every cell has fewer than {esc(ctx.floor)} '
                               f"lines that watched {esc(ctx.watch)} or more: no figure is "
                               "published.</p>")
    more = _figures_table(shown, ctx, QUALITY_COLUMNS, "Work hours and line quality by cell",
                          False)
    return intro + main + "<h3>Work hours and line quality</h3>" + more


def _group_by_region(cells: Sequence[Mapping]) -> list[tuple[object, list[Mapping]]]:
    groups: dict[object, list[Mapping]] = {}
    for c in cells:
        groups.setdefault(c.get("region"), []).append(c)
    return list(groups.items())


def _region_heading(code: object, cells: Sequence[Mapping], ctx: _RegionCtx) -> tuple[str, str]:
    """A region group's heading as HTML and as plain text (for SVG titles)."""
    name = next((c.get("region_name") for c in cells if c.get("region_name")),
                ctx.names.get(code))
    if not code and not name:
        return "All regions", "All regions"
    plain = f"{name} ({code})" if name and code else str(name or code)
    return region_html(code, name), plain


def _region_charts(shown: Sequence[Mapping], ctx: _RegionCtx) -> str:
    if not shown:
        return '<p class="muted">No cell above the publication floor: nothing to chart.</p>'
    out = ["<p>Bars show the figure per cell; black whiskers its 95 % interval where one could "
           "be computed. Hover a bar for its exact value.</p>"]
    causes = {k: CAUSE_COLORS.get(k, "#777777") for k in INTERNET_CAUSES}
    for code, cells in _group_by_region(shown):
        heading, plain = _region_heading(code, cells, ctx)
        saidi = [Bar(_cell_name(c, ctx), (("saidi", c.get("power_saidi_min")),),
                     _ci_pair(c.get("power_saidi_min_ci"))) for c in cells]
        net = [Bar(_cell_name(c, ctx),
                   tuple((k, c.get(f"internet_outage_min_per_agent_{k}")) for k in causes),
                   _ci_pair(c.get("internet_outage_min_per_agent_ci")),
                   num(c.get("internet_outage_min_per_agent"))) for c in cells]
        out.append(f"<h3>{heading}</h3>")
        out.append('<div class="pair">')
        out.append(frame.figure(
            svg_hbar(saidi, title=f"{plain}: SAIDI, minutes without power per customer",
                     colors={"saidi": POWER_AMBER},
                     series_labels={"saidi": "sustained power cuts, min per customer"},
                     legend=True, width=580, label_w=150),
            "Power: SAIDI, minutes of sustained power cuts per customer."))
        out.append(frame.figure(
            svg_hbar(net, title=f"{plain}: internet outage minutes per agent by cause",
                     colors=causes, series_labels=CAUSE_LABELS, width=580, label_w=150),
            "Internet: outage minutes per agent by the cause the agents found; the figure after "
            "the bar is the total."))
        out.append("</div>")
    return "\n".join(out)


def _ci_pair(ci: object) -> tuple[float | None, float | None] | None:
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return num(ci[0]), num(ci[1])
    return None


HOURS = tuple(f"{h:02d}" for h in range(24))


def _load_shedding(shown: Sequence[Mapping], ctx: _RegionCtx) -> str:
    intro = ("<p>For each weekday and hour of day (local time), the share of observed agent-time "
             "without mains power, in percent: 50 means half the watching agents had no power in "
             "that hour on average. The right-hand column is the weekday's share over all hours; "
             "the bars below are the hour-of-day profile over all weekdays.</p>")
    if not shown:
        return '<p class="muted">No cell above the publication floor: no profile.</p>'
    out = [intro]
    # One scale for every hour profile on the page, so bars compare between cells.
    peak = max((v for c in shown for v in map(num, as_list(c.get("load_shedding_by_hour")))
                if v is not None), default=0.0)
    ymax = min(1.0, max(peak, 0.05))
    for code, cells in _group_by_region(shown):
        heading, _ = _region_heading(code, cells, ctx)
        out.append(f"<h3>{heading}</h3>")
        for c in cells:
            name = _cell_name(c, ctx)
            full = _cell_name(c, ctx, with_region=True)
            grid = as_list(c.get("load_shedding_heatmap"))
            by_hour = as_list(c.get("load_shedding_by_hour"))
            by_day = as_list(c.get("load_shedding_by_weekday"))
            values = [num(v) for row in grid if isinstance(row, list) for v in row]
            values += [num(v) for v in by_hour + by_day]
            out.append(f"<h4>{esc(name)}</h4>")
            if all(v is None for v in values):
                out.append('<p class="muted">No load-shedding profile for this cell (no power '
                           "observations).</p>")
                continue
            notes = [fmt_pct(by_day[i], 1) if i < len(by_day) else DASH for i in range(7)]

            # The chart's own <title> names the cell: the 168 tooltips stay short.
            def tip(i: int, j: int, v: float | None) -> str:
                when = f"{WEEKDAYS[i]} {j:02d}:00{DASH}{(j + 1) % 24:02d}:00"
                return f"{when}: " + (fmt_pct(v, 1) if v is not None else "no observation")
            out.append(frame.figure(
                svg_heatmap(grid, WEEKDAYS, HOURS, title=f"{full}: load shedding by weekday and "
                            "hour", tip=tip, row_notes=notes, note_title="all day",
                            legend_title="share of agent-time without power, %"),
                "Share of agent-time without power, % (weekday rows, local hour columns)."))
            if by_hour:
                out.append(frame.figure(
                    svg_columns([by_hour[h] if h < len(by_hour) else None for h in range(24)],
                                HOURS, title=f"{full}: load shedding by hour of day",
                                fmt=lambda v: f"{round(v * 100)}", ymax=ymax,
                                tip=lambda h, v, full=full: f"{full}, {h:02d}:00: "
                                f"{fmt_pct(v, 1)} without power"),
                    "Hour-of-day profile: share of agent-time without power, % (all weekdays; "
                    "one scale for every cell on this page)."))
    return "\n".join(out)


def _events_table(events: Sequence[object], ctx: _RegionCtx) -> str:
    events = [e for e in events if isinstance(e, dict)]
    if not events:
        return '<p class="muted">No regional event in this window.</p>'
    never = datetime.min.replace(tzinfo=UTC)
    events.sort(key=lambda e: parse_time(e.get("start")) or never)
    rows = []
    for e in events:
        isps = e.get("isps")
        isps_html = ", ".join(name_html(i) for i in isps) if isinstance(isps, list) and isps \
            else DASH
        region = e.get("region")
        kind = str(e.get("type") or "")
        rows.append(
            f"<tr><td>{esc(fmt_time(e.get('start'), ctx.tz))}</td>"
            f"<td>{region_html(region, e.get('region_name') or ctx.names.get(region))}</td>"
            f"<td>{esc(EPISODE_KINDS.get(kind, kind or DASH))}</td>"
            f"<td>{esc(CAUSE_LABELS.get(str(e.get('cause')), e.get('cause') or DASH))}</td>"
            f'<td class="n">{fmt_int(e.get("sites_affected", e.get("agents_affected")))} of '
            f'{fmt_int(e.get("sites_observed", e.get("agents_observed")))}'
            f'<br><small class="muted">{fmt_int(e.get("agents_affected"))} of '
            f'{fmt_int(e.get("agents_observed"))} agents</small></td>'
            f'<td class="n">{fmt_pct(e.get("share"), 1)}</td>'
            f'<td class="n">{fmt_min(e.get("median_duration_min"))}</td>'
            f"<td>{isps_html}</td></tr>")
    return ("<p>Times when a large share of a region's lines lost power or internet at once: a "
            "grid or network fault, not a single line. Lines are counted, not agents: agents "
            "behind one router are one line.</p>"
            '<div class="scroll"><table><caption>Regional events, earliest first (local time)'
            "</caption><thead><tr>"
            '<th scope="col">Start</th><th scope="col">Region</th><th scope="col">Type</th>'
            '<th scope="col">Cause</th><th scope="col" class="n">Lines affected</th>'
            '<th scope="col" class="n">Share</th><th scope="col" class="n">Median min</th>'
            '<th scope="col">ISPs</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _quality_table(dq: Mapping) -> str:
    rows = []
    for group, label in (("accepted", "accepted"), ("rejected", "rejected"),
                         ("clipped", "clipped"), ("read", "read from")):
        counters = as_dict(dq.get(group))
        if not counters and group == "read":
            continue    # a result of an older version, or made without a source
        if not counters:
            rows.append(f'<tr><th scope="row">{label}</th><td colspan="3" class="muted">'
                        f"none</td></tr>")
            continue
        for i, (key, value) in enumerate(counters.items()):
            what = QUALITY_COUNTERS.get(key, "")
            rows.append(f'<tr><th scope="row">{label if i == 0 else ""}</th>'
                        f"<td><code>{esc(key)}</code></td><td class=\"n\">{fmt_int(value)}</td>"
                        f"<td>{esc(what)}</td></tr>")
    codes = as_dict(dq.get("unknown_region_codes"))
    extra = ""
    if codes:
        extra = ("<p>Unknown region codes seen: " + ", ".join(
            f"<code>{esc(k)}</code> ({fmt_int(v)})" for k, v in codes.items()) + ".</p>")
    unreadable = [str(u) for u in as_list(dq.get("unreadable_stores")) if u]
    if unreadable:
        extra += ("<p>Store files not read (nothing of them is in the figures):</p><ul>"
                  + "".join(f"<li><code>{esc(u)}</code></li>" for u in unreadable) + "</ul>")
    return ("<p>Every record is checked before it reaches a figure. Rejected records are left out; "
            "clipped ones are kept, shortened, merged or given their agent's region. Counters "
            "not listed were zero. <em>Read from</em> says how many agents and agent-hours were "
            "read from the agents' hourly summaries, and how many from raw rows (agents of an "
            "older version, or the hours before an agent's first summary).</p>"
            '<table><caption>Records accepted, rejected and clipped</caption><thead><tr>'
            '<th scope="col">Group</th><th scope="col">Counter</th>'
            '<th scope="col" class="n">Count</th><th scope="col">Meaning</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>{extra}")
