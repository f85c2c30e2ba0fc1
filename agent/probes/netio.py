"""Passive per-interface traffic counters, so a user sees how much the line was used.

Nothing is sent: the kernel's counters are read (psutil reads ``<procfs>/net/dev``; the agent points
``psutil.PROCFS_PATH`` at the host's procfs once at start) together with link state and speed.
Busy lines explain high latency, and on metered mobile data the byte counts are the bill.

Sample ``netio``, tag ``interface``. Fields:

=================  =====  ================================================================
field              type   meaning
=================  =====  ================================================================
rx_bytes ...       int    cumulative kernel counters: rx/tx_bytes, rx/tx_packets,
                          rx/tx_errors, rx/tx_drops (since the interface was created)
rx_bytes_delta     int    bytes received since the previous sample of this interface
tx_bytes_delta     int    bytes sent since the previous sample of this interface
interval_s         float  seconds (monotonic) since that previous sample
up                 bool   link administratively up (only when psutil reports the interface)
speed_mbps         int    link speed in Mbit/s (only when the driver reports one, > 0)
=================  =====  ================================================================

The three delta fields appear from the second sample of an interface on. A counter that went
backwards (interface re-created, counters reset) contributes its current value as the delta, never
a negative one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields as dc_fields

import psutil

from agent.clock import Clock
from agent.model import Sample
from kit.errors import ProbeError


@dataclass(frozen=True)
class Counters:
    """One interface's cumulative kernel counters (bytes, packets, errors, drops)."""

    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_drops: int = 0
    tx_drops: int = 0


_COUNTER_NAMES = tuple(f.name for f in dc_fields(Counters))


@dataclass(frozen=True)
class LinkState:
    """Link state of one interface: ``up`` and speed in Mbit/s (0 when unknown)."""

    up: bool
    speed_mbps: int = 0
    loopback: bool = False


def deltas(prev: Mapping[str, Counters], cur: Mapping[str, Counters]) -> dict[str, Counters]:
    """Per-interface growth of every counter from ``prev`` to ``cur``.

    Only interfaces present in both get a delta (a new interface has no baseline). A counter lower
    than before was reset (interface re-created, driver reloaded, machine rebooted while the state
    was kept): everything it counted happened since the reset, so its delta is its current value.
    """
    out: dict[str, Counters] = {}
    for name, now in cur.items():
        before = prev.get(name)
        if before is None:
            continue
        values = {}
        for field in _COUNTER_NAMES:
            a, b = getattr(before, field), getattr(now, field)
            values[field] = b - a if b >= a else b
        out[name] = Counters(**values)
    return out


def psutil_counters() -> dict[str, Counters]:
    """Counters of every interface from psutil (``nowrap``: a 32-bit counter wrap is undone)."""
    raw = psutil.net_io_counters(pernic=True, nowrap=True)
    return {
        name: Counters(rx_bytes=c.bytes_recv, tx_bytes=c.bytes_sent, rx_packets=c.packets_recv,
                       tx_packets=c.packets_sent, rx_errors=c.errin, tx_errors=c.errout,
                       rx_drops=c.dropin, tx_drops=c.dropout)
        for name, c in raw.items()
    }


def psutil_link_states() -> dict[str, LinkState]:
    """Link state and speed of every interface from psutil."""
    out = {}
    for name, s in psutil.net_if_stats().items():
        flags = getattr(s, "flags", "")  # psutil >= 5.9.3
        out[name] = LinkState(up=bool(s.isup), speed_mbps=int(s.speed or 0),
                              loopback="loopback" in flags.split(","))
    return out


class NetIO:
    """Samples the interfaces' counters; keeps the previous reading to report per-minute deltas.

    ``exclude`` names interfaces never reported, even when also in ``include`` (default: "lo").
    ``include``, when given, limits the report to those names; without it every interface is
    reported except those flagged as loopback by the kernel, whatever their name.
    ``read_counters`` and ``read_links`` are the I/O edge (psutil by default); tests pass fakes.
    Not thread-safe: one scheduler job owns an instance. A probe of :mod:`agent.probes.contract`:
    :meth:`measure` returns its rows.
    """

    name = "netio"

    def __init__(self, clock: Clock, exclude: Collection[str] = ("lo",),
                 include: Collection[str] | None = None, *,
                 read_counters: Callable[[], Mapping[str, Counters]] = psutil_counters,
                 read_links: Callable[[], Mapping[str, LinkState]] = psutil_link_states) -> None:
        self._clock = clock
        self._exclude = frozenset(exclude)
        self._include = frozenset(include) if include is not None else None
        self._read_counters = read_counters
        self._read_links = read_links
        self._prev: dict[str, Counters] = {}
        self._prev_mono: float | None = None

    def _wanted(self, name: str, link: LinkState | None) -> bool:
        if name in self._exclude:
            return False
        if self._include is not None:
            return name in self._include
        return not (link is not None and link.loopback)

    def measure(self) -> list[Sample]:
        """One ``netio`` sample per wanted interface, all stamped ``clock.now()``.

        Raises ProbeError when the counters cannot be read at all (no ``net/dev``); missing link
        state only leaves ``up``/``speed_mbps`` out.
        """
        now = self._clock.now()
        mono = self._clock.monotonic()
        try:
            counters = dict(self._read_counters())
        except OSError as exc:
            raise ProbeError(f"netio: cannot read interface counters: {exc}") from exc
        try:
            links = dict(self._read_links())
        except OSError:
            links = {}
        counters = {n: c for n, c in counters.items() if self._wanted(n, links.get(n))}
        grown = deltas(self._prev, counters)
        interval = mono - self._prev_mono if self._prev_mono is not None else None

        samples = []
        for name in sorted(counters):
            c = counters[name]
            fields: dict[str, int | float | bool] = {f: getattr(c, f) for f in _COUNTER_NAMES}
            if name in grown and interval is not None:
                fields["rx_bytes_delta"] = grown[name].rx_bytes
                fields["tx_bytes_delta"] = grown[name].tx_bytes
                fields["interval_s"] = float(interval)
            link = links.get(name)
            if link is not None:
                fields["up"] = link.up
                if link.speed_mbps > 0:
                    fields["speed_mbps"] = link.speed_mbps
            samples.append(Sample("netio", {"interface": name}, fields, now))
        # Vanished interfaces drop out of the baseline; if one comes back it starts afresh.
        self._prev = counters
        self._prev_mono = mono
        return samples
