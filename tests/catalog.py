"""docs/metrics.md read as data, and the checks that samples keep to it: every measurement, tag and
field listed with its type, and no address but the configured ones."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

CATALOG = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
COMMON_TAGS = {"agent", "site", "region", "city", "isp", "access"}
PY_TYPES = {"float": float, "integer": int, "boolean": bool, "string": str}


def load_catalog() -> dict:
    cat, cur = {}, None
    for line in CATALOG.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^## (\w+)\s*$", line):
            cur = cat.setdefault(m.group(1), {"tags": set(COMMON_TAGS), "fields": {}})
        elif cur is not None and line.startswith("Tags:"):
            cur["tags"] |= set(re.findall(r"`(\w+)`", line))
        elif cur is not None and (m := re.match(r"^\| `(\w+)` \| (\w+) \|", line)):
            cur["fields"][m.group(1)] = m.group(2)
    return cat


def assert_listed(samples):
    cat = load_catalog()
    seen = set()
    for s in samples:
        assert s.measurement in cat, f"measurement {s.measurement!r} not in docs/metrics.md"
        entry = cat[s.measurement]
        extra = set(s.tags) - entry["tags"]
        assert not extra, f"{s.measurement}: tags {extra} not in docs/metrics.md"
        for k, v in s.fields.items():
            assert k in entry["fields"], f"{s.measurement}.{k} not in docs/metrics.md"
            want = PY_TYPES[entry["fields"][k]]
            ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
            assert ok, f"{s.measurement}.{k} = {v!r} is not {entry['fields'][k]}"
            seen.add((s.measurement, k))
    return seen


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
