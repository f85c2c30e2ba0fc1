"""Store and forward: the local store is the outbox, and this module empties it into InfluxDB.

Every row goes out oldest first, in batches of ``influx.batch_size`` lines, and is marked sent only
after the server acknowledged it (2xx). What the server answers decides what happens next
(:func:`classify`, pure):

=============================  ===============================================================
answer                         what the forwarder does
=============================  ===============================================================
2xx                            mark the batch sent, go on with the next one
no answer, timeout, 408, 429,  keep the rows; wait :func:`retry_delay` (exponential with jitter,
5xx                            or the server's Retry-After) before the next try
400, 422                       a bad row: find it (the line quoted in the message, else halving
                               the batch) and quarantine just that row with the server's
                               message; the rest goes out
413                            halve the batch (and keep the smaller size); a single row too
                               large is quarantined
401, 403, 404, other 4xx       the server refuses us (token, permission, bucket, URL): stop and
                               say why in ``status`` and ``check``; try again every
                               :data:`HALT_RETRY_S` only, so a wrong token causes no retry storm
=============================  ===============================================================

Re-sending is harmless: a row's series key and timestamp are fixed in the store, so a row sent
twice (a crash after the server's answer but before the row was marked) overwrites itself.
Memory stays bounded by one batch whatever the backlog.

:class:`Forwarder` holds the loop; the clock, the store, the sink and the random source are
injected, so tests drive it without waiting.

Longer than the house's 400 lines: batches, answers, backoff, quarantine and the push lock are one
state machine over the store's outbox.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol

from agent.statekeys import STATE_FORWARD
from kit import influx
from kit.influx import Answer
from kit.influxconfig import SENT_WITH_SUMMARIES
from kit.lineproto import Encoder, field_set_or_none

log = logging.getLogger("linewatch.forward")

OK, RETRY, BAD_DATA, TOO_LARGE, HALT = "ok", "retry", "bad_data", "too_large", "halt"
BASE_DELAY_S = 1.0
MAX_DELAY_S = 300.0
MAX_RETRY_AFTER_S = 3600.0
HALT_RETRY_S = 1800.0
READ_CHUNK = 1000  # rows read and encoded at a time while a batch is assembled
MAX_REFUSED_ALONE = 16  # single rows refused in a row, none accepted: the server refuses all
MAX_LISTED_BYTES = 1 << 20  # an answer listing refused lines is read up to this size
STATE_KEY = STATE_FORWARD


def classify(status: int | None) -> str:
    """What to do after an answer with this HTTP status (None: no answer at all)."""
    if status is None or status == 408 or status == 429 or status >= 500:
        return RETRY
    if 200 <= status < 300:
        return OK
    if status in (400, 422):
        return BAD_DATA
    if status == 413:
        return TOO_LARGE
    return HALT  # 401, 403, 404 and other refusals: retrying soon would not help


def retry_delay(attempt: int, retry_after: float | None = None,
                rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before try number ``attempt + 1`` after ``attempt`` failures (>= 1).

    The server's Retry-After wins when it gave one (capped at an hour). Otherwise 1 s, 2 s, 4 s,
    ... capped at 5 minutes, each drawn uniformly from its upper half ("equal jitter") so that
    many agents coming back after the same outage do not all knock at once.
    """
    if retry_after is not None:
        return min(max(0.0, retry_after), MAX_RETRY_AFTER_S)
    ceiling = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** min(max(1, attempt) - 1, 30))
    return ceiling / 2 + rand() * ceiling / 2


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from ``now``: delta-seconds or an HTTP date; None if absent or
    unreadable (then the ordinary backoff applies)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_DROPPED = re.compile(r"dropped=(\d+)")
_QUOTED = re.compile(r"unable to parse '(.*?)': ", re.S)


def culprits(message: str, lines: list[str], body: bytes = b"") -> list[int] | None:
    """Which lines of a refused batch the server's answer points at: the indexes of the lines
    it quotes (``unable to parse '<line>': ...``: InfluxDB 1.x and 2.x), of those an InfluxDB 3
    partial write lists in its body (``{"error": "partial write of line protocol occurred",
    "data": [{"line_number": N, "original_line": ...}]}``, N counted from 1), all of them when it
    says it dropped as many points as the batch holds (``dropped=N``), or None when it does not
    say."""
    m = _DROPPED.search(message)
    if m and int(m.group(1)) == len(lines):
        return list(range(len(lines)))
    quoted = {q for q in _QUOTED.findall(message)}
    if quoted:
        idx = [i for i, ln in enumerate(lines) if ln in quoted]
        if idx:
            return idx
    return _listed(body, lines)


def _listed(body: bytes, lines: list[str]) -> list[int] | None:
    """The lines an InfluxDB 3 partial-write answer lists, by number when the number names a
    line of the batch whose text it quotes too (or quotes nothing), else by the quoted text."""
    if not body or len(body) > MAX_LISTED_BYTES:
        return None
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(data, list):
        return None
    found: set[int] = set()
    for item in data:
        if not isinstance(item, dict):
            continue
        n, text = item.get("line_number"), item.get("original_line")
        if type(n) is int and 1 <= n <= len(lines) and (not isinstance(text, str)
                                                         or lines[n - 1] == text):
            found.add(n - 1)
        elif isinstance(text, str):
            found.update(i for i, ln in enumerate(lines) if ln == text)
    return sorted(found) or None


class _Background(threading.Thread):
    """``fn(arg)`` in a thread; :meth:`result` waits for it (and re-raises its exception)."""

    def __init__(self, fn, arg) -> None:
        super().__init__(name="linewatch-send", daemon=True)
        self._fn, self._arg = fn, arg
        self._out = self._exc = None
        self.start()

    def run(self) -> None:
        try:
            self._out = self._fn(self._arg)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._exc = exc
        finally:
            self._arg = None

    def result(self):
        self.join()
        if self._exc is not None:
            raise self._exc
        return self._out


class Sink(Protocol):
    def send(self, body: bytes) -> Answer: ...

    def close(self) -> None: ...


@dataclass
class Report:
    """What one :meth:`Forwarder.push` did."""

    sent: int = 0
    quarantined: int = 0
    requests: int = 0
    outcome: str = "empty"     # empty | done | retry | halt | limit | stopped
    answer: Answer | None = None


@dataclass
class State:
    """Kept in the store (``state`` table, key ``forward``) for ``status`` and across restarts."""

    attempt: int = 0
    next_try: float | None = None          # monotonic
    next_try_time: str | None = None       # the same as UTC ISO time, for status
    halted: str | None = None
    last_success: str | None = None
    last_error: dict | None = None
    sent_total: int = 0
    quarantined_total: int = 0
    batch_limit: int | None = None
    server: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> State:
        try:
            data = json.loads(text or "{}")
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            st = cls(**known)
        except (ValueError, TypeError):
            return cls()
        st.next_try = None  # monotonic times do not survive a restart
        return st


class Forwarder:
    """Empties the store's outbox into a :class:`Sink`."""

    def __init__(self, store, sink: Sink, clock, *, batch_size: int = 2000,
                 rand: Callable[[], float] = random.random, persist: bool = True) -> None:
        self.store = store
        self.sink = sink
        self.clock = clock
        self.batch_size = batch_size
        self.rand = rand
        self.persist = persist
        self.encoder = Encoder()
        self.state = State.from_json(store.get_state(STATE_KEY))
        if self.state.halted:
            # A refusal from the previous run: ask again soon after a restart (the user may have
            # fixed the token), then rarely.
            self.state.next_try = None

    # -- scheduling -------------------------------------------------------------------------
    def due(self) -> bool:
        nt = self.state.next_try
        return nt is None or self.clock.monotonic() >= nt

    def wake(self) -> None:
        """The line is back: try again now instead of at the end of the backoff. A refusal
        (token, bucket) is not woken: the network coming back does not fix it."""
        if not self.state.halted:
            self.state.next_try = None

    # -- the loop ---------------------------------------------------------------------------
    def push(self, max_batches: int | None = None,
             progress: Callable[[int], None] | None = None, stop=None) -> Report:
        """Send batches until the outbox is empty, an error stops us, ``max_batches`` were sent
        or ``stop`` (a threading.Event: the agent is shutting down) is set.

        While a full batch is on its way, the rows of the batch before it (acknowledged) are
        marked sent and the next batch is read; the next one is sent only after this one's
        answer was OK, so one request at most is in flight and the order holds. Rows are
        marked after their answer came, before the push returns (a crash in between sends them
        again, which only overwrites the same points)."""
        rep = Report()
        batches = 0
        ahead = None
        acked: list[int] | None = None   # acknowledged, not yet marked sent
        try:
            while True:
                if stop is not None and stop.is_set():
                    rep.outcome = "stopped"
                    break
                if max_batches is not None and batches >= max_batches:
                    rep.outcome = "limit"
                    break
                if ahead is None:
                    self._mark(acked)  # read from the start: nothing acknowledged read again
                    acked = None
                    batch = self._prepare(None, rep)
                else:
                    batch, ahead = ahead, None
                if batch is None:
                    rep.outcome = "done" if rep.requests or rep.quarantined else "empty"
                    break
                ids, pieces, last, n_rows = batch
                batches += 1
                before = rep.sent + rep.quarantined
                if ids:
                    # One body, no list of lines beside it: a batch is in memory once.
                    body = "".join(pieces).encode("utf-8")
                    del pieces[:]
                    if n_rows < self._limit():
                        self._mark(acked)
                        acked = None
                        ans = self.sink.send(body)  # the last batch: nothing to read ahead
                    else:
                        call = _Background(self.sink.send, body)
                        self._mark(acked)
                        acked = None
                        ahead = self._prepare(last, rep)
                        ans = call.result()
                    rep.requests += 1
                    rep.answer = ans
                    if classify(ans.status) == OK:
                        acked = ids
                        rep.sent += len(ids)
                        self._succeeded()
                        del body
                    else:
                        ahead = None  # read again after the failed batch is dealt with
                        lines = body.decode("utf-8").rstrip("\n").split("\n")
                        if not self._resolve(ids, lines, ans, rep):
                            break
                if progress:
                    progress(rep.sent + rep.quarantined - before)
        finally:
            self._mark(acked)
            self.state.sent_total += rep.sent
            self.state.quarantined_total += rep.quarantined
            if rep.requests or rep.quarantined:  # an empty outbox costs no write (no fsync)
                self._save()
        return rep

    def _mark(self, ids: list[int] | None) -> None:
        """Mark acknowledged rows sent (None: none waiting)."""
        if ids:
            self.store.mark_sent(ids)

    def _limit(self) -> int:
        return self.state.batch_limit or self.batch_size

    def _prepare(self, after, rep: Report):
        """Read and encode the next batch: ``(ids, lines, last_key, rows_read)``, or None when
        the outbox is empty. Read and encoded :data:`READ_CHUNK` rows at a time, so the raw rows
        and parsed fields of a whole batch are never in memory at once. Rows line protocol
        cannot carry are quarantined here."""
        ids, pieces, bad = [], [], []
        n = 0
        limit = self._limit()
        while n < limit:
            rows = self.store.outbox_lean(min(READ_CHUNK, limit - n), after)
            if not rows:
                break
            n += len(rows)
            after = (rows[-1][3], rows[-1][0])
            chunk_ids, lines, chunk_bad = self.encoder.encode_lean(rows, self.store.series_text)
            ids += chunk_ids
            for i, exc, (meas, tags, fields, ns) in chunk_bad:
                bad.append((i, None, f"not sent: {exc}", f"{meas} {tags} {fields} {ns}"))
            if lines:
                pieces.append("\n".join(lines) + "\n")
            dry = len(rows) < min(READ_CHUNK, limit - n + len(rows))
            del rows, lines, chunk_ids
            if dry:
                break  # the outbox ran dry
        if not n:
            return None
        if bad:
            rep.quarantined += self.store.quarantine(bad, self.clock.now())
            for _, _, msg, _ in bad:
                log.warning("row quarantined: %s", msg)
        return ids, pieces, after, n

    def _resolve(self, ids, lines, ans: Answer, rep: Report) -> bool:
        """Deal with a batch the server did not accept (``ans``): retry later, halt, split it
        (413) or find and quarantine its bad rows (400/422). False when the loop must stop."""
        stack = [(ids, lines, ans)]
        refused_alone = 0
        while stack:
            cids, clines, ans = stack.pop()
            if ans is None:
                ans = self.sink.send(("\n".join(clines) + "\n").encode("utf-8"))
                rep.requests += 1
                rep.answer = ans
            kind = classify(ans.status)
            if kind == OK:
                self.store.mark_sent(cids)
                rep.sent += len(cids)
                refused_alone = 0
                self._succeeded()
                continue
            if kind == RETRY:
                self._retry_later(ans)
                rep.outcome = "retry"
                return False
            if kind == HALT:
                self._halt(ans)
                rep.outcome = "halt"
                return False
            self._note_error(ans)
            if kind == TOO_LARGE:
                if len(cids) > 1:
                    half = len(cids) // 2
                    self.state.batch_limit = max(1, min(self.state.batch_limit or len(cids), half))
                    stack += [(cids[half:], clines[half:], None), (cids[:half], clines[:half], None)]
                    continue
                rep.quarantined += self._quarantine([(cids[0], clines[0])], ans)
                continue
            # BAD_DATA: quarantine the rows the server names, re-send the rest; when it names
            # none, halve until the bad row is alone (re-sending good rows only overwrites them).
            named = culprits(ans.message, clines, ans.body) if len(cids) > 1 else None
            if named:
                rep.quarantined += self._quarantine([(cids[k], clines[k]) for k in named], ans)
                gone = set(named)
                keep = [k for k in range(len(cids)) if k not in gone]
                if keep:
                    stack.append(([cids[k] for k in keep], [clines[k] for k in keep], None))
                continue
            if len(cids) == 1:
                refused_alone += 1
                if refused_alone > MAX_REFUSED_ALONE:
                    # Row after row refused and none accepted: the server refuses everything
                    # (a setting, not the data). Stop before quarantining the whole backlog.
                    self._halt(ans, every_row=True)
                    rep.outcome = "halt"
                    return False
                rep.quarantined += self._quarantine([(cids[0], clines[0])], ans)
                continue
            half = len(cids) // 2
            stack += [(cids[half:], clines[half:], None), (cids[:half], clines[:half], None)]
        return True

    # -- outcomes ---------------------------------------------------------------------------
    def _quarantine(self, pairs, ans: Answer) -> int:
        msg = f"{ans.status}: {ans.message}" if ans.status else ans.message
        for _, text in pairs:
            log.warning("row refused by the server and quarantined (%s): %s", msg, text[:200])
        return self.store.quarantine([(i, ans.status, ans.message, text) for i, text in pairs],
                                     self.clock.now())

    def _succeeded(self) -> None:
        if self.state.attempt or self.state.halted:
            log.info("forwarding to InfluxDB works again")
        self.state.attempt = 0
        self.state.next_try = self.state.next_try_time = None
        self.state.halted = None
        self.state.last_success = self.clock.now().isoformat()

    def _note_error(self, ans: Answer) -> None:
        self.state.last_error = {"time": self.clock.now().isoformat(), "status": ans.status,
                                 "message": ans.message}

    def _retry_later(self, ans: Answer) -> None:
        self._note_error(ans)
        self.state.attempt += 1
        wait = retry_delay(self.state.attempt, parse_retry_after(ans.retry_after, self.clock.now()),
                           self.rand)
        self._schedule(wait)
        if self.state.attempt in (1, 5) or self.state.attempt % 20 == 0:
            log.warning("InfluxDB write failed (%s); the rows stay in the store, next try in %.0f s",
                        describe(ans), wait)

    def _halt(self, ans: Answer, every_row: bool = False) -> None:
        self._note_error(ans)
        if every_row:
            reason = f"the server refuses every row ({ans.status})"
        else:
            reason = _HALT_REASONS.get(ans.status or 0, f"the server refused the write ({ans.status})")
        first = self.state.halted is None
        self.state.halted = f"{reason}: {ans.message}" if ans.message else reason
        self._schedule(HALT_RETRY_S)
        if first:
            log.error("forwarding stopped: %s. Rows stay in the store; trying again every %.0f "
                      "minutes (or restart the agent after fixing it)", self.state.halted,
                      HALT_RETRY_S / 60)

    def _schedule(self, wait_s: float) -> None:
        self.state.next_try = self.clock.monotonic() + wait_s
        self.state.next_try_time = (self.clock.now() + timedelta(seconds=wait_s)).isoformat()

    def _save(self) -> None:
        server = getattr(self.sink, "server", None)
        target = getattr(self.sink, "target", None)
        if server is not None and target is not None:
            self.state.server = {"version": server.version, "api": server.api,
                                 "target": target.describe()}
        if self.persist:
            self.store.write(state={STATE_KEY: self.state.to_json()})


_HALT_REASONS = {
    401: "the server refused the token (401)",
    403: "the token may not write to this bucket or database (403)",
    404: "the bucket, database or org does not exist, or the URL is not an InfluxDB write endpoint (404)",
}


def describe(ans: Answer) -> str:
    if ans.status is None:
        return ans.message or "no answer"
    return f"HTTP {ans.status}" + (f": {ans.message}" if ans.message else "")


class PushLock:
    """An advisory lock on ``<state_dir>/push.lock`` so that the agent's push job and a
    ``linewatch push`` never send the same rows at once. ``acquire(wait=False)`` returns False
    when the other holds it. Without ``fcntl`` (Windows) it always succeeds: re-sending is
    harmless, only wasteful."""

    def __init__(self, state_dir) -> None:
        self.path = Path(state_dir) / "push.lock"
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> bool:
        try:
            import fcntl  # deferred: not on Windows
        except ImportError:  # pragma: no cover - Windows
            return True
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def make_forwarder(cfg, store, clock, env=None, **kw) -> Forwarder | None:
    """The forwarder for ``cfg`` (None when ``influx.url`` is empty). Reads the token; a token
    that cannot be read is a ConfigError naming ``influx.token_file``."""
    if not cfg.influx.url:
        return None
    token = influx.load_token(cfg.influx, os.environ if env is None else env, cfg.source)
    if token.warning:
        log.warning("influx token: %s", token.warning)
    if cfg.influx.send == "summaries" and store.forwarded is None:
        # `linewatch push` too sends only the summaries (rows waiting from before are kept here)
        store.forward_only(SENT_WITH_SUMMARIES)
    # Each row bound for the server gets its line-protocol field set as it is written: a flush
    # after a long outage then sends without encoding them (bench/flush.py), and never holds a
    # batch of parsed rows in memory.
    store.field_set = field_set_or_none
    sink = influx.Sink(cfg.influx, token)
    return Forwarder(store, sink, clock, batch_size=cfg.influx.batch_size, **kw)
