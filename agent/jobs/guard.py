"""How the scheduler runs a job: timed, its failure logged and counted, never fatal.

Like node_exporter's per-collector duration and success, every job's last run time and its
failures are kept (:class:`JobStats`) and reported by the self-metrics as
``job_<name>_duration_s`` and ``job_<name>_failures``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.clock import Clock
from kit.errors import StoreCorrupt, StoreError

if TYPE_CHECKING:
    from agent.jobs.context import Tally

log = logging.getLogger("linewatch")


@dataclass
class JobStats:
    duration_s: float | None = None  # the last run's, monotonic; None before the first run
    failures: int = 0                # runs that raised, since the agent started


class Guard:
    """Wraps jobs for the scheduler. ``counters`` are the agent's (``job_failures``,
    ``round_failures``); ``repair_store()`` is called when a job found the store damaged;
    ``after()`` runs after every job (the store watch)."""

    def __init__(self, clock: Clock, counters: Tally, *, repair_store: Callable[[], None],
                 after: Callable[[], None]) -> None:
        self.clock = clock
        self.counters = counters
        self.repair_store = repair_store
        self.after = after
        self.stats: dict[str, JobStats] = {}
        self._errors: dict[str, str] = {}  # the last error of each failing job, said once

    def wrap(self, fn: Callable[[], object], name: str) -> Callable[[], None]:
        """``fn`` as the scheduler runs it under ``name``."""
        stats = self.stats.setdefault(name, JobStats())

        def job() -> None:
            try:
                self._timed(fn, stats)
            except StoreCorrupt as exc:
                log.error("%s; moving it aside and starting a new store", exc)
                self.repair_store()
                self.counters.add("job_failures", 1)
                stats.failures += 1
            except (StoreError, OSError) as exc:  # one line: a traceback says nothing more here
                self._failed(name, stats)
                # Said once while it fails the same way (a full disk fails every push).
                if self._errors.get(name) != str(exc):
                    log.warning("%s job failed: %s", name, exc)
                self._errors[name] = str(exc)
                log.debug("%s job failed", name, exc_info=True)
            except Exception as exc:  # one failing job never stops the agent
                self._failed(name, stats)
                log.exception("%s job failed: %s", name, exc)
            else:
                if self._errors.pop(name, None) is not None:
                    log.info("%s job works again", name)
            self.after()
        return job

    def _timed(self, fn: Callable[[], object], stats: JobStats) -> None:
        t0 = self.clock.monotonic()
        try:
            fn()
        finally:
            stats.duration_s = max(0.0, self.clock.monotonic() - t0)

    def _failed(self, name: str, stats: JobStats) -> None:
        self.counters.add("job_failures", 1)
        stats.failures += 1
        if name == "round":
            self.counters.add("round_failures", 1)
