"""Power: is the machine on mains, and when did the mains go away? The pure logic only.

Three sensors feed it, each optional and each its own module: **battery** (a laptop's AC adapter,
:mod:`agent.probes.battery`), **ups** (a UPS through Network UPS Tools, :mod:`agent.probes.ups`)
and **host** (:mod:`agent.probes.host`: a desktop or Raspberry Pi without either simply dies; its
boot id and boot time tell, at the next start, that it did). The first two give :class:`Reading`
objects every poll; :func:`step` turns them into power episodes, the same restart-safe way as
:mod:`agent.outage`. :func:`host_down` decides, at the next start, from the last heartbeat, the
clean-exit marker, the boot id and the boot time.

Clocks. A Raspberry Pi without an RTC boots with a stale clock until NTP syncs, so a host-down
episode is only computed from a trusted clock (:func:`clock_trusted`; the platform reads the state,
:meth:`agent.platform.Platform.clock_state`): synced, or a machine with no time-sync service at all
(its clock comes from an RTC). Until then the decision is deferred and kept in the store, so a
second restart does not lose it. Episodes never have a negative length and never start before the
heartbeat that preceded them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from agent.model import Episode, FieldValue, Sample, from_ns, to_ns

BATTERY, UPS, HOST = "battery", "ups", "host"
AC_LOST, HOST_DOWN = "ac_lost", "host_down"


@dataclass(frozen=True)
class Reading:
    """One sensor's view at one poll. ``on_battery`` None: the sensor could not tell.

    ``sample`` is the row the reading is recorded as (measurement ``power``, tags ``source`` and
    the sensor's own), or None when there is nothing to record; it takes no part in comparisons.
    """

    source: str
    on_battery: bool | None
    charge_pct: float | None = None
    status: str | None = None
    sample: Sample | None = field(default=None, compare=False, repr=False)


# -- is the wall clock trustworthy? -------------------------------------------------------------

SYNCED, UNSYNCED, NO_SYNC_SERVICE = "synced", "unsynced", "no_sync_service"
CLOCK_STATES = (SYNCED, UNSYNCED, NO_SYNC_SERVICE)


def clock_trusted(state: str) -> bool:
    return state in (SYNCED, NO_SYNC_SERVICE)


# -- power episodes from readings (pure) --------------------------------------------------------

@dataclass(frozen=True)
class Open:
    """A power episode in progress for one source."""

    id: str
    start_ns: int
    start_mono: float
    charge_start: float | None


@dataclass(frozen=True)
class PowerTracker:
    open: tuple[tuple[str, Open], ...] = ()   # (source, episode) for sources now on battery
    last_ns: int | None = None
    last_mono: float | None = None
    boot: str = ""
    last_charge: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PowerTracker:
        d = json.loads(text)
        return cls(open=tuple((s, Open(**o)) for s, o in d["open"]), last_ns=d["last_ns"],
                   last_mono=d["last_mono"], boot=d.get("boot", ""),
                   last_charge=tuple((s, c) for s, c in d.get("last_charge", ())))


def step(state: PowerTracker, readings: list[Reading], time: datetime, mono: float, *,
         momentary_max_s: float, max_gap_s: float,
         boot: str = "") -> tuple[PowerTracker, list[tuple[str, Episode]]]:
    """Advance by one poll. Returns the new state and ("opened" | "closed", episode) changes.

    A source opens an episode at the first poll that reads on battery and closes it at the first
    that reads mains; a reading that cannot tell (None) changes nothing. A gap longer than
    ``max_gap_s``, a monotonic clock that went back or a new boot id closes open episodes at the
    last poll seen (``end_observed`` false): the agent was not watching.
    """
    now_ns = to_ns(time)
    changes: list[tuple[str, Episode]] = []
    opened = dict(state.open)
    charges = dict(state.last_charge)
    if state.last_ns is not None and state.last_mono is not None and (
            mono < state.last_mono or mono - state.last_mono > max_gap_s
            or (state.boot and boot and boot != state.boot)):
        for source, o in opened.items():
            ep = _episode(source, o, state.last_ns, state.last_mono, charges.get(source), momentary_max_s)
            changes.append(("closed", replace(ep, details={**ep.details, "end_observed": False})))
        opened = {}
    for r in readings:
        if r.charge_pct is not None:
            charges[r.source] = r.charge_pct
        if r.on_battery is None:
            continue
        if r.on_battery and r.source not in opened:
            o = Open(f"power:{r.source}:{now_ns}", now_ns, mono, r.charge_pct)
            opened[r.source] = o
            changes.append(("opened", _episode(r.source, o, now_ns, mono, None, momentary_max_s, end=False)))
        elif not r.on_battery and r.source in opened:
            o = opened.pop(r.source)
            changes.append(("closed", _episode(r.source, o, now_ns, mono, r.charge_pct, momentary_max_s)))
    new = PowerTracker(open=tuple(sorted(opened.items())), last_ns=now_ns, last_mono=mono, boot=boot,
                       last_charge=tuple(sorted(charges.items())))
    return new, changes


def in_progress(state: PowerTracker, momentary_max_s: float) -> list[Episode]:
    """Power episodes open at the last poll, with their length so far and the latest charge."""
    if state.last_ns is None or state.last_mono is None:
        return []  # never polled: nothing can be open
    charges = dict(state.last_charge)
    return [_episode(s, o, state.last_ns, state.last_mono, charges.get(s), momentary_max_s, end=False)
            for s, o in state.open]


def on_battery(state: PowerTracker) -> bool:
    return bool(state.open)


def _episode(source: str, o: Open, at_ns: int, at_mono: float, charge_end: float | None,
             momentary_max_s: float, end: bool = True) -> Episode:
    duration = round(max(0.0, at_mono - o.start_mono), 3)  # rounded once: see outage._episode
    at = from_ns(at_ns)
    details: dict[str, FieldValue] = {"source": source}
    if o.charge_start is not None:
        details["charge_start_pct"] = o.charge_start
    if charge_end is not None:
        details["charge_end_pct" if end else "charge_now_pct"] = charge_end
    return Episode(id=o.id, type="power", cause=AC_LOST, start=at - timedelta(seconds=duration),
                   end=at if end else None, duration_s=duration,
                   sustained=duration > momentary_max_s, details=details)


# -- host down (pure) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Heartbeat:
    """What the agent writes every round: wall time, monotonic time, boot id, clock trusted."""

    time: datetime
    mono: float
    boot_id: str
    clock_ok: bool = True

    def to_json(self) -> str:
        return json.dumps({"time": self.time.isoformat(), "mono": self.mono, "boot_id": self.boot_id,
                           "clock_ok": self.clock_ok})

    @classmethod
    def from_json(cls, text: str) -> Heartbeat:
        d = json.loads(text)
        return cls(datetime.fromisoformat(d["time"]), float(d["mono"]), d.get("boot_id", ""),
                   bool(d.get("clock_ok", True)))


@dataclass(frozen=True)
class Decision:
    """What to record about the time before this start: ``kind`` none | defer | host_down |
    agent_gap, the episode for the last two, and why (for logs and ``check``)."""

    kind: str
    reason: str
    episode: Episode | None = None


def host_down(prev: Heartbeat | None, clean_exit: bool, boot_now: str, boot_time: datetime | None,
              now: datetime, mono_now: float, clock_ok: bool, momentary_max_s: float = 300.0) -> Decision:
    """Decide, at start, what happened since the last heartbeat of the previous run.

    * No previous heartbeat: a first start, nothing to record.
    * Same boot: the agent alone stopped. A clean exit is not a gap; otherwise an ``agent_gap``
      from the last heartbeat to now, its length from the monotonic clock (same boot).
    * New boot after a clean exit: a shutdown, not a cut.
    * New boot without a clean exit: a power cut took the host down, from the last heartbeat to the
      boot time — but only from a trusted clock (else ``defer``), never negative, never starting
      before the heartbeat (a boot time earlier than it is clamped and flagged).
    """
    if prev is None:
        return Decision("none", "first start: no earlier heartbeat")
    if prev.boot_id and boot_now and prev.boot_id == boot_now:
        if clean_exit:
            return Decision("none", "the agent was stopped cleanly")
        duration = round(max(0.0, mono_now - prev.mono), 3)
        ep = Episode(id=f"agent_gap:{to_ns(prev.time)}", type="agent_gap", cause="agent_stopped",
                     start=now - timedelta(seconds=duration), end=now, duration_s=duration,
                     sustained=duration > momentary_max_s, details={"source": "agent"})
        return Decision("agent_gap", "the agent stopped without a clean exit; the host stayed up", ep)
    if clean_exit:
        return Decision("none", "the host was shut down cleanly")
    if not clock_ok:
        return Decision("defer", "the host rebooted without a clean exit, but the clock is not "
                                 "synchronised yet: waiting for time sync")
    if boot_time is None:
        return Decision("defer", "the host rebooted but its boot time cannot be read")
    start = prev.time
    details: dict[str, FieldValue] = {"source": HOST, "boot_id": boot_now}
    end = boot_time
    if end < start:
        end = start
        details["boot_before_heartbeat"] = True
    if not prev.clock_ok:
        details["start_uncertain"] = True  # the heartbeat itself was written before time sync
    duration = round((end - start).total_seconds(), 3)
    ep = Episode(id=f"power:host:{to_ns(start)}", type="power", cause=HOST_DOWN, start=start, end=end,
                 duration_s=duration, sustained=duration > momentary_max_s, details=details)
    return Decision("host_down", "the host went down without a clean exit (power cut)", ep)

