"""The probe contract: the one interface every probe and every sensor implements.

As Telegraf's ``Gather`` or node_exporter's ``Update``, it is one method::

    class Probe(Protocol[R]):
        name: str                  # what it measures: "ping", "dns", "netio", "battery", ...
        def measure(self) -> R     # one measurement now

Everything a probe needs (its target, timeouts, the clock, the platform, the network edge) is
given to its constructor by :mod:`agent.probes.registry`, the one place that builds probes from
the config; ``measure`` takes nothing. What it returns depends on the kind:

* a **probe** returns :class:`~agent.model.Sample` rows: ICMP or TCP echo
  (:class:`~agent.probes.echo.EchoProbe`, :class:`~agent.probes.gateway.GatewayProbe`), DNS
  (:class:`~agent.probes.dns.DnsProbe`), interface counters (:class:`~agent.probes.netio.NetIO`);
  the speed test returns its sample with what it learnt (:class:`~agent.probes.speedtest.Outcome`);
* a **sensor** returns a reading: power (:class:`~agent.power.Reading`, from
  :class:`~agent.probes.battery.BatterySensor` and :class:`~agent.probes.ups.UpsSensor`, None when
  the sensor does not apply to this machine), or the host's boot
  (:class:`~agent.probes.host.HostReading`).

``measure`` raises :class:`~kit.errors.ProbeError` when it cannot measure at all (a socket refused,
a UPS server gone); the caller records that and carries on (one failing probe never stops the
agent). A lost echo or an unanswered query is a measurement, not an error.

A probe of the round also has a :data:`role` (:class:`RoundProbe`): how the round's verdict uses
its samples (:func:`agent.round.classify`). The round's probes are built on :class:`Network`, the
I/O edge a round touches, so tests hand the round a fake network by constructor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

from agent.model import Sample
from agent.power import Reading

R_co = TypeVar("R_co", covariant=True)

# Roles of the round's probes. Echo samples of both echo roles are "ping" rows and carry the role
# as a tag; DNS rows need none.
GATEWAY, INTERNET, DNS = "gateway", "internet", "dns"


@runtime_checkable
class Probe(Protocol[R_co]):
    """Something the agent measures: ``name`` says what, :meth:`measure` measures it once."""

    name: str

    def measure(self) -> R_co:
        """One measurement now; ProbeError when it cannot be made at all."""


# A power sensor: its reading now, None when it does not apply to this machine (no battery).
Sensor = Probe[Reading | None]


class RoundProbe(Probe[Sequence[Sample]], Protocol):
    """A probe run in every round, concurrently with the others. ``role`` is one of
    :data:`GATEWAY`, :data:`INTERNET`, :data:`DNS`, or another word for samples that are recorded
    but take no part in the verdict."""

    role: str


EchoFn = Callable[..., Sample]          # (target, *, count, timeout_s, clock) -> Sample
DnsFn = Callable[..., Sample]           # (name, *, servers, timeout_s, clock) -> Sample
GatewayFn = Callable[[], "str | None"]  # the default gateway now, or None


@dataclass
class Network:
    """The I/O edge of a round: how to echo an address, resolve a name, find the gateway.

    :func:`agent.probes.registry.network` makes the real one; tests pass fakes (as httpx takes a
    transport). ``routes_known``: whether "no gateway" can mean "no default route"; False where
    the routing table cannot be read, so a dead line there is ``unknown``, never blamed on the LAN.
    """

    echo: EchoFn
    dns: DnsFn
    gateway: GatewayFn
    dns_servers: Callable[[], Sequence[str]] = field(default=lambda: ())
    routes_known: Callable[[], bool] = field(default=lambda: True)
