"""The power job: how the previous run ended (once, at start), then the power sensors every
``power.poll_s``.

* :meth:`PowerJob.recover`, before the first round overwrites the heartbeat, looks at how the
  previous run ended (:func:`agent.power.host_down`): a power cut that took the host down, an
  agent that stopped without a clean exit (an agent gap), or nothing to record. A question the
  clock cannot answer yet (no time sync) waits in the store (``pending_host_down``).
* :meth:`PowerJob.run` reads the AC adapter and the UPS, advances the power episodes and settles
  a deferred host-down once the clock is trusted. As for rounds, a poll whose write raises is
  stepped again, from the last state the store holds, with the next poll.
"""

from __future__ import annotations

import json
import logging

from agent import outage, power
from agent.jobs.context import MAX_UNWRITTEN, Context, Job, episode_sample, keep_last, saved_power_tracker
from agent.model import Sample
from agent.platform import Platform
from agent.probes.registry import host_sensor, power_sensors
from agent.statekeys import (
    STATE_CLEAN_EXIT,
    STATE_DROPPED_HOST_DOWN,
    STATE_HEARTBEAT,
    STATE_JUDGED,
    STATE_PENDING,
    STATE_POWER,
    STATE_POWER_SENSORS,
)
from kit.errors import ProbeError

log = logging.getLogger("linewatch")


class PowerJob(Job):
    """The power sensors, the power tracker, and the judgement of the previous run's end."""

    name = "power"

    def __init__(self, ctx: Context, platform: Platform) -> None:
        super().__init__(ctx)
        self.platform = platform  # the clock's sync state
        self.host = host_sensor(platform)  # the boot time, for the host-down decision
        self.tracker = saved_power_tracker(ctx.store)
        # The sensors power.battery and power.ups ask for; the warnings about where the UPS
        # password is kept are logged once at start (power.ups is read only then).
        self.sensors, self.ups_warnings = power_sensors(ctx.cfg, platform, ctx.clock)
        self.clock_state = platform.clock_state()
        self.readings: list[power.Reading] = []
        self._pending: dict | None = None
        # Polls whose store write failed, oldest first, stepped again with the next one.
        self._unwritten_polls: list[tuple] = []
        self._power_written: float | None = None     # monotonic time of the last full write
        self._power_sensors_written: dict | None = None
        self._sensor_errors: dict[str, str] = {}

    def on_battery(self) -> bool:
        """Whether the machine runs on battery (AC adapter or UPS) now."""
        return power.on_battery(self.tracker)

    def clock_trusted(self) -> bool:
        """Whether the wall clock can be trusted (synchronised, or no time-sync service runs)."""
        return power.clock_trusted(self.clock_state)

    # -- at start ---------------------------------------------------------------------------
    def recover(self) -> power.Decision:
        """How did the previous run end? Record a host-down power episode or an agent gap, or
        keep the question for later (``defer``) when the clock cannot be trusted yet. Call before
        the first round, which overwrites the heartbeat.

        A deferred question belongs to the boot it was asked in: the episode ends at that boot's
        start. If the machine reboots again before its clock ever synchronised, that boot time
        can no longer be known, so the cut is reported (logged and counted in
        ``dropped_host_down``) instead of being recorded with a wrong end."""
        boot = self.ctx.boot
        pending = json.loads(self.store.get_state(STATE_PENDING) or "null")
        if pending and pending.get("boot") != boot:
            log.warning("a power cut before an earlier boot could not be dated: the clock never "
                        "synchronised in that boot (last heartbeat %s)",
                        json.loads(pending["heartbeat"]).get("time"))
            dropped = int(self.store.get_state(STATE_DROPPED_HOST_DOWN) or 0) + 1
            self.store.write(state={STATE_DROPPED_HOST_DOWN: str(dropped), STATE_PENDING: ""})
            pending = None
        decision = power.Decision("none", "first start: no earlier heartbeat")
        if pending:
            self._pending = pending
            decision = self._settle_pending()
        prev = self.store.get_state(STATE_HEARTBEAT)
        if (not prev or (pending and prev == pending["heartbeat"])
                or prev == self.store.get_state(STATE_JUDGED)):
            return decision
        clean = json.loads(self.store.get_state(STATE_CLEAN_EXIT) or "null") or {}
        current = {"heartbeat": prev, "clean": bool(clean.get("clean")), "boot": boot}
        if self._pending is None:
            self._pending = current
            self.store.write(state={STATE_PENDING: json.dumps(current)})
            decision = self._settle_pending()
        else:
            # An earlier reboot waits for time sync; this run was in the same boot, and deciding
            # it (an agent gap or nothing) needs no trusted clock. The heartbeat is marked judged
            # in the same write as the episode: a stop before the first round cannot record it twice.
            decision = self._decide(current, state={STATE_JUDGED: prev})
        log.info("previous run: %s", decision.reason)
        return decision

    def _settle_pending(self) -> power.Decision:
        """Decide the pending question now if the clock allows; forget it once decided, and mark
        its heartbeat judged, in the write that records the decision: a start that stops again
        before its first round overwrites the heartbeat never records the same ending twice."""
        d = self._decide(self._pending, state={STATE_PENDING: "",
                                               STATE_JUDGED: self._pending["heartbeat"]})
        if d.kind != "defer":
            self._pending = None
        return d

    def _decide(self, prev: dict, state: dict[str, str] | None = None) -> power.Decision:
        """Decide one previous run and record what it says together with ``state`` (nothing is
        written for a deferral)."""
        try:
            hb = power.Heartbeat.from_json(prev["heartbeat"])
        except (KeyError, TypeError, ValueError) as exc:
            # A heartbeat that cannot be read (a salvaged or hand-edited store) cannot date a
            # cut: say so and judge nothing, rather than fail at every start.
            log.warning("the previous run's heartbeat cannot be read (%s: %s): how it ended is not "
                        "judged", type(exc).__name__, exc)
            return power.Decision("none", "the previous heartbeat could not be read")
        d = power.host_down(hb, prev["clean"], self.ctx.boot, self.host.measure().boot_time,
                            self.clock.now(), self.clock.monotonic(),
                            power.clock_trusted(self.clock_state), self.cfg.outage.momentary_max_s)
        if d.kind == "defer":
            return d
        if d.episode is not None:
            self.store.write([episode_sample(d.episode, self.tags)], episodes=[d.episode], state=state)
            log.warning("%s: %s .. %s (%.0f s)", d.reason, d.episode.start.isoformat(),
                        d.episode.end.isoformat() if d.episode.end else "?", d.episode.duration_s)
            if d.episode.type == "power":  # a host-down power cut, through the episode hook
                self.ctx.announce([outage.Change("closed", d.episode)])
        elif state:
            self.store.write(state=state)
        return d

    # -- every poll -------------------------------------------------------------------------
    def run(self) -> None:
        """Read the power sensors, advance the power episodes, settle a deferred host-down.

        Sensors are read every ``power.poll_s`` so a cut is seen within one poll, but the store
        is written only when something changed, while an episode is open (its length grows), or
        once a minute for the samples: a laptop on mains does not commit every 5 s."""
        self.clock_state = self.platform.clock_state()
        if self._pending and power.clock_trusted(self.clock_state):
            self._settle_pending()
        t, mono = self.clock.now(), self.clock.monotonic()
        readings, fresh = self.read_power_sensors()
        self.readings = readings  # the latest, for the alerts (the UPS's charge and runtime)
        sensors = {"clock": self.clock_state, "readings": [
            {"source": r.source, "on_battery": r.on_battery, "charge_pct": r.charge_pct, "status": r.status}
            for r in readings], "errors": dict(self._sensor_errors)}
        due = self._power_written is None or mono - self._power_written >= 60.0
        changed = sensors != self._power_sensors_written
        fresh = [x for x in fresh if x.measurement != "power" or due or changed]
        # As for rounds: polls whose write failed are stepped again from the durable state.
        todo = [*self._unwritten_polls, (readings, t, mono, fresh)]
        tracker, samples, episodes, changes = self.tracker, [], {}, []
        for res_readings, res_t, res_mono, res_samples in todo:
            tracker, ch = power.step(
                tracker, res_readings, res_t, res_mono, momentary_max_s=self.cfg.outage.momentary_max_s,
                max_gap_s=max(60.0, 6 * self.cfg.power.poll_s), boot=self.ctx.boot)
            samples.extend(res_samples)
            for kind, ep in ch:
                changes.append(outage.Change(kind, ep))
                episodes[ep.id] = ep
                if kind == "closed":
                    samples.append(episode_sample(ep, self.tags))
        for ep in power.in_progress(tracker, self.cfg.outage.momentary_max_s):
            episodes[ep.id] = ep
        # Rows waiting in memory (the store could not be written) go with the next poll too.
        if not (due or changed or episodes or len(todo) > 1 or self.store.trouble is not None):
            self.tracker = tracker  # nothing open, nothing new: no commit (no fsync) needed
            return
        try:
            self.store.write(samples, episodes=episodes.values(), state={
                STATE_POWER: tracker.to_json(),
                STATE_POWER_SENSORS: json.dumps({**sensors, "time": t.isoformat()})})
        except BaseException:
            self._unwritten_polls = keep_last(todo, MAX_UNWRITTEN, self.counters,
                                              "dropped_unwritten_polls")
            raise
        self.tracker, self._unwritten_polls = tracker, []
        self.ctx.announce(changes)
        self._power_sensors_written = sensors
        if due or changed:
            self._power_written = mono

    def read_power_sensors(self) -> tuple[list[power.Reading], list[Sample]]:
        """Readings of the configured sensors and their samples (each stamped by its sensor when
        read); a failing sensor is a warning (logged when it starts and stops failing, shown in
        status), never fatal."""
        readings, samples = [], []
        for sensor in self.sensors:
            try:
                r = sensor.measure()
            except ProbeError as exc:
                self._sensor_failed(sensor.name, str(exc))
                readings.append(power.Reading(sensor.name, None))
                continue
            self._sensor_ok(sensor.name)
            if r is None:
                continue
            readings.append(r)
            if r.sample is not None:
                samples.append(r.sample.with_tags(self.tags))
        return readings, samples

    def _sensor_failed(self, source: str, message: str) -> None:
        if self._sensor_errors.get(source) != message:
            log.warning("%s sensor: %s (the agent keeps measuring)", source, message)
        self._sensor_errors[source] = message
        self.counters.add("sensor_errors", 1)

    def _sensor_ok(self, source: str) -> None:
        if self._sensor_errors.pop(source, None) is not None:
            log.info("%s sensor: working again", source)
