"""The round job: one probe round every ``probe.interval_s``, the connectivity tracker stepped
with it, and everything the round changed committed in one transaction before the next round.

The data path of a round: :meth:`agent.round.Prober.run` echoes the gateway and the targets and
resolves the DNS names (the probes of :mod:`agent.probes`) and classifies the round; the
round's samples are tagged with the line's site (:meth:`Rounds._tag_site`);
:func:`agent.outage.step` advances the tracker; the samples, the opened or closed episodes (a
closed one also as an ``outage`` sample), the tracker and the heartbeat go to
:meth:`agent.store.Store.write` in one transaction. From there the push job forwards the rows.

State changes become durable before they are kept: a round whose write raises is kept and stepped
again, from the last state the store holds, with the next round.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from agent import outage, power
from agent.jobs.context import (
    MAX_UNWRITTEN,
    Context,
    Job,
    connectivity_open,
    episode_sample,
    keep_last,
    outage_params,
    saved_tracker,
)
from agent.model import Sample
from agent.platform import Platform
from agent.probes.gateway import site_id
from agent.round import Prober, Round
from agent.statekeys import STATE_HEARTBEAT, STATE_SITE, STATE_TRACKER

log = logging.getLogger("linewatch")


class Rounds(Job):
    """The probe rounds and the connectivity tracker.

    ``on_battery()`` and ``clock_trusted()`` come from the power job (its tracker, and the
    time-sync state for the heartbeat); while ``paused`` is set (a speed test fills the line)
    no round runs. Episode changes go out through the context's hook
    (:meth:`~agent.jobs.context.Context.announce`) once they are written."""

    name = "round"

    def __init__(self, ctx: Context, prober: Prober, platform: Platform, *,
                 on_battery: Callable[[], bool], clock_trusted: Callable[[], bool],
                 paused: threading.Event) -> None:
        super().__init__(ctx)
        self.platform = platform  # reads the gateway's hardware address for the site tag
        self.prober = prober
        self.on_battery = on_battery
        self.clock_trusted = clock_trusted
        self.paused = paused
        self.params = outage_params(ctx.cfg)
        self.tracker = saved_tracker(ctx.store)
        # Rounds whose store write failed, oldest first, stepped again with the next one.
        self._unwritten: list[tuple[outage.RoundResult, tuple[Sample, ...]]] = []

    def outage_open(self) -> bool:
        """Whether a connectivity outage is in progress now."""
        return connectivity_open(self.tracker, self.params)

    def run(self) -> Round | None:
        """One round: probe, update the tracker, commit everything in one transaction.

        Not while a speed test fills the line: its queues would make the round look degraded
        (or down) and open episodes that are the agent's own doing. The paused rounds are
        counted (``rounds_paused``); the gap, two or three rounds, is shorter than the tracker's
        gap limit, so an episode in progress simply continues."""
        if self.paused.is_set():
            self.counters.add("rounds_paused", 1)
            return None
        with self.ctx.round_lock:
            rnd = self.prober.run()
            rnd = self._tag_site(rnd)
            # One instant in both clocks: pairing the start's wall time with a monotonic reading
            # taken after the probes would skew durations by the rounds' unequal lengths.
            result = outage.RoundResult(time=rnd.time, mono=rnd.mono, status=rnd.status, cause=rnd.cause,
                                        on_battery=self.on_battery(), boot=self.ctx.boot)
            # Durable first, then kept: the rounds whose write failed are stepped again from the
            # last state the store holds, so a failed write delays a change, never loses it.
            todo = [*self._unwritten, (result, rnd.samples)]
            carried = self.ctx.carried
            tracker, samples, episodes, changes = self.tracker, list(carried), {}, []
            for res, res_samples in todo:
                tracker, ch = outage.step(tracker, res, self.params)
                samples.extend(res_samples)
                changes += ch
                for c in ch:
                    episodes[c.episode.id] = c.episode
                    if c.kind == "closed":
                        samples.append(episode_sample(c.episode, self.tags))
            for ep in outage.in_progress(tracker, self.params):
                episodes[ep.id] = ep
            heartbeat = power.Heartbeat(result.time, result.mono, self.ctx.boot, self.clock_trusted())
            try:
                self.store.write(samples, episodes=episodes.values(), state={
                    STATE_TRACKER: tracker.to_json(),
                    STATE_HEARTBEAT: heartbeat.to_json(),
                })
            except BaseException:
                self._unwritten = keep_last(todo, MAX_UNWRITTEN, self.counters,
                                            "dropped_unwritten_rounds")
                raise
            self.tracker, self._unwritten = tracker, []
            del self.ctx.carried[:len(carried)]
            self.ctx.announce(changes)
            self.counters.add("rounds", len(todo))
            self.counters.add("probe_errors", len(rnd.errors))
            return rnd

    def _tag_site(self, rnd: Round) -> Round:
        """The round with the site tag of the line it was measured on. Read after the probes:
        the gateway was just echoed, so the neighbour table knows its hardware address even on
        the first round. A site once seen is kept (in the store, for restarts): an outage that
        empties the neighbour table, or a VPN, does not make the agent a line of its own for that
        time; only another gateway hardware address changes it."""
        if self.cfg.agent.site:
            return rnd
        g = self.cfg.probe.gateway
        mac = self.platform.gateway_mac(
            self.prober.last_gateway if g == "auto" else None if g == "off" else g)
        site = site_id(mac) if mac else None
        if site and site != self.tags["site"]:
            self.store.write([], state={STATE_SITE: site})   # durable first, then kept
            log.info("site: %s (from the gateway's hardware address)", site)
            self.tags["site"] = site  # the dict the prober, power and self rows are tagged with
        if all(x.tags.get("site") == self.tags["site"] for x in rnd.samples):
            return rnd
        return replace(rnd, samples=tuple(replace(x, tags={**x.tags, "site": self.tags["site"]})
                                          for x in rnd.samples))
