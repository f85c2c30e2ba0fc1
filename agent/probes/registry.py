"""The probes and platform reads the agent is built from, chosen by its config.

* :func:`real_probes` - the round's probes for a config (echo, DNS, the default gateway).
* :class:`EchoDispatch` - which echo method a target gets (ICMP kinds, or TCP connect).
* :func:`method_permitted`, :func:`check_method_available` - whether this process may open the
  sockets an ICMP method needs.
* :func:`boot_id` - this boot's id (the host-down detector compares it across runs).
"""

from __future__ import annotations

import socket
from pathlib import Path

from agent.clock import Clock
from agent.config import Config
from agent.model import Sample
from agent.round import Probes
from kit.errors import MethodUnavailable

SPACING_S = 0.25  # between the echoes of one target in a round


def boot_id(procfs: str) -> str:
    try:
        return Path(procfs, "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


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
            from agent.probes import icmp

            self._resolved[family] = icmp.available_method(family) or "tcp"
        return self._resolved[family]

    def __call__(self, target, *, count: int, timeout_s: float, clock: Clock) -> Sample:
        from agent.probes import icmp, tcp

        method = "tcp" if target.port is not None else self.method_for(target.family)
        if method == "tcp":
            return tcp.measure(target, port=self.tcp_port, count=count, timeout_s=timeout_s,
                               spacing_s=SPACING_S, clock=clock)
        return icmp.measure(target, count=count, timeout_s=timeout_s, spacing_s=SPACING_S,
                            method=method, clock=clock)


def real_probes(cfg: Config) -> Probes:
    from agent.probes import dns, gateway

    return Probes(
        echo=EchoDispatch(cfg.probe.method, cfg.probe.tcp_port),
        dns=dns.measure,
        gateway=lambda: gateway.default_gateway(cfg.agent.procfs),
        dns_servers=dns.system_servers,
        routes_known=lambda: gateway.routes_readable(cfg.agent.procfs),
    )


_ICMP_SOCKET_TYPES = {"icmp_dgram": socket.SOCK_DGRAM, "icmp_raw": socket.SOCK_RAW}


def method_permitted(method: str, family: int = socket.AF_INET) -> bool:
    """Whether this process may open the socket an ICMP method needs (TCP is always allowed)."""
    if method not in _ICMP_SOCKET_TYPES:
        return True
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    try:
        socket.socket(family, _ICMP_SOCKET_TYPES[method], proto).close()
    except OSError:
        return False
    return True


def check_method_available(cfg: Config) -> None:
    """Fail before starting when a forced ICMP method is refused (``auto`` always finds one)."""
    if not method_permitted(cfg.probe.method):
        from agent.probes import icmp

        raise MethodUnavailable(
            f'probe.method = "{cfg.probe.method}" is not permitted here. {icmp.how_to_enable()}')
