"""The service-check job: while the line is up, each site and VPN endpoint of ``[services]`` is
checked (agent/probes/services.py) when it is due, its ``service`` row stored, and the
interference tracker (agent/interference.py, pure) stepped with it; the episodes it opens or
closes are written in the same transaction as the rows and the tracker, then announced.

A target is due ``services.interval_s`` after a check it passed, ``services.retry_s`` after one
it failed: a healthy site costs a check every 30 minutes, a failing one is confirmed or cleared
within minutes; once its episode is open, every sixth of its interval (5 minutes at the
defaults), so the block's end is seen soon and a long block costs little. A throttling check
(``throttle_url``) keeps ``services.throttle_interval_s`` instead of ``interval_s``, and a
throttling episode needs at least three slow checks whatever ``open_after`` says. A check that
could not be made (step ``skipped``) waits its interval. The job itself runs every ``retry_s``;
after a start every target is due.

"While the line is up": no connectivity outage in progress and the machine not on battery (a
power cut), both before the checks and after them (an outage that began during the checks makes
their failures no evidence: their rows are stored, the tracker is not stepped).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agent import interference
from agent.config import ServicesSection
from agent.interference import key_of
from agent.jobs.context import Context, Job, episode_sample
from agent.model import Sample
from agent.probes.dns import system_servers
from agent.probes.services import (
    Checker,
    Service,
    check_all,
    child_budget_s,
    child_request,
    parse_service,
    rows_of_child,
    throttle_services,
)
from agent.statekeys import STATE_INTERFERENCE
from kit.errors import ProbeError

log = logging.getLogger("linewatch")
_SLACK_S = 1.0
# Where the agent's packages are, for the child (the agent may run from a checkout).
_ROOT = str(Path(__file__).resolve().parents[2])


def configured_targets(sv: ServicesSection) -> list[Service]:
    """What ``[services]`` checks: its sites, its VPN endpoints, and (with ``throttle_url``) a
    throttling check per name of ``throttle_names`` (empty: the sites' hosts)."""
    out = [parse_service(u) for u in (*sv.urls, *sv.vpn)]
    if sv.throttle_url:
        names = sv.throttle_names or tuple(dict.fromkeys(t.host for t in out if t.kind == "site"))
        out += throttle_services(sv.throttle_url, names)
    return out


def saved_interference(ctx: Context) -> interference.State:
    saved = ctx.store.get_state(STATE_INTERFERENCE)
    return interference.State.from_json(saved) if saved else interference.State()


class ServiceChecks(Job):
    """The checks on their schedule, each run's in a child process (OpenSSL never loads into
    the agent). ``line_up()`` says whether the line counts as up now (no connectivity outage, no
    power cut, no speed test); ``checker`` (tests) checks in this process instead."""

    name = "services"

    def __init__(self, ctx: Context, *, line_up: Callable[[], bool],
                 checker: Checker | None = None) -> None:
        super().__init__(ctx)
        self.line_up = line_up
        self.tracker = saved_interference(ctx)
        self._given = checker
        self._next: dict[str, float] = {}    # target -> when it is due (monotonic seconds)
        self._said: set[str] = set()         # targets whose unusable keys were logged

    def targets(self) -> list[Service]:
        return configured_targets(self.cfg.services)

    def check(self, targets: list[Service]) -> list[Sample]:
        """The checks' rows: in a child process (agent/probes/services.py, "in a child
        process"), or with the checker a test gave, here."""
        if self._given is not None:
            return check_all(self._given, targets)
        sv = self.cfg.services
        request = child_request(targets, system_servers=list(self.cfg.probe.dns_servers)
                                or system_servers(), resolver=sv.resolver,
                                control_sni=sv.control_sni, ca_file=sv.ca_file,
                                timeout_s=sv.timeout_s, config_file=self.cfg.source,
                                throttle_url=sv.throttle_url, throttle_bytes=sv.throttle_bytes)
        budget = child_budget_s(targets, sv.timeout_s)
        try:
            done = subprocess.run([sys.executable, "-m", "agent.probes.services"], input=request,
                                  capture_output=True, timeout=budget,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                      p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)})
        except subprocess.TimeoutExpired:
            raise ProbeError(f"services: the checks took longer than {budget:g} s") from None
        if done.returncode != 0:
            text = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ProbeError(f"services: the checks failed: {text[-1] if text else done.returncode}")
        try:
            return rows_of_child(done.stdout)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProbeError(f"services: the checks' answer is not rows: {exc}") from None

    def wait_s(self, row: Sample, streak: interference.Streak | None) -> float:
        """How long until this target is checked again: its interval after a pass (or a check
        that could not be made: no finding), ``retry_s`` while failures are not yet confirmed,
        and, once its episode is open, a sixth of its interval (no less than ``retry_s``): the
        end of a block is seen within minutes, and a month of blocking does not cost a check a
        minute."""
        sv = self.cfg.services
        interval = sv.throttle_interval_s if row.tags["kind"] == interference.THROTTLE \
            else sv.interval_s
        if row.fields["ok"] or row.tags["step"] == "skipped":
            return interval
        if streak is not None and streak.open:
            return max(sv.retry_s, interval / 6)
        return sv.retry_s

    def run(self) -> list[Sample]:
        """The checks of the targets due now (none while the line is down); their rows, as
        stored."""
        now = self.clock.monotonic()
        sv = self.cfg.services
        # A second's slack: the job runs every retry_s, and a run that starts a few ms earlier
        # in its period than the last must not leave a target due at that run for the next.
        targets = [t for t in self.targets()
                   if self._next.get(key_of(t.target, t.kind), now) <= now + _SLACK_S]
        if not targets or not self.line_up():
            return []
        rows = [Sample(s.measurement, {**self.tags, **s.tags}, s.fields, s.time)
                for s in self.check(targets)]
        for r in rows:
            if r.fields.get("how") == "keys" and r.tags["target"] not in self._said:
                self._said.add(r.tags["target"])
                log.warning("services.vpn: the keys for %s could not be read or used, so it is "
                            "not checked (`linewatch check` says why)", r.tags["target"])
        up = self.line_up()
        tracker, changes = self.tracker, []
        if up:
            for s in rows:
                check = interference.Check(s.tags["target"], s.tags["kind"], s.tags["step"],
                                           str(s.fields.get("how", "")), s.time)
                # throttling: slow downloads are confirmed over at least three checks
                tracker, ch = interference.step(tracker, check, max(sv.open_after, 3) if
                                                check.step == "throttled" else sv.open_after)
                changes += ch
        for r in rows:
            key = key_of(r.tags["target"], r.tags["kind"])
            self._next[key] = now + self.wait_s(r, tracker.get(key))
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
