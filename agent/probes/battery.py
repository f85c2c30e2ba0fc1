"""The battery sensor: a laptop's AC adapter and battery, read through the platform.

AC lost means on battery, the best local sign of a power cut: the router most likely lost power
too. The platform reads the hardware (:meth:`agent.platform.Platform.ac_power`: sysfs on Linux,
psutil elsewhere); this sensor adds the row it is recorded as.

Row ``power``, tag ``source`` = ``battery``; fields ``on_battery``, ``charge_pct``, ``status``,
each only when known (no row when none is).
"""

from __future__ import annotations

from dataclasses import replace

from agent.clock import Clock
from agent.model import Sample
from agent.platform import Platform
from agent.power import BATTERY, Reading


class BatterySensor:
    """The probe contract for the AC adapter: :meth:`measure` gives the reading now, or None when
    the machine has neither an AC adapter nor a battery (a desktop, a Pi). Never raises."""

    name = BATTERY

    def __init__(self, platform: Platform, clock: Clock) -> None:
        self.platform, self.clock = platform, clock

    def measure(self) -> Reading | None:
        t = self.clock.now()
        r = self.platform.ac_power()
        if r is None:
            return None
        fields = {k: v for k, v in (("on_battery", r.on_battery), ("charge_pct", r.charge_pct),
                                    ("status", r.status)) if v is not None}
        return replace(r, sample=Sample("power", {"source": BATTERY}, fields, t) if fields else None)
