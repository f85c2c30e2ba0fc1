"""Any system without a platform module of its own yet (Windows, macOS, the BSDs).

What the agent has always done there: the Linux reads of :class:`~agent.platform.linux.Linux` find
no ``/proc`` and answer "unknown" (no gateway, routing table unreadable, no boot id or boot time),
and the battery comes from psutil, which knows each system's own power API. A port that can do
better adds ``windows.py`` or ``macos.py`` and a line in :func:`agent.platform.local`.
"""

from __future__ import annotations

from pathlib import Path

from agent.platform.linux import Linux
from agent.power import BATTERY, Reading


class Other(Linux):
    name = "other"

    def ac_power(self) -> Reading | None:
        """A sysfs tree when there is one (a prepared tree in tests), else psutil's battery."""
        if Path(self.sysfs, "class", "power_supply").is_dir():
            return super().ac_power()
        if self.sysfs != "/sys":
            return None  # a prepared tree without power supplies: no battery
        try:
            import psutil  # deferred: 2.6 MB resident, and Linux never gets here

            b = psutil.sensors_battery()
        except (AttributeError, NotImplementedError, OSError):
            return None
        if b is None:
            return None
        return Reading(BATTERY, None if b.power_plugged is None else not b.power_plugged,
                       float(b.percent))
