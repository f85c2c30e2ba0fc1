"""Keeping the store and the service healthy.

* :class:`Housekeeping` (hourly): retention and the size cap (:meth:`agent.store.Store.prune`).
  It also repairs a store found damaged while the agent runs (:meth:`Housekeeping.repair`: moved
  aside, a new one started with every row the old one still gives up) and, after every job,
  watches whether the store takes writes (:meth:`Housekeeping.watch`: said once when it stops,
  once when it works again, and kept in the lock file's record for ``status``).
* :class:`Watchdog`: the systemd watchdog's ping, sent only while probe rounds keep completing.
"""

from __future__ import annotations

import logging
import threading

from agent.clock import Clock
from agent.config import Config
from agent.jobs.context import Context, Job
from agent.salvage import salvage_summary
from agent.store import MAX_PENDING_SAMPLES, Store, Trouble, move_aside

log = logging.getLogger("linewatch")

HOUSEKEEPING_S = 3600.0


def open_store(cfg: Config, clock: Clock) -> Store:
    """The agent's store, opened read-write; a damaged one is moved aside and salvaged (logged)."""
    store = Store.open(cfg.state_dir, now=clock.now())
    if store.recovered_from:
        _log_salvage(store, store.recovered_from)
    return store


def _log_salvage(store: Store, aside) -> None:
    text, _, _ = salvage_summary(store.salvaged or {})
    log.error("the local store was damaged: moved it to %s and started a new one; %s", aside, text)


class Housekeeping(Job):
    """Retention and size cap; the repair of a damaged store; the watch on its writes.
    ``lock`` is the :class:`agent.lock.AgentLock` held by ``linewatch run`` (None in tests)."""

    name = "housekeeping"

    def __init__(self, ctx: Context, lock=None) -> None:
        super().__init__(ctx)
        self.lock = lock
        self._store_trouble: Trouble | None = None
        self._dropped_reported = 0
        # watch() runs after every job, on the job's thread: two jobs ending together must not
        # both say that the store stopped taking writes.
        self._watching = threading.Lock()

    def run(self) -> None:
        res = self.store.prune(self.clock.now(), self.cfg.store.retention_days * 86400,
                               int(self.cfg.store.max_size_mb * 1024 * 1024))
        if any(res.values()):
            log.info("store housekeeping: %s", res)

    def repair(self, keep: dict[str, str]) -> Store:
        """Move the damaged store aside and start a new one in the context, with every row the
        old one still gives up and the ``keep`` state (what the jobs hold in memory) written
        again. Returns the new store."""
        old = self.store
        try:
            old.close()
        except Exception:  # noqa: BLE001 - a damaged file may fail to close in any way
            pass  # a damaged file may fail to close cleanly; it is moved aside either way
        now = self.clock.now()
        aside = move_aside(old.path, now)
        store = self.ctx.store = Store.open(old.path.parent, now=now)
        store._salvage(aside, now, "damaged while the agent ran")
        _log_salvage(store, aside)
        store.write(state=keep)
        return store

    def watch(self) -> None:
        """Say once when the store stops taking writes and once when it takes them again; keep
        the lock file's record (readable by ``status`` while the disk is full) in step."""
        with self._watching:
            self._watch()

    def _watch(self) -> None:
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


class Watchdog(Job):
    """The systemd watchdog's ping, sent only while probe rounds keep completing: a round thread
    that hangs (a stuck socket, a deadlock) stops the pings and systemd restarts the agent.
    Without WatchdogSec it only refreshes the STATUS line. ``notifier`` is an
    :class:`agent.notify.Notifier` (made from the environment when the agent starts)."""

    name = "watchdog"

    def __init__(self, ctx: Context, *, forwarding: bool, notifier=None) -> None:
        super().__init__(ctx)
        self.forwarding = forwarding
        self.notifier = notifier
        self.last_round_end = ctx.clock.monotonic()

    def round_done(self) -> None:
        self.last_round_end = self.clock.monotonic()

    def run(self) -> None:
        n = self.notifier
        if n is None:
            return
        quiet = self.clock.monotonic() - self.last_round_end
        limit = max(3 * self.cfg.probe.interval_s + self.cfg.probe.timeout_s * self.cfg.probe.count,
                    (n.watchdog_s or 0) / 2)
        if n.watchdog_s and quiet <= limit:
            n.watchdog(self.status_line())
        elif n.watchdog_s:
            log.warning("no probe round completed for %.0f s: not pinging the systemd watchdog", quiet)
            n.status(f"no probe round for {quiet:.0f} s")
        else:
            n.status(self.status_line())

    def status_line(self) -> str:
        c = self.counters
        text = f"{c['rounds']} rounds, {c['round_failures']} failed"
        if self.forwarding:
            text += f", {c.get('pushed_rows', 0)} rows forwarded"
        return text
