"""The Apprise channel, delivering for real: Apprise's ``json://`` service POSTs to an HTTP
server on loopback (tests/statusserver.py), which records it. Its URL may hold a secret (here
HTTP Basic credentials): it is never shown, only its scheme. Apprise is imported only when an
alert goes out."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.alerts import model
from agent.alerts.model import Alert, SendError, alert_id
from agent.alerts.settings import ChannelSection
from agent.alerts.via_apprise import Apprise, scheme
from tests.statusserver import Reply, StatusServer

pytest.importorskip("apprise", reason="pip install 'linewatch[alerts]'")

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
PASSWORD = "s3cret-Apprise-K7q2xw"


def alert() -> Alert:
    return Alert(id=alert_id("episode-1", model.OUTAGE_END), event=model.OUTAGE_END,
                 type="outage", cause="isp", start=T0, end=T0, duration_s=600.0, agent="a1",
                 title="Line back at home", text="Down for 10 min (09:16-09:26 UTC). ✓")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Apprise's HTTP client honours proxy variables: loopback must stay loopback."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def hook():
    with StatusServer(version=None, paths=("/hook",)) as srv:
        srv.default = Reply(200, body="ok")
        yield srv


def test_scheme_only():
    assert scheme("discord://1234/abcdef-token") == "discord://..."
    assert scheme("no scheme at all") == "?"


def test_delivered_through_apprise(hook):
    ch = Apprise(ChannelSection(kind="apprise", url=f"json://127.0.0.1:{hook.port}/hook"), None)
    assert ch.state() == "ready (apprise json://...)"
    assert ch.send(alert()) == "apprise: sent"
    [req] = hook.wait_requests(1)
    got = json.loads(req.body)
    assert (got["title"], got["message"]) == (alert().title, alert().text)


def test_a_secret_url_is_used_and_never_shown(hook):
    url = f"json://user:{PASSWORD}@127.0.0.1:{hook.port}/hook"
    ch = Apprise(ChannelSection(kind="apprise", url="json://ignored.example.org/"), url)
    assert PASSWORD not in ch.state()
    ch.send(alert())
    [req] = hook.wait_requests(1)
    assert req.headers["authorization"].startswith("Basic ")    # the secret's URL was used
    hook.default = Reply(500, body="boom")
    with pytest.raises(SendError) as e:
        ch.send(alert())
    assert e.value.retry is True
    assert PASSWORD not in str(e.value) and str(hook.port) not in str(e.value)
    assert "json://... failed" in str(e.value) and "500" in str(e.value)


def test_a_url_apprise_does_not_know_is_not_retried():
    token = "tok-4711-do-not-show"
    ch = Apprise(ChannelSection(kind="apprise"), f"nosuchservice://{token}")
    with pytest.raises(SendError) as e:
        ch.send(alert())
    assert e.value.retry is False
    assert "Apprise does not know this URL (nosuchservice://...)" in str(e.value)
    assert token not in str(e.value)


def test_without_apprise_installed_the_message_says_how(monkeypatch):
    monkeypatch.setitem(sys.modules, "apprise", None)    # import apprise raises ImportError
    ch = Apprise(ChannelSection(kind="apprise", url="json://127.0.0.1:9/"), None)
    assert ch.state() == "not ready: Apprise is not installed (pip install 'linewatch[alerts]')"
    with pytest.raises(SendError) as e:
        ch.send(alert())
    assert e.value.retry is False and "pip install 'linewatch[alerts]'" in str(e.value)


def test_apprise_loads_only_when_an_alert_goes_out():
    code = ("import sys\n"
            "from agent.alerts.channels import build\n"
            "from agent.alerts.settings import ChannelSection\n"
            "ch = build(ChannelSection(kind='apprise', url='json://127.0.0.1:9/'), 0, 'lw.toml', "
            "env={})\n"
            "print(ch.state())\n"
            "assert 'apprise' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ready (apprise json://...)"
