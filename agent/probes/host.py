"""The host sensor: this boot's id and start time, read through the platform.

A desktop or Raspberry Pi with neither a battery nor a UPS simply dies in a power cut. At the next
start the agent compares the boot id with the one in its last heartbeat and dates the cut up to
the boot time (:func:`agent.power.host_down`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.platform import Platform
from agent.power import HOST


@dataclass(frozen=True)
class HostReading:
    """``boot_id`` ("" when unknown) and ``boot_time`` (UTC, None when unknown) of this boot."""

    boot_id: str
    boot_time: datetime | None


class HostSensor:
    """The probe contract for the host itself. The boot time follows clock corrections, so read
    it again after time sync rather than keeping an early reading."""

    name = HOST

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def measure(self) -> HostReading:
        return HostReading(self.platform.boot_id(), self.platform.boot_time())
