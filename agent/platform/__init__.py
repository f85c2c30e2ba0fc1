"""The platform seam: what the agent reads from the operating system, behind one interface.

Everything the agent learns from the OS itself, as opposed to the network, goes through a
:class:`Platform`: the default gateway and whether the routing table can be read at all, the
gateway's hardware address, the AC adapter and battery, this boot's id and start time, and whether
the wall clock is synchronised. The probes and sensors (:mod:`agent.probes`) call these methods and
never read ``/proc`` or ``/sys`` themselves.

:func:`local` chooses the implementation, here and nowhere else. Linux has its own
(:mod:`agent.platform.linux`); every other system gets :mod:`agent.platform.other`, which is what
the agent has always done there: the Linux reads find no files and answer "unknown", and the
battery comes from psutil. A Windows or macOS port adds its own module and a line in
:func:`local`, without touching a probe.

The filesystem roots are arguments, as node_exporter's ``--path.procfs``: tests hand prepared
trees (``agent.procfs``, ``agent.sysfs``, ``agent.rundir`` in the config).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Protocol

from agent.platform.linux import Linux
from agent.power import Reading


class Platform(Protocol):
    """The operating system as the agent reads it. What cannot be read is an answer, not an
    error: None (or "", or False for :meth:`routes_known`)."""

    name: str

    def default_gateway(self) -> str | None:
        """The default route's gateway address (IPv4, else IPv6 with a ``%zone``), or None."""

    def routes_known(self) -> bool:
        """Whether the routing table can be read here, so that no gateway means no route."""

    def gateway_mac(self, address: str | None) -> str | None:
        """The hardware address the neighbour table holds for ``address``, or None."""

    def ac_power(self) -> Reading | None:
        """The AC adapter and battery now (source ``battery``), or None without either."""

    def boot_id(self) -> str:
        """This boot's id ("" when unknown): a new one means the host rebooted."""

    def boot_time(self) -> datetime | None:
        """When this boot started (UTC), as the kernel now computes it."""

    def clock_state(self) -> str:
        """Whether the wall clock is synchronised: one of :data:`agent.power.CLOCK_STATES`."""

    def icmp_help(self) -> str:
        """What an administrator can do to let this process send ICMP echoes."""


def local(procfs: str = "/proc", sysfs: str = "/sys", rundir: str = "/run") -> Platform:
    """The platform this process runs on, reading the host through the given roots."""
    if sys.platform.startswith("linux"):
        return Linux(procfs, sysfs, rundir)
    from agent.platform.other import Other  # deferred: Linux never needs it

    return Other(procfs, sysfs, rundir)
