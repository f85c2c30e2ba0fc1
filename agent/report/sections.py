"""The line page's sections drawn from its records: the outage timeline, day by day, speed tests
(set against the paid plan) and every episode with what its rounds recorded (pure, stdlib).

Each ``*_section`` function takes the line's dict and returns the section's HTML; episodes and
gaps arrive as :class:`PageEpisode` records with parsed times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from kit.html import frame
from kit.html.fmt import (
    CAUSE_LABELS,
    DASH,
    EPISODE_KINDS,
    WEEKDAYS,
    as_dict,
    as_list,
    day_start,
    day_ticks,
    esc,
    fmt_int,
    fmt_mbit,
    fmt_min,
    fmt_num,
    fmt_pct,
    fmt_time,
    local_days,
    num,
    parse_day,
    parse_time,
)
from kit.html.svg import GAP_GREY, OUTAGE_RED, POWER_AMBER, Series, Span, svg_timeline, svg_xy
from kit.words import plural


@dataclass(frozen=True)
class PageEpisode:
    """An episode or gap with parsed times (seconds since 1970; None when unparseable)."""

    type: str
    cause: str
    start: float | None
    end: float | None
    minutes: float | None
    raw_start: object
    raw_end: object
    evidence: object = None

    @staticmethod
    def of(e: Mapping) -> PageEpisode:
        s, en = parse_time(e.get("start")), parse_time(e.get("end"))
        start = s.timestamp() if s else None
        minutes = num(e.get("duration_min"))
        end = en.timestamp() if en else None
        if end is None and start is not None and minutes is not None:
            end = start + minutes * 60
        if minutes is None and start is not None and end is not None:
            minutes = (end - start) / 60
        return PageEpisode(str(e.get("type") or ""), str(e.get("cause") or ""), start, end,
                           minutes, e.get("start"), e.get("end"), e.get("evidence"))


# Timeline lanes: outages in the upper half, power cuts in the lower half, not-watching behind
# at full height: the lane, not only the colour, tells them apart (and in greyscale print).
TIMELINE_LANES = {
    "gap": (GAP_GREY, 0.0, 1.0, "not watching (computer off): not an outage"),
    "connectivity": (OUTAGE_RED, 0.0, 0.5, "internet outage (upper half)"),
    "power": (POWER_AMBER, 0.5, 1.0, "power cut (lower half)"),
}


def timeline_section(line: Mapping, episodes: Sequence[PageEpisode],
                     gaps: Sequence[PageEpisode], tz: tzinfo, tz_label: str) -> str:
    window = as_dict(line.get("window"))
    ws, we = parse_time(window.get("start")), parse_time(window.get("end"))
    marks = [e for e in list(episodes) + list(gaps) if e.start is not None and e.end is not None]
    if ws and we and we > ws:
        lo, hi = ws.timestamp(), we.timestamp()
    elif marks:
        lo, hi = min(e.start for e in marks), max(e.end for e in marks)   # type: ignore
    else:
        return '<p class="muted">No window and no episode: nothing to draw.</p>'
    days = local_days(lo, hi, tz)
    bounds = [day_start(d, tz) for d in days] + [day_start(days[-1] + timedelta(days=1), tz)]
    spans: list[Span] = []
    minutes = [[0.0, 0.0] for _ in days]
    for e in marks:
        kind = "gap" if e.type in ("gap", "agent_gap") else e.type
        if kind not in TIMELINE_LANES:
            continue
        a, b = max(e.start, lo), min(e.end, hi)   # type: ignore[type-var]
        if b < a:
            continue
        if kind == "gap":
            tip = f"not watching {fmt_time(e.raw_start, tz)} {DASH} {fmt_time(e.raw_end, tz)}"
        else:
            tip = (f"{EPISODE_KINDS[kind]} ({CAUSE_LABELS.get(e.cause, e.cause or 'cause unknown')}): "
                   f"{fmt_time(e.raw_start, tz)} {DASH} {_end_text(e, tz)}, {fmt_min(e.minutes)} min")
        # Split at local midnights: an overnight cut appears on both days.
        i = max(0, _day_index(bounds, a))
        while i < len(days) and bounds[i] < b + (1e-9 if a == b else 0):
            d0, d1 = bounds[i], bounds[i + 1]
            s0, s1 = max(a, d0), min(b, d1)
            if s1 >= s0:
                spans.append(Span(i, (s0 - d0) / (d1 - d0), (s1 - d0) / (d1 - d0), kind, tip))
                if kind != "gap":
                    minutes[i][kind == "power"] += (s1 - s0) / 60
            i += 1
    rows = [f"{WEEKDAYS[d.weekday()]} {d.day:02d} {d.strftime('%b')}" for d in days]
    notes = [(fmt_min(m[0]), fmt_min(m[1])) for m in minutes]
    ticks = [(h / 24, f"{h:02d}") for h in range(0, 25, 3)]
    svg = svg_timeline(rows, spans, lanes=TIMELINE_LANES, ticks=ticks, notes=notes,
                       note_heads=("internet min", "power min"),
                       title="Outage timeline: one row per day, 00 to 24 local time")
    return ("<p>One row per day, from midnight to midnight local time "
            f"({esc(tz_label)}). Hover a mark for its start, end and cause; the columns on the "
            "right total each day's minutes.</p>"
            + frame.figure(svg, "Internet outages (red, upper half), power cuts (amber, lower "
                                "half) and time the computer was off (grey, full height)."))


def _day_index(bounds: Sequence[float], t: float) -> int:
    """Index of the day row containing t (bisection over the local midnights)."""
    lo, hi = 0, len(bounds) - 1
    while lo < hi - 1:
        mid = (lo + hi) // 2
        if bounds[mid] <= t:
            lo = mid
        else:
            hi = mid
    return lo


def _end_text(e: PageEpisode, tz: tzinfo) -> str:
    """The end as "HH:MM" on the start's day, else with its date."""
    if e.start is None or e.end is None:
        return fmt_time(e.raw_end, tz) if e.raw_end else DASH
    s = datetime.fromtimestamp(e.start, tz)
    en = datetime.fromtimestamp(e.end, tz)
    return en.strftime("%H:%M" if s.date() == en.date() else "%Y-%m-%d %H:%M")


def daily_section(line: Mapping, tz: tzinfo) -> str:
    daily = [d for d in as_list(line.get("daily")) if isinstance(d, dict)]
    if not daily:
        return '<p class="muted">No daily figures.</p>'
    rows, p50, p95 = [], [], []
    xs = []
    for d in daily:
        day = parse_day(d.get("day"))
        label = f"{WEEKDAYS[day.weekday()]} {day.isoformat()}" if day else str(d.get("day"))
        rows.append(f'<tr><th scope="row">{esc(label)}</th>'
                    f'<td class="n">{fmt_pct(d.get("availability"))}</td>'
                    f'<td class="n">{fmt_min(d.get("outage_min"))}</td>'
                    f'<td class="n">{fmt_min(d.get("power_min"))}</td>'
                    f'<td class="n">{fmt_min(d.get("rtt_p50_ms"))}</td>'
                    f'<td class="n">{fmt_min(d.get("rtt_p95_ms"))}</td>'
                    f'<td class="n">{fmt_num(d.get("loss_pct"), 2)}</td></tr>')
        if day:
            x = day_start(day, tz) + 43200   # noon: the day's point sits mid-day on the axis
            xs.append(x)
            short = f"{WEEKDAYS[day.weekday()]} {day.isoformat()}"
            p50.append((x, num(d.get("rtt_p50_ms")), f"{short}: p50 {fmt_min(d.get('rtt_p50_ms'))} ms"))
            p95.append((x, num(d.get("rtt_p95_ms")), f"{short}: p95 {fmt_min(d.get('rtt_p95_ms'))} ms"))
    table = ('<div class="scroll"><table><caption>Each local day of the window</caption><thead><tr>'
             '<th scope="col">Day</th><th scope="col" class="n">Availability</th>'
             '<th scope="col" class="n">Outage min</th><th scope="col" class="n">Power-cut min</th>'
             '<th scope="col" class="n">RTT p50 ms</th><th scope="col" class="n">RTT p95 ms</th>'
             '<th scope="col" class="n">Loss %</th></tr></thead>'
             f"<tbody>{''.join(rows)}</tbody></table></div>")
    chart = ""
    if xs and any(y is not None for _, y, _ in p50 + p95):
        lo, hi = min(xs) - 43200, max(xs) + 43200
        chart = frame.figure(
            svg_xy([Series("p50 (median)", tuple(p50), "#1F5F8B"),
                    Series("p95", tuple(p95), "#D55E00", marker="square", dash="6 4")],
                   title="Latency per day: median and 95th percentile round-trip time",
                   x_range=(lo, hi), x_ticks=day_ticks(lo, hi, tz, centre=True),
                   y_title="round-trip time, ms"),
            "Latency to internet targets per day: p50 (solid, dots) and p95 (dashed, squares), ms.")
    return table + chart


def speed_section(line: Mapping, tz: tzinfo, tz_label: str) -> str:
    tests = []
    for t in as_list(line.get("speedtests")):
        when = parse_time(t.get("time")) if isinstance(t, dict) else None
        if when is not None:
            tests.append((when.timestamp(), t))
    if not tests:
        return '<p class="muted">No speed test in this window.</p>'
    tests.sort(key=lambda x: x[0])
    down, up = [], []
    for x, t in tests:
        when = fmt_time(t.get("time"), tz)
        d, u = num(t.get("download_bps")), num(t.get("upload_bps"))
        down.append((x, d / 1e6 if d is not None else None, f"{when}: download {fmt_mbit(d)}"))
        up.append((x, u / 1e6 if u is not None else None, f"{when}: upload {fmt_mbit(u)}"))
    window = as_dict(line.get("window"))
    ws, we = parse_time(window.get("start")), parse_time(window.get("end"))
    lo = ws.timestamp() if ws else tests[0][0]
    hi = we.timestamp() if we else tests[-1][0]
    lo, hi = min(lo, tests[0][0]), max(hi, tests[-1][0])
    downs = sorted(y for _, y, _ in down if y is not None)
    ups = sorted(y for _, y, _ in up if y is not None)
    summary = (f"<p>{plural(len(tests), 'speed test')}. Median download "
               f"{fmt_num(_median(downs), 1, 'Mbit/s')}, median upload "
               f"{fmt_num(_median(ups), 1, 'Mbit/s')}; slowest download "
               f"{fmt_num(downs[0] if downs else None, 1, 'Mbit/s')}.</p>")
    plan = as_dict(line.get("plan"))
    series = [Series("download", tuple(down), "#1F5F8B", line=False),
              Series("upload", tuple(up), "#D55E00", marker="square", line=False)]
    against = []
    for key, word, values, color in (("download_mbps", "download", downs, "#1F5F8B"),
                                     ("upload_mbps", "upload", ups, "#D55E00")):
        paid = num(plan.get(key))
        if not paid or paid <= 0:
            continue
        tip = f"paid {word}: {fmt_num(paid, 1, 'Mbit/s')}"
        series.append(Series(f"paid {word}", ((lo, paid, tip), (hi, paid, tip)), color,
                             marker="none", dash="6 4"))
        against.append(f"<li>{esc(_against_plan_text(word, speed_against_plan(values, paid)))}</li>")
    if against:
        summary += ("<p>Against the plan's paid speeds (from the config):</p><ul>"
                    + "".join(against) + "</ul>")
    chart = svg_xy(series, title="Speed tests: download and upload, Mbit/s",
                   x_range=(lo, hi), x_ticks=day_ticks(lo, hi, tz), y_title="Mbit/s")
    paid = "; the dashed lines are the paid speeds" if against else ""
    return summary + frame.figure(chart, f"Each speed test: download (dots) and upload "
                                         f"(squares), Mbit/s{paid}; days start at midnight "
                                         f"{tz_label}.")


def speed_against_plan(measured_mbps: Sequence[float], paid_mbps: float) -> dict:
    """Measured speeds against a paid one (Mbit/s, > 0): ``tests``, ``median_mbps`` (as the
    page's median), ``median_share`` (median / paid), ``below_paid`` (tests under the paid
    speed) and ``below_half`` (under half of it). With no test: ``tests`` 0 and no median."""
    xs = sorted(measured_mbps)
    med = _median(xs)
    return {"tests": len(xs), "median_mbps": med,
            "median_share": med / paid_mbps if med is not None else None,
            "below_paid": sum(1 for x in xs if x < paid_mbps),
            "below_half": sum(1 for x in xs if x < paid_mbps / 2), "paid_mbps": paid_mbps}


def _against_plan_text(word: str, a: Mapping) -> str:
    """"Download: median 14.8 Mbit/s, 74 % of the paid 20.0 Mbit/s; 19 of 21 tests below the
    paid speed, 3 below half of it"."""
    paid = fmt_num(a["paid_mbps"], 1, "Mbit/s")
    if not a["tests"]:
        return f"{word.capitalize()}: no test measured it (paid {paid})"
    return (f"{word.capitalize()}: median {fmt_num(a['median_mbps'], 1, 'Mbit/s')}, "
            f"{fmt_pct(a['median_share'], 0)} of the paid {paid}; {a['below_paid']:,} of "
            f"{plural(a['tests'], 'test')} below the paid speed, {a['below_half']:,} below half of it")


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def episodes_section(line: Mapping, episodes: Sequence[PageEpisode], tz: tzinfo) -> str:
    if not episodes:
        return '<p class="muted">No outage or power cut in this window.</p>'
    limit = num(line.get("evidence_limit"))
    # The evidence column only when the data carries evidence (a store read by `linewatch report`).
    proof = bool(limit) or any(e.evidence is not None for e in episodes)
    rows = []
    for i, e in enumerate(episodes, 1):
        ev = ""
        if proof:
            ev = DASH
            if e.type == "connectivity" and e.evidence is not None:
                ev = evidence_text(e.evidence)
            elif e.type == "connectivity":
                ev = "not read"
            ev = f'<td class="ev">{esc(ev)}</td>'
        rows.append(f'<tr><td class="n">{i}</td><td>{esc(EPISODE_KINDS.get(e.type, e.type or DASH))}</td>'
                    f"<td>{esc(CAUSE_LABELS.get(e.cause, e.cause or DASH))}</td>"
                    f'<td class="nw">{esc(fmt_time(e.raw_start, tz))}</td>'
                    f'<td class="nw">{esc(_end_text(e, tz))}</td>'
                    f'<td class="n">{fmt_min(e.minutes)}</td>{ev}</tr>')
    intro = ""
    if proof:
        intro = ('<p>For each internet outage, what the test rounds inside it recorded: the '
                 "echoes the router (gateway) and each internet target answered, and the name "
                 "lookups (DNS). The router answering while no internet target does shows the "
                 "subscriber's own network (Wi-Fi, cable, router) was working.</p>")
    if limit:
        intro += (f'<p class="muted">What the tests saw is shown for the {fmt_int(limit)} longest '
                  "outages; the others are marked \u201cnot read\u201d.</p>")
    head = '<th scope="col">What the tests saw</th>' if proof else ""
    return (intro +
            '<div class="scroll"><table class="dense"><caption>All episodes, earliest first (local time)'
            '</caption><thead><tr><th scope="col" class="n">#</th><th scope="col">Type</th>'
            '<th scope="col">Cause</th><th scope="col">Start</th><th scope="col">End</th>'
            f'<th scope="col" class="n">Minutes</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def evidence_text(ev: object) -> str:
    """One outage's evidence in words, e.g. "20 rounds down; router 192.168.1.1 answered 58/60
    echoes; 1.1.1.1 answered 0/60, 8.8.8.8 0/60; DNS google.com failed 20/20 (timeout)"."""
    ev = as_dict(ev)
    rounds = {str(k): int(n) for k, v in as_dict(ev.get("rounds")).items() if (n := num(v))}
    n = sum(rounds.values())

    def echoes(role: str) -> list[tuple[str, int, int]]:
        return [(str(t.get("target") or "?"), int(num(t.get("sent")) or 0),
                 int(num(t.get("received")) or 0))
                for t in as_list(ev.get(role)) if isinstance(t, dict)]

    gw, inet = echoes("gateway"), echoes("internet")
    if not n and not gw and not inet:
        return "no test round was recorded in this span"
    if len(rounds) == 1:
        parts = [f"{plural(n, 'round')} {next(iter(rounds))}"]
    else:
        parts = [f"{plural(n, 'round')} (" + ", ".join(
            f"{c:,} {k}" for k, c in sorted(rounds.items(), key=lambda kv: -kv[1])) + ")"]
    if gw:
        parts.append("router " + ", ".join(f"{t} answered {r:,}/{s:,} echoes" for t, s, r in gw))
    else:
        parts.append("router not tested")
    if inet:
        parts.append(", ".join(f"{t} {'answered ' if i == 0 else ''}{r:,}/{s:,}"
                               for i, (t, s, r) in enumerate(inet)))
    for d in as_list(ev.get("dns")):
        if not isinstance(d, dict):
            continue
        q, ok = int(num(d.get("queries")) or 0), int(num(d.get("ok")) or 0)
        errors = as_dict(d.get("errors"))
        if ok == q:
            parts.append(f"DNS {d.get('name')} resolved {ok:,}/{q:,}")
            continue
        why = ", ".join(str(k) if len(errors) == 1 else f"{k} {fmt_int(v)}" for k, v in errors.items())
        parts.append(f"DNS {d.get('name')} failed {q - ok:,}/{q:,}" + (f" ({why})" if why else ""))
    return "; ".join(parts)


# How an interference episode's failed step reads on the page (cause, how); a pair not listed
# reads as "<step>: <how>".
BLOCKED_HOW = {
    ("dns", "mismatch"): "DNS gave a wrong address (a second resolver's address worked)",
    ("dns", "bogon"): "DNS gave an address no site has (0.0.0.0, loopback)",
    ("dns", "nxdomain"): "DNS said the name does not exist",
    ("dns", "timeout"): "DNS did not answer for the name",
    ("tcp", "timeout"): "connections to the site were dropped",
    ("tcp", "refused"): "connections to the site were refused",
    ("tcp", "reset"): "connections to the site were reset",
    ("tls", "reset"): "the secure connection was reset once it named the site",
    ("tls", "timeout"): "the secure connection stalled once it named the site",
    ("tls", "closed"): "the secure connection was closed once it named the site",
    ("tls", "cert"): "a certificate not valid for the site was presented",
    ("http", "reset"): "the request was reset",
    ("vpn", "timeout"): "the VPN server did not answer",
    ("vpn", "refused"): "the VPN server's port was refused",
    ("vpn", "reset"): "the connection to the VPN server was reset",
    ("vpn", "closed"): "the connection to the VPN server was closed",
    ("throttled", "slow"): "downloads naming it were slowed to under half the speed of others",
    ("vpn", "malformed"): "something other than the VPN server answered, or not to its keys",
}


def blocked_section(line: Mapping, tz: tzinfo) -> str:
    """The sites and VPN servers that could not be reached while the line was up (interference
    episodes: ``line["blocked"]``), with the minutes inside work hours."""
    items = [b for b in as_list(line.get("blocked")) if isinstance(b, dict)]
    if not items:
        return ('<p class="muted">No site or VPN server was found blocked while the line was up '
                "in this window.</p>")
    rows = []
    for i, b in enumerate(items, 1):
        cause, how = str(b.get("cause") or ""), str(b.get("how") or "")
        words = BLOCKED_HOW.get((cause, how)) or (f"{cause}: {how}" if how else cause or DASH)
        end = "still blocked" if b.get("ongoing") else fmt_time(b.get("end"), tz)
        rows.append(f'<tr><td class="n">{i}</td><td><code>{esc(b.get("target") or DASH)}</code></td>'
                    f"<td>{esc(words)}</td>"
                    f'<td class="nw">{esc(fmt_time(b.get("start"), tz))}</td>'
                    f'<td class="nw">{esc(end)}</td>'
                    f'<td class="n">{fmt_min(b.get("duration_min"))}</td>'
                    f'<td class="n">{fmt_min(b.get("work_min"))}</td></tr>')
    work = esc(line.get("work_hours") or "")
    return ("<p>The internet answered, but these sites or VPN servers could not be reached (or, "
            "for a throttling check, were slowed by name). Each "
            "was checked step by step (name lookup, connection, secure handshake, request); the "
            "column \u201cWhat failed\u201d names the step where the way to it broke. A block is "
            "recorded only after several failed checks in a row, and never during an outage or a "
            "power cut.</p>"
            f'<p>{fmt_min(line.get("blocked_min"))} minutes in all, '
            f'{fmt_min(line.get("work_hours_blocked_min"))} of them in work hours ({work}).</p>'
            '<div class="scroll"><table class="dense"><caption>Blocked while the line was up, '
            'earliest first (local time)</caption><thead><tr><th scope="col" class="n">#</th>'
            '<th scope="col">Site or VPN</th><th scope="col">What failed</th>'
            '<th scope="col">Start</th><th scope="col">End</th>'
            '<th scope="col" class="n">Minutes</th><th scope="col" class="n">In work hours</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
