"""systemd's notify protocol (sd_notify), without libsystemd: one datagram per message.

Under ``Type=notify`` systemd sets ``$NOTIFY_SOCKET``; the agent sends ``READY=1`` once its jobs
are scheduled, ``STATUS=...`` lines, ``WATCHDOG=1`` from its watchdog job while probe rounds keep
completing (with ``WatchdogSec=``, systemd sets ``$WATCHDOG_USEC`` and restarts an agent that goes
quiet), and ``STOPPING=1`` on its way out. Without ``$NOTIFY_SOCKET`` (not under systemd, or
another init) every call is a no-op, so the agent runs the same everywhere.

The socket path may be abstract (a leading ``@``). A send that fails is logged once and never
stops the agent: the watchdog then restarts it, which is the point.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] = os.environ, pid: int | None = None) -> None:
        addr = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        owner = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(pid or os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines as one message; False when not under systemd or it failed."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode("utf-8"), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                log.warning("systemd notify socket %s: %s", self.address.lstrip("\0"), exc)
                self._warned = True
            return False

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={_one_line(status)}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self, status: str | None = None) -> bool:
        return self.send("WATCHDOG=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
