"""InfluxDB line protocol, encoded by the agent itself (pure functions, no I/O).

One line per :class:`~agent.model.Sample`::

    measurement,tag1=v1,tag2=v2 field1=1.5,field2=3i,field3=true,field4="text" 1795441876000000000

Deterministic: tags are sorted by key and timestamps are the stored nanoseconds, so a row sent
twice (after a crash between the server's answer and marking it sent) lands on the same series
and time and overwrites itself instead of counting twice.

Escaping, as measured against InfluxDB 1.6.7 and VictoriaMetrics 1.79.5 (tests/test_lineproto.py
and tests/test_influx_servers.py check the round trip through both):

* measurement: comma and space are backslash-escaped; tag keys, tag values and field keys: comma,
  equals sign and space.
* Line protocol cannot carry a raw newline, carriage return or tab in a tag value (both servers end
  the line there) nor, for VictoriaMetrics, inside a quoted string field. They are sent as the two
  characters ``\\n``, ``\\r``, ``\\t`` (the convention Telegraf and influxdb-client use), and
  :func:`unescape_tag` turns them back when linewatch reads the data again.
* Other control characters, an empty key or value, and a backslash before a comma, equals sign,
  space, another backslash or the end cannot be carried so that both servers read the same
  value (InfluxDB 1.x keeps a doubled backslash, VictoriaMetrics halves it): :class:`LineError`
  names the key, the sink quarantines that one row with the message instead of sending a line
  the server would reject, and the config refuses such values up front
  (:func:`check_tag_value`).
* String fields: backslash and double quote are backslash-escaped.
* Floats use Python's shortest round-trip form (``0.1``, ``1.5e-05``); NaN and infinities do not
  exist in line protocol and are a LineError. Integers get the ``i`` suffix and must fit in 64 bits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping

_INT_MIN, _INT_MAX = -(2 ** 63), 2 ** 63 - 1

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_BAD_BACKSLASH = re.compile(r"\\([,= \\]|$)")
_CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F)) - {"\n", "\r", "\t"}


class LineError(ValueError):
    """A sample that line protocol cannot express; the message names the key."""


def _name(text: str, table: dict, what: str) -> str:
    if not text:
        raise LineError(f"{what} is empty")
    if "\\" in text and _BAD_BACKSLASH.search(text):
        raise LineError(f"{what} {text!r} has a backslash before a comma, equals sign, space, "
                        "backslash or the end: the servers read that differently")
    if not _CONTROL.isdisjoint(text):
        raise LineError(f"{what} {text!r} contains a control character")
    return text.translate(table)


def check_tag_value(text: str) -> None:
    """Raise ValueError when ``text`` cannot be sent as a tag value (used by the config)."""
    try:
        _name(text, _KEY, "value")
    except LineError as exc:
        raise ValueError(str(exc).removeprefix("value ")) from None


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,k1=v1,k2=v2`` with tags sorted by key (InfluxDB's canonical order)."""
    parts = [_name(measurement, _MEASUREMENT, "measurement")]
    for k in sorted(tags):
        v = tags[k]
        parts.append(f"{_name(k, _KEY, 'tag key')}={_name(str(v), _KEY, f'tag {k!r}')}")
    return ",".join(parts)


def field_value(key: str, v) -> str:
    t = type(v)
    if t is float:
        if not math.isfinite(v):
            raise LineError(f"field {key!r}: {v} is not a finite number")
        return repr(v)
    if t is bool:
        return "true" if v else "false"
    if t is int:
        if not _INT_MIN <= v <= _INT_MAX:
            raise LineError(f"field {key!r}: integer {v} does not fit in 64 bits")
        return f"{v}i"
    if t is str:
        if not _CONTROL.isdisjoint(v):
            raise LineError(f"field {key!r}: string contains a control character")
        return '"' + v.translate(_STRING) + '"'
    if isinstance(v, (bool, int, float, str)):  # subclasses (an IntEnum): as their base type
        return field_value(key, (bool if isinstance(v, bool) else int if isinstance(v, int)
                                 else float if isinstance(v, float) else str)(v))
    raise LineError(f"field {key!r}: unsupported type {type(v).__name__}")


_FIELD_KEYS: dict[str, str] = {}


def field_set(fields: Mapping) -> str:
    """``k1=v1,k2=v2``; a sample without fields is a LineError (line protocol needs one)."""
    if not fields:
        raise LineError("no fields")
    parts = []
    for k, v in fields.items():
        ek = _FIELD_KEYS.get(k)
        if ek is None:
            ek = _name(k, _KEY, "field key")
            if len(_FIELD_KEYS) < 10_000:  # field keys come from the catalog: a few dozen
                _FIELD_KEYS[k] = ek
        parts.append(f"{ek}={field_value(k, v)}")
    return ",".join(parts)


def field_set_or_none(fields: Mapping) -> str | None:
    """:func:`field_set`, None where line protocol cannot carry ``fields`` (made when a row is
    written; the row is encoded again when it is sent, which names the reason)."""
    try:
        return field_set(fields)
    except LineError:
        return None


def line(measurement: str, tags: Mapping[str, str], fields: Mapping, time_ns: int) -> str:
    return f"{series_key(measurement, tags)} {field_set(fields)} {time_ns}"


class Encoder:
    """Lines for the store's outbox rows: each series' key is escaped once and cached (a 72-hour
    backlog has a few hundred series and a hundred thousand rows)."""

    def __init__(self, max_series: int = 20_000) -> None:
        self._keys: dict[int, str | LineError] = {}
        self._max = max_series

    def encode_rows(self, rows) -> list[tuple[int, str | LineError]]:
        """Outbox rows ``(id, series_id, measurement, tags_json, fields_json, time_ns)`` as
        ``(id, line)``, or ``(id, LineError)`` for a row the protocol cannot carry."""
        texts: dict[int, tuple[str, str]] = {}
        for r in rows:  # a series' key from its first row (later rows' text is not read)
            texts.setdefault(r[1], (r[2], r[3]))
        ids, lines, bad = self.encode_lean([(r[0], r[1], r[4], r[5], None) for r in rows], texts.get)
        done = dict(zip(ids, lines))
        done.update((i, exc) for i, exc, _ in bad)
        return [(r[0], done[r[0]]) for r in rows]

    def encode_lean(self, rows, series: Callable[[int], tuple[str, str] | None]
                    ) -> tuple[list[int], list[str], list[tuple[int, LineError, tuple]]]:
        """Lean outbox rows ``(id, series_id, fields_json, time_ns, field_set)`` as ``(ids,
        lines, bad)``: the ids and lines of the rows line protocol carries, in order, and ``(id,
        LineError, (measurement, tags_json, fields_json, time_ns))`` for each it cannot.
        ``field_set``: the row's field set made when it was written (``fields_json`` is None
        then), used as it is; None: the fields are encoded here. ``series(id)`` gives a series'
        ``(measurement, tags_json)`` the first time it is seen (None: no such series). The
        fields of the rows to encode are parsed in one JSON call (2.4x faster than one call per
        row); a row whose JSON is damaged makes that fall back to row by row, so only that row
        fails."""
        texts = [r[2] for r in rows if r[4] is None]
        parsed: Iterator = iter(())
        if texts:
            try:
                all_fields = json.loads("[" + ",".join(texts) + "]")
                if len(all_fields) != len(texts):
                    raise ValueError("row count")
            except (ValueError, TypeError):
                all_fields = [None] * len(texts)
            parsed = iter(all_fields)
        keys = self._keys
        ids: list[int] = []
        lines: list[str] = []
        bad: list[tuple[int, LineError, tuple]] = []
        for i, sid, fields_json, ns, done in rows:
            try:
                key = keys.get(sid)
                if key is None:
                    key = self._series_key(sid, series(sid))
                if done is not None:
                    if key.__class__ is not str:
                        raise key
                    lines.append(f"{key} {done} {ns}")
                    ids.append(i)
                    continue
                fields = next(parsed)
                if fields is None:
                    try:
                        fields = json.loads(fields_json)
                    except (ValueError, TypeError) as exc:
                        raise LineError(f"damaged fields in the store: {exc}") from None
                if fields.__class__ is not dict:
                    raise LineError("damaged fields in the store: not an object")
                if key.__class__ is not str:
                    raise key
                lines.append(f"{key} {field_set(fields)} {ns}")
                ids.append(i)
            except LineError as exc:
                meas, tags = series(sid) or ("?", "?")
                bad.append((i, exc, (meas, tags, fields_json, ns)))
        return ids, lines, bad

    def _series_key(self, sid: int, text: tuple[str, str] | None) -> str | LineError:
        if text is None:
            key: str | LineError = LineError(f"damaged row in the store: no series {sid}")
        else:
            try:
                key = series_key(text[0], json.loads(text[1]))
            except LineError as exc:
                key = exc
            except ValueError as exc:
                key = LineError(f"damaged tags in the store: {exc}")
        if len(self._keys) >= self._max:
            self._keys.clear()
        self._keys[sid] = key
        return key


_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t"}


def unescape_tag(stored: str) -> str:
    """A tag value as InfluxDB stores it back to what the agent had: ``\\n``, ``\\r`` and ``\\t``
    become the characters again. (The servers themselves undo the comma, equals and space
    escapes.)"""
    if "\\" not in stored:
        return stored
    out, i = [], 0
    while i < len(stored):
        c = stored[i]
        if c == "\\" and i + 1 < len(stored) and stored[i + 1] in _UNESCAPE:
            out.append(_UNESCAPE[stored[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)
