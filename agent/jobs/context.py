"""What the agent's jobs share, and the small pieces two or more of them use.

:class:`Context` is made once by the wiring (:mod:`agent.runner`) and handed to every job: the
config and the tags on every row (both replaced when SIGHUP reloads the config), the clock, the
store (replaced when a damaged one is moved aside), the counters the self-metrics report, the
stop event, and the samples of other jobs waiting for the next round's write. A job reads them
through the context, so a replaced store or config reaches every job at once.

:class:`Job` is the contract: a ``name`` (the scheduler's, in logs and in the
``job_<name>_*`` self-metric fields) and ``run()``, one scheduled run.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent import outage, power
from agent.clock import Clock
from agent.config import Config
from agent.model import Episode, Sample
from agent.statekeys import STATE_POWER, STATE_TRACKER
from agent.store import MAX_PENDING_SAMPLES, Store
from kit.definitions import PLACE_TAGS

log = logging.getLogger("linewatch")

# Rounds (and power polls) whose store write raised, kept to be stepped again with the next one:
# an hour at the default cadence. Beyond it the oldest go, counted (dropped_unwritten_*).
MAX_UNWRITTEN = 360
# The counters of the ``agent`` self-metric sample, in the order its fields are written.
COUNTERS = ("rounds", "round_failures", "probe_errors", "job_failures", "sensor_errors",
            "pushed_rows", "push_errors", "rounds_paused", "dropped_unwritten_rounds",
            "dropped_unwritten_polls", "dropped_unwritten_samples")


class Tally(dict[str, int]):
    """The agent's counters, read as a dict. Job threads add to them through :meth:`add`,
    under one lock: ``counters[key] += n`` from two threads at once can lose an addition."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self[key] = self.get(key, 0) + n

    def copy(self) -> Tally:
        """A copy that is a Tally too, with a lock of its own."""
        with self._lock:
            return Tally(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (and copy.copy'd) as its counts: a lock cannot be pickled
        return (Tally, (dict(self),))


@dataclass
class Context:
    """The state every job reads; owned by the wiring, which alone replaces its members."""

    cfg: Config
    clock: Clock
    store: Store
    tags: dict[str, str]  # on every row; mutated in place when the site or the ISP is learnt
    boot: str | None = None
    counters: Tally = field(default_factory=lambda: Tally(dict.fromkeys(COUNTERS, 0)))
    stop: threading.Event = field(default_factory=threading.Event)
    # Held by a round and by a config reload: no round carries half old, half new tags.
    round_lock: threading.Lock = field(default_factory=threading.Lock)
    # Samples of other jobs (speed tests, self-metrics) whose write raised: they go with the
    # next round's write.
    carried: list[Sample] = field(default_factory=list)
    # The episode hook: every episode change, once it is in the store, goes to each of these
    # (the push job's wake-up today; notification channels later). See :meth:`announce`.
    listeners: list[Callable[[outage.Change], None]] = field(default_factory=list)

    def announce(self, changes: Iterable[outage.Change]) -> None:
        """Tell the log and every listener of episode changes that are durable (called by a
        job after the store write that recorded them, never before). A listener runs on the
        job's thread, so it must return quickly; one that raises is logged and counted in
        ``job_failures``, and the others still hear of the change."""
        for change in changes:
            log_change(change)
            for listener in self.listeners:
                try:
                    listener(change)
                except Exception:
                    self.counters.add("job_failures", 1)
                    log.exception("an episode listener failed on %s %s", change.kind, change.episode.type)

    def write_samples(self, samples: list[Sample], state: dict[str, str] | None = None,
                      episodes: Iterable[Episode] = (), carry: list[Sample] | None = None) -> None:
        """Write samples of a job other than the round (with ``episodes``, when it has any);
        when the write raises, keep the samples (or only ``carry``: what is measured, not what a
        state change that will be made again wrote) for the next round's write (bounded: the
        oldest beyond it are counted in ``dropped_unwritten_samples``) and let the job fail as
        usual."""
        try:
            self.store.write(samples, episodes=episodes, state=state)
        except BaseException:
            kept = self.carried + list(samples if carry is None else carry)
            over = len(kept) - MAX_PENDING_SAMPLES
            if over > 0:
                self.counters.add("dropped_unwritten_samples", over)
                del kept[:over]
            self.carried = kept
            raise


class Job:
    """One of the agent's jobs: ``run()`` is one scheduled run; a failure raises (the wiring's
    guard logs and counts it, and the agent goes on). The context's members are at hand as
    ``self.cfg``, ``self.clock``, ``self.store``, ``self.tags`` and ``self.counters``."""

    name = ""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def run(self) -> object:
        raise NotImplementedError

    @property
    def cfg(self) -> Config:
        return self.ctx.cfg

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def tags(self) -> dict[str, str]:
        return self.ctx.tags

    @property
    def counters(self) -> Tally:
        return self.ctx.counters


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
    for key in PLACE_TAGS:
        value = getattr(cfg.agent, key)
        if key == "isp" and value == "auto":
            value = isp_auto or ""
        if value:
            tags[key] = value
    return tags


def outage_params(cfg: Config) -> outage.Params:
    """The connectivity tracker's parameters from the config."""
    return outage.Params(
        open_after=cfg.outage.open_after, close_after=cfg.outage.close_after,
        momentary_max_s=cfg.outage.momentary_max_s,
        max_gap_s=max(60.0, 6 * cfg.probe.interval_s),
    )


def saved_tracker(store: Store) -> outage.Tracker:
    """The connectivity tracker as the store last holds it (a fresh one the first time)."""
    saved = store.get_state(STATE_TRACKER)
    return outage.Tracker.from_json(saved) if saved else outage.Tracker()


def saved_power_tracker(store: Store) -> power.PowerTracker:
    """The power tracker as the store last holds it (a fresh one the first time)."""
    saved = store.get_state(STATE_POWER)
    return power.PowerTracker.from_json(saved) if saved else power.PowerTracker()


def connectivity_open(tracker: outage.Tracker, params: outage.Params) -> bool:
    """Whether a connectivity outage is in progress in ``tracker``."""
    return any(e.type == "connectivity" for e in outage.in_progress(tracker, params))


def episode_sample(ep: Episode, tags: dict[str, str]) -> Sample:
    """A closed episode as a forwardable sample: time = start, so start + duration_s draws it."""
    fields = {"duration_s": ep.duration_s, "sustained": ep.sustained, "episode_id": ep.id,
              "end_unix_ms": ep.end_ms(),
              "end_observed": bool(ep.details.get("end_observed", True))}
    for key in ("failed_rounds", "failed_checks"):
        if key in ep.details:
            fields[key] = int(ep.details[key])
    if "how" in ep.details:
        fields["how"] = str(ep.details["how"])
    for key in ("charge_start_pct", "charge_end_pct"):
        if ep.details.get(key) is not None:
            fields[key] = float(ep.details[key])
    extra = {k: str(ep.details[k]) for k in ("source", "target", "kind") if k in ep.details}
    return Sample("outage", {**tags, "type": ep.type, "cause": ep.cause, **extra}, fields, ep.start)


def keep_last(todo: list, limit: int, counters: Tally, key: str) -> list:
    """The newest ``limit`` of ``todo``; the older ones are counted in ``counters[key]`` and
    logged (their rows are lost: the store refused them for longer than the limit)."""
    over = len(todo) - limit
    if over <= 0:
        return todo
    counters.add(key, over)
    log.error("the store refused %d writes in a row: the oldest %d measurements waiting for it "
              "are dropped (%s)", len(todo), over, key)
    return todo[over:]


def log_change(ch: outage.Change) -> None:
    ep = ch.episode
    if ch.kind == "opened":
        log.warning("%s episode started at %s (cause %s)", ep.type, ep.start.isoformat(), ep.cause)
    else:
        log.warning("%s episode ended: %s .. %s, %.0f s, cause %s", ep.type, ep.start.isoformat(),
                    ep.end.isoformat() if ep.end else "?", ep.duration_s, ep.cause)

