"""Which alerts are due: pure, from what the agent knows and a clock.

:func:`due` takes the episodes (connectivity, power, interference: open and recently closed,
as the store and the episode hook give them), the UPS's last reading, recent speed tests and the
store's trouble, and returns the alerts that should exist now, each with a stable id. The job
(agent/jobs/alerts.py) puts each in the outbox once per channel; an alert made again (next
tick, after a restart) has the same id and is not queued twice.

The rules:

* **Debounce.** An episode is alerted only once it has lasted ``min_duration_s``: its start
  while it goes on, its end when it closed having lasted that long, or when its start was made
  (``started``: an episode whose start rang always gets its end). A blip shorter than that
  gives neither.
* **Not watched.** An episode the agent closed because it stopped watching (stopped, the
  machine off: ``end_observed`` false) ends with words that say so, never "back".
* **An end replaces its start** where the start is still waiting (a remote channel while the
  line is down, quiet hours): the end's message says both (``Made.replaces``).
* **Flapping.** ``flap_changes`` connectivity episodes (of any length) within
  ``flap_window_s`` make the line unstable: one ``line_unstable`` alert, then the line's
  episodes ring only if one lasts five times ``min_duration_s``, until ``flap_window_s`` passes
  without a new episode.
* **UPS low**, once per power cut on a UPS that has lasted ``min_duration_s``: the charge at or
  under ``ups_low_pct``, or the UPS's own low-battery flag.
* **Speed below the plan**: a speed test under ``speed_below_pct`` % of the paid speed.
* **Store trouble**: the store cannot be written, or was found damaged and replaced.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from agent.alerts import words
from agent.alerts.model import (
    DIGEST,
    INTERFERENCE_END,
    INTERFERENCE_START,
    LINE_UNSTABLE,
    OUTAGE_END,
    OUTAGE_START,
    POWER_END,
    POWER_START,
    SPEED_BELOW_PLAN,
    STORE_TROUBLE,
    TEST,
    UPS_LOW,
    Alert,
    alert_id,
)
from agent.model import Episode, FieldValue
from agent.power import HOST_DOWN, UPS as UPS_SOURCE

UNSTABLE_FACTOR = 5  # while the line is unstable, an outage rings after this many debounces
CONNECTIVITY, POWER, INTERFERENCE = "connectivity", "power", "interference"


@dataclass(frozen=True)
class Params:
    agent: str
    tags: Mapping[str, str] = field(default_factory=dict)
    min_duration_s: float = 60.0
    flap_changes: int = 4
    flap_window_s: float = 1800.0
    ups_low_pct: float = 30.0
    speed_below_pct: float = 50.0
    plan_mbps: float = 0.0
    tz: tzinfo | None = None


@dataclass(frozen=True)
class Ups:
    """The UPS's last reading: charge (%), runtime left (s), its low-battery flag."""

    charge_pct: float | None = None
    runtime_s: float | None = None
    low: bool = False


@dataclass(frozen=True)
class Speed:
    time: datetime
    download_mbps: float


@dataclass(frozen=True)
class Trouble:
    """The store's trouble: since when, why; ``damaged``: it was moved aside (``reason`` then
    names where)."""

    since: datetime
    reason: str
    damaged: bool = False


@dataclass(frozen=True)
class Made:
    """An alert that should exist, what it is about (an episode id: alerts about one thing
    replace each other), and the events of that thing it replaces where still unsent."""

    alert: Alert
    about: str
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unstable:
    """A time the line was unstable: from ``begin`` (the episode that made it so) until
    ``settle`` (``flap_window_s`` after the last episode in it)."""

    begin: datetime
    first: datetime  # the first of the drops counted at begin
    drops: int
    cause: str
    settle: datetime
    episode: str     # the id of the episode that made it so (its alert's id comes from it: an
                     # episode's start moves by milliseconds when it closes, its id does not)


def unstable_periods(episodes: Iterable[Episode], p: Params) -> list[Unstable]:
    """The unstable times of the line, from the starts of its connectivity episodes."""
    if p.flap_changes <= 0:
        return []
    eps = sorted((e for e in episodes if e.type == CONNECTIVITY), key=lambda e: e.start)
    window: deque[datetime] = deque()
    span = timedelta(seconds=p.flap_window_s)
    out: list[Unstable] = []
    for e in eps:
        while window and e.start - window[0] >= span:
            window.popleft()
        window.append(e.start)
        last = out[-1] if out else None
        if last is not None and e.start < last.settle:
            out[-1] = Unstable(last.begin, last.first, last.drops, last.cause, e.start + span,
                               last.episode)
        elif len(window) >= p.flap_changes:
            out.append(Unstable(e.start, window[0], len(window), e.cause, e.start + span, e.id))
    return out


def _unstable_at(t: datetime, periods: Sequence[Unstable]) -> bool:
    return any(u.begin <= t < u.settle for u in periods)


def due(episodes: Iterable[Episode], now: datetime, p: Params, *, ups: Ups | None = None,
        speeds: Iterable[Speed] = (), trouble: Trouble | None = None,
        started: Set[str] = frozenset()) -> list[Made]:
    """Every alert that should exist at ``now`` (see the module's rules). ``started``: the ids
    of the episodes whose start (or ``ups_low``) alert was made, on this run or before."""
    eps = list(episodes)
    periods = unstable_periods(eps, p)
    out: list[Made] = []
    for e in eps:
        if e.type == CONNECTIVITY:
            factor = UNSTABLE_FACTOR if _unstable_at(e.start, periods) else 1
            out += _episode_alerts(e, now, p, p.min_duration_s * factor, ups, e.id in started)
        elif e.type in (POWER, INTERFERENCE):
            out += _episode_alerts(e, now, p, p.min_duration_s, ups, e.id in started)
    out += [_unstable(u, now, p) for u in periods]
    out += [m for s in speeds if (m := _speed(s, now, p)) is not None]
    if trouble is not None:
        out.append(_trouble(trouble, now, p))
    return out


def _length(e: Episode, now: datetime) -> float:
    if e.end is not None:
        return e.duration_s
    return max(e.duration_s, (now - e.start).total_seconds())


def _episode_alerts(e: Episode, now: datetime, p: Params, debounce: float,
                    ups: Ups | None, started: bool) -> list[Made]:
    length = _length(e, now)
    out = []
    start_event, end_event = {CONNECTIVITY: (OUTAGE_START, OUTAGE_END),
                              POWER: (POWER_START, POWER_END),
                              INTERFERENCE: (INTERFERENCE_START, INTERFERENCE_END)}[e.type]
    host_down = e.type == POWER and e.cause == HOST_DOWN
    if e.end is None and length >= debounce and not host_down:
        out.append(Made(_alert(e, start_event, now, p, length, ups), e.id))
    if e.end is not None and (length >= debounce or started):
        out.append(Made(_alert(e, end_event, now, p, length, ups), e.id,
                        (start_event, UPS_LOW) if e.type == POWER else (start_event,)))
    if (e.type == POWER and e.end is None and ups is not None and length >= debounce
            and e.details.get("source") == UPS_SOURCE and _low(ups, p)):
        out.append(Made(_alert(e, UPS_LOW, now, p, length, ups), e.id))
    return out


def _low(ups: Ups, p: Params) -> bool:
    return ups.low or (p.ups_low_pct > 0 and ups.charge_pct is not None
                       and ups.charge_pct <= p.ups_low_pct)


def _alert(e: Episode, event: str, now: datetime, p: Params, length: float,
           ups: Ups | None) -> Alert:
    """The alert of ``event`` about episode ``e`` (its words filled from the episode)."""
    ending = event in (OUTAGE_END, POWER_END, INTERFERENCE_END)
    end = e.end if ending else None
    start_s = words.clock(e.start, p.tz, now)
    fields: dict[str, str] = {"start": start_s, "length": words.length(length), "what": ""}
    if end is not None:
        fields["start"], fields["end"] = words.span(e.start, end, p.tz, now)
    details: dict[str, FieldValue] = {k: v for k, v in e.details.items()
                                      if k in ("source", "target", "how", "kind", "failed_rounds",
                                               "failed_checks", "charge_start_pct",
                                               "charge_end_pct")}
    urgency = "low" if ending else "normal"
    key = event
    if e.type == CONNECTIVITY:
        fields["cause_short"], fields["cause"] = words.cause_words(e.cause)
    elif e.type == POWER:
        source = str(e.details.get("source", ""))
        fields["source"] = words.SOURCES.get(source, source or "mains")
        fields["ups"] = ""
        if e.cause == HOST_DOWN:
            key = "host_down"
        if ups is not None and source == UPS_SOURCE:
            if ups.charge_pct is not None:
                details["charge_pct"] = ups.charge_pct
                fields["ups"] = f", {words.percent(ups.charge_pct)}"
            if ups.runtime_s is not None:
                details["runtime_s"] = ups.runtime_s
                fields["ups"] += f", {words.minutes_left(ups.runtime_s)}"
        if event == UPS_LOW:
            urgency = "critical"
            fields["charge"] = (words.percent(ups.charge_pct) if ups and ups.charge_pct is not None
                                else "its low mark")
            fields["runtime"] = (f", {words.minutes_left(ups.runtime_s)}"
                                 if ups and ups.runtime_s is not None else "")
    else:
        fields["target"] = str(e.details.get("target", "a service"))
        how = str(e.details.get("how", ""))
        fields["how"] = words.HOW.get(e.cause, e.cause) + (f" ({how})" if how else "")
        if e.details.get("kind") == "throttle":
            key = "throttle_end" if ending else "throttle_start"
    if ending and e.details.get("end_observed") is False:
        key = "unwatched"
        fields["what"] = {CONNECTIVITY: "The internet outage", POWER: "The power cut"}.get(
            e.type, f"{fields.get('target', 'A service')}'s failure")
        fields["lost"] = fields["what"].removeprefix("The ")
    title, text = words.say(key, **fields)
    return Alert(id=alert_id(e.id, event), event=event, type=e.type, cause=e.cause,
                 start=e.start, end=end, duration_s=length, agent=p.agent, title=title,
                 text=text, urgency=urgency, details=details, tags=p.tags)


def _unstable(u: Unstable, now: datetime, p: Params) -> Made:
    short, _ = words.cause_words(u.cause)
    title, text = words.say(LINE_UNSTABLE, drops=str(u.drops),
                            window=words.length((u.begin - u.first).total_seconds()),
                            start=words.clock(u.begin, p.tz, now), cause=short,
                            quiet=words.length(p.flap_window_s))
    alert = Alert(id=alert_id("unstable", u.episode), event=LINE_UNSTABLE,
                  type=CONNECTIVITY, cause=u.cause, start=u.first, end=None, duration_s=None,
                  agent=p.agent, title=title, text=text,
                  details={"drops": u.drops}, tags=p.tags)
    return Made(alert, "unstable:" + u.episode)


def _speed(s: Speed, now: datetime, p: Params) -> Made | None:
    if p.plan_mbps <= 0 or p.speed_below_pct <= 0:
        return None
    if s.download_mbps >= p.plan_mbps * p.speed_below_pct / 100:
        return None
    share = 100 * s.download_mbps / p.plan_mbps
    title, text = words.say(SPEED_BELOW_PLAN, start=words.clock(s.time, p.tz, now),
                            download=words.mbps(s.download_mbps), plan=words.mbps(p.plan_mbps),
                            share=words.percent(share))
    alert = Alert(id=alert_id("speedtest", s.time.isoformat()), event=SPEED_BELOW_PLAN,
                  type="speedtest", cause="slow", start=s.time, end=None, duration_s=None,
                  agent=p.agent, title=title, text=text,
                  details={"download_mbps": round(s.download_mbps, 2), "plan_mbps": p.plan_mbps,
                           "share_pct": round(share, 1)}, tags=p.tags)
    return Made(alert, "speedtest:" + s.time.isoformat())


def _trouble(t: Trouble, now: datetime, p: Params) -> Made:
    title, text = words.say("store_damaged" if t.damaged else STORE_TROUBLE,
                            start=words.clock(t.since, p.tz, now), reason=t.reason)
    alert = Alert(id=alert_id("store", t.since.isoformat()), event=STORE_TROUBLE, type="store",
                  cause="damaged" if t.damaged else "unwritable", start=t.since, end=None,
                  duration_s=None, agent=p.agent, title=title, text=text, urgency="critical",
                  tags=p.tags)
    return Made(alert, "store:" + t.since.isoformat())


def _median(xs: list[float]) -> float:
    """The median (the statistics module costs the agent 0.7 MB for this one figure)."""
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def test_alert(now: datetime, p: Params, n: int) -> Alert:
    """The message ``linewatch alerts test`` sends (``n`` makes each run's id its own)."""
    title, text = words.say(TEST, agent=p.agent, start=words.clock(now, p.tz, now))
    return Alert(id=alert_id("test", now.isoformat(), str(n)), event=TEST, type="test",
                 cause="test", start=now, end=None, duration_s=None, agent=p.agent, title=title,
                 text=text, urgency="low", tags=p.tags)


def digest(episodes: Iterable[Episode], speeds: Iterable[Speed], now: datetime,
           p: Params) -> Alert:
    """The daily digest: the 24 hours before ``now``."""
    since = now - timedelta(hours=24)
    eps = [e for e in episodes if (e.end or now) > since]
    parts = []

    def clipped(e: Episode) -> float:
        return max(0.0, ((e.end or now) - max(e.start, since)).total_seconds())

    outages = [e for e in eps if e.type == CONNECTIVITY]
    if outages:
        parts.append(words.DIGEST["outages"].format(
            n=len(outages), length=words.length(sum(map(clipped, outages))),
            longest=words.length(max(map(clipped, outages)))))
    cuts = [e for e in eps if e.type == POWER]
    if cuts:
        parts.append(words.DIGEST["power"].format(n=len(cuts),
                                                  length=words.length(sum(map(clipped, cuts)))))
    blocked = [e for e in eps if e.type == INTERFERENCE]
    if blocked:
        targets = sorted({str(e.details.get("target", "?")) for e in blocked})
        parts.append(words.DIGEST["interference"].format(n=len(blocked),
                                                         targets=", ".join(targets)))
    if not parts:
        parts.append(words.DIGEST["none"])
    tests = [s for s in speeds if s.time > since]
    if tests:
        parts.append(words.DIGEST["speed"].format(
            n=len(tests), download=words.mbps(_median([s.download_mbps for s in tests]))))
    title, text = words.say(DIGEST, summary=" ".join(parts))
    day = now.astimezone(p.tz).date().isoformat()
    return Alert(id=alert_id("digest", day), event=DIGEST, type="digest", cause="digest",
                 start=since, end=now, duration_s=86400.0, agent=p.agent, title=title, text=text,
                 urgency="low", tags=p.tags)
