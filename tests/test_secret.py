"""Secrets kept out of what linewatch shows: config values echoed in errors (agent and collector,
through their real command lines), and server answers that carry a token, redacted before any
cut. The sources a secret is read from are tested with their users (test_influx_config.py,
test_ups.py, test_power_agent.py)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, strategies as st

from agent import config
from kit.errors import ConfigError
from kit.secret import MASK, redact, redact_value

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

NUT_SECRET = "Hunter2Secret"
URL_SECRET = "S3cretPassw0rd"
TOKEN = "q7Rv2+Lm9/Xe4Tk8Wd3Hz6Pb1Nc5Yf0Ga-Ju8Ks4Ow2Ei7Uo9Ar3St6Ql1Mx5Vy0Bh=="


def fragments(secret: str, n: int = 8) -> set[str]:
    """Every run of ``n`` characters of ``secret``: none may be shown."""
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


def assert_no_fragment(text: str, *secrets: str, n: int = 8) -> None:
    for secret in secrets:
        shown = [f for f in fragments(secret, n) if f in text]
        assert not shown, f"{shown[:3]} of the secret in: {text}"


# -- config values as they may be echoed ------------------------------------------------------

@pytest.mark.parametrize("value, shown", [
    ("nut://admin:Hunter2Secret@ups.lan:3493/ups", "nut://admin:***@ups.lan:3493/ups"),
    ("nut://admin:p@ss:w/rd@ups.lan/ups", "nut://admin:***@ups.lan/ups"),
    ("nut://Hunter2Secret@ups.lan/ups", "nut://***@ups.lan/ups"),
    ("NUT://admin:Hunter2Secret@ups.lan:99999/ups?x=1", "NUT://admin:***@ups.lan:99999/ups?x=1"),
    ("admin:Hunter2Secret@ups.lan/ups", "admin:***@ups.lan/ups"),
    ("https://user:S3cretPassw0rd@influx.example.org:8086", "https://user:***@influx.example.org:8086"),
    ("http://x:8086/?db=lw&u=admin&p=S3cretPassw0rd", "http://x:8086/?db=lw&u=admin&p=***"),
    ("https://x/write?token=abc&org=o", "https://x/write?token=***&org=o"),
    ("https://x/?Password=abc;api_key=def#access_token=ghi", "https://x/?Password=***;api_key=***#access_token=***"),
    ("http://speed.example.org:8080/speedtest/upload.php", "http://speed.example.org:8080/speedtest/upload.php"),
    ("nut://localhost/ups", "nut://localhost/ups"),
    ("Lahore", "Lahore"),
    ("[::1]:443", "[::1]:443"),
    ("", ""),
], ids=["nut-userinfo", "nut-password-with-at-colon-slash", "nut-user-only", "nut-bad-port-query",
        "no-scheme", "https-userinfo", "v1-query-p", "token-param", "other-secret-params",
        "plain-url", "nut-no-credentials", "city", "ipv6-target", "empty"])
def test_redact_value(value, shown):
    assert redact_value(value) == shown


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_redact_value_never_shows_a_userinfo_password(password):
    for value in (f"nut://mon:{password}@host/ups", f"https://mon:{password}@host:8086"):
        out = redact_value(value)
        assert out.startswith(value.split("://")[0] + "://mon:***@")
        assert out.endswith("@host/ups") or out.endswith("@host:8086")


# -- texts that may carry a secret: every form, before any cut --------------------------------

USER_PW = 'writer:pa "ss\\w+rd=1/'
PASSWORD = USER_PW.split(":", 1)[1]


@pytest.mark.parametrize("form", [
    USER_PW, base64.b64encode(USER_PW.encode()).decode(), quote(USER_PW, safe=""), quote_plus(USER_PW),
    PASSWORD, quote(PASSWORD, safe=""), quote_plus(PASSWORD),
    PASSWORD.replace("\\", "\\\\").replace('"', '\\"'),
], ids=["raw", "basic", "percent", "plus", "password", "password-percent", "password-plus",
        "password-escaped"])
def test_redact_every_form_of_the_secret(form):
    assert redact(f"refused {form} here", USER_PW) == f"refused {MASK} here"


def test_a_short_password_is_not_hunted_in_every_word():
    # "writer:1" is masked whole; "1" alone would garble what the forwarder reads (dropped=1)
    assert redact("partial write: dropped=1", "writer:1") == "partial write: dropped=1"
    assert redact("refused writer:1", "writer:1") == f"refused {MASK}"


def test_redact_leaves_text_without_the_secret_alone():
    assert redact("HTTP 503: overloaded", TOKEN) == "HTTP 503: overloaded"
    assert redact("anything", None) == "anything" and redact("", TOKEN) == ""


@pytest.mark.parametrize("cut", [8, 20, 40, len(TOKEN) - 1], ids=lambda c: f"cut-{c}")
def test_a_secret_cut_by_the_server_is_redacted_at_either_end(cut):
    # A proxy or the server itself may have cut its answer through the token.
    assert_no_fragment(redact("denied for Token " + TOKEN[:cut], TOKEN), TOKEN)
    assert_no_fragment(redact(TOKEN[-cut:] + " was refused", TOKEN), TOKEN)


BASIC = base64.b64encode(b"writer:" + TOKEN.encode()).decode()


@given(before=st.text(max_size=600), after=st.text(max_size=600), cut=st.integers(0, 1200))
def test_redacted_then_cut_never_leaves_a_fragment(before, after, cut):
    for secret, form in ((TOKEN, TOKEN), ("writer:" + TOKEN, BASIC), (TOKEN, quote(TOKEN, safe=""))):
        assert_no_fragment(redact(before + form + after, secret)[:cut], form)


# -- config errors through the real command lines ---------------------------------------------

def agent_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          timeout=60)


def collector_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "linewatch-collector"), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


BAD_UPS = [
    ("nut://admin:Hunter2Secret@ups.lan:99999/ups", "port"),
    ("nut://admin:Hunter2Secret@ups.lan/ups?poll=1", "query strings"),
    ("http://admin:Hunter2Secret@ups.lan/ups", "scheme"),
    ("nut://admin:Hunter2Secret@ups lan/ups", "spaces"),
    ("admin:Hunter2Secret@ups.lan/ups", "expected nut://"),
]
BAD_INFLUX = [
    ("https://user:S3cretPassw0rd@influx.example.org:8086", "must not hold credentials"),
    ("https://influx.example.org:8086/?u=user&p=S3cretPassw0rd", "must not have a query"),
    ("https://influx.example.org:8086/?token=S3cretPassw0rd", "or fragment"),
    ("ftp://user:S3cretPassw0rd@influx.example.org", "http:// or https://"),
]


@pytest.mark.parametrize("value, expected", BAD_UPS, ids=[e for _, e in BAD_UPS])
def test_a_bad_power_ups_never_shows_its_password(tmp_path, value, expected):
    cfg = tmp_path / "lw.toml"
    cfg.write_text(f'[power]\nups = "{value}"\n')
    r = agent_cli("check", "--config", str(cfg))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"linewatch: {cfg}: power.ups: ") and expected in r.stderr, r.stderr
    assert NUT_SECRET not in r.stderr
    assert_no_fragment(r.stderr, NUT_SECRET, n=6)
    assert "***@" in r.stderr  # the value is still shown, with its password masked


@pytest.mark.parametrize("value, expected", BAD_INFLUX, ids=[e for _, e in BAD_INFLUX])
def test_a_bad_influx_url_never_shows_its_password_agent(tmp_path, value, expected):
    cfg = tmp_path / "lw.toml"
    cfg.write_text(f'[influx]\nurl = "{value}"\nbucket = "lw"\n')
    r = agent_cli("check", "--config", str(cfg))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"linewatch: {cfg}: influx.url: ") and expected in r.stderr, r.stderr
    assert_no_fragment(r.stderr, URL_SECRET, n=6)
    assert MASK in r.stderr


@pytest.mark.parametrize("value, expected", BAD_INFLUX, ids=[e for _, e in BAD_INFLUX])
def test_a_bad_influx_url_never_shows_its_password_collector(tmp_path, value, expected):
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f'[influx]\nurl = "{value}"\ndatabase = "lw"\n')
    r = collector_cli("check", "--config", str(cfg))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"linewatch-collector: {cfg}: influx.url: ") and expected in r.stderr
    assert_no_fragment(r.stderr, URL_SECRET, n=6)
    assert MASK in r.stderr


@pytest.mark.parametrize("text, key", [
    ('[power]\nups = ["nut://admin:Hunter2Secret@ups.lan/ups"]', "power.ups"),
    ('[probe]\ntargets = ["nut://admin:Hunter2Secret@ups.lan/ups"]', "probe.targets"),
    ('[speedtest]\nserver_url = "http://admin:Hunter2Secret@speed.lan/upload.php"', "speedtest.server_url"),
    ('[agent]\ncity = "nut://admin:Hunter2Secret@ups.lan/ups\\\\"', "agent.city"),
    ('[agent]\nregion = "nut://admin:Hunter2Secret@ups.lan/ups"', "agent.region"),
], ids=["wrong-type", "in-a-list", "speedtest-url", "city", "region"])
def test_no_config_error_shows_a_url_password(text, key):
    with pytest.raises(ConfigError) as err:
        config.parse(text, "lw.toml")
    assert err.value.key == key
    assert "admin:***@" in str(err.value)  # still shown, with the password masked
    assert_no_fragment(str(err.value), NUT_SECRET, n=6)


def test_init_never_echoes_a_password_typed_as_an_answer(tmp_path):
    cfg = tmp_path / "lw.toml"
    for flag in ("--region", "--access", "--city"):
        r = agent_cli("init", "--config", str(cfg), flag, "nut://admin:Hunter2Secret@ups.lan/ups\\")
        assert r.returncode == 2 and r.stderr.startswith(f"linewatch: {flag}: "), r.stderr
        assert_no_fragment(r.stderr, NUT_SECRET, n=6)
    assert not cfg.exists()
