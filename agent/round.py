"""One probe round: run the configured probes together, then classify the line.

:func:`classify` is pure: from a round's samples, sorted by the role of the probe that made them
(gateway, internet, dns), it decides whether the line was up, down (and why) or degraded.
:class:`Prober` is the thin I/O edge that runs the round's probes concurrently and returns a
:class:`Round`. Which probes a round has is the registry's choice
(:func:`agent.probes.registry.round_probes`), built on an injected network edge, so tests hand
it fakes by constructor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from agent.clock import Clock
from agent.config import Config
from agent.model import FieldValue, Sample
from agent.outage import DEGRADED, DOWN, ERROR, UP
from agent.probes.contract import DNS, GATEWAY, INTERNET, RoundProbe
from agent.probes.gateway import GatewayProbe
from kit.errors import ProbeError

log = logging.getLogger(__name__)

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
    if not any(_number(s, "received", 0) > 0 for s in internet):
        gw_up = gateway is not None and _number(gateway, "received", 0) > 0
        if gw_up:
            return DOWN, "isp"
        if not gateway_routed:
            return DOWN, "lan"
        if gateway is not None and gateway_usually_answers:
            return DOWN, "lan"
        return DOWN, "unknown"
    if dns and not any(s.fields.get("success") for s in dns):
        return DOWN, "dns"
    best_loss = min(_number(s, "loss_pct", 100.0) for s in internet)
    rtts = [_number(s, "rtt_avg_ms", 0.0) for s in internet if "rtt_avg_ms" in s.fields]
    if best_loss >= th.degraded_loss_pct and best_loss > 0:
        return DEGRADED, "loss"
    if rtts and min(rtts) >= th.degraded_rtt_ms:
        return DEGRADED, "latency"
    return UP, None


def _number(s: Sample, key: str, default: float) -> float:
    """A numeric field of ``s``, ``default`` when it is missing (echo fields are never text)."""
    v = s.fields.get(key, default)
    return v if isinstance(v, (int, float)) else default


class Prober:
    """Runs rounds of ``probes``. Keeps the little memory a round needs: whether the gateway has
    ever answered an echo in this run (a gateway that never does proves nothing)."""

    def __init__(self, cfg: Config, probes: Sequence[RoundProbe], clock: Clock,
                 base_tags: dict[str, str]) -> None:
        self.cfg = cfg
        self.probes = list(probes)
        self.clock = clock
        self.base_tags = base_tags
        self.th = Thresholds(cfg.outage.degraded_loss_pct, cfg.outage.degraded_rtt_ms)
        self.gateway_answered = False
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(self.probes))),
                                        thread_name_prefix="probe")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @property
    def gateway(self) -> GatewayProbe | None:
        return next((p for p in self.probes if isinstance(p, GatewayProbe)), None)

    @property
    def last_gateway(self) -> str | None:
        """The gateway address last found (None: never, or the gateway is not probed)."""
        gw = self.gateway
        return gw.last if gw is not None else None

    def run(self) -> Round:
        t0 = self.clock.monotonic()
        now = self.clock.now()
        jobs = [(p, self._pool.submit(p.measure)) for p in self.probes]
        by_role: dict[str, list[Sample]] = {GATEWAY: [], INTERNET: [], DNS: []}
        errors: list[str] = []
        samples: list[Sample] = []
        for probe, fut in jobs:
            try:
                got = fut.result()
            except ProbeError as exc:
                errors.append(f"{probe.role}: {exc}")
                log.warning("probe failed: %s: %s", probe.role, exc)
                continue
            by_role.setdefault(probe.role, []).extend(got)
            samples += [s.with_tags(self.base_tags) for s in got]
        gateway = by_role[GATEWAY][0] if by_role[GATEWAY] else None
        if gateway is not None and _number(gateway, "received", 0) > 0:
            self.gateway_answered = True
        gw = self.gateway
        routed = gw.routed if gw is not None else True
        status, cause = classify(gateway, routed, self.gateway_answered, by_role[INTERNET],
                                 by_role[DNS], self.th)
        duration = max(0.0, self.clock.monotonic() - t0)
        fields: dict[str, FieldValue] = {
            "status": status, "duration_s": round(duration, 4),
            "interval_s": self.cfg.probe.interval_s, "probe_errors": len(errors)}
        if status in ONLINE:
            fields["online"] = ONLINE[status]
        if cause:
            fields["cause"] = cause
        samples.append(Sample("round", dict(self.base_tags), fields, now))
        return Round(now, t0, tuple(samples), status, cause, duration, tuple(errors))
