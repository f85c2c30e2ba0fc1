"""Line protocol encoding: escaping tables, a reference reader that applies the servers' own
unescape rules, and property tests. The round trip through the real servers is in
tests/test_influx_servers.py."""

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from kit.lineproto import (
    Encoder,
    LineError,
    check_tag_value,
    field_set,
    field_value,
    line,
    series_key,
    unescape_tag,
)

URDU_CITY = "ڈیرہ اسماعیل خان"  # Dera Ismail Khan


@pytest.mark.parametrize("tags, want", [
    ({"city": "Lahore"}, "m,city=Lahore"),
    ({"city": "Dera Ismail Khan"}, r"m,city=Dera\ Ismail\ Khan"),
    ({"isp": "PTCL, Nayatel"}, r"m,isp=PTCL\,\ Nayatel"),
    ({"isp": "a=b"}, r"m,isp=a\=b"),
    ({"isp": 'say "hi"'}, r'm,isp=say\ "hi"'),
    ({"city": URDU_CITY}, "m,city=" + URDU_CITY.replace(" ", "\\ ")),
    ({"city": "two\nlines"}, r"m,city=two\nlines"),
    ({"city": "tab\there"}, r"m,city=tab\there"),
    ({"b": "2", "a": "1"}, "m,a=1,b=2"),
    ({"key with space": "v"}, r"m,key\ with\ space=v"),
    ({"one": "back\\slash"}, "m,one=back\\slash"),
], ids=["plain", "space", "comma", "equals", "quotes", "urdu", "newline", "tab", "sorted",
        "key-space", "lone-backslash"])
def test_series_key_escaping(tags, want):
    assert series_key("m", tags) == want


@pytest.mark.parametrize("bad, why", [
    ({"": "v"}, "tag key is empty"),
    ({"k": ""}, "is empty"),
    ({"k": "ends\\"}, "backslash"),
    ({"k": "a\\,b"}, "backslash"),
    ({"k": "a\\\\b"}, "backslash"),
    ({"k": "bell\x07"}, "control character"),
], ids=["empty-key", "empty-value", "trailing-backslash", "backslash-comma", "double-backslash",
        "control"])
def test_series_key_refuses_what_servers_read_differently(bad, why):
    with pytest.raises(LineError, match=why):
        series_key("m", bad)


def test_measurement_escaping():
    assert series_key("my meas,x", {}) == r"my\ meas\,x"


@pytest.mark.parametrize("value, want", [
    (1.5, "1.5"), (0.1, "0.1"), (1.5e-05, "1.5e-05"), (-0.0, "-0.0"), (1e300, "1e+300"),
    (3, "3i"), (-7, "-7i"), (2 ** 63 - 1, f"{2 ** 63 - 1}i"), (True, "true"), (False, "false"),
    ("ok", '"ok"'), ('q"uote', r'"q\"uote"'), ("back\\slash", r'"back\\slash"'),
    ("line\nbreak", r'"line\nbreak"'), ("لاہور", '"لاہور"'),
], ids=lambda v: repr(v)[:20])
def test_field_values(value, want):
    assert field_value("f", value) == want


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2 ** 63, -(2 ** 63) - 1, None,
                                   [1], "bell\x07"], ids=repr)
def test_field_values_refused(value):
    with pytest.raises(LineError, match="'f'"):
        field_value("f", value)


def test_field_set_needs_a_field():
    with pytest.raises(LineError, match="no fields"):
        field_set({})


def test_full_line():
    assert line("ping", {"target": "1.1.1.1", "agent": "a1"}, {"rtt_avg_ms": 12.5, "sent": 3},
                1795441876000000000) == ("ping,agent=a1,target=1.1.1.1 rtt_avg_ms=12.5,sent=3i "
                                         "1795441876000000000")


def test_encoder_caches_series_and_errors():
    enc = Encoder()
    (_, a), (_, b) = enc.encode_rows([
        (1, 1, "ping", json.dumps({"target": "x"}), json.dumps({"v": 1}), 5),
        (2, 1, "IGNORED", json.dumps({"target": "IGNORED"}), json.dumps({"v": 2}), 6)])
    assert a == "ping,target=x v=1i 5" and b == "ping,target=x v=2i 6"
    [(_, bad)] = enc.encode_rows([(3, 2, "m", json.dumps({"k": "bad\\"}), json.dumps({"v": 1}), 1)])
    assert isinstance(bad, LineError)
    [(_, again)] = enc.encode_rows([(4, 2, "m", "{}", json.dumps({"v": 1}), 1)])
    assert again is bad  # the error is cached with the series


def test_check_tag_value_for_config():
    check_tag_value("Dera Ismail Khan, KP")
    with pytest.raises(ValueError, match="backslash"):
        check_tag_value("C:\\")


# -- a reference reader with the servers' rules (InfluxDB 1.x models package; VictoriaMetrics
#    agrees for everything the encoder emits) ---------------------------------------------------

def read_series_key(key: str) -> tuple[str, dict[str, str]]:
    """Split on unescaped commas and equals signs, then undo the escapes the servers undo."""
    parts, cur, i = [], "", 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):
            cur += key[i:i + 2]
            i += 2
            continue
        if c == ",":
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)

    def server_unescape(s: str) -> str:
        return s.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=")

    tags = {}
    for p in parts[1:]:
        j = 0
        while True:
            j = p.index("=", j)
            if p[j - 1] != "\\":
                break
            j += 1
        tags[unescape_tag(server_unescape(p[:j]))] = unescape_tag(server_unescape(p[j + 1:]))
    return server_unescape(parts[0]), tags


def _ok_value(s: str) -> bool:
    try:
        check_tag_value(s)
    except ValueError:
        return False
    return "\\n" not in s and "\\r" not in s and "\\t" not in s  # would read back as the character


text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(text.filter(_ok_value), text.filter(_ok_value), max_size=5))
def test_tags_round_trip_through_the_reference_reader(tags):
    key = series_key("m", tags)
    assert "\n" not in key and "\r" not in key
    meas, got = read_series_key(key)
    assert meas == "m"
    assert got == tags


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_exactly(x):
    assert float(field_value("f", x)) == x


def test_encode_rows_isolates_a_damaged_row():
    enc = Encoder()
    rows = [(1, 1, "m", '{"k":"a"}', '{"v":1}', 10),
            (2, 1, "m", '{"k":"a"}', '{"v":', 20),            # damaged JSON
            (3, 2, "m", '{"k":"b"}', '{"v":"x\\u0007"}', 30),  # a control character
            (4, 3, "m", '{"k":', '{"v":2}', 40),              # damaged tags
            (5, 1, "m", '{"k":"a"}', '[1]', 50)]              # not an object
    got = dict(enc.encode_rows(rows))
    assert got[1] == "m,k=a v=1i 10"
    assert all(isinstance(got[i], LineError) for i in (2, 3, 4, 5))
    assert "damaged fields" in str(got[2]) and "damaged tags" in str(got[4])
    first, third = enc.encode_rows([rows[0], rows[2]])  # the batch parse itself succeeds here
    assert first == (1, "m,k=a v=1i 10") and isinstance(third[1], LineError)


def test_encoder_lean_rows_give_the_same_lines_and_errors():
    series = {1: ("ping", json.dumps({"target": "x"})), 2: ("m", json.dumps({"k": "bad\\"}))}
    rows = [(1, 1, "ping", series[1][1], json.dumps({"v": 1.5, "ok": True, "s": "a"}), 5),
            (2, 2, "m", series[2][1], json.dumps({"v": 1}), 6),
            (3, 1, "ping", series[1][1], "{damaged", 7),
            (4, 1, "ping", series[1][1], json.dumps({"v": math.nan}), 8),
            (5, 1, "ping", series[1][1], json.dumps({"n": 7}), 9)]
    old = Encoder().encode_rows(rows)
    asked = []
    ids, lines, bad = Encoder().encode_lean([(i, sid, f, ns, None) for i, sid, _, _, f, ns in rows],
                                            lambda sid: asked.append(sid) or series.get(sid))
    assert ids == [1, 5] and lines == ['ping,target=x v=1.5,ok=true,s="a" 5', "ping,target=x n=7i 9"]
    assert [(i, line) for i, line in old if isinstance(line, str)] == list(zip(ids, lines))
    assert [(i, str(exc)) for i, exc, _ in bad] == [
        (i, str(e)) for i, e in old if isinstance(e, LineError)]
    assert (bad[0][0], bad[0][2]) == (2, ("m", series[2][1], '{"v": 1}', 6))
    # each series read once for its key, and again for each refused row's message
    assert sorted(asked) == [1, 1, 1, 2, 2]
    _, _, [(_, exc, text)] = Encoder().encode_lean([(9, 3, '{"v":1}', 1, None)], lambda sid: None)
    assert "no series 3" in str(exc) and text == ("?", "?", '{"v":1}', 1)
