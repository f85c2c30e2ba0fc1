"""Desktop alerts: a notification on this machine's screen, at once and without the internet.

The freedesktop notification service (GNOME Shell, KDE Plasma, dunst, mako, xfce4-notifyd, ...)
owns ``org.freedesktop.Notifications`` on the user's *session* bus; :class:`Desktop` calls its
``Notify`` method there (Desktop Notifications Specification 1.2) with jeepney, a pure-Python
D-Bus client that is imported only when an alert is sent or checked.

The bus: the channel's ``url`` when set, else ``$DBUS_SESSION_BUS_ADDRESS``, else
``unix:path=/run/user/<uid>/bus`` (systemd's per-user bus: the agent as a user service, or run
by a logged-in user). A system service has no session bus; it reaches the desktop only through
``url``, and only when it runs as the desktop's user (the bus admits no one else).

Every call waits at most :data:`TIMEOUT_S`. The connection is kept between alerts; one found
dead (the bus restarted: a new login) is opened again, once, and the call made again.

Errors (:class:`~agent.alerts.model.SendError`, one line naming the bus address):

* no bus at the address, the bus or the service not answering, no notification service on the
  bus (``org.freedesktop.DBus.Error.ServiceUnknown``): ``retry`` (the user may log in later);
* the bus refusing this user, an address jeepney cannot use (not ``unix:``), the service
  rejecting the call: no ``retry``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from typing import Any

from agent.alerts import model
from agent.alerts.model import Alert, SendError, one_line
from agent.alerts.settings import ChannelSection, channel_name

BUS_NAME = "org.freedesktop.Notifications"
OBJECT_PATH = "/org/freedesktop/Notifications"
INTERFACE = "org.freedesktop.Notifications"
NOTIFY_SIGNATURE = "susssasa{sv}i"
APP_NAME = "linewatch"
TIMEOUT_S = 5.0
# -1: the notification server's own default for how long a notification stays.
EXPIRE_DEFAULT = -1
URGENCY = {"low": 0, "normal": 1, "critical": 2}     # the spec's "urgency" hint (a byte)
# event -> (icon, category): icon names from the freedesktop Icon Naming Specification, which
# every icon theme has; categories from the notification spec's list (None: none fits).
LOOKS: Mapping[str, tuple[str, str | None]] = {
    model.OUTAGE_START: ("network-offline", "network.disconnected"),
    model.OUTAGE_END: ("network-transmit-receive", "network.connected"),
    model.POWER_START: ("battery", "device"),
    model.POWER_END: ("ac-adapter", "device"),
    model.UPS_LOW: ("battery-caution", "device.error"),
    model.INTERFERENCE_START: ("network-error", "network.error"),
    model.INTERFERENCE_END: ("network-transmit-receive", "network"),
    model.SPEED_BELOW_PLAN: ("dialog-warning", "network"),
    model.LINE_UNSTABLE: ("network-error", "network.error"),
    model.STORE_TROUBLE: ("dialog-warning", None),
}
DEFAULT_LOOK: tuple[str, str | None] = ("dialog-information", None)   # digest, test
# D-Bus errors after which a later attempt may succeed (a service starting, a busy desktop).
_PASSING = frozenset({
    "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut", "org.freedesktop.DBus.Error.LimitsExceeded",
    "org.freedesktop.DBus.Error.NoMemory", "org.freedesktop.DBus.Error.Disconnected",
})
_SHOWN_MAX = 60   # characters of a string the bus or the service sent that a message may quote


def bus_address(url: str, env: Mapping[str, str], uid: int) -> str:
    """The session bus's address: ``url``, else ``$DBUS_SESSION_BUS_ADDRESS``, else systemd's
    per-user bus of ``uid``."""
    return url or env.get("DBUS_SESSION_BUS_ADDRESS", "") or f"unix:path=/run/user/{uid}/bus"


def notify_args(alert: Alert) -> tuple[Any, ...]:
    """The ``Notify`` call's arguments (signature :data:`NOTIFY_SIGNATURE`): app_name,
    replaces_id (0: a new notification), app_icon, summary, body, actions, hints,
    expire_timeout (ms; -1: the server's default)."""
    icon, category = LOOKS.get(alert.event, DEFAULT_LOOK)
    hints: dict[str, tuple[str, Any]] = {"urgency": ("y", URGENCY[alert.urgency])}
    if category:
        hints["category"] = ("s", category)
    return (APP_NAME, 0, icon, alert.title, alert.text, [], hints, EXPIRE_DEFAULT)


def _shown(value: object) -> str:
    """A string from the bus or the service as a message may quote it: one line, bounded."""
    return one_line(str(value), _SHOWN_MAX)


@functools.cache
def _connection_class() -> Any:
    # deferred: jeepney loads when the first alert is sent or checked, not with the agent
    from jeepney.io.blocking import DBusConnection  # type: ignore[import-untyped]

    class Bounded(DBusConnection):  # type: ignore[misc]
        """A connection whose every wait ends within :data:`TIMEOUT_S`: jeepney sends ``Hello``
        while it makes the connection, and waits for its answer without a limit."""

        def receive(self, *, timeout: float | None = None) -> Any:
            return super().receive(timeout=TIMEOUT_S if timeout is None else timeout)

    return Bounded


class Desktop:
    """The ``desktop`` channel (see the module's docstring). ``env`` and ``uid`` (of the
    agent's process by default) give the bus address when ``url`` is empty."""

    kind = "desktop"
    remote = False

    def __init__(self, section: ChannelSection, secret: str | None, *,
                 env: Mapping[str, str] = os.environ, uid: int | None = None) -> None:
        self.key = channel_name(section)
        self.uid = os.getuid() if uid is None else uid
        self.address = bus_address(section.url, env, self.uid)
        self._default = not section.url and not env.get("DBUS_SESSION_BUS_ADDRESS")
        self._conn: Any = None
        # one call at a time on the kept connection: two threads reading it would take each
        # other's replies
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> str:
        """Show ``alert``; returns "desktop: notification <id>" (the server's id)."""
        body = self._call("Notify", NOTIFY_SIGNATURE, notify_args(alert))
        ident = body[0] if body and isinstance(body[0], int) else "?"
        return f"desktop: notification {ident}"

    def state(self) -> str:
        """"ready (<server> <version> on <address>)", or why not. Shows nothing on the screen:
        it asks the service's ``GetServerInformation``."""
        try:
            info = self._call("GetServerInformation")
        except SendError as exc:
            return str(exc)
        name, _vendor, version, *_ = [*info, "", "", ""]
        server = " ".join(_shown(v) for v in (name, version) if v) or "a notification service"
        return f"ready ({server} on {self.address})"

    def close(self) -> None:
        """Close the kept connection (the next call opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def _call(self, method: str, signature: str | None = None,
              body: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        """``method`` of the notification service; its answer's body, or SendError. A kept
        connection found dead (the bus restarted since the last call: a new login) is opened
        again, once, and the call made on the new one."""
        try:
            # deferred: jeepney, as in _connection_class
            from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]
            from jeepney.wrappers import DBusErrorResponse, unwrap_msg  # type: ignore[import-untyped]
        except ImportError as exc:   # installed with linewatch on Linux only
            raise SendError("desktop: jeepney is not installed (pip install jeepney; desktop "
                            "notifications need a Linux desktop)", retry=False) from exc

        msg = new_method_call(DBusAddress(OBJECT_PATH, bus_name=BUS_NAME, interface=INTERFACE),
                              method, signature, body)
        with self._lock:
            for attempt in (1, 2):
                kept = self._conn is not None
                conn = self._conn if kept else self._open()
                try:
                    reply = conn.send_and_get_reply(msg, timeout=TIMEOUT_S)
                    return tuple(unwrap_msg(reply))
                except DBusErrorResponse as exc:
                    raise self._refused(exc) from exc
                except TimeoutError as exc:
                    self.close()
                    raise SendError(f"the notification service on {self.address} did not answer "
                                    f"within {TIMEOUT_S:g} s", retry=True) from exc
                except OSError as exc:
                    self.close()
                    if kept and attempt == 1:
                        continue    # the bus went away since the last call (a new login)
                    raise self._unreachable(exc) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _open(self) -> Any:
        """A new connection to the bus (authenticated, Hello answered), kept for later calls."""
        # deferred: jeepney, as in _connection_class
        from jeepney.auth import AuthenticationError  # type: ignore[import-untyped]
        from jeepney.bus import get_bus  # type: ignore[import-untyped]
        from jeepney.io.blocking import prep_socket
        from jeepney.wrappers import DBusErrorResponse

        try:
            path = get_bus(self.address)
        except (RuntimeError, ValueError) as exc:
            raise SendError(f"cannot use the D-Bus address {self.address}: only unix: addresses "
                            "(unix:path=... or unix:abstract=...) are supported", retry=False) from exc
        try:
            sock = prep_socket(path, timeout=TIMEOUT_S)
        except AuthenticationError as exc:
            raise SendError(f"the session bus at {self.address} refused this user (uid "
                            f"{self.uid}): run the agent as the desktop's user", retry=False) from exc
        except OSError as exc:
            raise self._unreachable(exc) from exc
        try:
            # a send to a bus that stops reading must end too
            sock.settimeout(TIMEOUT_S)
            self._conn = _connection_class()(sock)
        except TimeoutError as exc:
            sock.close()
            raise SendError(f"the session bus at {self.address} did not answer within "
                            f"{TIMEOUT_S:g} s", retry=True) from exc
        except OSError as exc:
            sock.close()
            raise self._unreachable(exc) from exc
        except DBusErrorResponse as exc:
            sock.close()
            raise self._refused(exc) from exc
        return self._conn

    def _unreachable(self, exc: OSError) -> SendError:
        """No bus at the address, or it went away: a later attempt may find one."""
        if isinstance(exc, PermissionError):
            return SendError(f"no access to the session bus at {self.address} (uid {self.uid}): "
                             "run the agent as the desktop's user", retry=False)
        if isinstance(exc, TimeoutError):
            return SendError(f"the session bus at {self.address} did not answer within "
                             f"{TIMEOUT_S:g} s", retry=True)
        why = exc.strerror or type(exc).__name__
        hint = ""
        if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
            hint = ((": is the user logged in? A system service has no session bus: run the agent "
                     "as a user service (systemctl --user), or set url to the user's bus")
                    if self._default else ": is the desktop session running?")
        return SendError(f"no session bus at {self.address}: {why}{hint}", retry=True)

    def _refused(self, exc: Any) -> SendError:
        """The bus or the notification service answered with a D-Bus error."""
        name = _shown(exc.name or "an unnamed D-Bus error")
        if exc.name == "org.freedesktop.DBus.Error.ServiceUnknown":
            return SendError(f"no notification service on the session bus at {self.address} "
                             f"({name}): is a desktop (its notification daemon) running?",
                             retry=True)
        detail = exc.data[0] if exc.data and isinstance(exc.data[0], str) else ""
        return SendError(f"the notification service on {self.address} refused the call: {name}"
                         + (f": {_shown(detail)}" if detail else ""),
                         retry=exc.name in _PASSING)
