"""The agent: the jobs of :mod:`agent.jobs` wired around one context and run on
:class:`agent.schedule.Ticker`, the monotonic scheduler.

Jobs, by the name they run under:

* ``round`` every ``probe.interval_s``: one probe round; its samples, the episode changes, the
  tracker state and the heartbeat are committed in one transaction before the next round
  (:mod:`agent.jobs.rounds`).
* ``power`` every ``power.poll_s``: the AC adapter and the UPS; power episodes; a host-down
  decision that waits for time sync (:mod:`agent.jobs.powerjob`).
* ``minute`` every ``probe.netio_interval_s``: interface counters and the agent's own metrics
  (:mod:`agent.jobs.selfmetrics`).
* ``housekeeping`` hourly: retention and the size cap (:mod:`agent.jobs.housekeeping`).
* ``summaries`` every minute: the hourly summary rows, the hour in progress rewritten as it
  grows, closed hours again when a late episode changes them (:mod:`agent.jobs.summaries`).
* ``speedtest`` every 30 s: runs a speed test when the schedule says one is due
  (:mod:`agent.speedplan`) and the budget, the line and the power allow it; a skip is recorded
  (:mod:`agent.jobs.speedtests`).
* ``push`` every ``influx.push_interval_s`` when ``influx.url`` is set: forwards the store's unsent
  rows to InfluxDB, oldest first (:mod:`agent.jobs.push`, :mod:`agent.forward`); after a failure
  it waits out its backoff, and a connectivity outage ending wakes it at once.
* ``watchdog`` when started by systemd: the watchdog's ping while rounds complete.
* ``reload``: acts on SIGHUP (:meth:`Agent.reload_config`).

A failing job is logged and counted, never fatal (:class:`agent.jobs.guard.Guard`); a store found
damaged is moved aside and a new one started. SIGTERM and SIGINT stop the agent cleanly: the
running round finishes and is committed, then the clean-exit marker is written. SIGHUP reads the
config file again.

At start, before the first round overwrites the heartbeat, the power job looks at how the previous
run ended (:meth:`agent.jobs.powerjob.PowerJob.recover`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

from agent.clock import Clock, SystemClock
from agent.config import Config, reloaded
from agent.jobs.context import Context, Job, agent_id, base_tags
from agent.jobs.guard import Guard
from agent.jobs.housekeeping import HOUSEKEEPING_S, Housekeeping, Watchdog, open_store
from agent.jobs.powerjob import PowerJob
from agent.jobs.rounds import Rounds
from agent.jobs.selfmetrics import SelfMetrics
from agent.jobs.services import ServiceChecks
from agent.jobs.speedtests import CHECK_S as SPEEDTEST_CHECK_S, SpeedTests
from agent.jobs.summaries import SUMMARIES_S, Summaries
from agent.notify import Notifier
from agent.probes.contract import Network
from agent.probes.echo import EchoDispatch
from agent.probes.registry import host_sensor, network, platform_for, round_probes
from agent.round import Prober
from agent.schedule import Ticker
from agent.statekeys import STATE_CLEAN_EXIT, STATE_ISP, STATE_SITE, STATE_TRACKER
from agent.store import Store
from kit.errors import ConfigError
from kit.influxconfig import SENT_WITH_SUMMARIES
from kit.secret import redact_value

log = logging.getLogger("linewatch")

RELOAD_CHECK_S = 1.0  # how soon a SIGHUP is acted on


class Agent:
    """The jobs, built once around a :class:`agent.jobs.context.Context`: ``rounds``, ``power``,
    ``speedtests``, ``services``, ``push`` (None without ``influx.url``), ``housekeeping``, ``watchdog`` and
    ``selfmetrics``. Tests pass the clock, the probes and the store; ``linewatch run`` passes the
    lock it holds."""

    def __init__(self, cfg: Config, *, clock: Clock | None = None, probes: Network | None = None,
                 store: Store | None = None, notifier=None, lock=None) -> None:
        clock = clock or SystemClock()
        store = store or open_store(cfg, clock)
        self.id = agent_id(cfg)
        tags = base_tags(cfg, self.id, store.get_state(STATE_ISP), store.get_state(STATE_SITE))
        host = platform_for(cfg)
        self.ctx = ctx = Context(cfg, clock, store, tags, boot=host_sensor(host).measure().boot_id)
        self.network = probes or network(cfg, host)
        self.prober = Prober(cfg, round_probes(cfg, clock, self.network), clock, tags)
        testing = threading.Event()  # set while a speed test fills the line: no round then
        self.rounds = Rounds(ctx, self.prober, host, on_battery=lambda: self.power.on_battery(),
                             clock_trusted=lambda: self.power.clock_trusted(), paused=testing)
        self.power = PowerJob(ctx, host)
        self.speedtests = SpeedTests(ctx, outage_open=self.rounds.outage_open,
                                     on_battery=self.power.on_battery, running=testing)
        # Service checks count only while the line is up: no outage, no power cut, and no
        # speed test filling the line (its queues would time checks out).
        self.services = ServiceChecks(ctx, line_up=lambda: not (
            self.rounds.outage_open() or self.power.on_battery() or testing.is_set()))
        metered = bool(cfg.influx.url) and cfg.influx.send == "summaries"
        self.summaries = Summaries(ctx, metered=metered)
        ctx.listeners.append(self.summaries.heard)
        self._send_only(store)
        self.push = None
        if cfg.influx.url:
            # deferred: the forwarder (about 0.7 MB) loads only when forwarding
            from agent.jobs.push import make_push

            self.push = make_push(ctx)
        if self.push is not None:
            ctx.listeners.append(self.push.on_episode)
        self.alerts = self.remote_alerts = None
        if cfg.alerts.channels:
            # deferred: the alert rules and channels load only when channels are configured
            from agent.alerts.channels import build_all
            from agent.jobs.alerts import AlertBook, Alerts, RemoteAlerts, ups_reading

            channels = build_all(cfg.alerts.channels, cfg.source)
            for ch in channels:
                for warning in ch.warnings:
                    log.warning("alerts to %s: %s", ch.key, warning)
            book = AlertBook(ctx, channels, cfg.alerts.channels, line_down=self.rounds.outage_open,
                             ups=lambda: ups_reading(self.power.readings))
            book.load(clock.now())  # alerts are about what happens from now on
            ctx.listeners.append(book.heard)
            self.alerts, self.remote_alerts = Alerts(ctx, book), RemoteAlerts(ctx, book)
        self.housekeeping = Housekeeping(ctx, lock)
        self.watchdog = Watchdog(ctx, forwarding=self.push is not None, notifier=notifier)
        self.guard = Guard(clock, ctx.counters, repair_store=self._repair_store,
                           after=self.housekeeping.watch)
        self.selfmetrics = SelfMetrics(ctx, self.guard.stats)

    # The context's members, as the CLI and tests read them.
    cfg = property(lambda self: self.ctx.cfg)
    clock = property(lambda self: self.ctx.clock)
    store = property(lambda self: self.ctx.store)
    tags = property(lambda self: self.ctx.tags)
    counters = property(lambda self: self.ctx.counters)

    def guarded(self, fn: Callable[[], object], name: str) -> Callable[[], None]:
        """``fn`` as the scheduler runs it: timed, failures logged and counted, never raised."""
        return self.guard.wrap(fn, name)

    def _send_only(self, store: Store) -> None:
        """With ``influx.send = "summaries"``, the raw rows are written as kept here only."""
        if self.cfg.influx.url and self.cfg.influx.send == "summaries":
            n = store.forward_only(SENT_WITH_SUMMARIES)
            if n:
                log.info("influx.send is \"summaries\": %d raw rows waiting to be sent are kept "
                         "in the local store only", n)

    def _repair_store(self) -> None:
        store = self.housekeeping.repair(keep={STATE_TRACKER: self.rounds.tracker.to_json()})
        self._send_only(store)
        if self.push is not None:
            self.push.forwarder.store = store

    # -- lifecycle --------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None,
            load_config: Callable[[], Config] | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``stop`` is set). With ``load_config`` (how the config
        was read), SIGHUP reads it again: see :meth:`reload_config`."""
        stop = self.ctx.stop = stop or threading.Event()
        reload_asked = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            if load_config is not None and hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, lambda *_: reload_asked.set())
        self.power.recover()
        self.store.write(state={STATE_CLEAN_EXIT: json.dumps({"clean": False})})
        notifier = self.watchdog.notifier = self.watchdog.notifier or Notifier()
        sched = self._schedule(notifier, load_config, reload_asked)
        for warning in self.power.ups_warnings:
            log.warning("ups password: %s", warning)
        log.info("linewatch agent %s started: every %gs, targets %s, store %s", self.id,
                 self.cfg.probe.interval_s, ", ".join(self.cfg.probe.targets), self.store.path)
        self._say_echo_method()
        notifier.ready(self.watchdog.status_line())
        try:
            sched.run_until(stop)
        finally:
            self._stopped(notifier)

    def _every(self, sched: Ticker, seconds: float, job: Job, first_in_s: float = 0.0) -> None:
        sched.every(seconds, self.guarded(job.run, job.name), job.name, first_in_s=first_in_s)

    def _schedule(self, notifier: Notifier, load_config: Callable[[], Config] | None,
                  reload_asked: threading.Event) -> Ticker:
        """The jobs on the monotonic scheduler, each with its period and first delay."""
        cfg = self.cfg
        sched = Ticker(self.clock)
        self._every(sched, cfg.power.poll_s, self.power)
        guarded_round = self.guarded(self.rounds.run, self.rounds.name)
        self.watchdog.round_done()

        def round_job() -> None:
            guarded_round()
            self.watchdog.round_done()  # the watchdog pings only while rounds complete

        sched.every(cfg.probe.interval_s, round_job, self.rounds.name)
        if notifier.enabled:
            every = min(notifier.watchdog_s / 3, 30.0) if notifier.watchdog_s else 30.0
            self._every(sched, every, self.watchdog, first_in_s=every)
        self._every(sched, cfg.probe.netio_interval_s, self.selfmetrics, first_in_s=1.0)
        self._every(sched, HOUSEKEEPING_S, self.housekeeping, first_in_s=30.0)
        self._every(sched, SUMMARIES_S, self.summaries, first_in_s=5.0)
        if load_config is not None:
            def reload_job() -> None:
                if reload_asked.is_set():
                    reload_asked.clear()
                    self.reload_config(load_config)

            sched.every(RELOAD_CHECK_S, self.guarded(reload_job, "reload"), "reload",
                        first_in_s=RELOAD_CHECK_S)
        if cfg.speedtest.enabled:
            self._every(sched, SPEEDTEST_CHECK_S, self.speedtests, first_in_s=15.0)
        if cfg.services.urls or cfg.services.vpn:
            # each target when it is due (see agent.jobs.services); the first checks after a
            # minute at most: the rounds have said by then whether the line is up
            every = min(cfg.services.retry_s, cfg.services.interval_s)
            self._every(sched, every, self.services, first_in_s=min(60.0, every))
        if self.alerts is not None and self.remote_alerts is not None:
            # deferred: as in __init__
            from agent.jobs.alerts import TICK_S

            # a round's news reaches the desktop within the round after it
            tick = min(TICK_S, cfg.probe.interval_s)
            self._every(sched, tick, self.alerts, first_in_s=1.0)
            self._every(sched, tick, self.remote_alerts, first_in_s=2.0)
            log.info("alerts to %s", ", ".join(c.key for c in self.alerts.book.channels))
        if cfg.alerts.heartbeat_url:
            # deferred: the heartbeat job loads only when a heartbeat URL is set
            from agent.jobs.alerts import Heartbeat

            self._every(sched, cfg.alerts.heartbeat_every_s, Heartbeat(self.ctx), first_in_s=10.0)
        if self.push is not None:
            self._every(sched, cfg.influx.push_interval_s, self.push, first_in_s=2.0)
            log.info("forwarding to %s (%s)", redact_value(cfg.influx.url), cfg.influx.api)
            if not cfg.influx.verify_tls:
                log.warning("influx.verify_tls is false: the server's certificate is not checked")
        return sched

    def _stopped(self, notifier: Notifier) -> None:
        """After the scheduler stopped: close the probes and the sink, write the clean exit."""
        notifier.stopping()
        self.prober.close()
        self.guarded(self.summaries.run, self.summaries.name)()  # the hour as it stands
        if self.push is not None:
            self.push.forwarder.sink.close()
        self.store.write(state={STATE_CLEAN_EXIT: json.dumps(
            {"clean": True, "time": self.clock.now().isoformat(), "boot_id": self.ctx.boot})})
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
        prober_echo = getattr(self.network, "echo", None)
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
        try:
            new = load_config()
        except ConfigError as exc:
            log.error("config reload refused: %s; keeping the running config", exc)
            return
        cfg, applied, waiting = reloaded(self.cfg, new)
        with self.ctx.round_lock:  # between rounds: no round carries half old, half new tags
            tags = base_tags(cfg, self.id, self.store.get_state(STATE_ISP), self.store.get_state(STATE_SITE))
            self.ctx.cfg, self.ctx.tags, self.prober.base_tags = cfg, tags, tags
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
