"""One agent per store: ``linewatch run`` holds an exclusive lock on ``<state_dir>/agent.lock``.

The lock is an advisory ``flock`` taken for the whole life of the process: the kernel drops it
when the process ends, however it ends (kill -9 included), so a stale lock cannot exist. The file
holds a small JSON record, ``{"pid": ..., "started": ..., "store_error": ..., "since": ...}``,
rewritten in place at a fixed length: the agent's live word about itself that still works when
the store's file system is full (a rewrite inside blocks the file already has needs no space).

Readers (``status``, ``check``) ask :func:`holder` who holds it; they never create the file. A
reader's probe takes a shared lock for microseconds, so :meth:`AgentLock.acquire` tries a few
times before it concludes that another agent runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_NAME = "agent.lock"
RECORD_BYTES = 1024  # the record is padded to this length so rewrites never grow the file


class AgentRunning(Exception):
    """Another agent holds the state dir's lock; ``pid`` is its process id (None if unknown)."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        self.state_dir, self.pid = state_dir, pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"another linewatch agent ({who}) is already running on {state_dir}; "
                         "stop it first, or give this one its own agent.state_dir")


@dataclass(frozen=True)
class Holder:
    """What a reader learns from the lock: whether an agent runs, and its record."""

    running: bool | None  # None: the lock file cannot be read (another user's agent)
    pid: int | None = None
    record: dict | None = None


def _fcntl():
    try:
        import fcntl  # deferred: not on Windows
    except ImportError:  # pragma: no cover - Windows: no advisory locks; run is not guarded
        return None
    return fcntl


class AgentLock:
    """The running agent's lock. ``acquire`` raises :class:`AgentRunning` when it is taken."""

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._fd: int | None = None
        self._record: dict = {}

    def acquire(self, *, attempts: int = 20, pause_s: float = 0.05) -> AgentLock:
        fcntl = _fcntl()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        if fcntl is not None:
            for i in range(attempts):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if i == attempts - 1:
                        pid = (_read_record(fd) or {}).get("pid")
                        os.close(fd)
                        raise AgentRunning(self.state_dir, pid if isinstance(pid, int) else None) from None
                    time.sleep(pause_s)  # a reader's shared probe lasts microseconds
        self._fd = fd
        self.update(pid=os.getpid(), started=_now_iso())
        return self

    def update(self, **fields) -> None:
        """Rewrite the record in place (``None`` removes a field). Never raises: this is the
        agent's last way to say something when the disk is full."""
        if self._fd is None:
            return
        for k, v in fields.items():
            if v is None:
                self._record.pop(k, None)
            else:
                self._record[k] = v
        data = json.dumps(self._record, ensure_ascii=False).encode()[: RECORD_BYTES - 1]
        try:
            os.pwrite(self._fd, data.ljust(RECORD_BYTES - 1) + b"\n", 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def holder(state_dir: str | os.PathLike) -> Holder:
    """Who holds the lock of ``state_dir``, read without creating or changing anything."""
    fcntl = _fcntl()
    path = Path(state_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return Holder(False)  # no agent has ever run on this state dir
    except OSError:
        return Holder(None)
    try:
        record = _read_record(fd)
        if fcntl is None:  # pragma: no cover - Windows
            return Holder(False, None, record)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = (record or {}).get("pid")
            return Holder(True, pid if isinstance(pid, int) else None, record)
        return Holder(False, None, record)
    finally:
        os.close(fd)  # drops the shared probe lock, if taken


def _read_record(fd: int) -> dict | None:
    try:
        raw = os.pread(fd, RECORD_BYTES, 0)
        rec = json.loads(raw.decode("utf-8", "replace").strip() or "null")
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
