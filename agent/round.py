"""One probe round: echo the gateway and each internet target, resolve each name, classify.

:func:`classify` is pure: from a round's samples it decides whether the line was up, down (and
why) or degraded. :class:`Prober` is the thin I/O edge that runs the probes concurrently and
returns a :class:`Round`. Probes are injected (:class:`Probes`), so tests hand it fakes by
constructor and the agent hands it the real ones from :mod:`agent.probes`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Sequence

from agent.clock import Clock
from agent.config import Config
from kit.errors import ProbeError
from agent.model import Sample
from agent.outage import DEGRADED, DOWN, ERROR, UP

log = logging.getLogger(__name__)

GATEWAY, INTERNET = "gateway", "internet"
# The round's `online` field: 1 when the internet answered (up, or degraded but usable), 0 when it
# did not. A round with no verdict (`error`: no probe could run) has none, so mean(online) over a
# time range is the share of watched rounds the line was usable.
ONLINE = {UP: 1, DEGRADED: 1, DOWN: 0}


@dataclass(frozen=True)
class Round:
    """A finished round: when it started (wall ``time`` and ``mono``, read together), its samples
    (ping, dns, round) and the verdict."""

    time: datetime
    mono: float
    samples: tuple[Sample, ...]
    status: str
    cause: str | None
    duration_s: float
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Thresholds:
    degraded_loss_pct: float = 20.0
    degraded_rtt_ms: float = 500.0


def classify(gateway: Sample | None, gateway_routed: bool, gateway_usually_answers: bool,
             internet: Sequence[Sample], dns: Sequence[Sample], th: Thresholds) -> tuple[str, str | None]:
    """The round's status (up | down | degraded | error) and, when not up, its cause.

    * down/lan: no internet target answered and the gateway did not either, or there is no
      default route at all (link down). A gateway that never answers echoes (some routers filter
      them) proves nothing, so then the cause is ``unknown``.
    * down/isp: the gateway answered, no internet target did.
    * down/dns: some internet target answered but no name resolved.
    * degraded/loss or degraded/latency: even the best internet target lost at least
      ``degraded_loss_pct`` of its echoes, or its average RTT was at least ``degraded_rtt_ms``.
    * error: no internet sample at all (every probe failed to run): counts neither way.
    """
    if not internet:
        return ERROR, None
    if not any(s.fields.get("received", 0) > 0 for s in internet):
        gw_up = gateway is not None and gateway.fields.get("received", 0) > 0
        if gw_up:
            return DOWN, "isp"
        if not gateway_routed:
            return DOWN, "lan"
        if gateway is not None and gateway_usually_answers:
            return DOWN, "lan"
        return DOWN, "unknown"
    if dns and not any(s.fields.get("success") for s in dns):
        return DOWN, "dns"
    best_loss = min(s.fields.get("loss_pct", 100.0) for s in internet)
    rtts = [s.fields["rtt_avg_ms"] for s in internet if "rtt_avg_ms" in s.fields]
    if best_loss >= th.degraded_loss_pct and best_loss > 0:
        return DEGRADED, "loss"
    if rtts and min(rtts) >= th.degraded_rtt_ms:
        return DEGRADED, "latency"
    return UP, None


EchoFn = Callable[..., Sample]          # (target, *, count, timeout_s, spacing_s, clock) -> Sample
DnsFn = Callable[..., Sample]           # (name, *, servers, timeout_s, clock) -> Sample
GatewayFn = Callable[[], str | None]    # the default gateway now, or None


@dataclass
class Probes:
    """The I/O edge of a round: how to echo an address, resolve a name, find the gateway."""

    echo: EchoFn
    dns: DnsFn
    gateway: GatewayFn
    dns_servers: Callable[[], Sequence[str]] = field(default=lambda: ())
    # Whether "no gateway" can mean "no default route": False where the routing table cannot be
    # read (not Linux), so a dead line there is `unknown`, never blamed on the LAN.
    routes_known: Callable[[], bool] = field(default=lambda: True)


class Prober:
    """Runs rounds. Keeps the little memory a round needs (last gateway, whether it answers)."""

    def __init__(self, cfg: Config, probes: Probes, clock: Clock, base_tags: dict[str, str]) -> None:
        from agent.probes.target import parse_target

        self.cfg = cfg
        self.probes = probes
        self.clock = clock
        self.base_tags = base_tags
        self.targets = [parse_target(t) for t in cfg.probe.targets]
        self.th = Thresholds(cfg.outage.degraded_loss_pct, cfg.outage.degraded_rtt_ms)
        self.last_gateway: str | None = None
        self.gateway_answered = False  # has the gateway ever answered an echo in this run?
        n = len(self.targets) + len(cfg.probe.dns_names) + 1
        self._pool = ThreadPoolExecutor(max_workers=min(16, n), thread_name_prefix="probe")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def gateway_address(self) -> tuple[str | None, bool]:
        """(address to echo, whether a route to it exists now)."""
        g = self.cfg.probe.gateway
        if g == "off":
            return None, True
        if g != "auto":
            return g, True
        found = self.probes.gateway()
        if found:
            self.last_gateway = found
            return found, True
        if not self.probes.routes_known():
            return self.last_gateway, True
        # No default route: the link is down. Echo the last gateway we knew, which records the
        # loss against the right address.
        return self.last_gateway, False

    def run(self) -> Round:
        from agent.probes.target import parse_target

        p = self.cfg.probe
        t0 = self.clock.monotonic()
        now = self.clock.now()
        kw = dict(count=p.count, timeout_s=p.timeout_s, clock=self.clock)
        gw_addr, routed = self.gateway_address()
        jobs = []
        if gw_addr:
            jobs.append((GATEWAY, self._pool.submit(self.probes.echo, parse_target(gw_addr), **kw)))
        for t in self.targets:
            jobs.append((INTERNET, self._pool.submit(self.probes.echo, t, **kw)))
        servers = tuple(p.dns_servers) or tuple(self.probes.dns_servers())
        for name in p.dns_names:
            jobs.append(("dns", self._pool.submit(self.probes.dns, name, servers=servers,
                                                  timeout_s=p.timeout_s, clock=self.clock)))
        gateway, internet, dns, errors, samples = None, [], [], [], []
        for role, fut in jobs:
            try:
                s = fut.result()
            except ProbeError as exc:
                errors.append(f"{role}: {exc}")
                log.warning("probe failed: %s: %s", role, exc)
                continue
            if role == GATEWAY:
                gateway = s
                if s.fields.get("received", 0) > 0:
                    self.gateway_answered = True
            elif role == INTERNET:
                internet.append(s)
            else:
                dns.append(s)
            if role != "dns":
                s = s.with_tags({"role": role})
            samples.append(s.with_tags(self.base_tags))
        status, cause = classify(gateway, routed, self.gateway_answered, internet, dns, self.th)
        duration = max(0.0, self.clock.monotonic() - t0)
        fields: dict = {"status": status, "duration_s": round(duration, 4),
                        "interval_s": p.interval_s, "probe_errors": len(errors)}
        if status in ONLINE:
            fields["online"] = ONLINE[status]
        if cause:
            fields["cause"] = cause
        samples.append(Sample("round", dict(self.base_tags), fields, now))
        return Round(now, t0, tuple(samples), status, cause, duration, tuple(errors))
