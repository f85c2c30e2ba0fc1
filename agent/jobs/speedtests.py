"""The speed-test job: every 30 s it looks whether the next test is due (:mod:`agent.speedplan`
draws the time, exponential or cron, kept in the store across restarts), and runs it when the
line, the power and the monthly data budget allow; a skip is recorded with its reason.

``linewatch speedtest`` runs one test through the same job, built alone around the store
(:func:`standalone`): no probe, no round, no push.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from agent import power, speedplan
from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.jobs.context import (
    Context,
    Job,
    agent_id,
    base_tags,
    connectivity_open,
    outage_params,
    saved_power_tracker,
    saved_tracker,
)
from agent.model import Sample
from agent.probes import speedtest
from agent.statekeys import STATE_ISP, STATE_SITE, STATE_SPEED_NEXT
from agent.store import Store

log = logging.getLogger("linewatch")

CHECK_S = 30.0  # how often the job looks whether a test is due
BUDGET_WINDOW = timedelta(days=62)  # the tests read back for this month's bytes and the estimate
REPLAN_AFTER = timedelta(hours=24 * 8)  # a due time further off than any schedule places it


class SpeedTests(Job):
    """Speed tests on their schedule, within the budget.

    ``outage_open()`` and ``on_battery()`` say whether a connectivity outage is in progress and
    whether the machine runs on battery (the round and power jobs' trackers). ``running`` is set
    while a test fills the line (the rounds pause). ``module`` is speedtest-cli, imported at the
    first test; tests inject one."""

    name = "speedtest"

    def __init__(self, ctx: Context, *, outage_open: Callable[[], bool],
                 on_battery: Callable[[], bool], running: threading.Event | None = None) -> None:
        super().__init__(ctx)
        self.outage_open = outage_open
        self.on_battery = on_battery
        self.running = running or threading.Event()
        self.module = None

    def run(self) -> None:
        """Run a speed test if one is due (and allowed); then draw the next time."""
        now = self.clock.now()
        due = self.next_due(now)
        if now < due:
            return
        self.measure()
        self._plan_next(self.clock.now())

    def next_due(self, now: datetime) -> datetime:
        saved = self.store.get_state(STATE_SPEED_NEXT)
        try:
            due = datetime.fromisoformat(saved) if saved else None
        except ValueError:
            due = None
        # None, or further off than the schedule can place it (a clock that stepped back):
        # draw again from now.
        if due is None or due - now > REPLAN_AFTER:
            due = self._plan_next(now)
        return due

    def _plan_next(self, now: datetime) -> datetime:
        st = self.cfg.speedtest
        if st.cron:
            due = speedplan.next_cron(st.cron, now)
        else:
            due = now + timedelta(seconds=speedplan.next_interval_s(random.random(), st.mean_interval_h))
        self.store.write(state={STATE_SPEED_NEXT: due.isoformat()})
        return due

    def budget(self, now: datetime) -> tuple[int, int]:
        """(bytes the tests moved this month, the expected size of the next test)."""
        moved, recent = [], []
        for s in self.store.samples("speedtest", since=now - BUDGET_WINDOW):
            b = int(s.fields.get("bytes_sent", 0) or 0) + int(s.fields.get("bytes_received", 0) or 0)
            moved.append((s.time, b))
            if s.fields.get("status") == "ok":
                recent.append(b)
        return speedplan.used_bytes(moved, now), speedplan.estimate_bytes(recent)

    def over_budget(self, now: datetime) -> str | None:
        """What a forced test would do to the month's budget, when it may cross it; else None."""
        used, est = self.budget(now)
        budget = self.cfg.speedtest.monthly_budget_mb * 1e6
        if used + est <= budget:
            return None
        return (f"this test may take the month past its data budget ({used / 1e6:.0f} MB used of "
                f"{budget / 1e6:.0f} MB, a test moves about {est / 1e6:.0f} MB)")

    def measure(self, force: bool = False, progress=None) -> Sample:
        """One speed test now, if the line, the power and (unless ``force``) the budget allow;
        the result, a failure or the skip is stored and returned."""
        st = self.cfg.speedtest
        test = speedtest.SpeedTest(server_url=st.server_url, server_ids=st.server_ids,
                                   exclude_ids=st.exclude_ids, clock=self.clock, progress=progress,
                                   shutdown_event=self.ctx.stop, module=self.module)
        now = self.clock.now()
        used, estimate = self.budget(now)
        d = speedplan.decide(used=used, estimate=estimate, budget_bytes=int(st.monthly_budget_mb * 1e6),
                             outage_in_progress=self.outage_open(), on_battery=self.on_battery(),
                             only_on_ac=st.only_on_ac, force=force)
        if not d.run:
            log.info("speed test skipped: %s", d.detail)
            sample = speedtest.skipped(d.reason or "", d.detail, now, test.source).with_tags(self.tags)
            self.ctx.write_samples([sample])
            return sample
        self.running.set()
        try:
            out = test.measure()
        finally:
            self.running.clear()
        state, tags = {}, self.tags
        if out.isp and self.cfg.agent.isp == "auto" and self.tags.get("isp") != out.isp:
            state[STATE_ISP] = out.isp
            tags = {**self.tags, "isp": out.isp}
        sample = out.sample.with_tags(tags)
        _log_result(sample)
        # Durable first, then kept: the learnt ISP tags rows only once the store holds it. The
        # result itself is never lost to a failed write (it moved data: the budget counts it).
        self.ctx.write_samples([sample], state=state)
        if state:
            self.tags["isp"] = out.isp  # the same dict the prober tags its samples with
        return sample


def _log_result(sample: Sample) -> None:
    f = sample.fields
    if f["status"] == "ok":
        log.info("speed test: down %.1f Mbit/s, up %.1f Mbit/s, ping %s ms, %.0f MB moved (%s)",
                 f["download_bps"] / 1e6, f["upload_bps"] / 1e6, f.get("ping_ms", "?"),
                 (f["bytes_sent"] + f["bytes_received"]) / 1e6, f.get("server_name", ""))
    else:
        log.warning("speed test failed: %s (%s)", f["error"], f.get("error_detail", ""))


def standalone(cfg: Config, clock: Clock | None = None) -> SpeedTests:
    """The speed-test job alone, for ``linewatch speedtest``: the store opened beside a running
    agent, as a second writer (only ``run`` repairs a damaged store); an outage in progress and
    the power state are the ones the agent last wrote. The caller closes ``job.store``."""
    clock = clock or SystemClock()
    store = Store.open(cfg.state_dir, repair=False)
    try:
        tags = base_tags(cfg, agent_id(cfg), store.get_state(STATE_ISP), store.get_state(STATE_SITE))
        tracker, params = saved_tracker(store), outage_params(cfg)
        power_tracker = saved_power_tracker(store)
    except BaseException:
        store.close()
        raise
    return SpeedTests(Context(cfg, clock, store, tags),
                      outage_open=lambda: connectivity_open(tracker, params),
                      on_battery=lambda: power.on_battery(power_tracker))
