"""The config kit: frozen dataclass sections loaded from TOML tables, validated once.

Both the agent's config (agent/config.py) and the collector's (collector/config.py) are trees of
frozen dataclasses whose fields are made with :func:`opt`: a default, the key's one-paragraph doc
and an optional check. This module turns a TOML table into such a section (:func:`sections_of`),
with errors that name the file, the key and what was expected, and renders the commented example
config from the same fields (:func:`toml_value`, :func:`wrap`), so docs and code cannot drift.

Values that can hold a secret (a password in a URL) are never echoed: :func:`show` masks them.
The window and working-hours parsers both command lines use are here too.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields
from datetime import UTC, datetime
from typing import Any

from kit.errors import ConfigError
from kit.secret import redact_value

Check = Callable[[Any], str | None]  # returns what was expected when the value is wrong


def opt(default: Any, doc: str, check: Check | None = None, example: Any = None) -> Any:
    """A config field: its default, its one-paragraph doc and an optional value check."""
    meta = {"doc": doc, "check": check, "example": example}
    if isinstance(default, (list, tuple)):
        frozen = tuple(default)
        return field(default_factory=lambda: frozen, metadata=meta)
    return field(default=default, metadata=meta)


# -- value checks: each returns None when fine, else what was expected -----------------------

def at_least(lo: float) -> Check:
    return lambda v: None if v >= lo else f"must be >= {lo:g}"


def between(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"must be between {lo:g} and {hi:g}"


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else "must be one of " + ", ".join(f'"{c}"' for c in choices)


def max_len(n: int) -> Check:
    return lambda v: None if len(v) <= n and "\n" not in v else f"must be one line of at most {n} characters"

def each(check: Check) -> Check:
    def run(values: tuple[Any, ...]) -> str | None:
        for i, v in enumerate(values):
            problem = check(v)
            if problem:
                return f"[{i}] {show(v)}: {problem}"
        return None
    return run


def parses(module: str, func: str, allow_empty: bool = False) -> Check:
    """A check that runs ``module.func(value)`` (imported on first use, so the config stays
    light) and reports the ValueError it raises."""
    def check(v: str) -> str | None:
        if allow_empty and v == "":
            return None
        try:
            getattr(importlib.import_module(module), func)(v)
        except ValueError as exc:
            return str(exc)
        return None
    return check

def all_of(*checks: Check) -> Check:
    def run(v: Any) -> str | None:
        for c in checks:
            problem = c(v)
            if problem:
                return problem
        return None
    return run


# -- a TOML table into a section --------------------------------------------------------------

def sections_of(data: Mapping[str, Any], tables: Mapping[str, type], source: str) -> dict[str, Any]:
    """Each TOML table of ``data`` validated into its section dataclass (also the collector's)."""
    sections = {}
    for name, value in data.items():
        if name not in tables:
            raise ConfigError(source, name, "unknown section; expected one of " + ", ".join(tables))
        if not isinstance(value, dict):
            raise ConfigError(source, name, f"must be a table ([{name}]), got {show(value)}")
        sections[name] = section(tables[name], name, value, source)
    return sections

def section(cls: type, name: str, data: Mapping[str, Any], source: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, raw in data.items():
        where = f"{name}.{key}"
        if key not in known:
            raise ConfigError(source, where, "unknown key; expected one of " + ", ".join(known))
        f = known[key]
        value = coerce(raw, default_of(f), source, where)
        problem = problem_of(f, value)
        if problem:
            raise ConfigError(source, where, f"{problem}, got {show(raw)}")
        values[key] = value
    return cls(**values)


def default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    factory = f.default_factory
    assert callable(factory)  # opt() gives every field a default or a factory
    return factory()


def coerce(raw: Any, default: Any, source: str, where: str) -> Any:
    """Check ``raw`` has the type of ``default``; ints are accepted where floats are expected."""
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        raise ConfigError(source, where, f"must be true or false, got {show(raw)}")
    if isinstance(default, int):
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise ConfigError(source, where, f"must be an integer, got {show(raw)}")
    if isinstance(default, float):
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            if raw != raw or raw in (float("inf"), float("-inf")):
                raise ConfigError(source, where, f"must be a finite number, got {show(raw)}")
            return float(raw)
        raise ConfigError(source, where, f"must be a number, got {show(raw)}")
    if isinstance(default, str):
        if isinstance(raw, str):
            return raw.strip()
        raise ConfigError(source, where, f"must be a string, got {show(raw)}")
    if isinstance(default, tuple):
        if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
            return tuple(v.strip() for v in raw)
        raise ConfigError(source, where, f"must be a list of strings, got {show(raw)}")
    raise AssertionError(f"unsupported config type at {where}")  # a bug in the tree above

def show(v: Any) -> str:
    """A value as a message shows it: a password in a URL (``power.ups``, ``influx.url``, or
    one typed where it does not belong) masked by :func:`kit.secret.redact_value`."""
    if isinstance(v, str):
        return repr(redact_value(v))
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show(x) for x in v) + "]"
    return repr(v)


def problem_of(f: Field[Any], value: Any) -> str | None:
    """What field ``f``'s check says of ``value``, with any echo of the value in it shown as
    :func:`show` shows it (the parsers behind the checks quote what they were given)."""
    check = f.metadata.get("check")
    problem: str | None = check(value) if check else None
    if not problem:
        return problem
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, str) and redact_value(v) != v:
            problem = problem.replace(repr(v), repr(redact_value(v))).replace(v, redact_value(v))
    return problem

def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}" if v != int(v) else str(int(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

def wrap(text: str, width: int = 96) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    return lines + ([cur] if cur else [])


# -- windows and working hours, as both command lines take them --------------------------------

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_work_hours(v: str, overnight: bool = False) -> tuple[int, int]:
    """"09:00-18:00" -> (540, 1080) minutes after midnight; the end must follow the start.

    With ``overnight``, an end before the start is a shift that crosses midnight:
    "20:00-05:00" -> (1200, 300), from 20:00 to 05:00 the next morning."""
    m = _HHMM.match(v.strip())
    if not m:
        raise ValueError('must be "HH:MM-HH:MM", such as "09:00-18:00"'
                         + (' or "20:00-05:00"' if overnight else ""))
    a = int(m[1]) * 60 + int(m[2])
    b = int(m[3]) * 60 + int(m[4])
    if b > 24 * 60:
        raise ValueError("the end must be 24:00 at the latest")
    if not overnight and b <= a:
        raise ValueError("the end must be after the start, on the same day")
    if b == a:
        raise ValueError("the start and the end must differ")
    return a, b


def parse_duration(v: str) -> float:
    """"30d", "12h", "90min", "2w" -> seconds (> 0)."""
    m = _DURATION.match(v.strip())
    if not m or float(m[1]) <= 0:
        raise ValueError('must be a duration such as "30d", "12h", "90min" or "2w"')
    return float(m[1]) * _UNIT_S[m[2]]


def parse_when(v: str, now: float) -> float:
    """A start or end of the window: a duration back from ``now`` ("30d"), or an ISO date or
    time ("2026-11-01", "2026-11-01T09:00+05:00"; a date or time without zone is UTC)."""
    try:
        return now - parse_duration(v)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(v.strip())
    except ValueError:
        raise ValueError(f'{v!r}: expected a duration such as "30d" or a date such as '
                         '"2026-11-01"') from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def checked(func: Callable[[Any], object]) -> Check:
    def run(v: Any) -> str | None:
        try:
            func(v)
        except ValueError as exc:
            return str(exc)
        return None
    return run


def check_zone(v: str) -> None:
    # deferred: zoneinfo loads sysconfig (about 0.5 MB), which the agent never needs
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Asia/Karachi") from None
