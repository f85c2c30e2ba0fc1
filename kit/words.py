"""Words the commands and pages share, so each count and warning reads the same everywhere.

* :func:`plural`: a count with its noun ("1 speed test", "2 speed tests", "1,204 outages").
* :data:`THIN_WATCH_H` and :func:`thin_watch`: figures resting on less than a day of watching
  say so, beside the figure (the line report, and ``linewatch status``).
"""

from __future__ import annotations

# Below this many hours of watching, an availability figure says more about the hour the agent
# happened to run than about the line: one outage in six minutes reads as "47 %".
THIN_WATCH_H = 24.0


def plural(n: int, one: str, many: str | None = None) -> str:
    """``n`` with thousands separators and the noun in the right number; ``many`` for nouns
    that do not take an "s" ("1 power cut", "3 power cuts"; plural(2, "entry", "entries"))."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def thin_watch(observed_h: float | None) -> str | None:
    """The warning for figures made from less than :data:`THIN_WATCH_H` hours of watching, or
    None when there is enough (or nothing at all was watched: then there is no figure to warn
    about)."""
    if observed_h is None or observed_h <= 0 or observed_h >= THIN_WATCH_H:
        return None
    watched = f"{observed_h:.1f} h" if observed_h >= 1 else f"{max(1, round(observed_h * 60))} min"
    return f"only {watched} of watching, less than a day: too little to judge the line by"
