"""The agent: wires config, clock, probes, outage tracker and store into scheduled jobs.

Jobs (on :class:`agent.schedule.Ticker`, the monotonic scheduler):

* ``round`` every ``probe.interval_s``: one probe round; its samples, the episode changes, the
  tracker state and the heartbeat are committed in one transaction before the next round.
* ``power`` every ``power.poll_s``: the AC adapter and the UPS; power episodes; a host-down
  decision that waits for time sync.
* ``minute`` every ``probe.netio_interval_s``: interface counters and the agent's own metrics.
* ``housekeeping`` hourly: retention and the size cap.
* ``speedtest`` every 30 s: runs a speed test when the schedule says one is due
  (:mod:`agent.speedplan`) and the budget, the line and the power allow it; a skip is recorded.
* ``push`` every ``influx.push_interval_s`` when ``influx.url`` is set: forwards the store's unsent
  rows to InfluxDB, oldest first (:mod:`agent.forward`); after a failure it waits out its backoff,
  and a connectivity outage ending wakes it at once.

A failing job is logged and counted, never fatal. SIGTERM and SIGINT stop the agent cleanly: the
running round finishes and is committed, then the clean-exit marker is written. SIGHUP reads the
config file again (:meth:`Agent.reload_config`).

At start, before the first round overwrites the heartbeat, :meth:`Agent.recover` looks at how the
previous run ended (:func:`agent.power.host_down`): a power cut that took the host down, an agent
that stopped without a clean exit (an agent gap), or nothing to record.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

from agent import outage, power
from agent.clock import Clock, SystemClock
from agent.config import Config
from kit.errors import ConfigError, StoreCorrupt, StoreError
from agent.model import Episode, Sample
from agent.probes.gateway import gateway_mac, site_id
from agent.probes.registry import EchoDispatch, boot_id, real_probes
from agent.round import Prober, Probes, Round
from kit.secret import redact_value
from agent.store import MAX_PENDING_SAMPLES, Store, Trouble

log = logging.getLogger("linewatch")

HOUSEKEEPING_S = 3600.0
STATE_TRACKER, STATE_HEARTBEAT, STATE_CLEAN_EXIT = "outage_tracker", "heartbeat", "clean_exit"
STATE_POWER, STATE_POWER_SENSORS, STATE_PENDING = "power_tracker", "power_sensors", "pending_host_down"
STATE_SPEED_NEXT, STATE_ISP, STATE_SITE = "speedtest_next", "isp_auto", "site_auto"
SPEEDTEST_CHECK_S = 30.0
STATE_JUDGED = "heartbeat_judged"  # the previous run's heartbeat whose ending is recorded
# Rounds (and power polls) whose store write raised, kept to be stepped again with the next one:
# an hour at the default cadence. Beyond it the oldest go, counted (dropped_unwritten_*).
MAX_UNWRITTEN = 360
RELOAD_CHECK_S = 1.0  # how soon a SIGHUP is acted on


def agent_id(cfg: Config) -> str:
    """The configured id, else the random one kept in ``<state_dir>/agent_id`` (made on first use)."""
    if cfg.agent.id:
        return cfg.agent.id
    path = cfg.state_dir / "agent_id"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    new = os.urandom(6).hex()  # not `secrets`: it loads OpenSSL (+4 MB resident) for nothing
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(new + "\n")
    return new


def base_tags(cfg: Config, ident: str, isp_auto: str | None = None,
              site_auto: str | None = None) -> dict[str, str]:
    """Tags on every sample: the agent id, its site (``agent.site``, else the id derived from the
    gateway's hardware address once seen, else the agent id: its own line) and the non-empty
    location/ISP/access settings (``isp = "auto"``: the name speedtest.net reported, once known)."""
    tags = {"agent": ident, "site": cfg.agent.site or site_auto or ident}
    for key in ("region", "city", "isp", "access"):
        value = getattr(cfg.agent, key)
        if key == "isp" and value == "auto":
            value = isp_auto or ""
        if value:
            tags[key] = value
    return tags


class Agent:
    def __init__(self, cfg: Config, *, clock: Clock | None = None, probes: Probes | None = None,
                 store: Store | None = None, notifier=None, lock=None) -> None:
        self.cfg = cfg
        self.lock = lock  # agent.lock.AgentLock held by `linewatch run` (None in tests)
        self._store_trouble: Trouble | None = None
        self._dropped_reported = 0
        self._job_errors: dict[str, str] = {}
        self.notifier = notifier  # agent.notify.Notifier; made from the environment in run()
        self.clock = clock or SystemClock()
        self.store = store or open_store(cfg, self.clock)
        self.id = agent_id(cfg)
        self.tags = base_tags(cfg, self.id, self.store.get_state(STATE_ISP),
                              self.store.get_state(STATE_SITE))
        self.boot = boot_id(cfg.agent.procfs)
        self.prober = Prober(cfg, probes or real_probes(cfg), self.clock, self.tags)
        self.params = outage.Params(
            open_after=cfg.outage.open_after, close_after=cfg.outage.close_after,
            momentary_max_s=cfg.outage.momentary_max_s,
            max_gap_s=max(60.0, 6 * cfg.probe.interval_s),
        )
        saved = self.store.get_state(STATE_TRACKER)
        self.tracker = outage.Tracker.from_json(saved) if saved else outage.Tracker()
        saved = self.store.get_state(STATE_POWER)
        self.power_tracker = power.PowerTracker.from_json(saved) if saved else power.PowerTracker()
        self.ups_url = None
        self._ups_warnings: list[str] = []  # logged once by run(): power.ups is read only at start
        if cfg.power.ups:
            from agent.probes.ups import load_url

            self.ups_url, self._ups_warnings = load_url(cfg.power, os.environ, cfg.source)
        self.clock_state = power.clock_state(cfg.agent.rundir)
        self._pending: dict | None = None
        # Inputs whose store write failed, oldest first, stepped again with the next one.
        self._unwritten_rounds: list[tuple[outage.RoundResult, tuple[Sample, ...]]] = []
        self._unwritten_polls: list[tuple] = []
        # Samples of other jobs (speed tests, self-metrics) whose write raised: they go with the
        # next round's write.
        self._unwritten_samples: list[Sample] = []
        self._power_written: float | None = None     # monotonic time of the last full write
        self._power_sensors_written: dict | None = None
        self._sensor_errors: dict[str, str] = {}
        self.counters = {"rounds": 0, "round_failures": 0, "probe_errors": 0, "job_failures": 0,
                         "sensor_errors": 0, "pushed_rows": 0, "push_errors": 0, "rounds_paused": 0,
                         "dropped_unwritten_rounds": 0, "dropped_unwritten_polls": 0,
                         "dropped_unwritten_samples": 0}
        self._speedtest_running = threading.Event()
        self.speedtest_module = None  # speedtest-cli, imported at the first test (tests inject one)
        self.forwarder = None
        if cfg.influx.url:
            from agent.forward import PushLock, make_forwarder

            self.forwarder = make_forwarder(cfg, self.store, self.clock)
            self._push_lock = PushLock(cfg.state_dir)
        self.started_mono = self.clock.monotonic()
        self._netio = None
        self._clock_offset: float | None = None
        self._clock_steps = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # -- jobs -------------------------------------------------------------------------------
    def round(self) -> Round | None:
        """One round: probe, update the tracker, commit everything in one transaction.

        Not while a speed test fills the line: its queues would make the round look degraded
        (or down) and open episodes that are the agent's own doing. The paused rounds are
        counted (``rounds_paused``); the gap, two or three rounds, is shorter than the tracker's
        gap limit, so an episode in progress simply continues."""
        if self._speedtest_running.is_set():
            self.counters["rounds_paused"] += 1
            return None
        with self._lock:
            rnd = self.prober.run()
            rnd = self._tag_site(rnd)
            # One instant in both clocks: pairing the start's wall time with a monotonic reading
            # taken after the probes would skew durations by the rounds' unequal lengths.
            result = outage.RoundResult(time=rnd.time, mono=rnd.mono, status=rnd.status, cause=rnd.cause,
                                        on_battery=power.on_battery(self.power_tracker), boot=self.boot)
            # Durable first, then kept: the rounds whose write failed are stepped again from the
            # last state the store holds, so a failed write delays a change, never loses it.
            todo = [*self._unwritten_rounds, (result, rnd.samples)]
            carried = self._unwritten_samples
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
            heartbeat = power.Heartbeat(result.time, result.mono, self.boot,
                                        power.clock_trusted(self.clock_state))
            try:
                self.store.write(samples, episodes=episodes.values(), state={
                    STATE_TRACKER: tracker.to_json(),
                    STATE_HEARTBEAT: heartbeat.to_json(),
                })
            except BaseException:
                self._unwritten_rounds = _keep_last(todo, MAX_UNWRITTEN, self.counters,
                                                    "dropped_unwritten_rounds")
                raise
            self.tracker, self._unwritten_rounds = tracker, []
            del self._unwritten_samples[:len(carried)]
            for c in changes:
                _log_change(c)
                if c.kind == "closed" and c.episode.type == "connectivity" and self.forwarder is not None:
                    self.forwarder.wake()  # the line is back: the backlog can go now
            self.counters["rounds"] += len(todo)
            self.counters["probe_errors"] += len(rnd.errors)
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
        mac = gateway_mac(self.prober.last_gateway if g == "auto" else None if g == "off" else g,
                          self.cfg.agent.procfs)
        site = site_id(mac) if mac else None
        if site and site != self.tags["site"]:
            self.store.write([], state={STATE_SITE: site})   # durable first, then kept
            log.info("site: %s (from the gateway's hardware address)", site)
            self.tags["site"] = site  # the dict the prober, power and self rows are tagged with
        if all(x.tags.get("site") == self.tags["site"] for x in rnd.samples):
            return rnd
        return replace(rnd, samples=tuple(replace(x, tags={**x.tags, "site": self.tags["site"]})
                                          for x in rnd.samples))

    def recover(self) -> power.Decision:
        """How did the previous run end? Record a host-down power episode or an agent gap, or
        keep the question for later (``defer``) when the clock cannot be trusted yet. Call before
        the first round, which overwrites the heartbeat.

        A deferred question belongs to the boot it was asked in: the episode ends at that boot's
        start. If the machine reboots again before its clock ever synchronised, that boot time
        can no longer be known, so the cut is reported (logged and counted in
        ``dropped_host_down``) instead of being recorded with a wrong end."""
        pending = json.loads(self.store.get_state(STATE_PENDING) or "null")
        if pending and pending.get("boot") != self.boot:
            log.warning("a power cut before an earlier boot could not be dated: the clock never "
                        "synchronised in that boot (last heartbeat %s)",
                        json.loads(pending["heartbeat"]).get("time"))
            dropped = int(self.store.get_state("dropped_host_down") or 0) + 1
            self.store.write(state={"dropped_host_down": str(dropped), STATE_PENDING: ""})
            pending = None
        decision = power.Decision("none", "first start: no earlier heartbeat")
        if pending:
            self._pending = pending
            decision = self._settle_pending()
        prev = self.store.get_state(STATE_HEARTBEAT)
        if not prev or (pending and prev == pending["heartbeat"]) or prev == self.store.get_state(STATE_JUDGED):
            return decision
        clean = json.loads(self.store.get_state(STATE_CLEAN_EXIT) or "null") or {}
        current = {"heartbeat": prev, "clean": bool(clean.get("clean")), "boot": self.boot}
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
        d = power.host_down(hb, prev["clean"], self.boot, power.boot_time(self.cfg.agent.procfs),
                            self.clock.now(), self.clock.monotonic(),
                            power.clock_trusted(self.clock_state), self.cfg.outage.momentary_max_s)
        if d.kind == "defer":
            return d
        if d.episode is not None:
            self.store.write([episode_sample(d.episode, self.tags)], episodes=[d.episode], state=state)
            log.warning("%s: %s .. %s (%.0f s)", d.reason, d.episode.start.isoformat(),
                        d.episode.end.isoformat() if d.episode.end else "?", d.episode.duration_s)
        elif state:
            self.store.write(state=state)
        return d

    def power_poll(self) -> None:
        """Read the power sensors, advance the power episodes, settle a deferred host-down.

        Sensors are read every ``power.poll_s`` so a cut is seen within one poll, but the store
        is written only when something changed, while an episode is open (its length grows), or
        once a minute for the samples: a laptop on mains does not commit every 5 s."""
        self.clock_state = power.clock_state(self.cfg.agent.rundir)
        if self._pending and power.clock_trusted(self.clock_state):
            self._settle_pending()
        t, mono = self.clock.now(), self.clock.monotonic()
        readings, fresh = self.read_power_sensors(t)
        sensors = {"clock": self.clock_state, "readings": [
            {"source": r.source, "on_battery": r.on_battery, "charge_pct": r.charge_pct, "status": r.status}
            for r in readings], "errors": dict(self._sensor_errors)}
        due = self._power_written is None or mono - self._power_written >= 60.0
        changed = sensors != self._power_sensors_written
        fresh = [x for x in fresh if x.measurement != "power" or due or changed]
        # As for rounds: polls whose write failed are stepped again from the durable state.
        todo = [*self._unwritten_polls, (readings, t, mono, fresh)]
        tracker, samples, episodes, changes = self.power_tracker, [], {}, []
        for res_readings, res_t, res_mono, res_samples in todo:
            tracker, ch = power.step(
                tracker, res_readings, res_t, res_mono, momentary_max_s=self.cfg.outage.momentary_max_s,
                max_gap_s=max(60.0, 6 * self.cfg.power.poll_s), boot=self.boot)
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
            self.power_tracker = tracker  # nothing open, nothing new: no commit (no fsync) needed
            return
        try:
            self.store.write(samples, episodes=episodes.values(), state={
                STATE_POWER: tracker.to_json(),
                STATE_POWER_SENSORS: json.dumps({**sensors, "time": t.isoformat()})})
        except BaseException:
            self._unwritten_polls = _keep_last(todo, MAX_UNWRITTEN, self.counters,
                                               "dropped_unwritten_polls")
            raise
        self.power_tracker, self._unwritten_polls = tracker, []
        for c in changes:
            _log_change(c)
        self._power_sensors_written = sensors
        if due or changed:
            self._power_written = mono

    def read_power_sensors(self, t) -> tuple[list[power.Reading], list[Sample]]:
        """Readings of the configured sensors and their samples; a failing sensor is a warning
        (logged when it starts and stops failing, shown in status), never fatal."""
        readings, samples = [], []
        if self.cfg.power.battery == "auto":
            r = power.read_battery(self.cfg.agent.sysfs)
            if r is not None:
                readings.append(r)
                fields = {k: v for k, v in (("on_battery", r.on_battery), ("charge_pct", r.charge_pct),
                                            ("status", r.status)) if v is not None}
                if fields:
                    samples.append(Sample("power", {**self.tags, "source": power.BATTERY}, fields, t))
        if self.ups_url is not None:
            from agent.probes.ups import NutError, mains_lost, measure

            try:
                s = measure(self.ups_url, timeout_s=min(2.0, self.cfg.power.poll_s), clock=self.clock)
            except NutError as exc:
                self._sensor_failed(power.UPS, str(exc))
                readings.append(power.Reading(power.UPS, None))
            else:
                self._sensor_ok(power.UPS)
                f = s.fields
                readings.append(power.Reading(power.UPS, mains_lost(f), f.get("charge_pct"),
                                              f.get("status")))
                samples.append(Sample("power", {**self.tags, "source": power.UPS, "ups": s.tags["ups"]},
                                      f, s.time))
        return readings, samples

    def _sensor_failed(self, source: str, message: str) -> None:
        if self._sensor_errors.get(source) != message:
            log.warning("%s sensor: %s (the agent keeps measuring)", source, message)
        self._sensor_errors[source] = message
        self.counters["sensor_errors"] = self.counters.get("sensor_errors", 0) + 1

    def _sensor_ok(self, source: str) -> None:
        if self._sensor_errors.pop(source, None) is not None:
            log.info("%s sensor: working again", source)

    def minute(self) -> None:
        """Interface counters and the agent's own health."""
        from agent.schedule import detect_step

        self._clock_offset, step = detect_step(self._clock_offset, self.clock.now().timestamp(),
                                               self.clock.monotonic(), threshold_s=2.0)
        if step is not None:
            self._clock_steps += 1
            log.warning("the wall clock stepped by %+.1f s (durations are unaffected: they use the "
                        "monotonic clock)", step)
        samples = []
        try:
            samples += self._netio_sampler().measure()
        except Exception as exc:  # psutil or procfs trouble must not stop self-metrics
            log.warning("interface counters failed: %s", exc)
        samples.append(self.self_sample())
        self._write_samples([s.with_tags(self.tags) for s in samples])

    def housekeeping(self) -> None:
        res = self.store.prune(self.clock.now(), self.cfg.store.retention_days * 86400,
                               int(self.cfg.store.max_size_mb * 1024 * 1024))
        if any(res.values()):
            log.info("store housekeeping: %s", res)

    # -- speed tests ------------------------------------------------------------------------
    def speedtest_tick(self) -> None:
        """Run a speed test if one is due (and allowed); then draw the next time."""
        now = self.clock.now()
        due = self.speedtest_next_due(now)
        if now < due:
            return
        self.run_speedtest()
        self._plan_next_speedtest(self.clock.now())

    def speedtest_next_due(self, now) -> "datetime":
        from datetime import datetime, timedelta

        saved = self.store.get_state(STATE_SPEED_NEXT)
        try:
            due = datetime.fromisoformat(saved) if saved else None
        except ValueError:
            due = None
        # None, or further off than the schedule can place it (a clock that stepped back):
        # draw again from now.
        if due is None or due - now > timedelta(hours=24 * 8):
            due = self._plan_next_speedtest(now)
        return due

    def _plan_next_speedtest(self, now):
        import random
        from datetime import timedelta

        from agent import speedplan

        st = self.cfg.speedtest
        if st.cron:
            due = speedplan.next_cron(st.cron, now)
        else:
            due = now + timedelta(seconds=speedplan.next_interval_s(random.random(), st.mean_interval_h))
        self.store.write(state={STATE_SPEED_NEXT: due.isoformat()})
        return due

    def speedtest_budget(self, now) -> tuple[int, int]:
        """(bytes the tests moved this month, the expected size of the next test)."""
        from datetime import timedelta

        from agent import speedplan

        moved, recent = [], []
        for s in self.store.samples("speedtest", since=now - timedelta(days=62)):
            b = int(s.fields.get("bytes_sent", 0) or 0) + int(s.fields.get("bytes_received", 0) or 0)
            moved.append((s.time, b))
            if s.fields.get("status") == "ok":
                recent.append(b)
        return speedplan.used_bytes(moved, now), speedplan.estimate_bytes(recent)

    def run_speedtest(self, force: bool = False, progress=None) -> Sample:
        """One speed test now, if the line, the power and (unless ``force``) the budget allow;
        the result, a failure or the skip is stored and returned."""
        from agent import speedplan
        from agent.probes import speedtest

        st = self.cfg.speedtest
        now = self.clock.now()
        used, estimate = self.speedtest_budget(now)
        outage_open = any(e.type == "connectivity" for e in outage.in_progress(self.tracker, self.params))
        d = speedplan.decide(used=used, estimate=estimate, budget_bytes=int(st.monthly_budget_mb * 1e6),
                             outage_in_progress=outage_open, on_battery=power.on_battery(self.power_tracker),
                             only_on_ac=st.only_on_ac, force=force)
        source = "self_hosted" if st.server_url else "speedtest.net"
        if not d.run:
            log.info("speed test skipped: %s", d.detail)
            sample = speedtest.skipped(d.reason or "", d.detail, now, source).with_tags(self.tags)
            self._write_samples([sample])
            return sample
        self._speedtest_running.set()
        try:
            out = speedtest.measure(server_url=st.server_url, server_ids=st.server_ids,
                                    exclude_ids=st.exclude_ids, clock=self.clock, progress=progress,
                                    shutdown_event=self._stop, module=self.speedtest_module)
        finally:
            self._speedtest_running.clear()
        state, tags = {}, self.tags
        if out.isp and self.cfg.agent.isp == "auto" and self.tags.get("isp") != out.isp:
            state[STATE_ISP] = out.isp
            tags = {**self.tags, "isp": out.isp}
        sample = out.sample.with_tags(tags)
        f = sample.fields
        if f["status"] == "ok":
            log.info("speed test: down %.1f Mbit/s, up %.1f Mbit/s, ping %s ms, %.0f MB moved (%s)",
                     f["download_bps"] / 1e6, f["upload_bps"] / 1e6, f.get("ping_ms", "?"),
                     (f["bytes_sent"] + f["bytes_received"]) / 1e6, f.get("server_name", ""))
        else:
            log.warning("speed test failed: %s (%s)", f["error"], f.get("error_detail", ""))
        # Durable first, then kept: the learnt ISP tags rows only once the store holds it. The
        # result itself is never lost to a failed write (it moved data: the budget counts it).
        self._write_samples([sample], state=state)
        if state:
            self.tags["isp"] = out.isp  # the same dict the prober tags its samples with
        return sample

    def _write_samples(self, samples: list[Sample], state: dict[str, str] | None = None) -> None:
        """Write samples of a job other than the round; when the write raises, keep them for
        the next round's write (bounded: the oldest beyond it are counted in
        ``dropped_unwritten_samples``) and let the job fail as usual."""
        try:
            self.store.write(samples, state=state)
        except BaseException:
            kept = self._unwritten_samples + list(samples)
            over = len(kept) - MAX_PENDING_SAMPLES
            if over > 0:
                self.counters["dropped_unwritten_samples"] += over
                del kept[:over]
            self._unwritten_samples = kept
            raise

    def push(self) -> None:
        """Forward the backlog when the backoff allows; skipped while ``linewatch push`` runs."""
        fw = self.forwarder
        if fw is None or not fw.due():
            return
        if not self._push_lock.acquire(wait=False):
            return
        try:
            rep = fw.push(stop=self._stop)
        finally:
            self._push_lock.release()
        self.counters["pushed_rows"] += rep.sent
        if rep.outcome in ("retry", "halt"):
            self.counters["push_errors"] += 1

    def _netio_sampler(self):
        if self._netio is None:
            from agent.probes.netio import NetIO

            self._netio = NetIO(self.clock)
        return self._netio

    def self_sample(self) -> Sample:
        cpu_s, rss = own_usage()
        rows, oldest = self.store.backlog()
        fields = {
            "uptime_s": round(self.clock.monotonic() - self.started_mono, 3),
            "rss_bytes": rss,
            "cpu_s": round(cpu_s, 3),
            "store_bytes": self.store.file_bytes(),
            "backlog_rows": rows,
            "dropped_unsent": int(self.store.get_state("dropped_unsent") or 0),
            "dropped_host_down": int(self.store.get_state("dropped_host_down") or 0),
            "quarantined_rows": self.store.quarantined(0)[0],
            "store_pending_rows": self.store.trouble.pending_samples if self.store.trouble else 0,
            "dropped_store_full": self.store.dropped_pending,
            "clock_steps": self._clock_steps,
            **self.counters,
        }
        return Sample("agent", {}, fields, self.clock.now())

    # -- lifecycle --------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None,
            load_config: Callable[[], Config] | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``stop`` is set). With ``load_config`` (how the config
        was read), SIGHUP reads it again: see :meth:`reload_config`."""
        from agent.schedule import Ticker

        stop = stop or threading.Event()
        self._stop = stop
        reload_asked = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            if load_config is not None and hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, lambda *_: reload_asked.set())
        self.recover()
        self.store.write(state={STATE_CLEAN_EXIT: json.dumps({"clean": False})})
        from agent.notify import Notifier

        notifier = self.notifier = self.notifier or Notifier()
        sched = Ticker(self.clock)
        sched.every(self.cfg.power.poll_s, self._guarded(self.power_poll, "power"), "power")
        guarded_round = self._guarded(self.round, "round")
        self._last_round_end = self.clock.monotonic()

        def round_job() -> None:
            guarded_round()
            self._last_round_end = self.clock.monotonic()

        sched.every(self.cfg.probe.interval_s, round_job, "round")
        if notifier.enabled:
            every = min(notifier.watchdog_s / 3, 30.0) if notifier.watchdog_s else 30.0
            sched.every(every, self._guarded(self.keepalive, "watchdog"), "watchdog", first_in_s=every)
        sched.every(self.cfg.probe.netio_interval_s, self._guarded(self.minute, "minute"), "minute",
                    first_in_s=1.0)
        sched.every(HOUSEKEEPING_S, self._guarded(self.housekeeping, "housekeeping"), "housekeeping",
                    first_in_s=30.0)
        if load_config is not None:
            def reload_job() -> None:
                if reload_asked.is_set():
                    reload_asked.clear()
                    self.reload_config(load_config)

            sched.every(RELOAD_CHECK_S, self._guarded(reload_job, "reload"), "reload",
                        first_in_s=RELOAD_CHECK_S)
        if self.cfg.speedtest.enabled:
            sched.every(SPEEDTEST_CHECK_S, self._guarded(self.speedtest_tick, "speedtest"), "speedtest",
                        first_in_s=15.0)
        if self.forwarder is not None:
            sched.every(self.cfg.influx.push_interval_s, self._guarded(self.push, "push"), "push",
                        first_in_s=2.0)
            log.info("forwarding to %s (%s)", redact_value(self.cfg.influx.url), self.cfg.influx.api)
            if not self.cfg.influx.verify_tls:
                log.warning("influx.verify_tls is false: the server's certificate is not checked")
        for warning in self._ups_warnings:
            log.warning("ups password: %s", warning)
        log.info("linewatch agent %s started: every %gs, targets %s, store %s", self.id,
                 self.cfg.probe.interval_s, ", ".join(self.cfg.probe.targets), self.store.path)
        self._say_echo_method()
        notifier.ready(self._status_line())
        try:
            sched.run_until(stop)
        finally:
            notifier.stopping()
            self.prober.close()
            if self.forwarder is not None:
                self.forwarder.sink.close()
            self.store.write(state={STATE_CLEAN_EXIT: json.dumps(
                {"clean": True, "time": self.clock.now().isoformat(), "boot_id": self.boot})})
            self.store.close()
            t = self.store.trouble
            if t is not None:
                log.error("stopped while the store could not be written (since %s: %s): %d samples "
                          "kept in memory are lost", t.since.isoformat(timespec="seconds"), t.reason,
                          t.pending_samples)
            else:
                log.info("linewatch agent stopped cleanly")

    def _say_echo_method(self) -> None:
        """Once at start: which echo method the targets get, and the fix when ICMP is refused."""
        prober_echo = getattr(self.prober.probes, "echo", None)
        if self.cfg.probe.method != "auto" or not isinstance(prober_echo, EchoDispatch):
            return
        if prober_echo.method_for(socket.AF_INET) == "tcp":
            gid = os.getgid() if hasattr(os, "getgid") else 0
            log.warning("ICMP echo is refused for this process: timing TCP connects to port %d "
                        "instead (routers that drop that port look unreachable). Fix: sysctl -w "
                        "net.ipv4.ping_group_range=\"%d %d\" (kept in /etc/sysctl.d/), or "
                        "AmbientCapabilities=CAP_NET_RAW in the unit; `linewatch check` lists every way",
                        self.cfg.probe.tcp_port, gid, gid)

    def reload_config(self, load_config: Callable[[], Config]) -> None:
        """Read the config again (on SIGHUP, in a scheduler thread, never in the signal handler)
        and apply the keys that can change live (:data:`agent.config.LIVE_KEYS`: the tags on
        every row); changed keys that need a restart are named in the log. A file that does not
        load keeps the running config, with one line in the log."""
        from agent.config import reloaded

        try:
            new = load_config()
        except ConfigError as exc:
            log.error("config reload refused: %s; keeping the running config", exc)
            return
        cfg, applied, waiting = reloaded(self.cfg, new)
        with self._lock:  # between rounds: no round carries half old, half new tags
            tags = base_tags(cfg, self.id, self.store.get_state(STATE_ISP), self.store.get_state(STATE_SITE))
            self.cfg, self.tags, self.prober.base_tags = cfg, tags, tags
        text = f"config reloaded from {cfg.source}: "
        if applied:
            text += "applied " + ", ".join(
                f"{k} = {json.dumps(getattr(cfg.agent, k.split('.')[1]), ensure_ascii=False)}"
                for k in applied)
        if waiting:  # names only: a changed value may be a credential (power.ups)
            log.warning("%s%sneeds a restart to take effect: %s", text, "; " if applied else "",
                        ", ".join(waiting))
        else:
            log.info("%s", text + ("" if applied else "nothing changed"))

    def keepalive(self) -> None:
        """The systemd watchdog's ping, sent only while probe rounds keep completing: a round
        thread that hangs (a stuck socket, a deadlock) stops the pings and systemd restarts the
        agent. Without WatchdogSec it only refreshes the STATUS line."""
        n = self.notifier
        if n is None:
            return
        quiet = self.clock.monotonic() - self._last_round_end
        limit = max(3 * self.cfg.probe.interval_s + self.cfg.probe.timeout_s * self.cfg.probe.count,
                    (n.watchdog_s or 0) / 2)
        if n.watchdog_s and quiet <= limit:
            n.watchdog(self._status_line())
        elif n.watchdog_s:
            log.warning("no probe round completed for %.0f s: not pinging the systemd watchdog", quiet)
            n.status(f"no probe round for {quiet:.0f} s")
        else:
            n.status(self._status_line())

    def _status_line(self) -> str:
        c = self.counters
        text = f"{c['rounds']} rounds, {c['round_failures']} failed"
        if self.forwarder is not None:
            text += f", {c.get('pushed_rows', 0)} rows forwarded"
        return text

    def _guarded(self, fn, name: str):
        def job() -> None:
            try:
                fn()
            except StoreCorrupt as exc:
                log.error("%s; moving it aside and starting a new store", exc)
                self._reopen_store()
                self.counters["job_failures"] += 1
            except (StoreError, OSError) as exc:  # one line: a traceback says nothing more here
                self._job_failed(name)
                # Said once while it fails the same way (a full disk fails every push).
                if self._job_errors.get(name) != str(exc):
                    log.warning("%s job failed: %s", name, exc)
                self._job_errors[name] = str(exc)
                log.debug("%s job failed", name, exc_info=True)
            except Exception as exc:  # one failing job never stops the agent
                self._job_failed(name)
                log.exception("%s job failed: %s", name, exc)
            else:
                if self._job_errors.pop(name, None) is not None:
                    log.info("%s job works again", name)
            self._watch_store()
        return job

    def _job_failed(self, name: str) -> None:
        self.counters["job_failures"] += 1
        if name == "round":
            self.counters["round_failures"] += 1

    def _watch_store(self) -> None:
        """Say once when the store stops taking writes and once when it takes them again; keep
        the lock file's record (readable by ``status`` while the disk is full) in step."""
        t = self.store.trouble
        was = self._store_trouble
        if t is not None and was is None:
            log.warning("the store %s cannot be written since %s: %s; keeping up to %d samples in "
                        "memory until it can (free some space, or fix the file's permissions)",
                        self.store.path, t.since.isoformat(timespec="seconds"), t.reason,
                        MAX_PENDING_SAMPLES)
            if self.lock is not None:
                self.lock.update(store_error=t.reason, store_error_since=t.since.isoformat())
        elif t is None and was is not None:
            dropped = self.store.dropped_pending - self._dropped_reported
            log.warning("the store can be written again: the rows kept in memory since %s are "
                        "written%s", was.since.isoformat(timespec="seconds"),
                        f"; {dropped} samples were dropped (the queue was full)" if dropped else "")
            self._dropped_reported = self.store.dropped_pending
            if self.lock is not None:
                self.lock.update(store_error=None, store_error_since=None)
        self._store_trouble = t if t is None else Trouble(t.since, t.reason)

    def _reopen_store(self) -> None:
        from agent.store import move_aside

        try:
            self.store.close()
        except Exception:
            pass  # a damaged file may fail to close cleanly; it is moved aside either way
        now = self.clock.now()
        aside = move_aside(self.store.path, now)
        self.store = Store.open(self.store.path.parent, now=now)
        self.store._salvage(aside, now, "damaged while the agent ran")
        _log_salvage(self.store, aside)
        self.store.write(state={STATE_TRACKER: self.tracker.to_json()})
        if self.forwarder is not None:
            self.forwarder.store = self.store


def own_usage() -> tuple[float, int]:
    """(CPU seconds, resident bytes) of this process. Read from the process itself, not through
    psutil, whose procfs root points at the host being watched (a prepared tree in tests)."""
    try:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return ru.ru_utime + ru.ru_stime, pages * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, IndexError):
        import psutil  # Windows (no resource module), macOS and BSD (no /proc)

        proc = psutil.Process()
        cpu = proc.cpu_times()
        return cpu.user + cpu.system, proc.memory_info().rss


def open_store(cfg: Config, clock: Clock) -> Store:
    store = Store.open(cfg.state_dir, now=clock.now())
    if store.recovered_from:
        _log_salvage(store, store.recovered_from)
    return store


def salvage_summary(tables: dict) -> tuple[str, int, int]:
    """("kept 12 episodes, 3400 samples, ...; lost about 200 samples", kept, lost) from
    :func:`agent.salvage.salvage`'s counts; -1 (a table unreadable) shows as "all"."""
    kept = sum(t["kept"] for t in tables.values())
    lost = sum(max(t["lost"], 0) for t in tables.values())
    parts = [f"{t['kept']} {name}" for name, t in tables.items() if name in ("episodes", "samples")]
    gone = [("all " if t["lost"] < 0 else f"at most {t['lost']} ") + name
            for name, t in tables.items() if t["lost"]]
    text = "kept " + ", ".join(parts) + f" ({kept} rows in all); "
    text += ("lost " + ", ".join(gone)) if gone else "nothing lost"
    return text, kept, lost


def _log_salvage(store: Store, aside) -> None:
    text, _, _ = salvage_summary(store.salvaged or {})
    log.error("the local store was damaged: moved it to %s and started a new one; %s", aside, text)


def _keep_last(todo: list, limit: int, counters: dict, key: str) -> list:
    """The newest ``limit`` of ``todo``; the older ones are counted in ``counters[key]`` and
    logged (their rows are lost: the store refused them for longer than the limit)."""
    over = len(todo) - limit
    if over <= 0:
        return todo
    counters[key] = counters.get(key, 0) + over
    log.error("the store refused %d writes in a row: the oldest %d measurements waiting for it "
              "are dropped (%s)", len(todo), over, key)
    return todo[over:]


def episode_sample(ep: Episode, tags: dict[str, str]) -> Sample:
    """A closed episode as a forwardable sample: time = start, so start + duration_s draws it."""
    fields = {"duration_s": ep.duration_s, "sustained": ep.sustained, "episode_id": ep.id,
              "end_unix_ms": ep.end_ms(),
              "end_observed": bool(ep.details.get("end_observed", True))}
    if "failed_rounds" in ep.details:
        fields["failed_rounds"] = int(ep.details["failed_rounds"])
    for key in ("charge_start_pct", "charge_end_pct"):
        if ep.details.get(key) is not None:
            fields[key] = float(ep.details[key])
    extra = {"source": ep.details["source"]} if "source" in ep.details else {}
    return Sample("outage", {**tags, "type": ep.type, "cause": ep.cause, **extra}, fields, ep.start)


def _log_change(ch: outage.Change) -> None:
    ep = ch.episode
    if ch.kind == "opened":
        log.warning("%s episode started at %s (cause %s)", ep.type, ep.start.isoformat(), ep.cause)
    else:
        log.warning("%s episode ended: %s .. %s, %.0f s, cause %s", ep.type, ep.start.isoformat(),
                    ep.end.isoformat() if ep.end else "?", ep.duration_s, ep.cause)
