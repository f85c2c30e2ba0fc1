"""Service checks in, interference episodes out: the pure state machine that tells "the line is
up but this site (or VPN endpoint) is blocked" from a single failed check.

It never reads a clock or a socket. The caller feeds one :class:`Check` per service check
(agent/probes/services.py's ``service`` row, with whether the line was up at the time) to
:func:`step` with the previous :class:`State`, and gets the new state and the episodes that
opened or closed. The state is a small frozen value that serialises to JSON
(:meth:`State.to_json`), so it can be stored with each check and a restart continues where it
stopped.

Rules (``open_after`` from ``[services]``):

* Only checks made while the line was up count. A check during a connectivity outage or a power
  cut is neither evidence of blocking nor of its end: it changes nothing. Nor does a check that
  could not be made (``how`` ``keys``: a WireGuard endpoint's keys could not be read;
  ``control``: a throttling check's neutral download failed).
* A target's checks for blocking and its throttling checks (``kind`` throttle: a download with
  its name as SNI) are counted apart; a throttling episode's ``details`` say ``kind``.
* An episode of type ``interference`` opens after ``open_after`` consecutive checks of one target
  failing at the same step. Its cause is the step (``dns``, ``tcp``, ``tls``, ``http``,
  ``throttled``), or ``vpn`` for a VPN endpoint (``kind`` tcp, openvpn or wireguard);
  ``details`` hold the target, how the step failed (the latest ``how``) and how many checks
  failed. It starts at the first of those checks.
* It ends at the first check of the target that passes. A check failing at another step ends it
  too (at that check), and counting starts afresh from that check: the blocking changed method.
* Durations are the difference of the checks' wall times (checks are minutes apart, and a
  backward step of the wall clock gives a duration of 0, never a negative one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from agent.model import Episode, FieldValue, from_ns, to_ns
from agent.outage import Change

TYPE = "interference"
CAUSES = ("dns", "tcp", "tls", "http", "throttled", "vpn")
OK = "ok"
VPN_KINDS = ("tcp", "openvpn", "wireguard")
THROTTLE = "throttle"      # the kind of a throttling check (a download with a name as SNI)
# A failed check's ``how`` that is no evidence either way: a WireGuard endpoint whose keys
# could not be read was never asked; a throttling check whose neutral download failed has
# nothing to compare with.
NOT_EVIDENCE = ("keys", "control")
MOMENTARY_MAX_S = 300.0   # as outages: an episode this long or shorter is momentary


@dataclass(frozen=True)
class Check:
    """What the state machine needs of one check: the ``service`` row's tags ``target``,
    ``kind`` and ``step`` (``ok`` or the failed step), its ``how``, its time, and whether the
    line was up when it ran."""

    target: str
    kind: str
    step: str
    how: str
    time: datetime
    line_up: bool = True


@dataclass(frozen=True)
class Streak:
    """A target's run of checks failing at one step (``cause``), since ``start_ns``; ``open``
    once it became an episode."""

    cause: str
    how: str
    count: int
    start_ns: int
    last_ns: int
    open: bool = False


@dataclass(frozen=True)
class State:
    streaks: tuple[tuple[str, Streak], ...] = ()     # target -> its streak, sorted by target

    def get(self, target: str) -> Streak | None:
        return dict(self.streaks).get(target)

    def with_streak(self, target: str, streak: Streak | None) -> State:
        d = dict(self.streaks)
        if streak is None:
            d.pop(target, None)
        else:
            d[target] = streak
        return State(tuple(sorted(d.items())))

    def to_json(self) -> str:
        return json.dumps({t: vars(s) for t, s in self.streaks}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> State:
        """The state :meth:`to_json` wrote; an empty state for text that is not one (a damaged
        or foreign value starts counting afresh rather than failing the agent)."""
        try:
            data: Any = json.loads(text)
            return State(tuple(sorted((str(t), Streak(**s)) for t, s in data.items())))
        except (ValueError, TypeError, AttributeError):
            return State()


def cause_of(check: Check) -> str:
    """The episode's cause for a failed check: ``vpn`` for an endpoint, else the step."""
    return "vpn" if check.kind in VPN_KINDS else check.step


def step(state: State, check: Check, open_after: int) -> tuple[State, list[Change]]:
    """The state after ``check``, and the episodes it opened or closed."""
    if open_after < 1:
        raise ValueError(f"open_after must be >= 1, got {open_after}")
    if not check.line_up or check.how in NOT_EVIDENCE:
        return state, []
    now = to_ns(check.time)
    key = key_of(check.target, check.kind)
    s = state.get(key)
    changes: list[Change] = []
    if check.step == OK:
        if s is not None and s.open:
            changes.append(Change("closed", _episode(check, s, now, closed=True)))
        return state.with_streak(key, None), changes
    cause = cause_of(check)
    if s is not None and s.cause != cause:
        if s.open:
            changes.append(Change("closed", _episode(check, s, now, closed=True)))
        s = None
    if s is None:
        s = Streak(cause, check.how, 1, now, now)
    else:
        s = replace(s, how=check.how, count=s.count + 1, last_ns=now)
    if not s.open and s.count >= open_after:
        s = replace(s, open=True)
        changes.append(Change("opened", _episode(check, s, now, closed=False)))
    return state.with_streak(key, s), changes


def key_of(target: str, kind: str) -> str:
    """Whose streak a check is: its target's, apart for a throttling check (a site's name may
    be checked for blocking and, as SNI, for throttling: two verdicts of their own)."""
    return f"{target} {THROTTLE}" if kind == THROTTLE else target


def _episode(check: Check, s: Streak, now_ns: int, *, closed: bool) -> Episode:
    duration = round(max(0, now_ns - s.start_ns) / 1e9, 3)
    start = from_ns(s.start_ns)
    details: dict[str, FieldValue] = {"target": check.target, "how": s.how,
                                      "failed_checks": s.count}
    if check.kind == THROTTLE:
        details["kind"] = THROTTLE
    key = key_of(check.target, check.kind).replace(" ", ":")
    return Episode(id=f"{TYPE}:{key}:{s.start_ns}", type=TYPE, cause=s.cause, start=start,
                   end=start + timedelta(seconds=duration) if closed else None,
                   duration_s=duration, sustained=duration > MOMENTARY_MAX_S, details=details)
