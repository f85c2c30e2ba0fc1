"""UPS probe (NUT client): pure URL and protocol parsing (tables + properties), a fake server on
loopback for replies upsd would never send, and a real upsd + dummy-ups (tests/nutlab.py) for
the behaviour that matters: status flips, wrong UPS names, a server that is down, a stale driver,
credentials."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agent.clock import FakeClock
from agent.probes.nut_protocol import (
    KINDS,
    NutError,
    error_for_reply,
    parse_list_var,
    parse_var_line,
    quote_arg,
    split_words,
    ups_fields,
)
from agent.probes.nut_url import NutURL, parse_nut_url
from agent.probes.ups import measure, read_vars
from kit.errors import ProbeError
from tests import nutlab

SECRET = "Zs3cr3t-pw"


# -- parse_nut_url ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, host, port, name, user, password", [
    ("nut://localhost/ups", "localhost", 3493, "ups", None, None),
    ("nut://ups-server.lan:3494/eaton5px", "ups-server.lan", 3494, "eaton5px", None, None),
    ("nut://192.168.1.10/myups", "192.168.1.10", 3493, "myups", None, None),
    ("nut://[::1]/ups", "::1", 3493, "ups", None, None),
    ("nut://[2001:db8::5]:4000/ups", "2001:db8::5", 4000, "ups", None, None),
    ("nut://[fe80::1%25eth0]/ups", "fe80::1%eth0", 3493, "ups", None, None),
    ("nut://monuser:pass@host/ups", "host", 3493, "ups", "monuser", "pass"),
    ("nut://mon%20user:p%40ss%3Aw%2Fd@host/ups", "host", 3493, "ups", "mon user", "p@ss:w/d"),
    ("nut://mon:p@ss:w/d@host:1/ups", "host", 1, "ups", "mon", "p@ss:w/d"),
    ("NUT://Host/UPS", "Host", 3493, "UPS", None, None),
    ("  nut://host/ups\n", "host", 3493, "ups", None, None),
    ("nut://host.example./ups_1.a-b+c", "host.example.", 3493, "ups_1.a-b+c", None, None),
    ("nut://host:65535/ups", "host", 65535, "ups", None, None),
], ids=["name", "name-port", "ipv4", "ipv6", "ipv6-port", "ipv6-zone", "credentials",
        "percent-decoded", "raw-at-colon-slash-in-password", "scheme-case", "whitespace",
        "fqdn-and-name-chars", "max-port"])
def test_parse_url_valid(text, host, port, name, user, password):
    url = parse_nut_url(text)
    assert url == NutURL(host, port, name, user, password)


@pytest.mark.parametrize("text, message", [
    ("", "expected nut://"),
    ("localhost/ups", "expected nut://"),
    ("http://host/ups", "scheme must be nut://, got http://"),
    ("nut://host", "no UPS name"),
    ("nut://host/", "no UPS name"),
    ("nut:///ups", "no host"),
    ("nut://host/ups/", "UPS name may contain only"),
    ("nut://host/my ups", "spaces"),
    ("nut://host/ups?x=1", "query strings"),
    ("nut://host/ups#frag", "fragments"),
    ("nut://host:0/ups", "port must be a whole number 1..65535"),
    ("nut://host:65536/ups", "port must be"),
    ("nut://host:http/ups", "port must be"),
    ("nut://host:/ups", "port must be"),
    ("nut://host:+3493/ups", "port must be"),
    ("nut://::1/ups", "IPv6 address in brackets"),
    ("nut://[::1/ups", "without ']'"),
    ("nut://[10.0.0.1]/ups", "only for IPv6"),
    ("nut://[::1]x/ups", "after ']'"),
    ("nut://[::zz]/ups", "not a valid IPv6 address"),
    ("nut://192.168.1.300/ups", "not a valid IPv4 address"),
    ("nut://ho!st/ups", "not a valid host name"),
    ("nut://h\u00e9st/ups", "not a valid host name"),
    ("nut://monuser@host/ups", "both a user and a password"),
    ("nut://:pw@host/ups", "user name is empty"),
    ("nut://monuser:@host/ups", "password is empty"),
    ("nut://monuser:pw%0A@host/ups", "control character"),
    ("nut://monuser:%FF@host/ups", "percent-encoded UTF-8"),
], ids=["empty", "no-scheme", "wrong-scheme", "no-ups", "empty-ups", "no-host",
        "trailing-slash", "space", "query", "fragment", "port-0", "port-too-big", "port-word",
        "port-empty", "port-plus", "ipv6-unbracketed", "ipv6-unterminated", "ipv4-in-brackets",
        "junk-after-bracket", "bad-ipv6", "bad-ipv4", "bad-host-char", "non-ascii-host",
        "user-without-password", "empty-user", "empty-password", "newline-in-password",
        "bad-utf8-escape"])
def test_parse_url_invalid(text, message):
    with pytest.raises(ValueError) as info:
        parse_nut_url(text)
    assert message in str(info.value)


def test_parse_url_rejects_non_string():
    with pytest.raises(ValueError, match="must be a string"):
        parse_nut_url(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("url, shown", [
    (NutURL("host", 3493, "ups"), "nut://host:3493/ups"),
    (NutURL("host", 3493, "ups", "mon", SECRET), "nut://mon:***@host:3493/ups"),
    (NutURL("::1", 3494, "ups", "mon user", SECRET), "nut://mon%20user:***@[::1]:3494/ups"),
    (NutURL("fe80::1%eth0", 3493, "u"), "nut://[fe80::1%25eth0]:3493/u"),
], ids=["plain", "redacted", "ipv6-quoted-user", "ipv6-zone"])
def test_url_str_and_repr_redact(url, shown):
    assert str(url) == shown
    assert repr(url) == f"NutURL({shown!r})"
    for text in (str(url), repr(url), f"{url}", f"{url!r}", str([url]), str({"u": url})):
        assert SECRET not in text
    assert parse_nut_url(shown.replace("***", "x")).host == url.host  # str() parses back


@pytest.mark.parametrize("kwargs, message", [
    (dict(host="h", port=0, ups="u"), "port must be"),
    (dict(host="h", port=True, ups="u"), "port must be"),
    (dict(host="h", port="3493", ups="u"), "port must be"),
    (dict(host="", port=1, ups="u"), "no host"),
    (dict(host="h", port=1, ups=""), "no UPS name"),
    (dict(host="h", port=1, ups="u", user="mon"), "both a user and a password"),
    (dict(host="h", port=1, ups="u", password=SECRET), "both a user and a password"),
    (dict(host="h", port=1, ups="u", user="mon", password=SECRET + "\r\nLIST UPS"),
     "control character"),
], ids=["port-0", "port-bool", "port-str", "no-host", "no-ups", "user-only", "password-only",
        "injection"])
def test_nuturl_validates_direct_construction(kwargs, message):
    with pytest.raises(ValueError) as info:
        NutURL(**kwargs)
    assert message in str(info.value)
    assert SECRET not in str(info.value)


# -- where the password is kept: load_url ----------------------------------------------------

def power(text: str, source: str = "lw.toml"):
    from agent.config import parse

    return parse("[power]\n" + text, source).power


def private(path, text: str, mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_user_without_a_password_is_valid_config_but_needs_one_to_run(tmp_path):
    from agent.probes.nut_url import load_url
    from kit.errors import ConfigError

    section = power('ups = "nut://mon@h/ups"')
    with pytest.raises(ConfigError) as err:
        load_url(section, {}, "lw.toml")
    assert err.value.key == "power.ups" and "names a user but no password" in str(err.value)
    for place in ("power.ups_password_file", "$LINEWATCH_UPS_PASSWORD", "credential ups-password"):
        assert place in str(err.value)
    assert "mon" not in str(err.value).split("power.ups:")[1]  # the user may be the password


def test_password_sources_in_order(tmp_path):
    from agent.probes.nut_url import load_url

    pw_file = private(tmp_path / "pw", "from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    private(creds / "ups-password", "from-credential")
    with_file = power(f'ups = "nut://mon@h/ups"\nups_password_file = "{pw_file}"')
    env = {"LINEWATCH_UPS_PASSWORD": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}
    assert load_url(with_file, env)[0].password == "from-env"
    del env["LINEWATCH_UPS_PASSWORD"]
    assert load_url(with_file, env) == (NutURL("h", 3493, "ups", "mon", "from-file"), [])
    assert load_url(power('ups = "nut://mon@h/ups"'), env)[0].password == "from-credential"
    # a password written in the URL is used as it is; the others are for a user without one
    inline = power(f'ups = "nut://mon:{SECRET}@h/ups"')
    assert load_url(inline, {**env, "LINEWATCH_UPS_PASSWORD": "from-env"})[0].password == SECRET
    assert load_url(power('ups = "nut://h/ups"'), {"LINEWATCH_UPS_PASSWORD": "x"}) == \
        (NutURL("h", 3493, "ups"), [])
    assert load_url(power(""), env) == (None, [])


def test_password_file_keeps_the_password_exactly(tmp_path, monkeypatch):
    from agent.probes.nut_url import load_url

    monkeypatch.setenv("HOME", str(tmp_path))
    private(tmp_path / "pw", f" {nutlab.PASSWORD} \n")   # spaces are the password's own
    url, warnings = load_url(power('ups = "nut://mon@h/ups"\nups_password_file = "~/pw"'), {})
    assert url.password == f" {nutlab.PASSWORD} " and warnings == []


@pytest.mark.parametrize("content, expected", [(None, "cannot read"), ("", "is empty"),
                                               ("a\nb\n", "one line (the password)"),
                                               ("a\tb", "control character")],
                         ids=["missing", "empty", "two-lines", "tab"])
def test_a_bad_password_file_names_the_key(tmp_path, content, expected):
    from agent.probes.nut_url import load_url
    from kit.errors import ConfigError

    f = tmp_path / "pw"
    if content is not None:
        private(f, content)
    with pytest.raises(ConfigError) as err:
        load_url(power(f'ups = "nut://mon@h/ups"\nups_password_file = "{f}"'), {}, "lw.toml")
    assert err.value.key == "power.ups_password_file" and expected in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ('ups_password_file = "/pw"', "power.ups names no user"),
    ('ups = "nut://h/ups"\nups_password_file = "/pw"', "power.ups names no user"),
    (f'ups = "nut://mon:{SECRET}@h/ups"\nups_password_file = "/pw"', "keep it in one place"),
], ids=["no-ups", "no-user", "password-twice"])
def test_a_password_file_needs_a_user_without_a_password(text, expected):
    from kit.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        power(text)
    assert err.value.key == "power.ups_password_file" and expected in str(err.value)
    assert SECRET not in str(err.value)


def test_files_others_can_read_are_warnings_that_never_show_the_password(tmp_path):
    from agent.probes.nut_url import load_url

    cfg = private(tmp_path / "lw.toml", f'[power]\nups = "nut://mon:{SECRET}@h/ups"\n', 0o644)
    url, (warning,) = load_url(power(f'ups = "nut://mon:{SECRET}@h/ups"'), {}, str(cfg))
    assert url.password == SECRET
    assert f"{cfg} holds the UPS password (in power.ups) and is readable by other users (mode 644)" \
        in warning and "ups_password_file" in warning and SECRET not in warning
    cfg.chmod(0o600)
    assert load_url(power(f'ups = "nut://mon:{SECRET}@h/ups"'), {}, str(cfg))[1] == []
    pw = private(tmp_path / "pw", SECRET, 0o640)
    _, (warning,) = load_url(power(f'ups = "nut://mon@h/ups"\nups_password_file = "{pw}"'), {},
                             str(cfg))
    assert warning == f"{pw} is readable by other users (mode 640): chmod 600 {pw}"


_PW_SUFFIX = st.text(alphabet=st.characters(blacklist_characters="Z",
                                            blacklist_categories=("Cs",)), max_size=20)

# Each template puts the password where the grammar says a password is; the mistakes around it
# are the ones people make. Marker "ZZZZ" (never in the suffix) finds any echo of the password.
_TEMPLATES = [
    "nut://mon:{pw}@host/ups",
    "nut://mon:{pw}@host:0/ups",
    "nut://mon:{pw}@host:99999/ups",
    "nut://mon:{pw}@host:/ups",
    "nut://mon:{pw}@host/",
    "nut://mon:{pw}@host",
    "nut://mon:{pw}@[::1/ups",
    "nut://mon:{pw}@ho st/ups",
    "nut://mon:{pw}@host/u p s",
    "nut://mon:{pw}@999.1.1.1/ups",
    "nut://mon:{pw}/ups",
    "nut://mon{pw}@host/ups",
    "nut://mon:{pw}",
    "http://mon:{pw}@host/ups",
    "nut:/mon:{pw}@host/ups",
]


@settings(max_examples=300, deadline=None)
@given(suffix=_PW_SUFFIX, template=st.sampled_from(_TEMPLATES))
def test_url_errors_and_str_never_show_password(suffix, template):
    password = "ZZZZ" + suffix
    try:
        url = parse_nut_url(template.format(pw=password))
    except ValueError as exc:
        assert "ZZZZ" not in str(exc)
        assert "ZZZZ" not in repr(exc)
    else:
        if "ZZZZ" in (url.user or ""):
            return  # "mon{pw}" with a ':' in the suffix reads as user "monZZZZ...": shown, rightly
        assert "ZZZZ" not in str(url) and "ZZZZ" not in repr(url)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_parse_url_raises_only_valueerror(text):
    try:
        url = parse_nut_url(text)
    except ValueError:
        return
    assert isinstance(url, NutURL) and 1 <= url.port <= 65535


@settings(max_examples=300, deadline=None)
@given(user=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                    max_size=12),
       password=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                        max_size=12))
def test_url_credentials_round_trip_percent_encoded(user, password):
    from urllib.parse import quote

    url = parse_nut_url(f"nut://{quote(user, safe='')}:{quote(password, safe='')}@h/u")
    assert (url.user, url.password) == (user, password)


# -- protocol helpers ------------------------------------------------------------------------

@pytest.mark.parametrize("line, words", [
    ('VAR ups ups.status "OL"', ["VAR", "ups", "ups.status", "OL"]),
    ('VAR ups ups.status "OL CHRG"', ["VAR", "ups", "ups.status", "OL CHRG"]),
    ('VAR ups x "say \\"hi\\""', ["VAR", "ups", "x", 'say "hi"']),
    ('VAR ups x "C:\\\\ups"', ["VAR", "ups", "x", "C:\\ups"]),
    ('VAR ups x ""', ["VAR", "ups", "x", ""]),
    ("VAR\tups  x   y", ["VAR", "ups", "x", "y"]),
    ('a"b c"d', ["ab cd"]),
    ("a\\ b", ["a b"]),
    ("", []),
    ('VAR ups ups.mfr "Ünïcode ⚡"', ["VAR", "ups", "ups.mfr", "Ünïcode ⚡"]),
], ids=["simple", "space-in-value", "escaped-quote", "escaped-backslash", "empty-value",
        "tabs-and-runs", "quote-inside-word", "escaped-space", "empty-line", "utf8"])
def test_split_words(line, words):
    assert split_words(line) == words


@pytest.mark.parametrize("line", ['VAR ups x "open', "VAR ups x \\"],
                         ids=["unterminated-quote", "trailing-backslash"])
def test_split_words_malformed(line):
    with pytest.raises(NutError) as info:
        split_words(line)
    assert info.value.kind == "protocol"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40))
def test_quote_arg_round_trips_through_split_words(text):
    assert split_words("PASSWORD " + quote_arg(text)) == ["PASSWORD", text]


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\x00b", "\x7f"],
                         ids=["newline", "cr", "nul", "del"])
def test_quote_arg_refuses_control_characters(text):
    with pytest.raises(ValueError):
        quote_arg(text)


@pytest.mark.parametrize("line, ups_name, expected", [
    ('VAR dummy ups.status "OB LB"', "dummy", ("ups.status", "OB LB")),
    ('VAR DUMMY battery.charge "80"', "dummy", ("battery.charge", "80")),
    ('VAR dummy ups.mfr "A \\"quoted\\" \\\\name"', "dummy", ("ups.mfr", 'A "quoted" \\name')),
    ('VAR dummy ups.alarm ""', None, ("ups.alarm", "")),
], ids=["status", "ups-name-case", "escapes", "empty-value-any-ups"])
def test_parse_var_line(line, ups_name, expected):
    assert parse_var_line(line, ups_name) == expected


@pytest.mark.parametrize("line, kind", [
    ('VAR other ups.status "OL"', "protocol"),
    ('VAR dummy ups.status', "protocol"),
    ('VAR dummy ups.status "OL" extra', "protocol"),
    ('VAR dummy "" "OL"', "protocol"),
    ('VAL dummy ups.status "OL"', "protocol"),
    ('VAR dummy ups.status "OL', "protocol"),
    ("ERR DATA-STALE", "stale"),
    ("ERR UNKNOWN-UPS", "unknown_ups"),
], ids=["other-ups", "no-value", "extra-word", "empty-name", "not-var", "unterminated",
        "err-stale", "err-unknown"])
def test_parse_var_line_rejects(line, kind):
    with pytest.raises(NutError) as info:
        parse_var_line(line, "dummy")
    assert info.value.kind == kind


def _block(*var_lines: str, ups_name: str = "dummy") -> list[str]:
    return [f"BEGIN LIST VAR {ups_name}", *var_lines, f"END LIST VAR {ups_name}"]


@pytest.mark.parametrize("lines, expected", [
    (_block('VAR dummy ups.status "OL"', 'VAR dummy battery.charge "100"'),
     {"ups.status": "OL", "battery.charge": "100"}),
    (_block(), {}),
    (_block('VAR Dummy ups.status "OB"', ups_name="Dummy"), {"ups.status": "OB"}),
    (["BEGIN LIST VAR DUMMY", 'VAR dummy ups.status "OL"', "END LIST VAR Dummy"],
     {"ups.status": "OL"}),
], ids=["two-vars", "empty-list", "name-as-sent", "name-case-insensitive"])
def test_parse_list_var(lines, expected):
    assert parse_list_var(lines, "dummy") == expected


@pytest.mark.parametrize("lines, kind, code", [
    (["ERR UNKNOWN-UPS"], "unknown_ups", "UNKNOWN-UPS"),
    (["ERR DRIVER-NOT-CONNECTED"], "stale", "DRIVER-NOT-CONNECTED"),
    (["ERR ACCESS-DENIED"], "access_denied", "ACCESS-DENIED"),
    ([], "protocol", None),
    (["BEGIN LIST VAR dummy"], "protocol", None),
    (["BEGIN LIST VAR other", "END LIST VAR other"], "protocol", None),
    (["BEGIN LIST UPS", "END LIST UPS"], "protocol", None),
    (_block('VAR dummy ups.status "OL"', 'VAR dummy ups.status "OB"'), "protocol", None),
    (_block("garbage"), "protocol", None),
    (_block('VAR dummy ups.status "OL"')[:-1] + ["END LIST VAR other"], "protocol", None),
    (["OK"], "protocol", None),
], ids=["unknown-ups", "driver-gone", "denied", "empty", "no-end", "other-ups", "wrong-list",
        "duplicate", "garbage-line", "end-other-ups", "ok-instead"])
def test_parse_list_var_rejects(lines, kind, code):
    with pytest.raises(NutError) as info:
        parse_list_var(lines, "dummy")
    assert (info.value.kind, info.value.code) == (kind, code)


@pytest.mark.parametrize("line, kind, code", [
    ("ERR UNKNOWN-UPS", "unknown_ups", "UNKNOWN-UPS"),
    ("ERR ACCESS-DENIED", "access_denied", "ACCESS-DENIED"),
    ("ERR INVALID-USERNAME", "access_denied", "INVALID-USERNAME"),
    ("ERR INVALID-PASSWORD", "access_denied", "INVALID-PASSWORD"),
    ("ERR USERNAME-REQUIRED", "access_denied", "USERNAME-REQUIRED"),
    ("ERR PASSWORD-REQUIRED", "access_denied", "PASSWORD-REQUIRED"),
    ("ERR DATA-STALE", "stale", "DATA-STALE"),
    ("ERR DRIVER-NOT-CONNECTED", "stale", "DRIVER-NOT-CONNECTED"),
    ("ERR DATA-STALE some extra text", "stale", "DATA-STALE"),
    ("ERR UNKNOWN-COMMAND", "protocol", "UNKNOWN-COMMAND"),
    ("ERR VAR-NOT-SUPPORTED", "protocol", "VAR-NOT-SUPPORTED"),
    ("ERR", "protocol", None),
    ("ERR lower-case", "protocol", None),
], ids=["unknown-ups", "access-denied", "invalid-username", "invalid-password",
        "username-required", "password-required", "data-stale", "driver-not-connected",
        "extra-text", "unknown-command", "other-code", "no-code", "bad-code"])
def test_error_for_reply(line, kind, code):
    err = error_for_reply(line)
    assert isinstance(err, NutError) and isinstance(err, ProbeError)
    assert (err.kind, err.code) == (kind, code)
    assert str(err).startswith("ups: ")


@pytest.mark.parametrize("line", ["OK", "BEGIN LIST VAR x", "", "ERRATA", "VAR x y \"ERR\""],
                         ids=["ok", "begin", "empty", "errata", "err-in-value"])
def test_error_for_reply_ignores_other_lines(line):
    assert error_for_reply(line) is None


def test_nut_error_at_names_redacted_url_and_keeps_kind():
    url = NutURL("10.0.0.5", 3493, "rack", "mon", SECRET)
    err = NutError("protocol", f"odd reply {SECRET!r}").at(url)
    assert err.kind == "protocol" and err.url is url
    assert str(err).startswith("ups nut://mon:***@10.0.0.5:3493/rack: ")
    assert SECRET not in str(err) and SECRET not in repr(err)
    with pytest.raises(ValueError):
        NutError("bogus", "x")


# -- fields ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variables, fields", [
    ({"ups.status": "OL"}, dict(status="OL", on_battery=False, low_battery=False)),
    ({"ups.status": "OL CHRG", "battery.charge": "100", "battery.runtime": "3600",
      "input.voltage": "230.0", "ups.load": "23"},
     dict(status="OL CHRG", on_battery=False, low_battery=False, charge_pct=100.0,
          runtime_s=3600.0, input_voltage_v=230.0, load_pct=23.0)),
    ({"ups.status": "OB DISCHRG", "battery.charge": "80", "input.voltage": "0"},
     dict(status="OB DISCHRG", on_battery=True, low_battery=False, charge_pct=80.0,
          input_voltage_v=0.0)),
    ({"ups.status": "OB LB", "battery.charge": "9.5"},
     dict(status="OB LB", on_battery=True, low_battery=True, charge_pct=9.5)),
    ({"ups.status": "OL", "battery.charge": "n/a", "battery.runtime": "nan",
      "input.voltage": "inf", "ups.load": "1_0"},
     dict(status="OL", on_battery=False, low_battery=False)),
    ({"ups.status": "OL", "battery.charge": " 99 ", "battery.runtime": "1e3",
      "input.voltage": "230,0", "ups.load": ""},
     dict(status="OL", on_battery=False, low_battery=False, charge_pct=99.0, runtime_s=1000.0)),
    ({"ups.status": "OBX LBX"}, dict(status="OBX LBX", on_battery=False, low_battery=False)),
    ({"ups.status": ""}, dict(status="", on_battery=False, low_battery=False)),
    ({"ups.status": "OL", "battery.charge": "120"},
     dict(status="OL", on_battery=False, low_battery=False, charge_pct=120.0)),
], ids=["bare-ol", "all-fields", "on-battery", "low-battery", "non-numbers-left-out",
        "number-forms", "flags-are-words", "empty-status", "not-clamped"])
def test_ups_fields(variables, fields):
    assert ups_fields(variables) == fields


@pytest.mark.parametrize("variables, kind", [
    ({}, "protocol"),
    ({"battery.charge": "100"}, "protocol"),
    ({"ups.status": "WAIT"}, "stale"),
], ids=["nothing", "no-status", "wait"])
def test_ups_fields_without_usable_status(variables, kind):
    with pytest.raises(NutError) as info:
        ups_fields(variables)
    assert info.value.kind == kind


# -- fuzz: the parsers only ever raise NutError / ValueError ---------------------------------

_LINE = st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, b, c, d: f"{a} {b} {c} {d}",
              st.sampled_from(["VAR", "ERR", "BEGIN", "END", "OK"]),
              st.text(alphabet='dummy "\\ LIST VAR', max_size=8),
              st.text(alphabet='ups.status "\\', max_size=12),
              st.text(alphabet='"\\OLB 80.5nan', max_size=12)),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=_LINE, lines=st.lists(_LINE, max_size=6), secret=st.none() | st.text(max_size=5))
def test_parsers_raise_only_nut_or_value_errors(line, lines, secret):
    calls = [
        lambda: split_words(line, secret),
        lambda: parse_var_line(line, "dummy", secret=secret),
        lambda: parse_var_line(line),
        lambda: error_for_reply(line, secret),
        lambda: parse_list_var(lines, "dummy", secret=secret),
        lambda: parse_list_var(_block(*lines), "dummy", secret=secret),
        lambda: ups_fields({"ups.status": line, "battery.charge": line, "ups.load": line}),
    ]
    for call in calls:
        try:
            call()
        except NutError as exc:
            assert exc.kind in KINDS
        except ValueError:
            pass


@settings(max_examples=200, deadline=None)
@given(var_lines=st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}",
                                                  fullmatch=True),
                                    st.text(alphabet=st.characters(
                                        blacklist_categories=("Cc", "Cs")), max_size=30)),
                          max_size=8, unique_by=lambda t: t[0]))
def test_list_round_trip(var_lines):
    lines = _block(*(f"VAR dummy {name} {quote_arg(value)}" for name, value in var_lines))
    assert parse_list_var(lines, "dummy") == dict(var_lines)


# -- a fake server on loopback ---------------------------------------------------------------

class FakeNut:
    """Loopback TCP server: every line received is recorded and answered with ``script(line)``
    (bytes to send; ``None``: send nothing; ``CLOSE``: close the connection; ``(bytes, CLOSE)``:
    both, in that order)."""

    CLOSE = object()

    def __init__(self, script) -> None:
        self.script = script
        self.received: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, ups_name: str = "dummy", user: str | None = None,
            password: str | None = None) -> NutURL:
        return NutURL("127.0.0.1", self.port, ups_name, user, password)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.2)
                buf = b""
                while not self._stop.is_set():
                    try:
                        chunk = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not chunk:
                        break
                    buf += chunk
                    done = False
                    while b"\n" in buf:
                        raw, buf = buf.split(b"\n", 1)
                        line = raw.decode()
                        self.received.append(line)
                        answer = self.script(line)
                        if isinstance(answer, tuple):  # (bytes, CLOSE): answer, then hang up
                            conn.sendall(answer[0])
                            answer = answer[1]
                        if answer is FakeNut.CLOSE:
                            done = True
                            break
                        if answer:
                            conn.sendall(answer)
                    if done:
                        break

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def fake():
    servers: list[FakeNut] = []

    def start(script) -> FakeNut:
        server = FakeNut(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _good_list(line: str) -> bytes | None:
    if line.startswith("LIST VAR"):
        return (b'BEGIN LIST VAR dummy\nVAR dummy ups.status "OB"\n'
                b'VAR dummy battery.charge "55"\nEND LIST VAR dummy\n')
    if line == "LOGOUT":
        return b"OK Goodbye\n"
    return b"OK\n"


def test_fake_conversation_on_the_wire(fake):
    server = fake(_good_list)
    password = 'p@ss w:rd/"q"\\x'
    assert read_vars(server.url(user="mon", password=password)) == {
        "ups.status": "OB", "battery.charge": "55"}
    assert server.received == ['USERNAME "mon"', 'PASSWORD "p@ss w:rd/\\"q\\"\\\\x"',
                               "LIST VAR dummy", "LOGOUT"]


def test_fake_without_credentials_sends_no_username(fake):
    server = fake(_good_list)
    read_vars(server.url())
    assert server.received == ["LIST VAR dummy", "LOGOUT"]


def test_fake_logout_failure_does_not_fail_the_read(fake):
    server = fake(lambda line: FakeNut.CLOSE if line == "LOGOUT" else _good_list(line))
    assert read_vars(server.url())["ups.status"] == "OB"


_MALFORMED = {
    "http-server": b"HTTP/1.1 400 Bad Request\r\n\r\n",
    "ok-instead-of-list": b"OK\n",
    "begin-other-ups": b"BEGIN LIST VAR other\nEND LIST VAR other\n",
    "bad-var-line": b'BEGIN LIST VAR dummy\nVAR dummy ups.status "OL\nEND LIST VAR dummy\n',
    "var-of-other-ups": b'BEGIN LIST VAR dummy\nVAR x ups.status "OL"\nEND LIST VAR dummy\n',
    "binary": b"\x00\xff\xfe garbage \x01\n",
    "huge-line": b"A" * 20000 + b"\n",
    "unknown-err": b"ERR FEATURE-NOT-CONFIGURED\n",
    "no-status": b'BEGIN LIST VAR dummy\nVAR dummy battery.charge "9"\nEND LIST VAR dummy\n',
}


@pytest.mark.parametrize("reply", list(_MALFORMED.values()), ids=list(_MALFORMED))
def test_fake_malformed_replies_are_protocol_errors(fake, reply):
    server = fake(lambda line: reply if line.startswith("LIST") else b"OK\n")
    with pytest.raises(NutError) as info:
        measure(server.url(), clock=FakeClock(), timeout_s=2.0)
    assert info.value.kind == "protocol"
    assert str(info.value).startswith(f"ups nut://127.0.0.1:{server.port}/dummy: ")


def test_fake_endless_list_is_cut_off(fake):
    def script(line):
        if line.startswith("LIST"):
            return b"BEGIN LIST VAR dummy\n" + b''.join(
                f'VAR dummy v{i} "x"\n'.encode() for i in range(10_050))
        return b"OK\n"

    with pytest.raises(NutError) as info:
        read_vars(fake(script).url())
    assert info.value.kind == "protocol" and "too long" in str(info.value)


@pytest.mark.parametrize("script", [
    lambda line: FakeNut.CLOSE,
    lambda line: (b'BEGIN LIST VAR dummy\nVAR dummy ups.status "OL"\n', FakeNut.CLOSE)
    if line.startswith("LIST") else b"OK\n",
], ids=["closed-at-once", "closed-mid-list"])
def test_fake_connection_closed_is_unreachable(fake, script):
    with pytest.raises(NutError) as info:
        read_vars(fake(script).url(), timeout_s=1.0)
    assert info.value.kind == "unreachable" and "closed" in str(info.value)


def test_fake_silent_server_times_out_within_budget(fake):
    server = fake(lambda line: None)
    start = time.monotonic()
    with pytest.raises(NutError) as info:
        read_vars(server.url(), timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert info.value.kind == "unreachable"
    assert "within 0.5 s" in str(info.value)
    # a wait without a timeout would never end: 3 s of slack, for a loaded machine running
    # coverage, still tells a bounded wait from an unbounded one
    assert 0.45 <= elapsed < 3.5


def test_trickling_server_is_bounded_overall():
    # A byte every 0.1 s would reset a per-recv timeout forever; the budget is for the whole call.
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            while not stop.is_set():
                try:
                    conn.sendall(b"B")
                except OSError:
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        with pytest.raises(NutError) as info:
            read_vars(NutURL("127.0.0.1", listener.getsockname()[1], "dummy"), timeout_s=0.6)
        assert info.value.kind == "unreachable"
        # a budget per recv would never end here (a byte every 0.1 s); slack for a loaded machine
        assert time.monotonic() - start < 3.5
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("script, kind", [
    (lambda line: b"ERR ACCESS-DENIED\n" if line.startswith("PASSWORD") else b"OK\n",
     "access_denied"),
    (lambda line: b"ERR INVALID-USERNAME\n", "access_denied"),
    (lambda line: b"ERR ACCESS-DENIED\n" if line.startswith("LIST") else b"OK\n",
     "access_denied"),
    # An echo server: the password comes straight back in a reply.
    (lambda line: b"OK\n" if line.startswith("USERNAME") else line.encode() + b"\n",
     "protocol"),
    (lambda line: b"OK\n" if line.startswith(("USERNAME", "PASSWORD"))
     else b"BEGIN LIST VAR dummy\nVAR dummy ups.status \"" + SECRET.encode() + b"\n",
     "protocol"),
], ids=["password-denied", "username-invalid", "list-denied", "echo", "reflected-in-var"])
def test_fake_credentials_refused_or_reflected_never_leak(fake, script, kind):
    server = fake(script)
    url = server.url(user="mon", password=SECRET)
    with pytest.raises(NutError) as info:
        read_vars(url, timeout_s=1.0)
    err = info.value
    assert err.kind == kind
    for text in (str(err), repr(err), err.detail, repr(url), str(url)):
        assert SECRET not in text
    assert "mon:***@" in str(err)


def test_unresolvable_host_is_unreachable(monkeypatch):
    # The system resolver would send the query to the machine's DNS server, off this machine:
    # the lookup fails here the way glibc fails it for a name no server knows (the only mock in
    # this module; the rest talks to a real upsd).
    real = socket.getaddrinfo

    def getaddrinfo(host, *a, **kw):
        if host == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = parse_nut_url("nut://no-such-host.invalid/ups")
    with pytest.raises(NutError) as info:
        read_vars(url, timeout_s=2.0)
    assert info.value.kind == "unreachable"
    assert "no-such-host.invalid" in str(info.value)


def test_refused_port_is_unreachable():
    port = nutlab.free_port()  # nothing listens there
    with pytest.raises(NutError) as info:
        read_vars(NutURL("127.0.0.1", port, "dummy"))
    assert info.value.kind == "unreachable" and "refused" in str(info.value)


@pytest.mark.parametrize("timeout_s", [0, -1.0, float("nan")], ids=["zero", "negative", "nan"])
def test_timeout_must_be_positive(timeout_s):
    with pytest.raises(ValueError):
        read_vars(NutURL("127.0.0.1", 1, "u"), timeout_s=timeout_s)


# -- a real NUT server -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def nut_server(tmp_path_factory):
    reason = nutlab.nut_unavailable()
    if reason:
        pytest.skip(reason)
    # MAXAGE 3 s instead of 15 s: the data-stale test need not wait long.
    server = nutlab.NutServer.create(tmp_path_factory.mktemp("nut"), maxage_s=3)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nut(nut_server):
    """The shared server, back in its initial state (OL, 100 %, 3600 s, 230 V)."""
    nut_server.reset()
    return nut_server


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_real_on_line(nut):
    sample = measure(nut.url(), clock=FakeClock(T0))
    assert (sample.measurement, dict(sample.tags), sample.time) == ("ups", {"ups": "dummy"}, T0)
    assert dict(sample.fields) == dict(status="OL", on_battery=False, low_battery=False,
                                       charge_pct=100.0, runtime_s=3600.0,
                                       input_voltage_v=230.0)


def test_real_flip_to_battery(nut):
    nut.set(status="OB", charge=80, runtime=1200, voltage=0)
    nut.wait_status("OB")
    fields = dict(measure(nut.url(), clock=FakeClock(T0)).fields)
    assert fields == dict(status="OB", on_battery=True, low_battery=False, charge_pct=80.0,
                          runtime_s=1200.0, input_voltage_v=0.0)


def test_real_low_battery_and_back(nut):
    nut.set(status="OB LB", charge=9, runtime=95, voltage=0, load=41.5)
    nut.wait_status("OB LB")
    fields = measure(nut.url(), clock=FakeClock(T0)).fields
    assert (fields["on_battery"], fields["low_battery"]) == (True, True)
    assert (fields["charge_pct"], fields["runtime_s"], fields["load_pct"]) == (9.0, 95.0, 41.5)
    nut.set(status="OL CHRG", charge=10)
    nut.wait_status("OL CHRG")
    fields = measure(nut.url(), clock=FakeClock(T0)).fields
    assert (fields["status"], fields["on_battery"], fields["low_battery"]) == (
        "OL CHRG", False, False)


def test_real_non_numeric_and_removed_values_are_left_out(nut):
    nut.set(status="OL", charge=None, runtime="unknown", voltage=231.5)
    nut.wait_status("OL")
    fields = measure(nut.url(), clock=FakeClock(T0)).fields
    assert "charge_pct" not in fields and "runtime_s" not in fields
    assert fields["input_voltage_v"] == 231.5


def test_real_unknown_ups(nut):
    with pytest.raises(NutError) as info:
        measure(nut.url(ups="nosuchups"), clock=FakeClock(T0))
    assert (info.value.kind, info.value.code) == ("unknown_ups", "UNKNOWN-UPS")
    assert f"nut://127.0.0.1:{nut.port}/nosuchups" in str(info.value)


def test_real_ups_name_is_case_insensitive(nut):
    assert read_vars(nut.url(ups="DUMMY"))["ups.status"] == "OL"


def test_real_server_down_is_unreachable_within_timeout(nut):
    nut.stop()
    start = time.monotonic()
    with pytest.raises(NutError) as info:
        measure(nut.url(), clock=FakeClock(T0), timeout_s=1.0)
    assert time.monotonic() - start < 1.0
    assert info.value.kind == "unreachable"
    nut.start()
    nut.wait_status("OL")
    assert measure(nut.url(), clock=FakeClock(T0)).fields["status"] == "OL"


def test_real_driver_gone_is_stale(nut):
    nut.stop_driver()
    with pytest.raises(NutError) as info:
        measure(nut.url(), clock=FakeClock(T0))
    assert (info.value.kind, info.value.code) == ("stale", "DRIVER-NOT-CONNECTED")


def test_real_silent_driver_becomes_stale_after_maxage(nut):
    nut.pause_driver()
    deadline = time.monotonic() + nut.maxage_s + 5
    seen = []
    while time.monotonic() < deadline:
        try:
            seen.append(measure(nut.url(), clock=FakeClock(T0)).fields["status"])
        except NutError as exc:
            assert (exc.kind, exc.code) == ("stale", "DATA-STALE")
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no DATA-STALE within {nut.maxage_s + 5} s, saw {seen[-3:]}")
    nut.pause_driver(False)
    nut.wait_status("OL")


def test_real_wait_status_after_restart_is_stale(nut):
    # A frozen driver never sends the restarted upsd its dump, so upsd says WAIT until it thaws.
    nut.pause_driver()
    nut.stop()
    nut.start()
    with pytest.raises(NutError) as info:
        measure(nut.url(), clock=FakeClock(T0))
    assert info.value.kind == "stale" and "WAIT" in str(info.value)
    nut.pause_driver(False)
    nut.wait_status("OL")


def test_real_credentials_accepted(nut):
    url = nut.url(user=nutlab.USER, password=nutlab.PASSWORD)
    assert measure(url, clock=FakeClock(T0)).fields["status"] == "OL"
    assert nutlab.PASSWORD not in repr(url) and nutlab.PASSWORD not in str(url)


def test_real_upsd_does_not_check_passwords_on_reads(nut):
    # Pinned so nobody builds a "credentials verified" check on read_vars: upsd 2.8.0 answers
    # PASSWORD with OK whatever it is and checks it only for LOGIN, SET and INSTCMD.
    url = nut.url(user=nutlab.USER, password="wrong " + SECRET)
    assert read_vars(url)["ups.status"] == "OL"


def test_real_password_from_a_file_is_what_upsd_reads(nut, tmp_path):
    """upsd 2.8.0 does not check a password on reads, so the relay shows what the agent's client
    sent and LOGIN asks upsd whether it is the user's password."""
    from agent.probes.nut_url import load_url

    pw = private(tmp_path / "pw", nutlab.PASSWORD + "\n")
    with nutlab.Relay(nut.port) as relay:
        url, _ = load_url(power(f'ups = "nut://{nutlab.USER}@127.0.0.1:{relay.port}/dummy"\n'
                                f'ups_password_file = "{pw}"'), {})
        assert measure(url, clock=FakeClock(T0)).fields["status"] == "OL"
        sent = relay.sent()
    assert sent[:2] == [f"USERNAME {quote_arg(nutlab.USER)}", f"PASSWORD {quote_arg(nutlab.PASSWORD)}"]
    assert nut.login(split_words(sent[1])[1]) == "OK"


def test_real_password_quoting_is_what_upsd_reads(nut):
    # The test user's password has quotes, a backslash and a space: LOGIN succeeds only if upsd
    # decoded our quoting to exactly the password in upsd.users.
    assert nut.login(nutlab.PASSWORD) == "OK"


def test_real_wrong_password_is_denied_by_login(nut):
    reply = nut.login(nutlab.PASSWORD + "x")
    err = error_for_reply(reply)
    assert err is not None and (err.kind, err.code) == ("access_denied", "ACCESS-DENIED")


@pytest.mark.parametrize("status, lost", [("OL", False), ("OB", True), ("OB LB", True),
                                          ("OL CHRG LB", False), ("LB", True), ("OL CHRG", False)])
def test_mains_lost_follows_ob_and_lb_without_ol(status, lost):
    from agent.probes.nut_protocol import mains_lost

    flags = status.split()
    assert mains_lost({"status": status, "on_battery": "OB" in flags, "low_battery": "LB" in flags}) is lost
