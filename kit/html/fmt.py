"""Values as page text: escaping, free-text names, numbers, times and local days (pure, stdlib).

Every string that came from data (region, ISP and city names are free text typed by volunteers)
goes through :func:`esc`; names are wrapped in <bdi> (:func:`name_html`) so Urdu text does not
reorder the numbers around it. Missing figures (None, NaN, absent keys) print as "–"
(:data:`DASH`), never as 0. Times are read by :func:`parse_time` and shown in a page's zone
(:func:`zone`); the day helpers work in timestamps so local days survive DST shifts.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kit.definitions import WEEKDAY_LABELS

DASH = "\u2013"          # the en dash shown for "no figure"
WEEKDAYS = WEEKDAY_LABELS  # as the pages show them (kit.definitions: one list of weekdays)

# The words the pages show for the stores' cause and episode codes.
CAUSE_LABELS = {"power": "power", "lan": "local network", "isp": "ISP", "dns": "DNS",
                "unknown": "unknown", "ac_lost": "mains lost", "host_down": "host went down",
                "agent_stopped": "agent stopped", "loss": "packet loss", "latency": "latency"}
EPISODE_KINDS = {"connectivity": "Internet outage", "power": "Power cut",
                 "degraded": "Degraded", "agent_gap": "Not watching"}


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


def region_html(code: object, name: object) -> str:
    """A region as HTML: its name with the code after it in grey, or whichever of the two is set."""
    if name and code:
        return f'{name_html(name)} <span class="muted">({esc(code)})</span>'
    return name_html(name or code)


def num(value: object) -> float | None:
    """A finite float, or None for None, bools, NaN, infinities and anything not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def as_dict(value: object) -> dict:
    """``value`` when it is a dict, else an empty one: a page's input may have any shape."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list:
    """``value`` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


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


# --- time and local days ---------------------------------------------------------------------

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
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def zone(name: object, fallback: object = None) -> tuple[tzinfo, str]:
    """The tzinfo for an IANA name and a label for it. An unknown name (or a machine without tz
    data) falls back to the UTC offset of ``fallback`` (an ISO time), else UTC: the label says so."""
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    ref = parse_time(fallback)
    tz = ref.tzinfo if ref is not None else UTC
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


def utc_offset(tz: tzinfo, at: datetime | None) -> str:
    """The zone's offset at ``at`` (now when None) as "UTC+05:00"; "UTC" for a zone without one."""
    at = (at or datetime.now(UTC)).astimezone(tz)
    s = at.strftime("%z")
    return f"UTC{s[:3]}:{s[3:]}" if s else "UTC"


def day_start(d: date, tz: tzinfo) -> float:
    """Local midnight of ``d`` as seconds since 1970. Timestamps, not datetime arithmetic: two
    datetimes with the same ZoneInfo subtract as wall clock time and would miss DST shifts."""
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


def local_days(start: float, end: float, tz: tzinfo) -> list[date]:
    """The local calendar days that [start, end) touches."""
    first = datetime.fromtimestamp(start, tz).date()
    last = datetime.fromtimestamp(max(start, end - 1e-6), tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def parse_day(value: object) -> date | None:
    """The date an ISO day (or time) string begins with; None when it does not begin with one."""
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def day_ticks(lo: float, hi: float, tz: tzinfo, centre: bool = False) -> list[tuple[float, str]]:
    """One x tick per local day (at noon when ``centre``, else midnight), thinned to <= 12."""
    days = local_days(lo, hi, tz)
    step = max(1, math.ceil(len(days) / 12))
    out = []
    for d in days[::step]:
        x = day_start(d, tz) + (43200 if centre else 0)
        if lo <= x <= hi:
            out.append((x, f"{d.day} {d.strftime('%b')}"))
    return out
