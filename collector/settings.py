"""What the regional statistics depend on: the [collector] settings as :mod:`collector.stats`
reads them (collector.config.settings makes them from a config; the defaults are those
documented there). Stdlib only, so the config loads without numpy."""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.indices import MOMENTARY_MAX_S
from kit.definitions import PK_REGIONS, WORK_DAYS

# How a window is cut into cells' periods: whole, or at local midnights, Mondays, month starts.
PERIODS: tuple[str, ...] = ("all", "day", "week", "month")


@dataclass(frozen=True)
class Settings:
    """What the statistics depend on ([collector] in the config; defaults as documented)."""

    min_agents: int = 5
    min_watch_h: float = 24.0
    momentary_max_s: float = MOMENTARY_MAX_S
    work_start_min: int = 9 * 60          # minutes after local midnight
    work_end_min: int = 18 * 60
    work_days: tuple[str, ...] = WORK_DAYS
    timezone: str = "Asia/Karachi"
    speed_threshold_bps: float = 10e6
    regions: tuple[str, ...] = tuple(PK_REGIONS)
    region_names: dict[str, str] = field(default_factory=lambda: dict(PK_REGIONS), hash=False, compare=False)
    event_window_s: float = 300.0
    event_min_share: float = 0.5
    event_min_agents: int = 3
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 1366

    @property
    def work_hours(self) -> str:
        return f"{_hhmm(self.work_start_min)}-{_hhmm(self.work_end_min)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
