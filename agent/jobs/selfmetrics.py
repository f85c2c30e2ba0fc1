"""The self-metrics job (``minute``, every ``probe.netio_interval_s``): the interface counters
(``netio``) and the agent's own health (``agent``: memory, CPU, the store, the backlog, the
counters, and each job's last duration and failures). It also watches the wall clock against
the monotonic one and counts its steps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from agent.jobs.context import Context, Job
from agent.jobs.guard import JobStats
from agent.model import Sample
from agent.probes.netio import NetIO
from agent.schedule import detect_step
from agent.statekeys import STATE_DROPPED_HOST_DOWN

log = logging.getLogger("linewatch")

CLOCK_STEP_S = 2.0  # a wall-clock jump larger than this, against the monotonic clock, is a step


class SelfMetrics(Job):
    """``stats`` are the jobs' run statistics (:attr:`agent.jobs.guard.Guard.stats`)."""

    name = "minute"

    def __init__(self, ctx: Context, stats: Mapping[str, JobStats]) -> None:
        super().__init__(ctx)
        self.stats = stats
        self.started_mono = ctx.clock.monotonic()
        self._netio = None
        self._clock_offset: float | None = None
        self.clock_steps = 0

    def run(self) -> None:
        """Interface counters and the agent's own health."""
        self._clock_offset, step = detect_step(self._clock_offset, self.clock.now().timestamp(),
                                               self.clock.monotonic(), threshold_s=CLOCK_STEP_S)
        if step is not None:
            self.clock_steps += 1
            log.warning("the wall clock stepped by %+.1f s (durations are unaffected: they use the "
                        "monotonic clock)", step)
        samples = []
        try:
            samples += self._netio_sampler().measure()
        except Exception as exc:  # noqa: BLE001 - psutil or procfs trouble must not stop self-metrics
            log.warning("interface counters failed: %s", exc)
        samples.append(self.sample())
        self.ctx.write_samples([s.with_tags(self.tags) for s in samples])

    def _netio_sampler(self):
        if self._netio is None:
            self._netio = NetIO(self.clock)
        return self._netio

    def sample(self) -> Sample:
        """The ``agent`` sample (untagged: the caller adds the agent's tags)."""
        cpu_s, rss = own_usage()
        store = self.store
        rows, _oldest = store.backlog()
        fields = {
            "uptime_s": round(self.clock.monotonic() - self.started_mono, 3),
            "rss_bytes": rss,
            "cpu_s": round(cpu_s, 3),
            "store_bytes": store.file_bytes(),
            "backlog_rows": rows,
            "dropped_unsent": int(store.get_state("dropped_unsent") or 0),
            "dropped_host_down": int(store.get_state(STATE_DROPPED_HOST_DOWN) or 0),
            "quarantined_rows": store.quarantined(0)[0],
            "store_pending_rows": store.trouble.pending_samples if store.trouble else 0,
            "dropped_store_full": store.dropped_pending,
            "clock_steps": self.clock_steps,
            **self.counters,
        }
        for name, st in list(self.stats.items()):
            if st.duration_s is not None:  # from the job's first run on
                fields[f"job_{name}_duration_s"] = round(st.duration_s, 4)
                fields[f"job_{name}_failures"] = st.failures
        return Sample("agent", {}, fields, self.clock.now())


def own_usage() -> tuple[float, int]:
    """(CPU seconds, resident bytes) of this process. Read from the process itself, not through
    psutil, whose procfs root points at the host being watched (a prepared tree in tests)."""
    try:
        import resource  # deferred: not on Windows

        ru = resource.getrusage(resource.RUSAGE_SELF)
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return ru.ru_utime + ru.ru_stime, pages * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, IndexError):
        import psutil  # deferred: Windows (no resource module), macOS and BSD (no /proc)

        proc = psutil.Process()
        cpu = proc.cpu_times()
        return cpu.user + cpu.system, proc.memory_info().rss
