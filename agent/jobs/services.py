"""The service-check job: while the line is up, each site and VPN endpoint of ``[services]`` is
checked (agent/probes/services.py) when it is due, its ``service`` row stored, and the
interference tracker (agent/interference.py, pure) stepped with it; the episodes it opens or
closes are written in the same transaction as the rows and the tracker, then announced.

A target is due ``services.interval_s`` after a check it passed, ``services.retry_s`` after one
it failed: a healthy site costs a check every 30 minutes, a failing one is
confirmed or cleared within minutes. The job itself runs every ``retry_s``; after a start every
target is due.

"While the line is up": no connectivity outage in progress and the machine not on battery (a
power cut), both before the checks and after them (an outage that began during the checks makes
their failures no evidence: their rows are stored, the tracker is not stepped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent import interference
from agent.jobs.context import Context, Job, episode_sample
from agent.model import Sample
from agent.probes.dns import system_servers
from agent.probes.services import Checker, Service, check_all, parse_service
from agent.statekeys import STATE_INTERFERENCE

log = logging.getLogger("linewatch")
_SLACK_S = 1.0


def saved_interference(ctx: Context) -> interference.State:
    saved = ctx.store.get_state(STATE_INTERFERENCE)
    return interference.State.from_json(saved) if saved else interference.State()


class ServiceChecks(Job):
    """The checks on their schedule. ``line_up()`` says whether the line counts as up now (no
    connectivity outage, no power cut); ``checker`` (tests) replaces the one built from the
    config."""

    name = "services"

    def __init__(self, ctx: Context, *, line_up: Callable[[], bool],
                 checker: Checker | None = None) -> None:
        super().__init__(ctx)
        self.line_up = line_up
        self.tracker = saved_interference(ctx)
        self._given = checker
        self._built: tuple[Any, Checker] | None = None   # (the config it was built from, it)
        self._next: dict[str, float] = {}    # target -> when it is due (monotonic seconds)

    def targets(self) -> list[Service]:
        sv = self.cfg.services
        return [parse_service(u) for u in (*sv.urls, *sv.vpn)]

    def checker(self) -> Checker:
        if self._given is not None:
            return self._given
        if self._built is None or self._built[0] is not self.cfg.services:
            sv, servers = self.cfg.services, list(self.cfg.probe.dns_servers)
            self._built = (sv, Checker(system_servers=lambda: servers or system_servers(),
                                       resolver=sv.resolver, control_sni=sv.control_sni,
                                       ca_file=sv.ca_file, timeout_s=sv.timeout_s,
                                       clock=self.clock, config_file=self.cfg.source))
        return self._built[1]

    def run(self) -> list[Sample]:
        """The checks of the targets due now (none while the line is down); their rows, as
        stored."""
        now = self.clock.monotonic()
        sv = self.cfg.services
        # A second's slack: the job runs every retry_s, and a run that starts a few ms earlier
        # in its period than the last must not leave a target due at that run for the next.
        targets = [t for t in self.targets() if self._next.get(t.target, now) <= now + _SLACK_S]
        if not targets or not self.line_up():
            return []
        rows = [Sample(s.measurement, {**self.tags, **s.tags}, s.fields, s.time)
                for s in check_all(self.checker(), targets)]
        for r in rows:
            self._next[r.tags["target"]] = now + (sv.interval_s if r.fields["ok"] else sv.retry_s)
        up = self.line_up()
        tracker, changes = self.tracker, []
        if up:
            for s in rows:
                check = interference.Check(s.tags["target"], s.tags["kind"], s.tags["step"],
                                           str(s.fields.get("how", "")), s.time)
                tracker, ch = interference.step(tracker, check, self.cfg.services.open_after)
                changes += ch
        episodes = {c.episode.id: c.episode for c in changes}
        samples = rows + [episode_sample(c.episode, self.tags) for c in changes
                          if c.kind == "closed"]
        # durable first, then kept: a failed write leaves the tracker as it was (the checks'
        # rows go with the next round's write)
        self.ctx.write_samples(samples, state={STATE_INTERFERENCE: tracker.to_json()},
                               episodes=episodes.values(), carry=rows)
        self.tracker = tracker
        self.ctx.announce(changes)
        return rows
