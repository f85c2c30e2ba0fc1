"""One worker's line page for a complaint to their ISP: :func:`line_report` (pure, stdlib).

The header names the line, the summary cards give the window's figures (with a warning when they
rest on less than a day of watching), and the closing sections say what the figures show and how
the line was watched. The timeline, daily, speed and episode sections are in
:mod:`agent.report.sections`; the page is built on the HTML kit (kit/html).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import tzinfo

from agent.report.sections import (
    PageEpisode,
    blocked_section,
    daily_section,
    episodes_section,
    speed_against_plan,
    speed_section,
    timeline_section,
)
from kit.html import frame
from kit.html.fmt import (
    CAUSE_LABELS,
    DASH,
    as_dict,
    as_list,
    esc,
    fmt_int,
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
from kit.words import plural, thin_watch


def line_report(line: Mapping) -> str:
    """One worker's page for a complaint to their ISP. Times are shown in ``line["timezone"]``.

    Optional additions to the documented shape: ``work_hours`` (e.g. "09:00-18:00", shown in
    the summary), ``account`` (the customer's reference with the ISP), ``plan``
    (``download_mbps``, ``upload_mbps``: the paid speeds), ``tags_changed`` (the rows' tag sets
    when they differ from the line's), ``probe`` (how the line was watched, for the method),
    ``evidence`` on an episode (what its rounds recorded). Episodes without ``end`` end at
    start + duration_min; ``agent_gap`` episodes are drawn as not-watching time like ``gaps``.
    Missing keys render as "–" or are left out."""
    line = as_dict(line)
    window = as_dict(line.get("window"))
    tz, tz_label = zone(line.get("timezone"), window.get("start"))
    title = str(line.get("title") or _line_title(line))
    episodes = sorted((PageEpisode.of(e) for e in as_list(line.get("episodes"))
                       if isinstance(e, dict)), key=lambda e: (e.start is None, e.start or 0.0))
    gaps = [PageEpisode.of({"type": "gap", **g}) for g in as_list(line.get("gaps"))
            if isinstance(g, dict)]
    gaps += [e for e in episodes if e.type == "agent_gap"]

    sections = [
        ("summary", "Summary", _line_summary(line, episodes)),
        ("timeline", "Outage timeline", timeline_section(line, episodes, gaps, tz, tz_label)),
        ("daily", "Day by day", daily_section(line, tz)),
        ("speed", "Speed tests", speed_section(line, tz, tz_label)),
        ("blocked", "Blocked while the line was up", blocked_section(line, tz)),
        ("episodes", "Every episode", episodes_section(line, episodes, tz)),
        ("for-the-isp", "What this shows", _isp_note(line, episodes, tz)),
        ("method", "Method", frame.paragraphs(line.get("methodology")
                                              or _probe_method(line) + _default_line_method())),
    ]
    start, end = window.get("start"), window.get("end")
    place = _line_place(line)
    isp = name_html(line.get("isp")) if line.get("isp") else "Internet line"
    facts = [("Line", isp + (f" ({esc(line.get('access'))})" if line.get("access") else "")),
             ("Place", place or f'{DASH} <span class="muted">(not set in the config: '
                                '<code>linewatch init</code>)</span>')]
    if line.get("account"):
        facts.append(("Customer account", f"<code>{esc(line['account'])}</code>"))
    plan = as_dict(line.get("plan"))
    if num(plan.get("download_mbps")) or num(plan.get("upload_mbps")):
        facts.append(("Plan (paid speeds)", esc(_plan_text(plan))))
    facts += [("Agent", f"<code>{esc(line.get('agent') or DASH)}</code>"),
              ("Window", esc(fmt_range(start, end, tz))),
              ("Time zone", f"{esc(tz_label)} ({utc_offset(tz, parse_time(start))})"),
              ("Generated", esc(fmt_time(line.get("generated_at"), tz)))]
    subtitle = isp + (f" in {place}" if place else "")
    h1 = esc(line["title"]) if line.get("title") else _line_title(line, html=True)
    toc = frame.toc([(sid, h) for sid, h, _ in sections])
    header = (f"<header>\n<h1>{h1}</h1>\n<p class=\"lede\">{subtitle}</p>\n"
              f"{frame.facts(facts)}\n{_tags_changed(line, tz)}{toc}\n</header>")
    body = header + "\n<main>\n" + "".join(frame.section(*s) for s in sections) + "</main>\n" + \
        f"<footer>Made by linewatch on the subscriber's computer; generated " \
        f"{esc(fmt_time(line.get('generated_at'), tz))} ({esc(tz_label)}). Self-contained page: no " \
        "scripts, no external resources.</footer>"
    span = fmt_range(start, end, tz)
    return frame.page(title + (f" {DASH} {span}" if span != DASH else ""), body, _LINE_CSS)


# The line page's own styles: a warning box for figures that rest on too little, the evidence
# column kept readable beside the times.
_LINE_CSS = (".warn{border-left:4px solid #B35900;background:#FFF4E5;padding:.6rem 1rem;margin:1rem 0}"
             ".warn p{margin:.35rem 0}.card .s.warn-s{color:#8A4500;font-weight:600}"
             "td.ev{font-size:.8rem;min-width:28em}"
             "@media print{@page{size:A4}.warn{background:none}}")


def _line_title(line: Mapping, html: bool = False) -> str:
    """"Internet line report: PTCL, Lahore" from the line's ISP and city (either may be unset);
    as text for <title>, or with ``html`` as markup that isolates each name (an Urdu city)."""
    names = [line[k] for k in ("isp", "city") if line.get(k)]
    who = ", ".join(name_html(n) if html else str(n) for n in names)
    return "Internet line report" + (f": {who}" if who else "")


def _line_place(line: Mapping) -> str:
    where = [name_html(line.get("city"))] if line.get("city") else []
    if line.get("region_name") or line.get("region"):
        where.append(region_html(line.get("region"), line.get("region_name")))
    return ", ".join(where)


def _plan_text(plan: Mapping) -> str:
    parts = [f"{fmt_num(num(plan.get(k)), 1, 'Mbit/s')} {word}"
             for k, word in (("download_mbps", "download"), ("upload_mbps", "upload"))
             if num(plan.get(k))]
    return ", ".join(parts) + " (as sold, from the config)"


def _tags_changed(line: Mapping, tz: tzinfo) -> str:
    """A warning when the rows in the window were tagged otherwise than the line is now."""
    runs = [r for r in as_list(line.get("tags_changed")) if isinstance(r, dict)]
    if not runs:
        return ""
    keys = (("agent", "agent"), ("region", "region"), ("city", "city"), ("isp", "ISP"),
            ("access", "access"))
    now = tuple(str(line.get(k) or "") for k, _ in keys)
    tagged = [tuple(str(r.get(k) or "") for k, _ in keys) for r in runs]
    # Only the tags that differ somewhere: an agent id the same throughout is noise here.
    differ = [i for i in range(len(keys)) if len({t[i] for t in tagged} | {now[i]}) > 1]
    items = []
    for r, tags in zip(runs, tagged):
        what = ", ".join(f"{keys[i][1]} {name_html(tags[i]) if tags[i] else DASH}" for i in differ)
        same = ' <span class="muted">(as now)</span>' if tags == now else ""
        items.append(f"<li>{esc(fmt_range(r.get('start'), r.get('end'), tz))}: {what}{same}</li>")
    return ('<div class="warn" role="note"><p><strong>The agent&#x27;s tags changed inside this '
            "window.</strong> This page names the line as it is configured now; the rows it was "
            "made from were tagged:</p><ul>" + "".join(items) + "</ul></div>\n")


def _unit(text: str, unit: str) -> str:
    """A formatted figure with its unit; a missing figure stays a bare "–"."""
    return text if text == DASH else f"{text} {unit}"


def _card(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value}</div>'
            + (f'<div class="s">{sub}</div>' if sub else "") + "</div>")


def _line_summary(line: Mapping, episodes: Sequence[PageEpisode]) -> str:
    by_cause = as_dict(line.get("outage_min_by_cause"))
    causes = sorted(((k, num(v)) for k, v in by_cause.items() if num(v) is not None),
                    key=lambda kv: -(kv[1] or 0))
    cause_txt = ", ".join(f"{esc(CAUSE_LABELS.get(k, k))} {fmt_min(v)}" for k, v in causes)
    cause_txt += " min" if causes else ""
    window = as_dict(line.get("window"))
    s, e = parse_time(window.get("start")), parse_time(window.get("end"))
    observed = num(line.get("observed_h"))
    cover = ""
    if s and e and e > s and observed is not None:
        hours = (e - s).total_seconds() / 3600
        cover = f"of {fmt_num(hours, 1)} h in the window ({fmt_pct(observed / hours, 1)})"
    work = f" ({line['work_hours']})" if line.get("work_hours") else ""
    thin = thin_watch(observed) if num(line.get("internet_availability")) is not None else None
    avail_sub = ('<span class="s warn-s">' + esc(thin[0].upper() + thin[1:]) + "</span>" if thin
                 else "of the time the agent was watching")
    cards = [
        _card("Internet availability", esc(fmt_pct(line.get("internet_availability"))), avail_sub),
        _card("Internet outages", esc(fmt_int(line.get("outages"))),
              esc(_unit(fmt_min(line.get("outage_min")), "min")) + " lost"),
        _card("Attributed to the ISP", esc(_unit(fmt_min(by_cause.get("isp")), "min")),
              "all causes: " + (cause_txt or DASH)),
        _card("Power cuts", esc(fmt_int(line.get("power_cuts"))),
              esc(_unit(fmt_min(line.get("power_cut_min")), "min")) + " without power"),
        _card("Within work hours" + work,
              esc(_unit(fmt_min(line.get("work_hours_internet_min")), "min")),
              "internet lost; " + esc(_unit(fmt_min(line.get("work_hours_power_min")), "min"))
              + " without power"),
        _card("Watching", esc(_unit(fmt_num(observed, 1), "h")), esc(cover) or "hours observed"),
    ]
    plan_card = _plan_card(line)
    if plan_card:
        cards.append(plan_card)
    warn = ""
    if thin:
        warn = (f'<div class="warn" role="note"><p><strong>{esc(thin[0].upper() + thin[1:])}.'
                "</strong> The figures below describe the time the agent happened to watch, not "
                "how the line usually behaves. Leave linewatch running and make the report again "
                "after a few days.</p></div>")
    if line.get("read_from") == "hourly":
        warn += ('<div class="note" role="note"><p>Read from the agent\'s hourly summaries (a '
                 "long window, or one older than the raw rounds the store keeps): time not watched "
                 "is shown to the hour, and each day's latency is within 2 % of the exact "
                 "figure.</p></div>")
    return warn + f'<div class="cards">{"".join(cards)}</div>'


def _plan_card(line: Mapping) -> str:
    """The summary card "Download against plan", when the plan's download speed is set and a
    speed test measured it."""
    paid = num(as_dict(line.get("plan")).get("download_mbps"))
    if not paid or paid <= 0:
        return ""
    downs = [d / 1e6 for t in as_list(line.get("speedtests")) if isinstance(t, dict)
             and parse_time(t.get("time")) is not None
             and (d := num(t.get("download_bps"))) is not None]
    a = speed_against_plan(downs, paid)
    if not a["tests"]:
        return ""
    return _card("Download against plan", esc(fmt_pct(a["median_share"], 0)),
                 esc(f"median of {plural(a['tests'], 'test')}, of the paid "
                     f"{fmt_num(paid, 1, 'Mbit/s')}"))


def _isp_note(line: Mapping, episodes: Sequence[PageEpisode], tz: tzinfo) -> str:
    isp_eps = [e for e in episodes if e.type == "connectivity" and e.cause == "isp"]
    isp_min = num(as_dict(line.get("outage_min_by_cause")).get("isp"))
    if isp_min is None and isp_eps:
        isp_min = sum(e.minutes or 0.0 for e in isp_eps)
    longest = max(isp_eps, key=lambda e: e.minutes or 0.0, default=None)
    isp = str(line.get("isp") or "the ISP")
    paras = [
        "This report was made by linewatch, monitoring software running on the subscriber's own "
        "computer. Every few seconds it tests, in order, the local router, several hosts on the "
        "internet and name resolution (DNS), and it watches mains power.",
        f"An outage with cause \u201cISP\u201d means the subscriber's router and local network "
        f"answered while the internet did not: the fault was beyond the subscriber's premises, on "
        f"the side of {isp}. Local-network faults, DNS-only failures and outages during power "
        "cuts are listed with their own cause and are not counted as ISP faults.",
        "Grey time in the timeline is time the computer was off or not watching: nothing is "
        "claimed about it, and availability is computed over watched time only.",
    ]
    if any(e.evidence is not None for e in episodes):
        paras.insert(2, "\u201cEvery episode\u201d lists, for each outage, what the tests inside "
                     "it recorded: how many echoes the router and each internet host answered, and "
                     "how many name lookups failed. These are counts from the subscriber's own "
                     "measurements, round by round, not an estimate.")
    summary = (f"In this window: {plural(len(isp_eps), 'outage')} attributed to the ISP, "
               f"{fmt_min(isp_min)} minutes in total")
    if longest is not None and longest.minutes:
        summary += (f"; the longest began {fmt_time(longest.raw_start, tz)} and lasted "
                    f"{fmt_min(longest.minutes)} minutes")
    summary += "."
    return '<div class="note">' + frame.paragraphs(paras[:2] + [summary] + paras[2:]) + "</div>"


ECHO_METHODS = {"icmp_dgram": "ICMP echo (ping)", "icmp_raw": "ICMP echo (ping, raw socket)",
                "tcp": "TCP connection timing (ICMP was not permitted; a refused connection counts "
                       "as an answer)"}


def _probe_method(line: Mapping) -> list[str]:
    """The method's first paragraphs, naming what was really probed: the configured interval,
    echo count, timeout, router and targets, and what the window's rows show (the router's
    address found, the echo method used, targets of an earlier configuration)."""
    probe = as_dict(line.get("probe"))
    seen = as_dict(probe.get("seen"))
    interval, count = num(probe.get("interval_s")), num(probe.get("count"))
    if interval is None or count is None:
        return []
    targets = [str(t) for t in as_list(probe.get("targets"))]
    names = [str(n) for n in as_list(probe.get("dns_names"))]
    servers = [str(n) for n in as_list(probe.get("dns_servers"))]
    gateways = [str(g) for g in as_list(seen.get("gateways"))]
    gw = str(probe.get("gateway") or "auto")
    if gw == "off":
        router = ""
    elif gw == "auto":
        router = ("the subscriber's router (the default gateway, found automatically"
                  + (f"; in this window {', '.join(gateways)}" if gateways else "") + ") and ")
    else:
        router = f"the subscriber's router ({gw}) and "
    timeout = num(probe.get("timeout_s"))
    first = (f"Every {fmt_num(interval, 0 if interval == int(interval) else 1)} s the agent ran one "
             f"test round: {plural(int(count), 'echo', 'echoes')} to {router}each internet host "
             f"({', '.join(targets) or DASH})"
             + (f", each echo waiting up to {fmt_num(timeout, 1)} s for its reply" if timeout else "")
             + (f", and a name lookup (DNS) of {', '.join(names)} through "
                + (', '.join(servers) if servers else "the computer's usual DNS servers")
                if names else "") + ".")
    if gw == "off":
        first += " The router was not tested (probe.gateway = \"off\")."
    paras = [first]
    methods = [ECHO_METHODS.get(str(m), str(m)) for m in as_list(seen.get("methods"))]
    if methods:
        paras.append("Echoes in this window were sent as " + "; ".join(methods) + ".")
    older = [str(t) for t in as_list(seen.get("targets")) if str(t) not in targets]
    if older:
        paras.append("The window's rows also hold tests of " + ", ".join(older)
                     + " (an earlier configuration).")
    oa, ca = num(probe.get("open_after")), num(probe.get("close_after"))
    if oa and ca:
        paras.append(f"A round is down when no internet host answered any echo. An outage opens "
                     f"after {plural(int(oa), 'down round')} in a row, counted from the first, and "
                     f"closes at the first of {plural(int(ca), 'good round')} in a row. Its cause: "
                     "ISP when the router answered and no internet host did; local network when "
                     "the router did not answer either; DNS when hosts answered but no name "
                     "resolved; power when the computer was on battery or UPS as it began; unknown when "
                     "the router never answers echoes, so the two sides cannot be told apart.")
    return paras


def _default_line_method() -> list[str]:
    return [
        "Availability is the share of the time the agent was watching during which the internet "
        "answered. An outage lasts from the first failed test round to the first good one, so "
        "its length is accurate to one round interval.",
        "Power cuts come from the laptop battery or UPS reporting mains lost, or from the "
        "computer going down (from its last heartbeat to its next boot). Work-hours figures count "
        "only minutes inside the configured work hours.",
        "Latency (round-trip time) and loss are measured to several internet hosts; p50 is the "
        "day's median, p95 the value 95 % of rounds stayed under. Speed tests measure the whole "
        "path to a public test server and vary with its load.",
    ]
