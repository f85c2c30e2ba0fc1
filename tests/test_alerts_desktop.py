"""The desktop channel against a real session bus (Debian's dbus-daemon) and a test double of the
desktop's notification daemon on it (tests/dbuslab.py): what a notification carries, the
server's name in ``state()``, a missing bus or service, one connection for many alerts, a new
one after the bus restarted, and jeepney loaded only when an alert goes out."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.alerts import desktop, model
from agent.alerts.desktop import Desktop, bus_address, notify_args
from agent.alerts.model import Alert, SendError, alert_id
from agent.alerts.settings import ChannelSection
from tests import dbuslab

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
MISSING = "unix:path=/nonexistent/linewatch-test/bus"


def alert(event: str = model.OUTAGE_START, urgency: str = "critical",
          title: str = "Line down at home", text: str = "No answer since 09:26 (gateway 192.0.2.1).",
          ) -> Alert:
    return Alert(id=alert_id("episode-1", event), event=event, type="outage", cause="isp",
                 start=T0, end=None, duration_s=None, agent="a1", title=title, text=text,
                 urgency=urgency)


@pytest.fixture
def bus():
    reason = dbuslab.unavailable()
    if reason:
        pytest.skip(reason)
    with dbuslab.SessionBus() as b:
        yield b


@pytest.fixture
def daemon(bus):
    with dbuslab.NotificationDouble(bus.address) as d:
        yield d


def channel(address: str) -> Desktop:
    return Desktop(ChannelSection(kind="desktop", url=address), None)


@pytest.fixture
def desk(bus):
    ch = channel(bus.address)
    yield ch
    ch.close()


# -- pure parts ------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "env", "want"), [
    ("unix:path=/tmp/b", {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}, "unix:path=/tmp/b"),
    ("", {"DBUS_SESSION_BUS_ADDRESS": "unix:abstract=/tmp/dbus-1"}, "unix:abstract=/tmp/dbus-1"),
    ("", {}, "unix:path=/run/user/1000/bus"),
], ids=["url-first", "environment", "systemd-user-bus"])
def test_the_bus_address(url, env, want):
    assert bus_address(url, env, 1000) == want


@pytest.mark.parametrize(("event", "icon", "category"), [
    (model.OUTAGE_START, "network-offline", "network.disconnected"),
    (model.OUTAGE_END, "network-transmit-receive", "network.connected"),
    (model.POWER_START, "battery", "device"),
    (model.UPS_LOW, "battery-caution", "device.error"),
    (model.TEST, "dialog-information", None),
], ids=["outage", "back", "power-cut", "ups-low", "test"])
def test_each_event_family_has_its_icon_and_category(event, icon, category):
    args = notify_args(alert(event))
    assert args[2] == icon
    assert args[6].get("category") == (("s", category) if category else None)


def test_every_event_gets_a_notification():
    for event in model.EVENTS:
        app, replaces, icon, *_ = notify_args(alert(event))
        assert (app, replaces) == ("linewatch", 0) and icon


# -- a real bus ------------------------------------------------------------------------------

@pytest.mark.parametrize(("urgency", "byte"), [("low", 0), ("normal", 1), ("critical", 2)],
                         ids=["low", "normal", "critical"])
def test_a_notification_arrives_with_its_words(bus, daemon, desk, urgency, byte):
    a = alert(urgency=urgency, title="Line down at home — ✂", text="Kein Netz seit 09:26.\nZweite Zeile")
    assert desk.send(a) == "desktop: notification 1"
    [note] = daemon.notes
    app, replaces, icon, summary, body, actions, hints, expire = note.args
    assert (app, replaces, icon) == ("linewatch", 0, "network-offline")
    assert (summary, body) == (a.title, a.text)
    assert actions == []
    assert hints == {"urgency": ("y", byte), "category": ("s", "network.disconnected")}
    assert expire == -1


def test_state_names_the_server_and_shows_nothing(bus, daemon, desk):
    assert desk.state() == f"ready (lab-notifyd 1.9 on {bus.address})"
    assert [c.member for c in daemon.calls] == ["GetServerInformation"]
    assert daemon.notes == []


def test_one_connection_carries_many_alerts(bus, daemon, desk):
    assert desk.send(alert()) == "desktop: notification 1"
    assert desk.send(alert(model.OUTAGE_END, "normal")) == "desktop: notification 2"
    first, second = daemon.notes
    assert first.sender == second.sender and first.sender.startswith(":")


def test_after_the_bus_restarts_the_channel_connects_again(bus, daemon, desk):
    desk.send(alert())
    old_pid = bus.proc.pid
    daemon.stop()
    bus.restart()      # a new login: every old connection is gone
    assert bus.proc.pid != old_pid
    with dbuslab.NotificationDouble(bus.address) as again:
        # the kept connection is dead: the channel opens a new one and sends once
        assert desk.send(alert(model.OUTAGE_END, "normal")) == "desktop: notification 1"
        [note] = again.notes
        assert note.args[2:4] == ("network-transmit-receive", "Line down at home")
        assert desk.send(alert()) == "desktop: notification 2"


def test_no_bus_at_the_address_is_retried_later():
    ch = channel(MISSING)
    with pytest.raises(SendError) as e:
        ch.send(alert())
    assert e.value.retry is True
    assert f"no session bus at {MISSING}" in str(e.value)
    assert "\n" not in str(e.value)
    assert ch.state().startswith(f"no session bus at {MISSING}")


def test_without_a_configured_bus_the_message_says_a_system_service_has_none():
    ch = Desktop(ChannelSection(kind="desktop"), None, env={}, uid=4_000_000_000)
    assert ch.address == "unix:path=/run/user/4000000000/bus"
    with pytest.raises(SendError) as e:
        ch.send(alert())
    assert e.value.retry is True
    assert "unix:path=/run/user/4000000000/bus" in str(e.value)
    assert "system service has no session bus" in str(e.value)


def test_a_bus_without_a_notification_service(bus, desk):
    with pytest.raises(SendError) as e:
        desk.send(alert())
    assert e.value.retry is True
    assert "org.freedesktop.DBus.Error.ServiceUnknown" in str(e.value)
    assert "no notification service" in str(e.value) and bus.address in str(e.value)
    assert "ServiceUnknown" in desk.state()


def test_a_refusal_by_the_service_names_the_error_and_is_not_retried(bus, desk):
    refusing = dbuslab.NotificationDouble(bus.address, refuse="org.freedesktop.DBus.Error.InvalidArgs")
    with refusing, pytest.raises(SendError) as e:
        desk.send(alert())
    assert e.value.retry is False
    assert "org.freedesktop.DBus.Error.InvalidArgs" in str(e.value)
    assert "refused by the test double" in str(e.value)


def test_a_service_that_does_not_answer_is_given_up_on_in_time(bus, desk, monkeypatch):
    monkeypatch.setattr(desktop, "TIMEOUT_S", 0.3)
    with dbuslab.NotificationDouble(bus.address, silent=True) as hung:
        with pytest.raises(SendError) as e:
            desk.send(alert())
        assert e.value.retry is True
        assert "did not answer within 0.3 s" in str(e.value)
        assert len(hung.notes) == 1       # it got there; the answer never came
    with dbuslab.NotificationDouble(bus.address) as fine:
        assert desk.send(alert()) == "desktop: notification 1"   # a new connection
        assert len(fine.notes) == 1


@pytest.mark.parametrize("login", [False, True], ids=["silent-at-login", "silent-after-login"])
def test_a_bus_that_hangs_is_given_up_on_in_time(monkeypatch, login):
    # after the login jeepney waits for the bus's answer to Hello with no limit of its own
    monkeypatch.setattr(desktop, "TIMEOUT_S", 0.3)
    with dbuslab.HungBus(login) as hung:
        ch = channel(hung.address)
        started = time.monotonic()
        with pytest.raises(SendError) as e:
            ch.send(alert())
        assert time.monotonic() - started < 3
    assert e.value.retry is True
    assert f"the session bus at {hung.address} did not answer within 0.3 s" in str(e.value)


def test_a_bus_that_refuses_this_user_is_not_retried():
    reason = dbuslab.unavailable()
    if reason:
        pytest.skip(reason)
    with dbuslab.SessionBus(auth="ANONYMOUS") as other, pytest.raises(SendError) as e:
        channel(other.address).send(alert())
    assert e.value.retry is False
    assert f"the session bus at {other.address} refused this user" in str(e.value)


def test_an_address_jeepney_cannot_use_is_not_retried():
    ch = channel("tcp:host=127.0.0.1,port=9")
    with pytest.raises(SendError) as e:
        ch.send(alert())
    assert e.value.retry is False
    assert "only unix: addresses" in str(e.value)


def test_jeepney_loads_only_when_an_alert_goes_out():
    code = ("import sys\n"
            "from agent.alerts.channels import build\n"
            "from agent.alerts.settings import ChannelSection\n"
            "ch = build(ChannelSection(kind='desktop', url='unix:path=/nonexistent/bus'), 0, "
            "'lw.toml', env={})\n"
            "assert ch.key == 'desktop' and ch.kind == 'desktop' and ch.remote is False\n"
            "assert 'jeepney' not in sys.modules, 'jeepney imported with the channel'\n"
            "print(ch.state())\n"
            "assert 'jeepney' in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("no session bus at unix:path=/nonexistent/bus")


def test_without_jeepney_the_message_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "jeepney", None)     # import jeepney raises ImportError
    with pytest.raises(SendError) as e:
        channel(MISSING).send(alert())
    assert e.value.retry is False and "jeepney is not installed" in str(e.value)
