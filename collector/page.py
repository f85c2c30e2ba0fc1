"""Self-contained HTML reports: the NGO's regional page and one worker's line page (pure, stdlib).

Both pages are single strings that open offline and print well: CSS inline in a <style>, charts
as inline SVG, no JavaScript, no external URL of any kind (a Content-Security-Policy in the page
forbids loading anything, so a mistake would show as a console error instead of a silent fetch).
The module is stdlib-only because the lightweight agent imports it too (``linewatch report``).

* :func:`region_report` - the collector's result (cells x periods, events, data quality).
* :func:`line_report`   - one agent's window: timeline, daily table, speed tests, episodes.

Every string that came from data (region, ISP and city names are free text typed by volunteers)
goes through :func:`esc`; names are wrapped in <bdi> so Urdu text does not reorder the numbers
around it. Missing figures (None, NaN, absent keys) print as "–", never as 0.

The SVG helpers (:func:`svg_hbar`, :func:`svg_heatmap`, :func:`svg_columns`, :func:`svg_timeline`,
:func:`svg_xy`) are pure functions from numbers to markup. Each chart carries a <title> for screen
readers, <title> tooltips on its marks, and prints its values as text, so no meaning rests on
colour alone. SVGs have no xmlns attribute: the HTML parser puts <svg> in the SVG namespace by
itself, and the page then holds no "http://" at all.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kit.words import plural, thin_watch
from kit.definitions import INTERNET_CAUSES

DASH = "\u2013"          # the en dash shown for "no figure"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies and in greyscale
# print by their lightness. Power is amber on both pages.
CAUSE_COLORS = {"power": "#E69F00", "lan": "#56B4E9", "isp": "#D55E00", "dns": "#009E73",
                "unknown": "#999999"}
CAUSE_LABELS = {"power": "power", "lan": "local network", "isp": "ISP", "dns": "DNS",
                "unknown": "unknown", "ac_lost": "mains lost", "host_down": "host went down",
                "agent_stopped": "agent stopped", "loss": "packet loss", "latency": "latency"}
OUTAGE_RED, POWER_AMBER, GAP_GREY = "#C8371D", "#E69F00", "#BFC5CC"
# ColorBrewer OrRd extended to 10 classes: one class per 10 % of load-shedding share, so the
# legend reads in round numbers.
HEAT = ("#FFF7EC", "#FEE8C8", "#FDD49E", "#FDBB84", "#FC8D59", "#EF6548", "#D7301F", "#B30000",
        "#990000", "#7F0000")
INK, MUTED, RULE = "#1B1F24", "#5B6470", "#E1E5EA"


# --- values and formatting -------------------------------------------------------------------

def esc(value: object) -> str:
    """HTML-escaped text (quotes too: the result may stand in an attribute). None -> ""."""
    return html.escape("" if value is None else str(value), quote=True)


_ARABIC_SCRIPT = re.compile("[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")


def name_html(value: object) -> str:
    """A free-text name (region, ISP, city) as isolated, escaped HTML; empty -> "–".

    <bdi> keeps right-to-left text from reordering the cells around it; Arabic-script names are
    marked lang="ur" (Urdu is by far the likeliest in Pakistan) so screen readers and font
    fallback pick the right language."""
    s = "" if value is None else str(value)
    if not s.strip():
        return DASH
    lang = ' lang="ur"' if _ARABIC_SCRIPT.search(s) else ""
    return f"<bdi{lang}>{esc(s)}</bdi>"


def num(value: object) -> float | None:
    """A finite float, or None for None, bools, NaN, infinities and anything not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def fmt_num(value: object, digits: int = 1, unit: str = "") -> str:
    """Thousands-separated with ``digits`` decimals (never "-0.0"); None -> "–"."""
    x = num(value)
    if x is None:
        return DASH
    if round(x, digits) == 0:
        x = 0.0
    s = f"{x:,.{digits}f}"
    return f"{s} {unit}" if unit else s


def fmt_min(value: object) -> str:
    """Minutes, one decimal."""
    return fmt_num(value, 1)


def fmt_freq(value: object) -> str:
    """Counts per customer (SAIFI, MAIFI, outages per agent): two decimals, small ones matter."""
    return fmt_num(value, 2)


def fmt_int(value: object) -> str:
    x = num(value)
    return DASH if x is None else f"{round(x):,}"


def fmt_pct(share: object, digits: int = 3) -> str:
    """A share 0..1 as a percentage: 0.99812 -> "99.812 %"."""
    x = num(share)
    return DASH if x is None else fmt_num(x * 100, digits) + " %"


def fmt_mbit(bps: object, unit: bool = True) -> str:
    """bit/s as Mbit/s: one decimal, two below 1 Mbit/s."""
    x = num(bps)
    if x is None:
        return DASH
    m = x / 1e6
    return fmt_num(m, 1 if abs(m) >= 1 else 2, "Mbit/s" if unit else "")


def fmt_ci(ci: object, fmt: Callable[[object], str]) -> str:
    """A 95 % interval as a small "[low–high]" span, or "" when either end is missing."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    lo, hi = num(ci[0]), num(ci[1])
    if lo is None or hi is None:
        return ""
    text = f"[{fmt(lo)}{DASH}{fmt(hi)}]".replace(" %", "")   # one "%" is enough in the column
    return f'<span class="ci" title="95 % interval">{esc(text)}</span>'


# --- time ------------------------------------------------------------------------------------

def parse_time(value: object) -> datetime | None:
    """An ISO 8601 string (or datetime) as an aware datetime; naive ones are taken as UTC (the
    collector's convention). Unparseable -> None, so one bad record cannot break a page."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def zone(name: object, fallback: object = None) -> tuple[tzinfo, str]:
    """The tzinfo for an IANA name and a label for it. An unknown name (or a machine without tz
    data) falls back to the UTC offset of ``fallback`` (an ISO time), else UTC: the label says so."""
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    ref = parse_time(fallback)
    tz = ref.tzinfo if ref is not None else timezone.utc
    label = ref.strftime("UTC%z") if ref is not None else "UTC"
    if isinstance(name, str) and name:
        label += f" ({name} unknown here)"
    return tz, label   # type: ignore[return-value]


def fmt_time(value: object, tz: tzinfo, with_date: bool = True) -> str:
    """Local "2026-11-02 10:01" (or "10:01"), plain text; unparseable text is returned as given
    (callers escape, as for any data string), missing -> "–"."""
    dt = parse_time(value)
    if dt is None:
        return str(value) if value else DASH
    dt = dt.astimezone(tz)
    return dt.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def fmt_range(start: object, end: object, tz: tzinfo) -> str:
    """"start – end" in local time; "–" when both are missing."""
    if not start and not end:
        return DASH
    return f"{fmt_time(start, tz)} {DASH} {fmt_time(end, tz)}"


def _utc_offset(tz: tzinfo, at: datetime | None) -> str:
    at = (at or datetime.now(timezone.utc)).astimezone(tz)
    s = at.strftime("%z")
    return f"UTC{s[:3]}:{s[3:]}" if s else "UTC"


def _day_start(d: date, tz: tzinfo) -> float:
    """Local midnight of ``d`` as seconds since 1970. Timestamps, not datetime arithmetic: two
    datetimes with the same ZoneInfo subtract as wall clock time and would miss DST shifts."""
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


def _local_days(start: float, end: float, tz: tzinfo) -> list[date]:
    """The local calendar days that [start, end) touches."""
    first = datetime.fromtimestamp(start, tz).date()
    last = datetime.fromtimestamp(max(start, end - 1e-6), tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --- SVG helpers -----------------------------------------------------------------------------

def _f(x: float) -> str:
    """A coordinate, short: SVGs with thousands of marks stay small."""
    r = round(x, 1)
    return str(int(r)) if r == int(r) else str(r)


def _svg(width: float, height: float, title: str, body: str) -> str:
    return (f'<svg class="chart" role="img" viewBox="0 0 {_f(width)} {_f(height)}" '
            f'width="{_f(width)}" height="{_f(height)}" font-size="12" fill="{INK}">'
            f"<title>{esc(title)}</title>{body}</svg>")


def _text(x: float, y: float, s: str, *, anchor: str = "start", size: float | None = None,
          fill: str | None = None, weight: str | None = None, tip: str | None = None) -> str:
    attrs = f'x="{_f(x)}" y="{_f(y)}"'
    if anchor != "start":
        attrs += f' text-anchor="{anchor}"'
    if size:
        attrs += f' font-size="{_f(size)}"'
    if fill:
        attrs += f' fill="{fill}"'
    if weight:
        attrs += f' font-weight="{weight}"'
    inner = esc(s) + (f"<title>{esc(tip)}</title>" if tip else "")
    return f"<text {attrs}>{inner}</text>"


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str | None = None,
          extra: str = "") -> str:
    core = f'x="{_f(x)}" y="{_f(y)}" width="{_f(max(w, 0))}" height="{_f(h)}" fill="{fill}"{extra}'
    return f"<rect {core}><title>{esc(tip)}</title></rect>" if tip else f"<rect {core}/>"


def _ink_on(fill: str) -> str:
    """Black or white text, whichever reads better on ``fill`` (#RRGGBB)."""
    r, g, b = (int(fill[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return INK if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "#FFFFFF"


def _ticks(vmax: float, n: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least ``vmax`` (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if not vmax > 0:
        vmax = 1.0
    raw = vmax / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if raw <= m * mag * (1 + 1e-9))
    count = math.ceil(vmax / step - 1e-9)
    return [i * step for i in range(count + 1)]


def _tick_label(v: float) -> str:
    return f"{v:,.0f}" if v == int(v) else f"{v:,.2f}".rstrip("0").rstrip(".")


def _clip_label(s: str, width_px: float, px_per_char: float = 6.6) -> str:
    limit = max(4, int(width_px / px_per_char))
    return s if len(s) <= limit else s[:limit - 1] + "\u2026"


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, width: float) -> tuple[str, float]:
    """A legend row at (x, y): ``items`` are (label, swatch markup drawn in a 14x10 box at the
    origin). Wraps within ``width``; returns the markup and the height used."""
    out, cx, cy = [], x, y
    for label, swatch in items:
        w = 20 + len(label) * 6.6 + 16
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        out.append(f'<g transform="translate({_f(cx)},{_f(cy)})">{swatch}</g>')
        out.append(_text(cx + 19, cy + 9.5, label, size=11.5))
        cx += w
    return "".join(out), cy - y + 18


def swatch_box(fill: str) -> str:
    return _rect(0, 0, 14, 10, fill)


@dataclass(frozen=True)
class Bar:
    """One row of :func:`svg_hbar`: ``parts`` are (series, value) stacked left to right; ``ci`` a
    95 % interval drawn as a whisker; ``total`` the figure printed after the bar (default: the sum
    of the parts)."""

    label: str
    parts: tuple[tuple[str, float | None], ...]
    ci: tuple[float | None, float | None] | None = None
    total: float | None = None


def svg_hbar(bars: Sequence[Bar], *, title: str, colors: Mapping[str, str],
             fmt: Callable[[object], str] = fmt_min, series_labels: Mapping[str, str] | None = None,
             legend: bool | None = None, width: float = 760, label_w: float = 190) -> str:
    """Horizontal (stacked) bars with optional CI whiskers; the value is printed after each bar
    and inside wide segments. A legend is drawn when asked, by default with several series."""
    row_h, bar_h, value_w = 24, 14, 84
    plot_w = width - label_w - value_w
    names = list(colors)
    series_labels = series_labels or {}
    out: list[str] = []
    top = 6
    if legend or (legend is None and len(names) > 1):
        legend_svg, h = _legend([(series_labels.get(n, n), swatch_box(colors[n])) for n in names],
                            label_w, 4, plot_w + value_w)
        out.append(legend_svg)
        top = 8 + h
    vmax = 0.0
    for b in bars:
        total = _bar_total(b)
        vmax = max(vmax, total or 0.0, *(num(v) or 0.0 for v in (b.ci or ())))
    ticks = _ticks(vmax)
    scale = plot_w / ticks[-1]
    bottom = top + len(bars) * row_h
    for t in ticks:   # grid first, so bars paint over it
        x = label_w + t * scale
        out.append(f'<line x1="{_f(x)}" y1="{_f(top)}" x2="{_f(x)}" y2="{_f(bottom)}" '
                   f'stroke="{RULE}"/>')
        out.append(_text(x, bottom + 14, _tick_label(t), anchor="middle", size=10, fill=MUTED))
    for i, b in enumerate(bars):
        y = top + i * row_h
        cy = y + row_h / 2
        out.append(_text(label_w - 8, cy + 4, _clip_label(b.label, label_w - 12), anchor="end",
                         tip=b.label))
        x = label_w
        for name, value in b.parts:
            v = num(value)
            if not v or v <= 0:
                continue
            w = v * scale
            fill = colors.get(name, "#777777")
            out.append(_rect(x, cy - bar_h / 2, w, bar_h, fill,
                             f"{b.label}: {series_labels.get(name, name)} {fmt(v)}"))
            if len(names) > 1 and w >= 8 * len(fmt(v)) + 6:
                out.append(_text(x + w / 2, cy + 4, fmt(v), anchor="middle", size=10.5,
                                 fill=_ink_on(fill)))
            x += w
        end = x
        lo, hi = (num(b.ci[0]), num(b.ci[1])) if b.ci else (None, None)
        if lo is not None and hi is not None:
            x0, x1 = label_w + max(lo, 0) * scale, label_w + max(hi, 0) * scale
            tip = f"95 % interval {fmt(lo)}{DASH}{fmt(hi)}"
            out.append(f'<g stroke="{INK}" stroke-width="1.3"><title>{esc(tip)}</title>'
                       f'<line x1="{_f(x0)}" y1="{_f(cy)}" x2="{_f(x1)}" y2="{_f(cy)}"/>'
                       f'<line x1="{_f(x0)}" y1="{_f(cy - 5)}" x2="{_f(x0)}" y2="{_f(cy + 5)}"/>'
                       f'<line x1="{_f(x1)}" y1="{_f(cy - 5)}" x2="{_f(x1)}" y2="{_f(cy + 5)}"/>'
                       "</g>")
            end = max(end, x1)
        out.append(_text(end + 5, cy + 4, fmt(_bar_total(b)), size=11.5, weight="600"))
    return _svg(width, bottom + 20, title, "".join(out))


def _bar_total(b: Bar) -> float | None:
    if num(b.total) is not None:
        return num(b.total)
    values = [num(v) for _, v in b.parts]
    return None if all(v is None for v in values) else sum(v or 0.0 for v in values)


def heat_color(share: float) -> str:
    """The heat-map colour for a share 0..1 (10 classes of 10 %)."""
    return HEAT[min(len(HEAT) - 1, max(0, int(share * len(HEAT))))]


def svg_heatmap(grid: Sequence[Sequence[object]], row_labels: Sequence[str],
                col_labels: Sequence[str], *, title: str, tip: Callable[[int, int, float | None], str],
                row_notes: Sequence[str] | None = None, note_title: str = "",
                legend_title: str = "share, %") -> str:
    """A grid of shares 0..1: each cell coloured by :func:`heat_color` and labelled with its
    rounded percentage; None cells are light grey with "–". A 10-class legend sits below.
    Cells inherit their text attributes from one group: a page may hold hundreds of these."""
    cw, ch, left, top = 29, 21, 40, 18
    cols = len(col_labels)
    notes_w = 64 if row_notes else 0
    width = left + cols * cw + notes_w + 6
    out: list[str] = []
    for j, lab in enumerate(col_labels):
        out.append(_text(left + j * cw + cw / 2, top - 6, lab, anchor="middle", size=10,
                         fill=MUTED))
    if row_notes:
        out.append(_text(left + cols * cw + 8, top - 6, note_title, size=10, fill=MUTED))
    for i, lab in enumerate(row_labels):
        y = top + i * ch
        out.append(_text(left - 6, y + ch / 2 + 4, lab, anchor="end", size=11))
        if row_notes:
            out.append(_text(left + cols * cw + 8, y + ch / 2 + 4, row_notes[i], size=11))
    out.append('<g text-anchor="middle" font-size="10">')
    for i in range(len(row_labels)):
        y = top + i * ch
        row = grid[i] if i < len(grid) and isinstance(grid[i], (list, tuple)) else ()
        for j in range(cols):
            v = num(row[j]) if j < len(row) else None
            x = left + j * cw
            if v is None:
                out.append(_rect(x + .5, y + .5, cw - 1, ch - 1, "#F2F3F5", tip(i, j, None)))
                out.append(_text(x + cw / 2, y + ch / 2 + 4, DASH, fill=MUTED))
                continue
            v = min(max(v, 0.0), 1.0)
            fill = heat_color(v)
            ink = _ink_on(fill)
            out.append(_rect(x + .5, y + .5, cw - 1, ch - 1, fill, tip(i, j, v)))
            out.append(_text(x + cw / 2, y + ch / 2 + 4, f"{round(v * 100)}",
                             fill=None if ink == INK else ink))
    out.append("</g>")
    # Legend: ten blocks of 10 %, labelled at their edges.
    ly = top + len(row_labels) * ch + 12
    bw = 30
    out.append(_text(left, ly + 11, legend_title, size=10.5, fill=MUTED))
    lx = left + 232
    for k, fill in enumerate(HEAT):
        out.append(_rect(lx + k * bw, ly, bw, 12, fill,
                         f"{k * 10}{DASH}{(k + 1) * 10} %", ' stroke="#FFFFFF" stroke-width=".5"'))
    for k in range(0, len(HEAT) + 1, 2):
        out.append(_text(lx + k * bw, ly + 25, str(k * 10), anchor="middle", size=10, fill=MUTED))
    return _svg(max(width, lx + len(HEAT) * bw + 12), ly + 30, title, "".join(out))


def svg_columns(values: Sequence[object], labels: Sequence[str], *, title: str,
                fmt: Callable[[float], str], tip: Callable[[int, float | None], str],
                color: str = "#B30000", ymax: float | None = None, height: float = 110) -> str:
    """Vertical bars, one per value, the value printed above each; None shows "–" and no bar."""
    cw, left, top, bottom_pad = 29, 40, 16, 20
    plot_h = height - top - bottom_pad
    vals = [num(v) for v in values]
    vmax = ymax if ymax else max([v for v in vals if v is not None] or [1.0]) or 1.0
    out: list[str] = []
    base = top + plot_h
    out.append(f'<line x1="{left}" y1="{_f(base)}" x2="{_f(left + cw * len(vals))}" '
               f'y2="{_f(base)}" stroke="{MUTED}"/>')
    for i, v in enumerate(vals):
        x = left + i * cw
        out.append(_text(x + cw / 2, base + 14, labels[i], anchor="middle", size=10, fill=MUTED))
        if v is None:
            out.append(_text(x + cw / 2, base - 4, DASH, anchor="middle", size=10, fill=MUTED))
            continue
        h = max(0.0, min(v, vmax)) / vmax * plot_h
        out.append(_rect(x + 3, base - h, cw - 6, h, color, tip(i, v)))
        out.append(_text(x + cw / 2, base - h - 3, fmt(v), anchor="middle", size=9.5))
    return _svg(left + cw * len(vals) + 8, height, title, "".join(out))


@dataclass(frozen=True)
class Span:
    """One mark of :func:`svg_timeline`: on row ``row``, from ``x0`` to ``x1`` (fractions 0..1
    of the row), of ``kind`` (a key of the ``lanes`` table), with a hover ``tip``."""

    row: int
    x0: float
    x1: float
    kind: str
    tip: str


def svg_timeline(rows: Sequence[str], spans: Iterable[Span], *,
                 lanes: Mapping[str, tuple[str, float, float, str]], title: str,
                 ticks: Sequence[tuple[float, str]] = (),
                 notes: Sequence[Sequence[str]] | None = None,
                 note_heads: Sequence[str] = (), width: float = 1000) -> str:
    """Rows of spans, e.g. one row per day. ``lanes`` maps a kind to (fill, top, bottom, legend
    label) where top/bottom are fractions of the row height: kinds in separate lanes read apart
    without colour. Kinds are drawn in the lanes table's order (first = underneath).
    ``notes`` are per-row text columns printed right of the plot, headed by ``note_heads``."""
    label_w, row_h, note_w = 92, 22, 74
    n_notes = len(note_heads) if notes else 0
    plot_w = width - label_w - n_notes * note_w - 20
    legend, lh = _legend([(lab, _rect(0, 10 * t, 14, 10 * (b - t), fill))
                          for fill, t, b, lab in lanes.values()], label_w, 2, plot_w)
    top = lh + 20
    out = [legend]
    bottom = top + len(rows) * row_h
    for frac, lab in ticks:
        x = label_w + frac * plot_w
        out.append(f'<line x1="{_f(x)}" y1="{_f(top - 3)}" x2="{_f(x)}" y2="{_f(bottom)}" '
                   f'stroke="{RULE}"/>')
        out.append(_text(x, top - 6, lab, anchor="middle", size=10, fill=MUTED))
    for k, head in enumerate(note_heads if notes else ()):
        out.append(_text(label_w + plot_w + 20 + (k + 1) * note_w - 4, top - 6, head,
                         anchor="end", size=10, fill=MUTED))
    for i, lab in enumerate(rows):
        y = top + i * row_h
        out.append(_rect(label_w, y + 2, plot_w, row_h - 4, "none",
                         extra=f' stroke="{RULE}"'))
        out.append(_text(label_w - 8, y + row_h / 2 + 4, lab, anchor="end", size=11))
        for k, note in enumerate(notes[i] if notes else ()):
            out.append(_text(label_w + plot_w + 20 + (k + 1) * note_w - 4, y + row_h / 2 + 4,
                             note, anchor="end", size=11))
    order = {kind: n for n, kind in enumerate(lanes)}
    for s in sorted((s for s in spans if s.kind in lanes and 0 <= s.row < len(rows)),
                    key=lambda s: order[s.kind]):
        fill, t, b, _ = lanes[s.kind]
        y = top + s.row * row_h + 2
        h = row_h - 4
        x0 = label_w + max(0.0, s.x0) * plot_w
        # A minimum width: a one-minute outage must still be visible (and hoverable).
        w = max(1.6, (min(1.0, s.x1) - max(0.0, s.x0)) * plot_w)
        out.append(_rect(x0, y + t * h, w, (b - t) * h, fill, s.tip))
    return _svg(width, bottom + 6, title, "".join(out))


@dataclass(frozen=True)
class Series:
    """One series of :func:`svg_xy`: points are (x, y or None, tooltip). ``marker`` "circle" or
    "square"; ``line`` joins consecutive points (a None breaks the line); ``dash`` an SVG
    stroke-dasharray. Marker shape and dash tell series apart without colour."""

    name: str
    points: tuple[tuple[float, float | None, str], ...]
    color: str
    marker: str = "circle"
    line: bool = True
    dash: str = ""


def svg_xy(series: Sequence[Series], *, title: str, x_range: tuple[float, float],
           x_ticks: Sequence[tuple[float, str]], y_title: str,
           width: float = 760, height: float = 240) -> str:
    """Lines and/or points over a numeric x axis; y from 0 to a round maximum."""
    left, right, top = 56, 14, 30
    bottom_pad = 34
    plot_w, plot_h = width - left - right, height - top - bottom_pad
    legend_items = []
    for s in series:
        sw = (f'<line x1="0" y1="5" x2="14" y2="5" stroke="{s.color}" stroke-width="2"'
              + (f' stroke-dasharray="{s.dash}"' if s.dash else "") + "/>" if s.line else "")
        legend_items.append((s.name, sw + _marker(s.marker, 7, 5, s.color)))
    legend, _ = _legend(legend_items, left, 4, plot_w)
    ys = [y for s in series for _, y, _ in s.points if num(y) is not None]
    ticks = _ticks(max(ys or [1.0]), 4)
    x_lo, x_hi = x_range
    span = (x_hi - x_lo) or 1.0

    def px(x: float) -> float:
        return left + (x - x_lo) / span * plot_w

    def py(y: float) -> float:
        return top + plot_h - y / ticks[-1] * plot_h

    out = [legend]
    for t in ticks:
        out.append(f'<line x1="{left}" y1="{_f(py(t))}" x2="{_f(left + plot_w)}" '
                   f'y2="{_f(py(t))}" stroke="{RULE}"/>')
        out.append(_text(left - 6, py(t) + 4, _tick_label(t), anchor="end", size=10, fill=MUTED))
    for x, lab in x_ticks:
        out.append(_text(px(x), top + plot_h + 15, lab, anchor="middle", size=10, fill=MUTED))
        out.append(f'<line x1="{_f(px(x))}" y1="{_f(top + plot_h)}" x2="{_f(px(x))}" '
                   f'y2="{_f(top + plot_h + 4)}" stroke="{MUTED}"/>')
    out.append(f'<text transform="translate(13,{_f(top + plot_h / 2)}) rotate(-90)" '
               f'text-anchor="middle" font-size="10.5" fill="{MUTED}">{esc(y_title)}</text>')
    for s in series:
        if s.line:
            run: list[str] = []
            for x, y, _ in list(s.points) + [(0.0, None, "")]:
                if num(y) is None:
                    if len(run) > 1:
                        out.append(f'<polyline points="{" ".join(run)}" fill="none" '
                                   f'stroke="{s.color}" stroke-width="2"'
                                   + (f' stroke-dasharray="{s.dash}"' if s.dash else "") + "/>")
                    run = []
                else:
                    run.append(f"{_f(px(x))},{_f(py(y))}")   # type: ignore[arg-type]
        for x, y, tip in s.points:
            if num(y) is not None:
                out.append(_marker(s.marker, px(x), py(y), s.color, tip))   # type: ignore[arg-type]
    return _svg(width, height, title, "".join(out))


def _marker(kind: str, x: float, y: float, color: str, tip: str = "") -> str:
    t = f"<title>{esc(tip)}</title>" if tip else ""
    if kind == "none":
        return ""
    if kind == "square":
        return (f'<rect x="{_f(x - 3.5)}" y="{_f(y - 3.5)}" width="7" height="7" fill="#FFFFFF" '
                f'stroke="{color}" stroke-width="2">{t}</rect>')
    return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="3.6" fill="{color}">{t}</circle>'


# --- page frame ------------------------------------------------------------------------------

_CSS = """
:root{--ink:#1b1f24;--muted:#5b6470;--rule:#e1e5ea;--panel:#f4f6f8;--accent:#1f5f8b}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;color:var(--ink);background:#fff;font:15px/1.5 system-ui,-apple-system,"Segoe UI",
 Roboto,"Noto Sans","DejaVu Sans","Noto Naskh Arabic","Noto Nastaliq Urdu",sans-serif}
.page{max-width:1240px;margin:0 auto;padding:28px 32px 56px}
header h1{font-size:1.75rem;line-height:1.2;margin:0 0 .3rem}
h2{font-size:1.3rem;margin:2.4rem 0 .7rem;padding-bottom:.3rem;border-bottom:2px solid var(--rule)}
h3{font-size:1.05rem;margin:1.6rem 0 .4rem}
h4{font-size:.95rem;margin:1.1rem 0 .3rem}
p,li{max-width:80ch}
.muted,.lede{color:var(--muted)}
code{font-size:.88em;background:var(--panel);padding:0 .25em;border-radius:3px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1.2rem;margin:.8rem 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
nav.toc ol{display:flex;flex-wrap:wrap;gap:.2rem 1.4rem;padding:0;margin:1rem 0 0;list-style:none;
 font-size:.9rem}
nav.toc a{color:var(--accent)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.85rem;margin:.4rem 0}
caption{text-align:left;color:var(--muted);font-size:.85rem;padding:.2rem 0}
th,td{padding:.32rem .55rem;border-bottom:1px solid var(--rule);text-align:left;vertical-align:top}
thead th{background:var(--panel);border-bottom:2px solid #c3cad2;vertical-align:bottom;
 font-weight:600}
.n,.nw{white-space:nowrap}.n{text-align:right}
table.figures{font-size:.82rem}
table.figures thead th{white-space:normal;min-width:4.2em}
table.figures th,table.figures td{padding:.3rem .45rem}
table.dense td{padding:.12rem .55rem}
.code{display:block;font-size:.75rem;color:var(--muted);font-weight:400}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:0 2rem}
tbody th{font-weight:600}
.ci{display:block;font-size:.72rem;color:var(--muted);font-weight:400}
td.suppressed{color:var(--muted);font-style:italic}
abbr[title]{text-decoration:underline dotted;cursor:help}
/* A region page can hold hundreds of charts: let the browser skip laying out those off screen. */
figure{margin:.8rem 0 1.4rem;content-visibility:auto;contain-intrinsic-size:auto 300px}
figcaption{font-size:.85rem;color:var(--muted);margin-top:.25rem;max-width:80ch}
svg.chart{display:block;max-width:100%;height:auto}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:.7rem;margin:1rem 0}
.card{border:1px solid var(--rule);border-radius:8px;padding:.7rem .9rem;background:var(--panel)}
.card .k{font-size:.8rem;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
.card .v{font-size:1.45rem;font-weight:650;line-height:1.25;white-space:nowrap}
.card .s{font-size:.85rem;color:var(--muted)}
.note{border-left:4px solid var(--accent);background:#eef4f9;padding:.7rem 1.1rem;margin:1rem 0}
.note p{margin:.45rem 0}
footer{margin-top:3rem;color:var(--muted);font-size:.8rem;border-top:1px solid var(--rule);
 padding-top:.6rem}
@media print{
 @page{margin:12mm}
 body{font-size:10pt;background:#fff;color:#000}
 .page{max-width:none;padding:0}
 nav.toc{display:none}
 .scroll{overflow:visible}
 figure,table,.card,.cards,.note,tr{break-inside:avoid;page-break-inside:avoid}
 h2,h3,h4{break-after:avoid;page-break-after:avoid}
 thead{display:table-header-group}
 thead th,.card,.note,code{background:none}
 abbr[title]{text-decoration:none}
 .cards{grid-template-columns:repeat(3,1fr)}
 a{color:inherit;text-decoration:none}
 *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def _page(title: str, body: str, extra_css: str = "") -> str:
    # The CSP forbids every fetch (data: only, for the empty favicon that keeps the browser from
    # asking the file system for one) and every script: the page cannot phone home, and an
    # escaping slip could not run code.
    return ("<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<meta name="generator" content="linewatch">\n'
            '<link rel="icon" href="data:,">\n'
            f"<title>{esc(title)}</title>\n<style>{_CSS}{extra_css}</style>\n</head>\n"
            f'<body>\n<div class="page">\n{body}\n</div>\n</body>\n</html>\n')


def _section(sid: str, heading: str, content: str) -> str:
    return (f'<section id="{sid}" aria-labelledby="{sid}-h">\n'
            f'<h2 id="{sid}-h">{esc(heading)}</h2>\n{content}\n</section>\n')


def _toc(items: Sequence[tuple[str, str]]) -> str:
    links = "".join(f'<li><a href="#{sid}">{esc(h)}</a></li>' for sid, h in items)
    return f'<nav class="toc" aria-label="Contents"><ol>{links}</ol></nav>'


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are HTML already (escaped by the caller)."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _paragraphs(paras: object) -> str:
    if isinstance(paras, str):
        paras = [paras]
    if not isinstance(paras, (list, tuple)):
        return ""
    return "\n".join(f"<p>{esc(p)}</p>" for p in paras if p)


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


# --- the regional report ---------------------------------------------------------------------

# (key, column heading, expansion for <abbr>, formatter): the headline table, left to right.
HEADLINE: tuple[tuple[str, str, str, Callable[[object], str]], ...] = (
    ("agents", "Agents", "agents reporting in the cell", fmt_int),
    ("sites", "Lines", "distinct lines (sites) in the cell: agents behind one router count once",
     fmt_int),
    ("agent_hours", "Agent-hours", "hours of observation summed over lines (a line's agents "
     "counted once)", fmt_min),
    ("power_saifi", "SAIFI", "sustained power cuts per customer", fmt_freq),
    ("power_saidi_min", "SAIDI min", "minutes without power per customer", fmt_min),
    ("power_caidi_min", "CAIDI min", "average minutes per sustained power cut", fmt_min),
    ("power_maifi", "MAIFI", "momentary power cuts per customer", fmt_freq),
    ("power_asai", "ASAI", "share of observed time with power", fmt_pct),
    ("internet_availability", "Internet avail.", "share of observed time with internet",
     fmt_pct),
    ("internet_outages_per_agent", "Outages / agent", "internet outages per agent", fmt_freq),
    ("internet_outage_min_per_agent", "Outage min / agent", "internet outage minutes per agent",
     fmt_min),
    ("rtt_p50_ms", "RTT p50 ms", "median round-trip time to internet targets", fmt_min),
    ("download_p50_bps", "Download p50 Mbit/s", "median download speed",
     lambda v: fmt_mbit(v, unit=False)),
)

# The second table: work hours and line quality, same layout.
QUALITY_COLUMNS: tuple[tuple[str, str, str, Callable[[object], str]], ...] = (
    ("work_hours_power_min_per_agent", "Work-hours power min / agent",
     "minutes without power inside work hours, per agent", fmt_min),
    ("work_hours_internet_min_per_agent", "Work-hours internet min / agent",
     "internet outage minutes inside work hours, per agent", fmt_min),
    ("rtt_p95_ms", "RTT p95 ms", "95th percentile round-trip time", fmt_min),
    ("loss_pct", "Loss %", "mean packet loss", lambda v: fmt_num(v, 2)),
    ("download_p10_bps", "Download p10 Mbit/s", "10th percentile download speed",
     lambda v: fmt_mbit(v, unit=False)),
    ("upload_p50_bps", "Upload p50 Mbit/s", "median upload speed",
     lambda v: fmt_mbit(v, unit=False)),
    ("speed_under_threshold_share", "Tests under threshold",
     "share of speed tests below the speed threshold", lambda v: fmt_pct(v, 1)),
    ("regional_events", "Regional events", "region-wide events the cell took part in", fmt_int),
)

# What each data-quality counter means (collector/clean.py); unknown counters are listed as is.
QUALITY_COUNTERS = {
    "episodes": "outage episodes (power and connectivity)",
    "obs_hours": "agent-hours of observation records",
    "ping_days": "daily latency and loss summaries",
    "speed_tests": "speed tests",
    "unknown_region": "from an agent whose region is not a configured code (or empty)",
    "unknown_type": "an episode that is neither power nor connectivity",
    "unknown_cause": "an episode cause the agent never writes",
    "not_a_number": "a NaN or infinite time or value",
    "negative_duration": "an episode that ends before it starts",
    "zero_duration": "an episode that ends when it starts (the agent never writes one)",
    "absurd_duration": "an episode longer than 31 days",
    "future_timestamp": "dated after the collection time (plus 5 minutes of clock skew)",
    "clock_unset": "dated before 2000: a clock that was never set (counted on every run)",
    "absurd_observed": "a round whose interval is not above 0 s and at most 3,600 s: left out "
                       "of its hour's observed time",
    "absurd_rtt": "latency below 0 or above 60 s",
    "absurd_loss": "loss outside 0..100 %",
    "absurd_speed": "a speed at or below 0, or above 10 Gbit/s",
    "overlap_dropped": "an outage wholly inside an earlier one of the same agent (of two "
                       "starting together, the shorter)",
    "unwatched": "an outage with no second in an hour its line was watched",
    "impossible_share": "a load-shedding share that came out above 1: left empty, not shown as 1",
    "overlap_clipped": "an outage that began before the previous one ended: starts at its end",
    "power_merged": "power episodes of one cut (battery and UPS, or a flat battery then host down): "
                    "merged into one interruption, not bad data; host-down time stays watched "
                    "time",
    "unwatched_clipped": "an outage partly in hours its line was not watched: only the watched "
                         "part counts",
    "observed_clipped": "more than 3,600 observed seconds in one hour: clipped to the hour",
    "flood_speed_tests": "more than 48 speed tests by one agent in one day: the rest dropped",
    "flood_episodes": "more than 1,440 episodes of one type by one agent in one day",
    "window_clipped": "an episode still going at the window's end (or now) counts up to it "
                      "only; its class follows its whole duration; one beginning only after it "
                      "is not counted",
    "retagged": "written without a valid region (before the agent's region was set, or with a "
                "code it later corrected): given the agent's region, kept",
    "site_merged": "one outage of a line seen by several of its agents: merged into one, not bad "
                   "data",
    "site_retagged": "written without a site tag (before the agent was upgraded): given the "
                     "agent's site, kept",
    "missing_agent": "a row without an agent tag",
    "missing_value": "a row without its value, or with one that is not a number",
    "unreadable_store": "a store file refused whole: not the agent's schema, damaged, or too "
                        "large or slow to read (listed below)",
    "bad_json": "a store row whose fields are not a JSON object",
    "bad_tags": "a store row whose series' tags are not a JSON object of text",
    "bad_time": "a store row or episode whose time is not whole nanoseconds",
    "foreign_agent": "a store row of an agent other than the file's own (one agent per file)",
}

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
    result = _dict(result)
    settings = _dict(result.get("settings"))
    window = _dict(result.get("window"))
    tz, tz_label = zone(settings.get("timezone"), window.get("start"))
    title = str(result.get("title") or "linewatch regional reliability report")
    by = [k for k in _list(result.get("by")) if isinstance(k, str)] or ["region", "isp"]
    period = str(result.get("period") or "all")
    cells = [c for c in _list(result.get("cells")) if isinstance(c, dict)]
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
        ("events", "Regional events", _events_table(_list(result.get("events")), ctx)),
        ("data-quality", "Data quality", _quality_table(_dict(result.get("data_quality")))),
        ("method", "Method and limits",
         _paragraphs(result.get("methodology")) if result.get("methodology")
         else _default_region_method(settings, tz_label)),
    ]
    start, end = window.get("start"), window.get("end")
    facts = [("Window", esc(fmt_range(start, end, tz))),
             ("Time zone", f"{esc(tz_label)} ({_utc_offset(tz, parse_time(start))})"),
             ("Cells", f"{len(cells):,} ({len(cells) - len(shown):,} suppressed), by "
                       f"{esc(', '.join(by))}, period: {esc(period)}"),
             ("Generated", esc(fmt_time(result.get("generated_at"), tz)))]
    for key, value in settings.items():
        if key == "timezone":
            continue
        label, fmt = SETTING_LABELS.get(key, (key.replace("_", " "), esc))
        facts.append((label, fmt(value)))
    header = (f"<header>\n<h1>{esc(title)}</h1>\n"
              '<p class="lede">Power and internet reliability measured by volunteers\' '
              "linewatch agents.</p>\n"
              f"{_facts(facts)}\n{_toc([(sid, h) for sid, h, _ in sections])}\n</header>")
    body = header + "\n<main>\n" + "".join(_section(*s) for s in sections) + "</main>\n" + \
        f'<footer>{esc(title)} {DASH} generated {esc(fmt_time(result.get("generated_at"), tz))}' \
        f" ({esc(tz_label)}). Self-contained page: no scripts, no external resources.</footer>"
    return _page(title, body, "@media print{@page{size:A4 landscape}}")


@dataclass(frozen=True)
class _RegionCtx:
    tz: tzinfo
    by: list[str]
    period: str
    names: Mapping[object, object]
    floor: str
    watch: str = "long enough"


def _region_html(code: object, name: object) -> str:
    if name and code:
        return f'{name_html(name)} <span class="muted">({esc(code)})</span>'
    return name_html(name or code)


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
    return _region_html(code, name), plain


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
        out.append(_figure(svg_hbar(saidi, title=f"{plain}: SAIDI, minutes without power per "
                                                  "customer", colors={"saidi": POWER_AMBER},
                                    series_labels={"saidi": "sustained power cuts, min per "
                                                   "customer"},
                                    legend=True, width=580, label_w=150),
                           "Power: SAIDI, minutes of sustained power cuts per customer."))
        out.append(_figure(svg_hbar(net, title=f"{plain}: internet outage minutes per agent by "
                                               "cause", colors=causes,
                                    series_labels=CAUSE_LABELS, width=580, label_w=150),
                           "Internet: outage minutes per agent by the cause the agents found; "
                           "the figure after the bar is the total."))
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
    peak = max((v for c in shown for v in map(num, _list(c.get("load_shedding_by_hour")))
                if v is not None), default=0.0)
    ymax = min(1.0, max(peak, 0.05))
    for code, cells in _group_by_region(shown):
        heading, _ = _region_heading(code, cells, ctx)
        out.append(f"<h3>{heading}</h3>")
        for c in cells:
            name = _cell_name(c, ctx)
            full = _cell_name(c, ctx, with_region=True)
            grid = _list(c.get("load_shedding_heatmap"))
            by_hour = _list(c.get("load_shedding_by_hour"))
            by_day = _list(c.get("load_shedding_by_weekday"))
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
            out.append(_figure(
                svg_heatmap(grid, WEEKDAYS, HOURS, title=f"{full}: load shedding by weekday and "
                            "hour", tip=tip, row_notes=notes, note_title="all day",
                            legend_title="share of agent-time without power, %"),
                "Share of agent-time without power, % (weekday rows, local hour columns)."))
            if by_hour:
                out.append(_figure(
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
    never = datetime.min.replace(tzinfo=timezone.utc)
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
            f"<td>{_region_html(region, e.get('region_name') or ctx.names.get(region))}</td>"
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
                         ("clipped", "clipped")):
        counters = _dict(dq.get(group))
        if not counters:
            rows.append(f'<tr><th scope="row">{label}</th><td colspan="3" class="muted">'
                        f"none</td></tr>")
            continue
        for i, (key, value) in enumerate(counters.items()):
            what = QUALITY_COUNTERS.get(key, "")
            rows.append(f'<tr><th scope="row">{label if i == 0 else ""}</th>'
                        f"<td><code>{esc(key)}</code></td><td class=\"n\">{fmt_int(value)}</td>"
                        f"<td>{esc(what)}</td></tr>")
    codes = _dict(dq.get("unknown_region_codes"))
    extra = ""
    if codes:
        extra = ("<p>Unknown region codes seen: " + ", ".join(
            f"<code>{esc(k)}</code> ({fmt_int(v)})" for k, v in codes.items()) + ".</p>")
    unreadable = [str(u) for u in _list(dq.get("unreadable_stores")) if u]
    if unreadable:
        extra += ("<p>Store files not read (nothing of them is in the figures):</p><ul>"
                  + "".join(f"<li><code>{esc(u)}</code></li>" for u in unreadable) + "</ul>")
    return ("<p>Every record is checked before it reaches a figure. Rejected records are left out; "
            "clipped ones are kept, shortened, merged or given their agent's region. Counters "
            "not listed were zero.</p>"
            '<table><caption>Records accepted, rejected and clipped</caption><thead><tr>'
            '<th scope="col">Group</th><th scope="col">Counter</th>'
            '<th scope="col" class="n">Count</th><th scope="col">Meaning</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>{extra}")


def _default_region_method(settings: Mapping, tz_label: str) -> str:
    momentary = num(settings.get("momentary_max_s"))
    momentary_txt = (f"{fmt_int(momentary)} s ({fmt_num(momentary / 60, 1)} min)"
                     if momentary is not None else "the momentary limit (IEEE 1366: 5 min)")
    floor = num(settings.get("min_agents"))
    floor_txt = f"{fmt_int(floor)} lines" if floor is not None else "the publication floor"
    watch = num(settings.get("min_watch_h"))
    watch_txt = (f"{fmt_num(watch, 0)} hours (at most half the period)" if watch is not None
                 else "the configured watching time")
    threshold = fmt_mbit(settings.get("speed_threshold_bps"))
    work = str(settings.get("work_hours") or "the configured work hours")
    method = [
        "One line is one customer. Each volunteer runs the linewatch agent on a computer where "
        "they work; it checks the local network, internet hosts and DNS every few seconds, and "
        "watches mains power through the laptop battery, a UPS or the computer going down. "
        "Agents behind one router (one household or office) are one line, a site: their "
        "outages are merged and they count once, in the indices and in regional events.",
        "Customers are observation-aware: an agent counts only for the time it was watching. "
        "The customers served in a cell are the observed agent-time divided by the period's "
        "length, so four agents that watched half the period count as two customers. An "
        "interruption counts only for the agent that saw it.",
        "Power indices follow IEEE 1366: SAIFI is sustained interruptions per customer, SAIDI "
        "minutes of sustained interruption per customer, CAIDI = SAIDI / SAIFI (minutes per "
        "interruption), MAIFI momentary interruptions per customer and ASAI the share of "
        f"observed time with power. Sustained means longer than {momentary_txt}, by the cut's "
        "whole length; shorter cuts count only in MAIFI. A cut counts in the period it began, "
        "its minutes up to the end of the report's window and only while its line was watched "
        "(a computer that was down because the power was cut was watching).",
        "Internet availability is the share of observed time with a working connection. Outages "
        "are split by the cause the agent found: power (the computer was on battery or UPS when "
        "it began), local network (the router or Wi-Fi did not answer), ISP (the local network "
        "answered, the internet did not), DNS (only name resolution failed) or unknown.",
        "The small bracketed figures are 95 % bootstrap intervals: the lines of a cell are "
        "resampled with replacement and the figure recomputed, so an interval shows how much the "
        "figure depends on which volunteers happen to take part. A missing interval could not be "
        "computed.",
        f"Publication floor: a cell with fewer than {floor_txt} that each watched at least "
        f"{watch_txt} is suppressed and shows no figure, to protect volunteers and because a "
        "handful of lines, or minutes of watching, say little about a region. A figure that "
        "rests on fewer lines than its cell has (not every line ran speed tests) says so.",
        f"Times, hours of day and weekdays are in {tz_label}. Work-hours figures count only "
        f"minutes within {work} local time. The load-shedding share of a weekday and hour is the "
        "observed agent-time in that hour without mains power (on battery or UPS, or the host "
        "down) divided by all observed agent-time in that hour.",
        f"Speed figures are medians (p50) and 10th percentiles (p10) of the agents' speed tests; "
        f"'tests under threshold' is the share of tests below {threshold}.",
    ]
    limits = [
        "Volunteers are not a random sample of customers: they chose to run the agent and "
        "often have better equipment and backup power than their neighbours, so the figures "
        "describe their lines, not every line in the region.",
        "A laptop on its battery sees a power cut as it happens; a desktop without a UPS goes "
        "down with the power, and its cut is known only as the time from its last heartbeat to "
        "its next boot, which cannot be told apart from a computer switched off abruptly.",
        "ISP names are free text typed by the volunteers: one ISP spelled two ways shows as two "
        "rows.",
    ]
    return _paragraphs(method) + "\n<h3>Limits</h3>\n" + _paragraphs(limits)


# --- one worker's line report ----------------------------------------------------------------

EPISODE_KINDS = {"connectivity": "Internet outage", "power": "Power cut",
                 "degraded": "Degraded", "agent_gap": "Not watching"}


def line_report(line: Mapping) -> str:
    """One worker's page for a complaint to their ISP. Times are shown in ``line["timezone"]``.

    Optional additions to the documented shape: ``work_hours`` (e.g. "09:00-18:00", shown in
    the summary), ``account`` (the customer's reference with the ISP), ``plan``
    (``download_mbps``, ``upload_mbps``: the paid speeds), ``tags_changed`` (the rows' tag sets
    when they differ from the line's), ``probe`` (how the line was watched, for the method),
    ``evidence`` on an episode (what its rounds recorded). Episodes without ``end`` end at
    start + duration_min; ``agent_gap`` episodes are drawn as not-watching time like ``gaps``.
    Missing keys render as "–" or are left out."""
    line = _dict(line)
    window = _dict(line.get("window"))
    tz, tz_label = zone(line.get("timezone"), window.get("start"))
    title = str(line.get("title") or _line_title(line))
    episodes = sorted((_Ep.of(e) for e in _list(line.get("episodes")) if isinstance(e, dict)),
                      key=lambda e: (e.start is None, e.start or 0.0))
    gaps = [_Ep.of({"type": "gap", **g}) for g in _list(line.get("gaps")) if isinstance(g, dict)]
    gaps += [e for e in episodes if e.type == "agent_gap"]

    sections = [
        ("summary", "Summary", _line_summary(line, episodes)),
        ("timeline", "Outage timeline", _timeline(line, episodes, gaps, tz, tz_label)),
        ("daily", "Day by day", _daily(line, tz)),
        ("speed", "Speed tests", _speed(line, tz, tz_label)),
        ("episodes", "Every episode", _episodes_table(line, episodes, tz)),
        ("for-the-isp", "What this shows", _isp_note(line, episodes, tz)),
        ("method", "Method", _paragraphs(line.get("methodology")
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
    plan = _dict(line.get("plan"))
    if num(plan.get("download_mbps")) or num(plan.get("upload_mbps")):
        facts.append(("Plan (paid speeds)", esc(_plan_text(plan))))
    facts += [("Agent", f"<code>{esc(line.get('agent') or DASH)}</code>"),
              ("Window", esc(fmt_range(start, end, tz))),
              ("Time zone", f"{esc(tz_label)} ({_utc_offset(tz, parse_time(start))})"),
              ("Generated", esc(fmt_time(line.get("generated_at"), tz)))]
    subtitle = isp + (f" in {place}" if place else "")
    h1 = esc(line["title"]) if line.get("title") else _line_title(line, html=True)
    header = (f"<header>\n<h1>{h1}</h1>\n<p class=\"lede\">{subtitle}</p>\n"
              f"{_facts(facts)}\n{_tags_changed(line, tz)}{_toc([(sid, h) for sid, h, _ in sections])}"
              "\n</header>")
    body = header + "\n<main>\n" + "".join(_section(*s) for s in sections) + "</main>\n" + \
        f"<footer>Made by linewatch on the subscriber's computer; generated " \
        f"{esc(fmt_time(line.get('generated_at'), tz))} ({esc(tz_label)}). Self-contained page: no " \
        "scripts, no external resources.</footer>"
    span = fmt_range(start, end, tz)
    return _page(title + (f" {DASH} {span}" if span != DASH else ""), body, _LINE_CSS)


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
        where.append(_region_html(line.get("region"), line.get("region_name")))
    return ", ".join(where)


def _plan_text(plan: Mapping) -> str:
    parts = [f"{fmt_num(num(plan.get(k)), 1, 'Mbit/s')} {word}"
             for k, word in (("download_mbps", "download"), ("upload_mbps", "upload"))
             if num(plan.get(k))]
    return ", ".join(parts) + " (as sold, from the config)"


def _tags_changed(line: Mapping, tz: tzinfo) -> str:
    """A warning when the rows in the window were tagged otherwise than the line is now."""
    runs = [r for r in _list(line.get("tags_changed")) if isinstance(r, dict)]
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


@dataclass(frozen=True)
class _Ep:
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
    def of(e: Mapping) -> "_Ep":
        s, en = parse_time(e.get("start")), parse_time(e.get("end"))
        start = s.timestamp() if s else None
        minutes = num(e.get("duration_min"))
        end = en.timestamp() if en else None
        if end is None and start is not None and minutes is not None:
            end = start + minutes * 60
        if minutes is None and start is not None and end is not None:
            minutes = (end - start) / 60
        return _Ep(str(e.get("type") or ""), str(e.get("cause") or ""), start, end, minutes,
                   e.get("start"), e.get("end"), e.get("evidence"))


def _unit(text: str, unit: str) -> str:
    """A formatted figure with its unit; a missing figure stays a bare "–"."""
    return text if text == DASH else f"{text} {unit}"


def _card(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value}</div>'
            + (f'<div class="s">{sub}</div>' if sub else "") + "</div>")


def _line_summary(line: Mapping, episodes: Sequence[_Ep]) -> str:
    by_cause = _dict(line.get("outage_min_by_cause"))
    causes = sorted(((k, num(v)) for k, v in by_cause.items() if num(v) is not None),
                    key=lambda kv: -(kv[1] or 0))
    cause_txt = ", ".join(f"{esc(CAUSE_LABELS.get(k, k))} {fmt_min(v)}" for k, v in causes)
    cause_txt += " min" if causes else ""
    window = _dict(line.get("window"))
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
    return warn + f'<div class="cards">{"".join(cards)}</div>'


# Timeline lanes: outages in the upper half, power cuts in the lower half, not-watching behind
# at full height: the lane, not only the colour, tells them apart (and in greyscale print).
TIMELINE_LANES = {
    "gap": (GAP_GREY, 0.0, 1.0, "not watching (computer off): not an outage"),
    "connectivity": (OUTAGE_RED, 0.0, 0.5, "internet outage (upper half)"),
    "power": (POWER_AMBER, 0.5, 1.0, "power cut (lower half)"),
}


def _timeline(line: Mapping, episodes: Sequence[_Ep], gaps: Sequence[_Ep], tz: tzinfo,
              tz_label: str) -> str:
    window = _dict(line.get("window"))
    ws, we = parse_time(window.get("start")), parse_time(window.get("end"))
    marks = [e for e in list(episodes) + list(gaps) if e.start is not None and e.end is not None]
    if ws and we and we > ws:
        lo, hi = ws.timestamp(), we.timestamp()
    elif marks:
        lo, hi = min(e.start for e in marks), max(e.end for e in marks)   # type: ignore
    else:
        return '<p class="muted">No window and no episode: nothing to draw.</p>'
    days = _local_days(lo, hi, tz)
    bounds = [_day_start(d, tz) for d in days] + [_day_start(days[-1] + timedelta(days=1), tz)]
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
            "right total each day's minutes.</p>" + _figure(svg, "Internet outages (red, upper "
            "half), power cuts (amber, lower half) and time the computer was off (grey, full "
            "height)."))


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


def _end_text(e: _Ep, tz: tzinfo) -> str:
    """The end as "HH:MM" on the start's day, else with its date."""
    if e.start is None or e.end is None:
        return fmt_time(e.raw_end, tz) if e.raw_end else DASH
    s = datetime.fromtimestamp(e.start, tz)
    en = datetime.fromtimestamp(e.end, tz)
    return en.strftime("%H:%M" if s.date() == en.date() else "%Y-%m-%d %H:%M")


def _daily(line: Mapping, tz: tzinfo) -> str:
    daily = [d for d in _list(line.get("daily")) if isinstance(d, dict)]
    if not daily:
        return '<p class="muted">No daily figures.</p>'
    rows, p50, p95 = [], [], []
    xs = []
    for d in daily:
        day = _parse_day(d.get("day"))
        label = f"{WEEKDAYS[day.weekday()]} {day.isoformat()}" if day else str(d.get("day"))
        rows.append(f'<tr><th scope="row">{esc(label)}</th>'
                    f'<td class="n">{fmt_pct(d.get("availability"))}</td>'
                    f'<td class="n">{fmt_min(d.get("outage_min"))}</td>'
                    f'<td class="n">{fmt_min(d.get("power_min"))}</td>'
                    f'<td class="n">{fmt_min(d.get("rtt_p50_ms"))}</td>'
                    f'<td class="n">{fmt_min(d.get("rtt_p95_ms"))}</td>'
                    f'<td class="n">{fmt_num(d.get("loss_pct"), 2)}</td></tr>')
        if day:
            x = _day_start(day, tz) + 43200   # noon: the day's point sits mid-day on the axis
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
        chart = _figure(svg_xy([Series("p50 (median)", tuple(p50), "#1F5F8B"),
                                Series("p95", tuple(p95), "#D55E00", marker="square", dash="6 4")],
                               title="Latency per day: median and 95th percentile round-trip time",
                               x_range=(lo, hi), x_ticks=_day_ticks(lo, hi, tz, centre=True),
                               y_title="round-trip time, ms"),
                        "Latency to internet targets per day: p50 (solid, dots) and p95 (dashed, "
                        "squares), ms.")
    return table + chart


def _parse_day(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _day_ticks(lo: float, hi: float, tz: tzinfo, centre: bool = False) -> list[tuple[float, str]]:
    """One x tick per local day (at noon when ``centre``, else midnight), thinned to <= 12."""
    days = _local_days(lo, hi, tz)
    step = max(1, math.ceil(len(days) / 12))
    out = []
    for d in days[::step]:
        x = _day_start(d, tz) + (43200 if centre else 0)
        if lo <= x <= hi:
            out.append((x, f"{d.day} {d.strftime('%b')}"))
    return out


def _speed(line: Mapping, tz: tzinfo, tz_label: str) -> str:
    tests = []
    for t in _list(line.get("speedtests")):
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
    window = _dict(line.get("window"))
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
    plan = _dict(line.get("plan"))
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
                   x_range=(lo, hi), x_ticks=_day_ticks(lo, hi, tz), y_title="Mbit/s")
    paid = "; the dashed lines are the paid speeds" if against else ""
    return summary + _figure(chart, f"Each speed test: download (dots) and upload (squares), "
                                    f"Mbit/s{paid}; days start at midnight {tz_label}.")


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


def _plan_card(line: Mapping) -> str:
    """The summary card "Download against plan", when the plan's download speed is set and a
    speed test measured it."""
    paid = num(_dict(line.get("plan")).get("download_mbps"))
    if not paid or paid <= 0:
        return ""
    downs = [d / 1e6 for t in _list(line.get("speedtests")) if isinstance(t, dict)
             and parse_time(t.get("time")) is not None
             and (d := num(t.get("download_bps"))) is not None]
    a = speed_against_plan(downs, paid)
    if not a["tests"]:
        return ""
    return _card("Download against plan", esc(fmt_pct(a["median_share"], 0)),
                 esc(f"median of {plural(a['tests'], 'test')}, of the paid "
                     f"{fmt_num(paid, 1, 'Mbit/s')}"))


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _episodes_table(line: Mapping, episodes: Sequence[_Ep], tz: tzinfo) -> str:
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
    ev = _dict(ev)
    rounds = {str(k): int(n) for k, v in _dict(ev.get("rounds")).items() if (n := num(v))}
    n = sum(rounds.values())

    def echoes(role: str) -> list[tuple[str, int, int]]:
        return [(str(t.get("target") or "?"), int(num(t.get("sent")) or 0),
                 int(num(t.get("received")) or 0))
                for t in _list(ev.get(role)) if isinstance(t, dict)]

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
    for d in _list(ev.get("dns")):
        if not isinstance(d, dict):
            continue
        q, ok = int(num(d.get("queries")) or 0), int(num(d.get("ok")) or 0)
        errors = _dict(d.get("errors"))
        if ok == q:
            parts.append(f"DNS {d.get('name')} resolved {ok:,}/{q:,}")
            continue
        why = ", ".join(str(k) if len(errors) == 1 else f"{k} {fmt_int(v)}" for k, v in errors.items())
        parts.append(f"DNS {d.get('name')} failed {q - ok:,}/{q:,}" + (f" ({why})" if why else ""))
    return "; ".join(parts)


def _isp_note(line: Mapping, episodes: Sequence[_Ep], tz: tzinfo) -> str:
    isp_eps = [e for e in episodes if e.type == "connectivity" and e.cause == "isp"]
    isp_min = num(_dict(line.get("outage_min_by_cause")).get("isp"))
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
    return '<div class="note">' + _paragraphs(paras[:2] + [summary] + paras[2:]) + "</div>"


ECHO_METHODS = {"icmp_dgram": "ICMP echo (ping)", "icmp_raw": "ICMP echo (ping, raw socket)",
                "tcp": "TCP connection timing (ICMP was not permitted; a refused connection counts "
                       "as an answer)"}


def _probe_method(line: Mapping) -> list[str]:
    """The method's first paragraphs, naming what was really probed: the configured interval,
    echo count, timeout, router and targets, and what the window's rows show (the router's
    address found, the echo method used, targets of an earlier configuration)."""
    probe = _dict(line.get("probe"))
    seen = _dict(probe.get("seen"))
    interval, count = num(probe.get("interval_s")), num(probe.get("count"))
    if interval is None or count is None:
        return []
    targets = [str(t) for t in _list(probe.get("targets"))]
    names = [str(n) for n in _list(probe.get("dns_names"))]
    servers = [str(n) for n in _list(probe.get("dns_servers"))]
    gateways = [str(g) for g in _list(seen.get("gateways"))]
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
    methods = [ECHO_METHODS.get(str(m), str(m)) for m in _list(seen.get("methods"))]
    if methods:
        paras.append("Echoes in this window were sent as " + "; ".join(methods) + ".")
    older = [str(t) for t in _list(seen.get("targets")) if str(t) not in targets]
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
