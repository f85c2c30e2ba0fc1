"""When to run a speed test, and whether it may run: pure functions, no clock, no I/O.

* Schedule: by default the interval to the next test is drawn from an exponential distribution
  with a 6-hour mean, clamped to 36 minutes .. 15 hours (M-Lab's guidance for unattended
  clients: it spreads tests evenly over the hours of the day, so a line that is slow every
  evening is seen being slow). Or fixed cron times (``speedtest.cron``, the machine's local time).
* Budget: the bytes each test really moved (speedtest-cli's bytes sent plus received) are summed
  over the calendar month (UTC); a test whose expected size would cross ``monthly_budget_mb`` is
  skipped, and the skip is recorded with its reason.
* Other skips: a connectivity outage in progress (the test would only fail and says nothing
  about speed), and, with ``only_on_ac``, running on battery.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MIN_INTERVAL_S = 36 * 60.0
MAX_INTERVAL_S = 15 * 3600.0
DEFAULT_ESTIMATE_BYTES = 100_000_000  # before any test: what a test on a ~40 Mbit/s line moves
MB = 1_000_000


def next_interval_s(u: float, mean_h: float) -> float:
    """Seconds to the next test for a uniform draw ``u`` in [0, 1): exponential with mean
    ``mean_h`` hours, clamped to [36 min, 15 h]."""
    u = min(max(u, 0.0), 1.0 - 1e-12)
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, -math.log1p(-u) * mean_h * 3600.0))


def check_cron(expr: str) -> None:
    """Raise ValueError when ``expr`` is not a five-field crontab expression (for the config)."""
    if len(expr.split()) != 5:
        raise ValueError("must have five fields: minute hour day month weekday, e.g. '0 9,21 * * *'")
    # deferred: APScheduler's cron trigger pulls in asyncio and ssl (about 7 MB resident),
    # loaded only when speedtest.cron is set
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expr, timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid cron expression: {exc}") from None


def next_cron(expr: str, after: datetime, tz=None) -> datetime:
    """The first time after ``after`` that ``expr`` names, in ``tz`` (default: the machine's
    local time zone), as UTC."""
    from apscheduler.triggers.cron import CronTrigger  # deferred: see check_cron


    if tz is None:
        tz = datetime.now().astimezone().tzinfo
    trig = CronTrigger.from_crontab(expr, timezone=tz)
    nxt = trig.get_next_fire_time(None, after.astimezone(tz) + timedelta(seconds=1))
    return nxt.astimezone(UTC)


def month_start(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return datetime(t.year, t.month, 1, tzinfo=UTC)


def used_bytes(tests: Iterable[tuple[datetime, int]], now: datetime) -> int:
    """Bytes moved by tests since the start of ``now``'s month: ``(time, bytes)`` pairs."""
    start = month_start(now)
    return sum(b for t, b in tests if t >= start and b > 0)


def estimate_bytes(recent: list[int]) -> int:
    """What the next test will likely move: the largest of the last three (a line's speed, and
    so a test's size, varies); before any test, :data:`DEFAULT_ESTIMATE_BYTES`."""
    recent = [b for b in recent if b > 0][-3:]
    return max(recent) if recent else DEFAULT_ESTIMATE_BYTES


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str | None = None   # why not (budget | outage | on_battery | disabled), or None
    detail: str = ""


def decide(*, used: int, estimate: int, budget_bytes: int, outage_in_progress: bool,
           on_battery: bool, only_on_ac: bool, force: bool = False) -> Decision:
    """May a test run now? ``force`` (``linewatch speedtest --force``) overrides the budget only:
    a test during an outage would measure nothing."""
    if outage_in_progress:
        return Decision(False, "outage", "a connectivity outage is in progress")
    if only_on_ac and on_battery:
        return Decision(False, "on_battery", "running on battery (speedtest.only_on_ac)")
    if used + estimate > budget_bytes and not force:
        return Decision(False, "budget", f"{used / MB:.0f} MB used this month + about "
                        f"{estimate / MB:.0f} MB for a test > the {budget_bytes / MB:.0f} MB budget")
    return Decision(True)
