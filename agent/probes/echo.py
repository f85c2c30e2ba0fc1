"""The echo probe of the round: one target, echoed by ICMP or timed TCP connects.

:class:`EchoDispatch` chooses the method per target (a target with a port gets TCP; others the
configured ICMP method, or with ``auto`` the first ICMP method this process may use, else TCP) and
is the real :attr:`~agent.probes.contract.Network.echo`. :class:`EchoProbe` is one internet target
of the round. The gateway's echo is :class:`agent.probes.gateway.GatewayProbe`.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.clock import Clock
from agent.model import Sample
from agent.probes import icmp, tcp
from agent.probes.contract import INTERNET, EchoFn
from agent.probes.target import Target

SPACING_S = 0.25  # between the echoes of one target in a round


class EchoDispatch:
    """Chooses the echo method per target: TCP for address:port targets, else ICMP by the
    configured method (``auto``: unprivileged ICMP, then raw, then TCP connect)."""

    def __init__(self, method: str, tcp_port: int) -> None:
        self.method = method
        self.tcp_port = tcp_port
        self._resolved: dict[int, str] = {}

    def method_for(self, family: int) -> str:
        if self.method != "auto":
            return self.method
        if family not in self._resolved:
            self._resolved[family] = icmp.available_method(family) or "tcp"
        return self._resolved[family]

    def __call__(self, target: Target, *, count: int, timeout_s: float, clock: Clock) -> Sample:
        method = "tcp" if target.port is not None else self.method_for(target.family)
        if method == "tcp":
            return tcp.measure(target, port=self.tcp_port, count=count, timeout_s=timeout_s,
                               spacing_s=SPACING_S, clock=clock)
        return icmp.measure(target, count=count, timeout_s=timeout_s, spacing_s=SPACING_S,
                            method=method, clock=clock)


class EchoProbe:
    """``count`` echoes to one ``target``: a ``ping`` row tagged with its ``role``."""

    name = "ping"

    def __init__(self, target: Target, echo: EchoFn, *, count: int, timeout_s: float,
                 clock: Clock, role: str = INTERNET) -> None:
        self.target, self.echo, self.role = target, echo, role
        self.count, self.timeout_s, self.clock = count, timeout_s, clock

    def measure(self) -> Sequence[Sample]:
        s = self.echo(self.target, count=self.count, timeout_s=self.timeout_s, clock=self.clock)
        return [s.with_tags({"role": self.role})]
