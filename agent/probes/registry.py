"""The probes and platform reads the agent is built from, chosen by its config.

* :func:`real_probes` - the round's probes for a config (echo, DNS, the default gateway).
* :class:`EchoDispatch` - which echo method a target gets (ICMP kinds, or TCP connect).
* :func:`check_method_available` - a forced ICMP method that this process may not use fails the
  start.
* :func:`platform_for` - the host's platform with the config's roots (:mod:`agent.platform`).
"""

from __future__ import annotations

from agent import platform
from agent.clock import Clock
from agent.config import Config
from agent.model import Sample
from agent.platform import Platform
from agent.probes import icmp
from agent.round import Probes
from kit.errors import MethodUnavailable

SPACING_S = 0.25  # between the echoes of one target in a round


def platform_for(cfg: Config) -> Platform:
    """This host's platform, read through ``agent.procfs``, ``agent.sysfs`` and ``agent.rundir``."""
    return platform.local(cfg.agent.procfs, cfg.agent.sysfs, cfg.agent.rundir)


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

    def __call__(self, target, *, count: int, timeout_s: float, clock: Clock) -> Sample:
        from agent.probes import icmp, tcp

        method = "tcp" if target.port is not None else self.method_for(target.family)
        if method == "tcp":
            return tcp.measure(target, port=self.tcp_port, count=count, timeout_s=timeout_s,
                               spacing_s=SPACING_S, clock=clock)
        return icmp.measure(target, count=count, timeout_s=timeout_s, spacing_s=SPACING_S,
                            method=method, clock=clock)


def real_probes(cfg: Config, host: Platform | None = None) -> Probes:
    from agent.probes import dns

    host = host or platform_for(cfg)
    return Probes(
        echo=EchoDispatch(cfg.probe.method, cfg.probe.tcp_port),
        dns=dns.measure,
        gateway=host.default_gateway,
        dns_servers=dns.system_servers,
        routes_known=host.routes_known,
    )


def check_method_available(cfg: Config) -> None:
    """Fail before starting when a forced ICMP method is refused (``auto`` always finds one)."""
    if not icmp.permitted(cfg.probe.method):
        raise MethodUnavailable(f'probe.method = "{cfg.probe.method}" is not permitted here. '
                                f"{platform_for(cfg).icmp_help()}")
