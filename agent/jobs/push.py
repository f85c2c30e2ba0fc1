"""The push job: every ``influx.push_interval_s`` (when ``influx.url`` is set) the store's
unsent rows go to InfluxDB, oldest first, through :class:`agent.forward.Forwarder`. After a
failure it waits out its backoff; a connectivity outage ending wakes it at once (:meth:`Push.wake`).

``linewatch push`` forwards the backlog now through :func:`push_now`; the push lock
(:class:`agent.forward.PushLock`) keeps it and the running agent's job from sending the same rows
at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from agent import outage
from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.forward import Forwarder, PushLock, Report, State, describe, make_forwarder
from agent.jobs.context import Context, Job
from agent.status import iso
from agent.store import Store


class Push(Job):
    """Forwards the backlog when the backoff allows; skipped while ``linewatch push`` runs."""

    name = "push"

    def __init__(self, ctx: Context, forwarder: Forwarder) -> None:
        super().__init__(ctx)
        self.forwarder = forwarder
        self.lock = PushLock(ctx.cfg.state_dir)

    def run(self) -> None:
        fw = self.forwarder
        if not fw.due():
            return
        if not self.lock.acquire(wait=False):
            return
        try:
            rep = fw.push(stop=self.ctx.stop)
        finally:
            self.lock.release()
        self.counters.add("pushed_rows", rep.sent)
        if rep.outcome in ("retry", "halt"):
            self.counters.add("push_errors", 1)

    def on_episode(self, change: outage.Change) -> None:
        """The episode hook's listener: a connectivity outage that closes means the line is
        back, so the backlog can go at once."""
        if change.kind == "closed" and change.episode.type == "connectivity":
            self.wake()

    def wake(self) -> None:
        """The line is back: try now instead of at the end of the backoff."""
        self.forwarder.wake()


def make_push(ctx: Context) -> Push | None:
    """The push job for the context's config; None when ``influx.url`` is not set. A token that
    cannot be read is a ConfigError."""
    if not ctx.cfg.influx.url:
        return None
    return Push(ctx, make_forwarder(ctx.cfg, ctx.store, ctx.clock))


@dataclass
class Pushed:
    """What one ``linewatch push`` did."""

    report: Report
    requeued: int
    seconds: float
    backlog_rows: int
    oldest_unsent: datetime | None
    state: State

    def answer(self) -> str:
        """The server's last answer in words ("no answer", "HTTP 503: ...")."""
        return describe(self.report.answer) if self.report.answer is not None else "no answer"

    def to_json(self) -> dict:
        """The ``--json`` output (its field names are a contract)."""
        rep = self.report
        return {"outcome": rep.outcome, "sent": rep.sent, "quarantined": rep.quarantined,
                "requeued": self.requeued, "requests": rep.requests, "seconds": round(self.seconds, 3),
                "rows_per_s": round(rep.sent / self.seconds) if self.seconds > 0 and rep.sent else None,
                "backlog_rows": self.backlog_rows,
                "oldest_unsent": iso(self.oldest_unsent) if self.oldest_unsent else None,
                "server": self.state.server or None,
                "error": None if rep.outcome in ("done", "empty") or rep.answer is None else {
                    "status": rep.answer.status, "message": rep.answer.message},
                "stopped_reason": self.state.halted}


Bar = Callable[[int], AbstractContextManager]


def push_now(cfg: Config, *, requeue: bool = False, waiting: Callable[[], None] = lambda: None,
             bar: Bar | None = None, clock: Clock | None = None) -> Pushed:
    """Forward the whole backlog now, beside the agent (``linewatch push``).

    The store is opened as a second writer (only ``run`` repairs a damaged one; a StoreError
    says what is wrong). When the agent's push job holds the push lock, ``waiting()`` is called
    and the batch in flight is waited for. ``requeue`` sends the quarantined rows again.
    ``bar(rows)``, when given, is a context manager around the push whose value's ``update(n)``
    follows the rows sent (a progress bar). A token that cannot be read is a ConfigError."""
    store = Store.open(cfg.state_dir, repair=False)  # only `run` repairs a damaged store
    lock = PushLock(cfg.state_dir)
    try:
        if not lock.acquire(wait=False):
            waiting()
            lock.acquire(wait=True)
        requeued = store.requeue_quarantined() if requeue else 0
        clock = clock or SystemClock()
        fw = make_forwarder(cfg, store, clock)
        rows, _ = store.backlog()
        t0 = time.monotonic()
        if bar is None:
            rep = fw.push()
        else:
            with bar(rows) as shown:
                rep = fw.push(progress=shown.update)
        secs = time.monotonic() - t0
        fw.sink.close()
        left, oldest = store.backlog()
        if oldest is not None:
            oldest = min(oldest, clock.now())  # the summary of the hour in progress: since now
        return Pushed(rep, requeued, secs, left, oldest, fw.state)
    finally:
        lock.release()
        store.close()
