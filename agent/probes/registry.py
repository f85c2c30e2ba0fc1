"""The registry: which probes and sensors this agent runs, built from its config, in one place.

Explicit on purpose: no folder scanning, no import-time registration. Each function below reads
the config and constructs the probes of one job (:mod:`agent.probes.contract` says what a probe
is); the agent and the commands call them and run what they get.

* :func:`round_probes` - the round's probes, in the order their rows are kept: the gateway (unless
  ``probe.gateway = "off"``), each of ``probe.targets``, each of ``probe.dns_names``;
* :func:`power_sensors` - the battery (``power.battery = "auto"``) and the UPS (``power.ups``);
* :func:`host_sensor` - the host's boot;
* :func:`network` - the real I/O edge of the round (echo, DNS, gateway), which tests replace;
* :func:`platform_for` - the host's platform with the config's roots (:mod:`agent.platform`);
* :func:`check_method_available` - a forced ICMP method that this process may not use fails the
  start.

The two probes that run on their own schedule are built by the job that runs them, the one place
each is configured: :class:`~agent.probes.netio.NetIO` by :mod:`agent.jobs.selfmetrics`,
:class:`~agent.probes.speedtest.SpeedTest` by :mod:`agent.jobs.speedtests` (so ``linewatch
speedtest`` loads no other probe).

Adding a probe to the round is a new module with a class that has ``name``, ``role`` and
``measure()``, and one line in :func:`round_probes`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from agent import platform
from agent.clock import Clock
from agent.config import Config
from agent.platform import Platform
from agent.probes import dns, icmp
from agent.probes.battery import BatterySensor
from agent.probes.contract import Network, RoundProbe, Sensor
from agent.probes.echo import EchoDispatch, EchoProbe
from agent.probes.gateway import GatewayProbe
from agent.probes.host import HostSensor
from agent.probes.target import parse_target
from kit.errors import MethodUnavailable


def platform_for(cfg: Config) -> Platform:
    """This host's platform, read through ``agent.procfs``, ``agent.sysfs`` and ``agent.rundir``."""
    return platform.local(cfg.agent.procfs, cfg.agent.sysfs, cfg.agent.rundir)


def network(cfg: Config, host: Platform | None = None) -> Network:
    """The real edge of a round: echoes by ``probe.method``, our own DNS client, the gateway as
    the platform finds it, the system's DNS servers from ``/etc/resolv.conf``."""
    host = host or platform_for(cfg)
    return Network(echo=EchoDispatch(cfg.probe.method, cfg.probe.tcp_port), dns=dns.measure,
                   gateway=host.default_gateway, dns_servers=dns.system_servers,
                   routes_known=host.routes_known)


def round_probes(cfg: Config, clock: Clock, net: Network | None = None) -> list[RoundProbe]:
    """The probes of every round, on ``net`` (the real network when None)."""
    p = cfg.probe
    net = net or network(cfg)
    probes: list[RoundProbe] = []
    if p.gateway != "off":
        probes.append(GatewayProbe(p.gateway, net, count=p.count, timeout_s=p.timeout_s,
                                   clock=clock))
    probes += [EchoProbe(parse_target(t), net.echo, count=p.count, timeout_s=p.timeout_s,
                         clock=clock) for t in p.targets]
    servers = _dns_servers(p.dns_servers, net)
    probes += [dns.DnsProbe(name, net.dns, servers, timeout_s=p.timeout_s, clock=clock)
               for name in p.dns_names]
    return probes


def _dns_servers(configured: tuple[str, ...], net: Network) -> Callable[[], tuple[str, ...]]:
    """The configured DNS servers, else the system's as they are at each round."""
    return lambda: tuple(configured) or tuple(net.dns_servers())


def power_sensors(cfg: Config, host: Platform, clock: Clock,
                  env: Mapping[str, str] = os.environ) -> tuple[list[Sensor], list[str]]:
    """The power sensors, and the warnings to give once about where the UPS password is kept.
    Raises ConfigError when ``power.ups`` names a user whose password cannot be found."""
    sensors: list[Sensor] = []
    warnings: list[str] = []
    if cfg.power.battery == "auto":
        sensors.append(BatterySensor(host, clock))
    if cfg.power.ups:
        # deferred: the NUT client (about 0.7 MB) loads only when a UPS is configured
        from agent.probes.nut_url import load_url
        from agent.probes.ups import UpsSensor

        url, warnings = load_url(cfg.power, env, cfg.source)
        if url is not None:
            sensors.append(UpsSensor(url, timeout_s=min(2.0, cfg.power.poll_s), clock=clock))
    return sensors, warnings


def host_sensor(host: Platform) -> HostSensor:
    return HostSensor(host)


def check_method_available(cfg: Config) -> None:
    """Fail before starting when a forced ICMP method is refused (``auto`` always finds one)."""
    if not icmp.permitted(cfg.probe.method):
        raise MethodUnavailable(f'probe.method = "{cfg.probe.method}" is not permitted here. '
                                f"{platform_for(cfg).icmp_help()}")
