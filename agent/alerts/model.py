"""The alert record, the event names, and the contract every channel keeps.

An :class:`Alert` is made once (by :mod:`agent.alerts.rules`), stored in the alert outbox as
JSON and handed, unchanged, to each channel that takes its event. Its ``id`` is made from what
the alert is about (the episode and the event), never from when it was made, so an alert made
again after a restart is the same alert: the outbox keeps it once per channel, and a receiver
can drop a repeat by ``id``.

The event names and the webhook's JSON keys (:meth:`Alert.payload`) are a contract: receivers
key on them.

Errors: a channel's ``send`` raises :class:`SendError`; ``retry`` says whether a later attempt
may succeed (the network, the server's 5xx or 429, a desktop without a session bus now) or not
(the server refused this message or these credentials: 4xx). Its text never holds a secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from agent.model import FieldValue

# Every event an alert can carry (webhook receivers and the config's `events` filters use these).
OUTAGE_START, OUTAGE_END = "outage_start", "outage_end"
POWER_START, POWER_END = "power_start", "power_end"
UPS_LOW = "ups_low"
INTERFERENCE_START, INTERFERENCE_END = "interference_start", "interference_end"
SPEED_BELOW_PLAN = "speed_below_plan"
STORE_TROUBLE = "store_trouble"
LINE_UNSTABLE = "line_unstable"
DIGEST = "digest"
TEST = "test"
EVENTS: tuple[str, ...] = (
    OUTAGE_START, OUTAGE_END, POWER_START, POWER_END, UPS_LOW, INTERFERENCE_START,
    INTERFERENCE_END, SPEED_BELOW_PLAN, STORE_TROUBLE, LINE_UNSTABLE, DIGEST, TEST)
# The channels' kinds (`kind` of an [[alerts.channels]] table).
KINDS: tuple[str, ...] = ("desktop", "ntfy", "telegram", "webhook", "email", "apprise")
URGENCIES: tuple[str, ...] = ("low", "normal", "critical")


SHOWN_CHARS = 200  # of a server's or a library's words kept in an error


def one_line(text: str, limit: int = SHOWN_CHARS) -> str:
    """Words from outside (a server, a bus, a library) made safe to quote in an error: one
    line, printable, at most ``limit`` characters. Remove secrets first: a cut made before
    could leave a piece of one behind."""
    flat = " ".join(str(text).split())
    flat = "".join(c if c.isprintable() else "?" for c in flat)
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def alert_id(*about: str) -> str:
    """A stable id for what an alert is about: the same parts give the same id, on any run."""
    return str(_blake2s()("\x1f".join(about).encode("utf-8"), digest_size=10).hexdigest())


def _blake2s() -> Any:
    """CPython's own BLAKE2s, not hashlib's: importing hashlib loads OpenSSL (about 4 MB
    resident, measured by bench/footprint.py) into an agent that only names its alerts."""
    # deferred: hashlib would load OpenSSL (see above)
    try:
        from _blake2 import blake2s
    except ImportError:  # another Python
        from hashlib import blake2s  # deferred, as above
    return blake2s


def iso(t: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, to the second (the webhook's times)."""
    if t is None:
        return None
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    """One message about one event. ``start``/``end`` are UTC (``end`` None while what it is
    about goes on); ``duration_s`` is None where nothing has a length (a test, a speed test);
    ``details`` holds what the event adds (``target``, ``how``, ``source``, ``charge_pct``,
    ``runtime_s``, ``download_mbps``, ``plan_mbps``, ...)."""

    id: str
    event: str
    type: str
    cause: str
    start: datetime
    end: datetime | None
    duration_s: float | None
    agent: str
    title: str
    text: str
    urgency: str = "normal"
    details: Mapping[str, FieldValue] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown alert event {self.event!r}")
        if self.urgency not in URGENCIES:
            raise ValueError(f"unknown urgency {self.urgency!r}")
        for t in (self.start, self.end):
            if t is not None and t.tzinfo is None:
                raise ValueError(f"{self.event}: times must be timezone-aware")
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON object (and the outbox's copy of the alert)."""
        return {"id": self.id, "event": self.event, "type": self.type, "cause": self.cause,
                "start": iso(self.start), "end": iso(self.end),
                "duration_s": None if self.duration_s is None else round(self.duration_s, 1),
                "agent": self.agent, "title": self.title, "text": self.text,
                "urgency": self.urgency, "details": dict(self.details), "tags": dict(self.tags)}

    def to_json(self) -> str:
        return json.dumps(self.payload(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Alert:
        """An alert as :meth:`to_json` wrote it (the outbox's rows); ValueError when it is not."""
        try:
            d = json.loads(text)
            return cls(
                id=str(d["id"]), event=str(d["event"]), type=str(d["type"]), cause=str(d["cause"]),
                start=_time(d["start"]), end=_time(d["end"]) if d["end"] else None,
                duration_s=None if d["duration_s"] is None else float(d["duration_s"]),
                agent=str(d["agent"]), title=str(d["title"]), text=str(d["text"]),
                urgency=str(d.get("urgency", "normal")), details=dict(d.get("details") or {}),
                tags={str(k): str(v) for k, v in (d.get("tags") or {}).items()})
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an alert: {exc}") from exc


def _time(v: str) -> datetime:
    t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("a time without its zone")
    return t


class SendError(Exception):
    """A channel could not deliver. ``retry``: a later attempt may succeed; ``retry_after_s``:
    how long the server asked us to wait (Telegram's ``retry_after``, HTTP's Retry-After)."""

    def __init__(self, message: str, *, retry: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after_s = retry_after_s


class Channel(Protocol):
    """What the alerts job needs of a channel.

    ``key``: a stable name (the outbox's channel column: the config's ``name``, else its
    kind); ``warnings``: what the wiring logs and ``check`` shows (a secret file others may
    read, TLS not verified), set by :func:`agent.alerts.channels.build`; ``remote``: whether
    it needs the internet (then it waits for the line); ``send(alert)`` delivers or raises
    :class:`SendError`, and returns a short receipt for the log (the server's message id);
    ``state()`` says, without sending, whether the channel looks usable now (``check`` shows
    it)."""

    key: str
    kind: str
    remote: bool
    warnings: list[str]

    def send(self, alert: Alert) -> str: ...

    def state(self) -> str: ...
