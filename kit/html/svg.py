"""The SVG chart kit: :func:`svg_hbar`, :func:`svg_heatmap`, :func:`svg_columns`,
:func:`svg_timeline` and :func:`svg_xy`, pure functions from numbers to markup, and the colours.

Each chart carries a <title> for screen readers, <title> tooltips on its marks, and prints its
values as text, so no meaning rests on colour alone. SVGs have no xmlns attribute: the HTML
parser puts <svg> in the SVG namespace by itself, and the page then holds no "http://" at all.

Just over the house's 400 lines: five chart kinds over the same drawing helpers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from kit.html.fmt import DASH, esc, fmt_min, num

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies and in greyscale
# print by their lightness. Power is amber on both pages.
CAUSE_COLORS = {"power": "#E69F00", "lan": "#56B4E9", "isp": "#D55E00", "dns": "#009E73",
                "unknown": "#999999"}
OUTAGE_RED, POWER_AMBER, GAP_GREY = "#C8371D", "#E69F00", "#BFC5CC"

# ColorBrewer OrRd extended to 10 classes: one class per 10 % of load-shedding share, so the
# legend reads in round numbers.
HEAT = ("#FFF7EC", "#FEE8C8", "#FDD49E", "#FDBB84", "#FC8D59", "#EF6548", "#D7301F", "#B30000",
        "#990000", "#7F0000")

INK, MUTED, RULE = "#1B1F24", "#5B6470", "#E1E5EA"


# --- drawing helpers -------------------------------------------------------------------------

def _f(x: float) -> str:
    """A coordinate to one decimal, without a trailing ".0": SVGs with thousands of marks stay
    small. Formatted once, not rounded and then printed (a page of 300 heat maps calls it 460,000
    times)."""
    s = f"{x:.1f}"
    if s[-2:] == ".0":
        s = s[:-2]
        return "0" if s == "-0" else s
    return s


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


@functools.lru_cache(maxsize=64)
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


def _marker(kind: str, x: float, y: float, color: str, tip: str = "") -> str:
    t = f"<title>{esc(tip)}</title>" if tip else ""
    if kind == "none":
        return ""
    if kind == "square":
        return (f'<rect x="{_f(x - 3.5)}" y="{_f(y - 3.5)}" width="7" height="7" fill="#FFFFFF" '
                f'stroke="{color}" stroke-width="2">{t}</rect>')
    return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="3.6" fill="{color}">{t}</circle>'


# --- charts ----------------------------------------------------------------------------------

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
