"""A real D-Bus session bus for the desktop channel's tests, and a test double of the desktop's
notification daemon on it.

* :class:`SessionBus`: Debian's ``dbus-daemon`` with a config of its own: it listens on a
  socket in a fresh folder (its address stays the same across :meth:`SessionBus.restart`) and
  has no service files, so nothing is started on demand: a name nobody owns gives
  ``org.freedesktop.DBus.Error.ServiceUnknown``, as on a desktop without a notification daemon.
* :class:`HungBus`: a socket where the bus should be that stops answering (before or after
  the login).
* :class:`NotificationDouble`: owns ``org.freedesktop.Notifications`` and answers ``Notify``
  (a new id each time), ``GetServerInformation`` and ``GetCapabilities`` over its own jeepney
  connection, in a thread, recording every call.

Nothing here leaves the machine: the bus is a Unix socket.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import Proxy, open_dbus_connection

DBUS_DAEMON = "/usr/bin/dbus-daemon"
NOTIFICATIONS = "org.freedesktop.Notifications"
SERVER_INFO = ("lab-notifyd", "linewatch tests", "1.9", "1.2")

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>{auth}</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def unavailable() -> str | None:
    """Why no session bus can be started here, or None."""
    if not Path(DBUS_DAEMON).exists():
        return f"{DBUS_DAEMON} is missing (apt-get install dbus-daemon)"
    return None


class SessionBus:
    """A dbus-daemon of its own; ``address`` is ``unix:path=<folder>/bus``. Use as a context
    manager: the daemon is stopped and its folder removed at the end. ``auth``: the one SASL
    mechanism it accepts (ANONYMOUS: it rejects a client that proves who it is, as another
    user's bus does)."""

    def __init__(self, auth: str = "EXTERNAL") -> None:
        # a short path: a Unix socket's path may hold 107 bytes, and pytest's folders are long
        self.dir = Path(tempfile.mkdtemp(prefix="lw-dbus-"))
        self.socket = self.dir / "bus"
        self.address = f"unix:path={self.socket}"
        self.config = self.dir / "bus.conf"
        self.config.write_text(_CONFIG.format(socket=self.socket, auth=auth))
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> SessionBus:
        proc = subprocess.Popen([DBUS_DAEMON, f"--config-file={self.config}", "--nofork",
                                 "--print-address=1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.proc = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()   # printed once it listens
        if not line.startswith("unix:"):
            self.stop()
            raise RuntimeError(f"dbus-daemon did not start: {line!r}")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def restart(self) -> None:
        """A new daemon at the same address (every connection to the old one is gone)."""
        self.stop()
        self.socket.unlink(missing_ok=True)
        self.start()

    def __enter__(self) -> SessionBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class HungBus:
    """A Unix socket where a bus should be that lets clients connect and then hangs: with
    ``login``, after answering their authentication (OK), else before it. Nothing is ever
    answered beyond that; connections stay open until :meth:`close`."""

    def __init__(self, login: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lw-hung-"))
        self.address = f"unix:path={self.dir / 'bus'}"
        self.login = login
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.dir / "bus"))
        self._sock.listen(4)
        self._sock.settimeout(0.05)
        self._clients: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hung-bus", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._clients.append(client)
            if self.login:
                client.settimeout(5)
                seen = b""
                try:
                    while b"\r\n" not in seen:      # "\0AUTH EXTERNAL <uid in hex>\r\n"
                        piece = client.recv(1024)
                        if not piece:
                            break
                        seen += piece
                    client.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in (*self._clients, self._sock):
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> HungBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Call:
    """One method call the double received: its member, sender (the caller's unique name)
    and arguments."""

    member: str
    sender: str
    args: tuple[Any, ...]


@dataclass
class NotificationDouble:
    """A TEST DOUBLE of the desktop's notification daemon (GNOME Shell, dunst, ...): it owns
    org.freedesktop.Notifications on ``address`` and answers ``Notify`` with a new id (1, 2,
    ...), ``GetServerInformation`` with :data:`SERVER_INFO` and ``GetCapabilities`` with
    ["body"]; any other method gets ``org.freedesktop.DBus.Error.UnknownMethod``. It shows
    nothing; it records each call in :attr:`calls`. ``refuse``: answer Notify with this D-Bus
    error instead; ``silent``: answer Notify never (a hung daemon)."""

    address: str
    refuse: str | None = None
    silent: bool = False
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _conn: Any = None
    _next_id: int = 1

    @property
    def notes(self) -> list[Call]:
        """The Notify calls."""
        return [c for c in self.calls if c.member == "Notify"]

    def start(self) -> NotificationDouble:
        self._conn = open_dbus_connection(self.address, auth_timeout=5)
        got = Proxy(message_bus, self._conn, timeout=5).RequestName(NOTIFICATIONS, 4)
        if got != (1,):   # 1: the primary owner now (4: do not queue behind another owner)
            raise RuntimeError(f"could not own {NOTIFICATIONS}: {got}")
        self._thread = threading.Thread(target=self._serve, name="notification-double",
                                        daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        conn = self._conn
        while not self._stop.is_set():
            try:
                msg = conn.receive(timeout=0.05)
            except TimeoutError:
                continue
            except OSError:
                return   # the bus went away
            if msg.header.message_type is not MessageType.method_call:
                continue
            fields = msg.header.fields
            member = fields.get(HeaderFields.member, "")
            self.calls.append(Call(member, fields.get(HeaderFields.sender, ""), tuple(msg.body)))
            if member == "Notify" and self.silent:
                continue
            if member == "Notify" and self.refuse:
                reply = new_error(msg, self.refuse, "s", ("refused by the test double",))
            elif member == "Notify":
                reply = new_method_return(msg, "u", (self._next_id,))
                self._next_id += 1
            elif member == "GetServerInformation":
                reply = new_method_return(msg, "ssss", SERVER_INFO)
            elif member == "GetCapabilities":
                reply = new_method_return(msg, "as", (["body"],))
            else:
                reply = new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s",
                                  (f"no method {member}",))
            try:
                conn.send(reply)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def __enter__(self) -> NotificationDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

