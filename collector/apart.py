"""Large answers read in worker processes: the collector's own CPU, not the server's, bounds a
cold aggregation of a large fleet (bench/README.md: a week of 10,000 agents' packed daily rows is
42 MB of JSON, about 2 s to read in one thread), and a thread cannot read one beside another
(the GIL). A job is a module-level function of the answer's bytes (picklable, with its other
arguments bound by functools.partial) that returns picklable results; an answer of at least
``min_bytes`` goes to a pool of ``processes`` worker processes, a smaller one (or every one with
``processes`` 0) is read where it arrived, by the same function, so both give the same result.

The pool is started on the first large answer ("spawn": the reader's threads hold connections
that a forked child must not share) and stopped by :meth:`Apart.close`. A large answer reaches
its worker through a file of its own (mode 0600, in a directory of mode 0700 that ``close``
removes), not through the pool's pipe: the collector lets go of the bytes as soon as they are
written, instead of holding them and their pickled copy while the worker reads (at 10,000 x 90,
two answers of 42 MB in flight). Its result comes back the same way: the worker writes it to a
file of its own there (pickled, with each array's memory written apart, out of band) and the
collector reads each array's bytes straight into the memory the array keeps, instead of taking
the whole pickled result through the pipe and unpickling a copy of every array from it (at
10,000 x 90, 100 MB more held as each week's result arrived). A worker that dies
(killed for memory, say) loses nothing: its answer is read where it arrived instead, and so is
every later one; so where no process can be started at all (a sandbox that forbids it).
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from kit.errors import SourceError

APART_MB = 8.0     # answers at least this large are read in a worker process (2^20 bytes)
T = TypeVar("T")


class Apart:
    """Runs jobs on answers, large ones in worker processes (see the module's docstring)."""

    def __init__(self, processes: int, min_bytes: int = int(APART_MB * (1 << 20))) -> None:
        self.processes = processes
        self.min_bytes = min_bytes
        self.sent = 0          # answers read in a worker process
        self.fell_back = 0     # answers read here because the pool broke
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False
        self._lock = threading.Lock()
        self._dir: str | None = None     # the answers' files, made on the first large one

    def run(self, job: Callable[[bytes], T], body: bytes,
            redact: Callable[[str], str] = lambda text: text) -> T:
        """``job(body)``, in a worker process when ``body`` is large."""
        return self.begin(job, body, redact)()

    def begin(self, job: Callable[[bytes], T], body: bytes,
              redact: Callable[[str], str] = lambda text: text) -> Callable[[], T]:
        """What gives ``job(body)``: a large answer is read in a worker process now (this call
        waits for it: call it from a thread that may wait), a small one where the returned
        function is called (the thread that takes the answers in order, so the threads that
        fetch them do not contend for the interpreter). A SourceError the job raises (an
        answer that is not InfluxDB's, say) comes back with ``redact`` applied to its message,
        wherever it ran: a worker never holds the credential."""
        pool = self._pool_for(len(body))
        path = None
        if pool is not None:
            try:
                path = self._spill(body)
            except OSError:         # no room for it on disk: read here
                with self._lock:
                    self.fell_back += 1
        if pool is not None and path is not None:
            del body        # on disk alone while the worker reads it
            try:
                result = pool.submit(_from_file, job, path, os.path.dirname(path)).result()
                if isinstance(result, Kept):
                    result = result.load()
            except (BrokenProcessPool, OSError):     # a worker died, or none could start
                with self._lock:
                    self._broken = True
                    self.fell_back += 1
                with open(path, "rb") as f:
                    body = f.read()
            except SourceError as exc:
                message = redact(str(exc))
                return lambda: _raise(message)
            else:
                with self._lock:
                    self.sent += 1
                return lambda: result
            finally:
                os.unlink(path)

        def here() -> T:
            try:
                return job(body)
            except SourceError as exc:
                raise SourceError(redact(str(exc))) from None
        return here

    def _spill(self, body: bytes) -> str:
        """``body`` written to a new file (mode 0600) in the pool's private directory."""
        with self._lock:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="linewatch-answers-")    # mode 0700
        fd, path = tempfile.mkstemp(dir=self._dir)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        return path

    def _pool_for(self, size: int) -> ProcessPoolExecutor | None:
        if self.processes <= 0 or size < self.min_bytes:
            return None
        with self._lock:
            if self._broken:
                return None
            if self._pool is None:
                # deferred: only a large answer starts worker processes
                import multiprocessing

                try:
                    self._pool = ProcessPoolExecutor(
                        self.processes, mp_context=multiprocessing.get_context("spawn"))
                except (OSError, NotImplementedError, ImportError):
                    # no process to be had (a sandbox without /dev/shm's semaphores, say):
                    # every answer is read here
                    self._broken = True
                    self.fell_back += 1
                    return None
            return self._pool

    def close(self) -> None:
        """Stops the workers (a job still running is waited for)."""
        with self._lock:
            pool, self._pool = self._pool, None
            held, self._dir = self._dir, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if held is not None:
            shutil.rmtree(held, ignore_errors=True)


def _from_file(job: Callable[[bytes], T], path: str, folder: str | None = None) -> T | Kept:
    """``job`` of the bytes of the file ``path`` (run in a worker process); its result kept in a
    file of its own in ``folder`` (:class:`Kept`), or itself where that cannot be written."""
    with open(path, "rb") as f:
        body = f.read()
    result = job(body)
    del body
    if folder is None:
        return result
    try:
        return Kept.write(result, folder)
    except OSError:      # no room on disk: through the pipe, as a pickle
        return result


_COUNT = struct.Struct("<Q")


class Kept:
    """A job's result written by :meth:`write` to a file (mode 0600): the count of parts, each
    part's length, then the parts: the result pickled (protocol 5) with each contiguous
    array's memory left out of it, then those memories in order. :meth:`load` reads it back
    and removes the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def write(cls, result: Any, folder: str) -> Kept:
        held: list[pickle.PickleBuffer] = []
        head = pickle.dumps(result, protocol=5, buffer_callback=held.append)
        views = [memoryview(head)] + [b.raw() for b in held]
        fd, path = tempfile.mkstemp(dir=folder, suffix=".result")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_COUNT.pack(len(views)))
                f.write(b"".join(_COUNT.pack(v.nbytes) for v in views))
                for v in views:
                    f.write(v)
        except BaseException:
            os.unlink(path)
            raise
        return cls(path)

    def load(self) -> Any:
        """The result, each array's memory read into a buffer of its own; the file removed."""
        try:
            with open(self.path, "rb") as f:
                (n,) = _COUNT.unpack(_exactly(f, _COUNT.size))
                sizes = struct.unpack(f"<{n}Q", _exactly(f, 8 * n))
                parts = []
                for size in sizes:
                    buf = bytearray(size)
                    if f.readinto(buf) != size:
                        raise OSError(f"a worker's result file ended early: {self.path}")
                    parts.append(buf)
        finally:
            os.unlink(self.path)
        return pickle.loads(parts[0], buffers=parts[1:])


def _exactly(f: Any, size: int) -> bytes:
    got: bytes = f.read(size)
    if len(got) != size:
        raise OSError("a worker's result file ended early")
    return got


def _raise(message: str) -> Any:
    raise SourceError(message)


def describe(apart: Any) -> str:
    """A few words on what the workers read, for the line on what was read ("" when none)."""
    if apart is None or not (apart.sent or apart.fell_back):
        return ""
    broke = (f", {apart.fell_back} read here when no worker could read them" if apart.fell_back
             else "")
    return f", {apart.sent} answers read in {apart.processes} worker processes{broke}"
