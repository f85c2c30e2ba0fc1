"""docs/metrics.md read as data, and the checks that samples keep to it: every measurement, tag and
field listed with its type, and no address but the configured ones.

The catalog's shape: a top heading per part (``# Metric catalog``: what the agent emits;
``# The collector's measurements``), a ``## name`` section per measurement, a ``Tags:`` line and a
table row per field: ``| `field` | type | unit | meaning |``. A row may name a family of fields
with a placeholder in angle brackets, ``| `job_<name>_duration_s` | float | ...``: any field of
that shape is listed by it, and the row counts as emitted when one such field is.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path

CATALOG = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
# The top headings of docs/metrics.md and the part of linewatch each one lists.
PARTS = {"Metric catalog": "agent", "The collector's measurements": "collector"}
COMMON_TAGS = {"agent", "site", "region", "city", "isp", "access"}
PY_TYPES = {"float": float, "integer": int, "boolean": bool, "string": str}
_PLACEHOLDER = re.compile(r"<\w+>")


def load_catalog() -> dict:
    """``{measurement: {"part": "agent" | "collector", "tags": set, "fields": {row: type}}}``;
    a row is a field name or a family with a placeholder (``job_<name>_duration_s``)."""
    cat, cur, part = {}, None, None
    for line in CATALOG.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^# (.+?)\s*$", line):
            assert m.group(1) in PARTS, f"docs/metrics.md: unknown part {m.group(1)!r}"
            part, cur = PARTS[m.group(1)], None
        elif m := re.match(r"^## (\w+)\s*$", line):
            common = COMMON_TAGS if part == "agent" else set()
            cur = cat.setdefault(m.group(1), {"part": part, "tags": set(common), "fields": {}})
        elif cur is not None and line.startswith("Tags:"):  # names; values in parentheses
            cur["tags"] |= set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*(\)|$)", "", line)))
        elif cur is not None and (m := re.match(r"^\| `([\w<>]+)` \| (\w+) \|", line)):
            assert m.group(2) in PY_TYPES, f"docs/metrics.md: {m.group(1)}: unknown type {m.group(2)!r}"
            cur["fields"][m.group(1)] = m.group(2)
    return cat


def row_of(entry: dict, field: str) -> str | None:
    """The catalog row that lists ``field``: its own, or the first family whose shape it has."""
    if field in entry["fields"]:
        return field
    for row in entry["fields"]:
        shape = r"\w+".join(re.escape(part) for part in _PLACEHOLDER.split(row))
        if "<" in row and re.fullmatch(shape, field):
            return row
    return None


def assert_listed(samples: Iterable) -> set[tuple[str, str]]:
    """Every sample's measurement, tags and fields are catalogued, each field with its type.
    Returns the ``(measurement, row)`` pairs the samples emitted."""
    cat = load_catalog()
    seen = set()
    for s in samples:
        assert s.measurement in cat, f"measurement {s.measurement!r} not in docs/metrics.md"
        entry = cat[s.measurement]
        extra = set(s.tags) - entry["tags"]
        assert not extra, f"{s.measurement}: tags {extra} not in docs/metrics.md"
        for k, v in s.fields.items():
            row = row_of(entry, k)
            assert row is not None, f"{s.measurement}.{k} not in docs/metrics.md"
            want = PY_TYPES[entry["fields"][row]]
            ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
            assert ok, f"{s.measurement}.{k} = {v!r} is not {entry['fields'][row]}"
            seen.add((s.measurement, row))
    return seen


def catalogued(part: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The ``(measurement, row)`` field rows and ``(measurement, tag)`` tags of one part."""
    cat = load_catalog()
    rows = {(m, r) for m, e in cat.items() if e["part"] == part for r in e["fields"]}
    tags = {(m, t) for m, e in cat.items() if e["part"] == part for t in e["tags"]}
    return rows, tags


ADDRESS_TAGS = {"target", "server"}  # the configured targets and DNS servers, not the worker's


def assert_no_addresses_but_the_configured(samples):
    """No tag or string field carries an IP address except the probe targets and DNS servers the
    user configured: the worker's own (public) address is never stored or sent."""
    def is_address(v) -> bool:
        try:
            ipaddress.ip_address(str(v).split("%")[0].strip("[]"))
        except ValueError:
            return False
        return True
    for s in samples:
        for k, v in list(s.tags.items()) + [(k, v) for k, v in s.fields.items() if isinstance(v, str)]:
            if k not in ADDRESS_TAGS:
                assert not is_address(v), f"{s.measurement}.{k} holds an address: {v}"
