"""Rounds in, episodes out: the pure state machine behind outage and degradation detection.

It never reads a clock or a socket. The caller feeds one :class:`RoundResult` per probe round to
:func:`step` together with the previous :class:`Tracker` state and gets the new state plus the
episodes that opened or closed. The state is a small frozen value that serialises to JSON
(:meth:`Tracker.to_json`), so the agent stores it with each round and a restart continues exactly
where it stopped: an episode in progress is neither lost nor duplicated, and it is closed once.

Rules (``open_after``/``close_after`` from ``[outage]``):

* A connectivity episode opens after ``open_after`` consecutive ``down`` rounds. It starts at the
  first of them and ends at the first ``up``/``degraded`` round of a run of ``close_after`` good
  rounds. A shorter run of failures is a blip and leaves no episode.
* Durations come from the monotonic clock (``RoundResult.mono``); the start is rebased on the latest
  wall time (``start = end - duration``), so a wall-clock step inside an episode can never make a
  negative or inconsistent duration.
* The cause is the most frequent cause among the episode's failed rounds (ties: lan, isp, dns,
  unknown), except ``power`` when the machine was on battery at the episode's first round.
* A degraded period is the same hysteresis over ``degraded`` rounds; it is not an outage.
* A gap in the rounds longer than ``max_gap_s`` (agent stopped, machine off or suspended), a
  monotonic clock that went backwards or a new boot id (reboot) ends the watch: an open episode is
  closed at the last round that was seen, with ``end_observed`` false, and counting starts afresh.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from agent.model import Episode, FieldValue, from_ns, to_ns

CAUSE_ORDER = ("lan", "isp", "dns", "unknown")  # tie-break, most local first
UP, DOWN, DEGRADED, ERROR = "up", "down", "degraded", "error"


@dataclass(frozen=True)
class RoundResult:
    """What the state machine needs to know about one round.

    ``status``: up | down | degraded | error (a round whose probes could not run; it counts
    neither way). ``cause`` is set for down rounds. ``on_battery``: a power sensor reported the
    machine on battery or UPS at this round.
    """

    time: datetime
    mono: float
    status: str
    cause: str | None = None
    on_battery: bool = False
    boot: str = ""


@dataclass(frozen=True)
class Params:
    open_after: int = 3
    close_after: int = 2
    momentary_max_s: float = 300.0
    max_gap_s: float = 60.0


@dataclass(frozen=True)
class Mark:
    """A point in a round: wall time (ns since epoch) and monotonic seconds."""

    time_ns: int
    mono: float


@dataclass(frozen=True)
class Streak:
    """Hysteresis over one kind of bad round."""

    bad: int = 0                        # consecutive bad rounds
    bad_start: Mark | None = None       # first of them
    causes: tuple[tuple[str, int], ...] = ()  # cause counts since bad_start / in the open episode
    power_at_start: bool = False
    good: int = 0                       # consecutive good rounds while an episode is open
    good_start: Mark | None = None
    open_id: str | None = None          # id of the episode in progress
    open_start: Mark | None = None
    open_power: bool = False


@dataclass(frozen=True)
class Tracker:
    outage: Streak = field(default_factory=Streak)
    degraded: Streak = field(default_factory=Streak)
    last: Mark | None = None
    boot: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Tracker:
        d = json.loads(text)

        def mark(m: dict[str, Any] | None) -> Mark | None:
            return Mark(**m) if m else None

        def streak(s: dict[str, Any]) -> Streak:
            s = dict(s)
            for k in ("bad_start", "good_start", "open_start"):
                s[k] = mark(s.get(k))
            s["causes"] = tuple((c, n) for c, n in s.get("causes", ()))
            return Streak(**s)

        return cls(outage=streak(d["outage"]), degraded=streak(d["degraded"]), last=mark(d.get("last")),
                   boot=d.get("boot", ""))


@dataclass(frozen=True)
class Change:
    """An episode that opened, closed or is in progress after a step."""

    kind: str  # "opened" | "closed"
    episode: Episode


def step(state: Tracker, rnd: RoundResult, params: Params) -> tuple[Tracker, list[Change]]:
    """Advance the machine by one round. Pure: same inputs, same outputs."""
    now = Mark(to_ns(rnd.time), rnd.mono)
    changes: list[Change] = []
    if state.last is not None and (
        rnd.mono < state.last.mono
        or rnd.mono - state.last.mono > params.max_gap_s
        or (state.boot and rnd.boot and rnd.boot != state.boot)
    ):
        state, changes = _end_watch(state, params)
    outage, ch1 = _advance(state.outage, "connectivity", rnd.status == DOWN, rnd.status in (UP, DEGRADED),
                           rnd, now, params)
    degraded, ch2 = _advance(state.degraded, "degraded", rnd.status == DEGRADED, rnd.status in (UP, DOWN),
                             rnd, now, params)
    return Tracker(outage=outage, degraded=degraded, last=now, boot=rnd.boot), changes + ch1 + ch2


def in_progress(state: Tracker, params: Params) -> list[Episode]:
    """Episodes open at the last round, with their length so far."""
    out = []
    for kind, s in (("connectivity", state.outage), ("degraded", state.degraded)):
        if s.open_id and state.last:
            out.append(_episode(kind, s, state.last, None, params))
    return out


def _advance(s: Streak, kind: str, is_bad: bool, is_good: bool, rnd: RoundResult, now: Mark,
             params: Params) -> tuple[Streak, list[Change]]:
    if is_bad:
        causes = _count(s.causes if (s.bad or s.open_id) else (), rnd.cause or "unknown")
        if s.bad == 0:
            s = replace(s, bad_start=now, power_at_start=rnd.on_battery)
        s = replace(s, bad=s.bad + 1, causes=causes, good=0, good_start=None)
        if s.open_id is None and s.bad >= params.open_after:
            assert s.bad_start is not None  # set at the first bad round, above
            s = replace(s, open_id=f"{kind}:{s.bad_start.time_ns}", open_start=s.bad_start,
                        open_power=s.power_at_start)
            return s, [Change("opened", _episode(kind, s, now, None, params))]
        return s, []
    if is_good:
        if s.open_id is None:
            return Streak(), []  # a blip shorter than open_after: no episode
        if s.good == 0:
            s = replace(s, good_start=now)
        s = replace(s, good=s.good + 1, bad=0)
        if s.good >= params.close_after:
            assert s.good_start is not None  # set at the first good round, above
            closed = _episode(kind, s, s.good_start, s.good_start, params)
            return Streak(), [Change("closed", closed)]
        return s, []
    return s, []  # an error round counts neither way


def _end_watch(state: Tracker, params: Params) -> tuple[Tracker, list[Change]]:
    """The agent stopped watching: close open episodes at the last round seen."""
    changes = []
    for kind, s in (("connectivity", state.outage), ("degraded", state.degraded)):
        if s.open_id:
            assert state.last is not None  # an episode opens at a round, which sets last
            ep = _episode(kind, s, state.last, state.last, params)
            ep = replace(ep, details={**ep.details, "end_observed": False})
            changes.append(Change("closed", ep))
    return Tracker(), changes


def _episode(kind: str, s: Streak, at: Mark, end: Mark | None, params: Params) -> Episode:
    """The episode of streak ``s`` as seen at ``at``; closed at ``end`` when given."""
    # Rounded once, here: start, duration_s and sustained all follow from the published value, so
    # an episode of 300.0004 s is never "300.0 s, sustained".
    assert s.open_id is not None and s.open_start is not None  # called for open streaks only
    duration = round(max(0.0, at.mono - s.open_start.mono), 3)
    start = from_ns(at.time_ns) - timedelta(seconds=duration)
    cause = _cause(s)
    details: dict[str, FieldValue] = {"failed_rounds": sum(n for _, n in s.causes)}
    return Episode(
        id=s.open_id,
        type=kind,
        cause=cause,
        start=start,
        end=from_ns(end.time_ns) if end else None,
        duration_s=duration,
        sustained=duration > params.momentary_max_s,
        details=details,
    )


def _cause(s: Streak) -> str:
    if s.open_power:
        return "power"
    counts = dict(s.causes)
    if not counts:
        return "unknown"
    rank = {c: i for i, c in enumerate(CAUSE_ORDER)}
    return min(counts, key=lambda c: (-counts[c], rank.get(c, len(rank)), c))


def _count(causes: tuple[tuple[str, int], ...], cause: str) -> tuple[tuple[str, int], ...]:
    d = dict(causes)
    d[cause] = d.get(cause, 0) + 1
    return tuple(sorted(d.items()))
