"""The UPS sensor: a small Network UPS Tools (NUT) client of our own, one TCP conversation per
reading.

A co-working site's UPS is usually watched by NUT's ``upsd`` (TCP port 3493). The agent asks it for
every variable of one UPS and turns the few that matter for a power-cut timeline into a sample.
The URL is parsed by :mod:`agent.probes.nut_url`, the protocol by :mod:`agent.probes.nut_protocol`
(both pure); this module is the socket client (:func:`read_vars`), the sample (:func:`measure`)
and the sensor (:class:`UpsSensor`).

Credentials: ``upsd`` (checked with 2.8.0) lets anyone read variables and checks a password only
for privileged commands (LOGIN, SET, INSTCMD). A read-only client therefore cannot tell a wrong
password from a right one: :func:`read_vars` sends them (``access_denied`` when a server does
refuse them) but a wrong password goes unnoticed by upsd 2.8.0. They travel in clear text (no
STARTTLS here), so configure them only when the server requires them, and then the password
outside the config file (:func:`agent.probes.nut_url.load_url`).

Sample ``ups``, tag ``ups`` (the UPS name on the server). Fields:

===============  =====  ===================================================================
field            type   meaning
===============  =====  ===================================================================
status           str    ``ups.status`` as reported, e.g. ``"OL CHRG"``, ``"OB LB"``
                        (``"WAIT"``, upsd still waiting for its driver, raises "stale")
on_battery       bool   the ``OB`` flag is in ``status``
low_battery      bool   the ``LB`` flag is in ``status``
charge_pct       float  ``battery.charge`` (%), only when reported and numeric
runtime_s        float  ``battery.runtime`` (s, estimated runtime left), ditto
input_voltage_v  float  ``input.voltage`` (V), ditto; 0 on battery for many UPSes
load_pct         float  ``ups.load`` (% of rated output), ditto
===============  =====  ===================================================================

Errors: :class:`~agent.probes.nut_protocol.NutError` with ``kind`` one of its ``KINDS``.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any

from agent.clock import Clock
from agent.model import Sample
from agent.power import UPS, Reading
from agent.probes.nut_protocol import (
    NutError,
    check_list_header,
    error_for_reply,
    excerpt,
    mains_lost,
    parse_list_var,
    parse_var_line,
    quote_arg,
    ups_fields,
)
from agent.probes.nut_url import NutURL

# upsd caps a value at 256 bytes and names at a few dozen; escaping at most doubles them. Longer
# lines, or lists beyond these bounds, come from something that is not upsd and are refused before
# they can fill memory.
_MAX_LINE = 4096
_MAX_LIST_LINES = 10_000
_MAX_LIST_BYTES = 1 << 20


def _resolve(url: NutURL, deadline: float) -> list[tuple[int, tuple]]:
    """(family, sockaddr) candidates for the URL's host, within the deadline.

    Address literals need no lookup. A name is resolved in a helper thread because getaddrinfo
    cannot be given a timeout and a broken resolver can block for tens of seconds; if it does,
    the thread is left to finish on its own and the call fails as unreachable.
    """
    try:
        ip = ipaddress.ip_address(url.host)
    except ValueError:
        ip = None
    if ip is not None:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, (url.host, url.port))]
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["ok"] = socket.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["err"] = exc

    worker = threading.Thread(target=lookup, name="nut-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if "ok" in box:
        return [(family, sockaddr) for family, _t, _p, _c, sockaddr in box["ok"]]
    if "err" in box:
        raise NutError("unreachable", f"cannot resolve host {url.host!r}", url=url) \
            from box["err"]
    raise NutError("unreachable", f"resolving host {url.host!r} took too long", url=url)


def _connect(url: NutURL, deadline: float, timeout_s: float) -> socket.socket:
    last: OSError | None = None
    for family, sockaddr in _resolve(url, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if isinstance(last, ConnectionRefusedError):
        detail = "connection refused (is upsd running and listening there?)"
    elif last is None or isinstance(last, TimeoutError):
        detail = f"no connection within {timeout_s:g} s"
    else:
        detail = f"cannot connect: {last.strerror or type(last).__name__}"
    raise NutError("unreachable", detail, url=url) from last


class _Lines:
    """Reads ``\\n``-terminated lines from a socket, bounded by a deadline and a line length."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    def send(self, line: str) -> None:
        self.sock.settimeout(self._remaining())
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def read(self) -> str:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                raw = bytes(self.buf[:end])
                del self.buf[:end + 1]
                break
            if len(self.buf) > _MAX_LINE:
                raise NutError("protocol", f"reply line longer than {_MAX_LINE} bytes")
            self.sock.settimeout(self._remaining())
            chunk = self.sock.recv(8192)
            if not chunk:
                raise ConnectionResetError("closed by the server")
            self.buf += chunk
        if len(raw) > _MAX_LINE:
            raise NutError("protocol", f"reply line longer than {_MAX_LINE} bytes")
        # Values are device strings, usually ASCII; a stray byte must not fail the sample.
        return raw.decode("utf-8", "replace").rstrip("\r")


def _expect_ok(lines: _Lines, secret: str | None, after: str) -> None:
    line = lines.read()
    err = error_for_reply(line, secret)
    if err is not None:
        raise err
    if line != "OK" and not line.startswith("OK "):
        raise NutError("protocol", f"expected OK after {after}, got {excerpt(line, secret)}")


def _list_var(lines: _Lines, ups: str, secret: str | None) -> dict[str, str]:
    lines.send(f"LIST VAR {ups}")
    reply = [lines.read()]
    if error_for_reply(reply[0], secret) is None:
        check_list_header(reply[0], "BEGIN", ups, secret)  # fail fast on a non-NUT server
        size = 0
        while True:
            line = lines.read()
            reply.append(line)
            size += len(line)
            if line.startswith("END "):
                break
            parse_var_line(line, ups, secret=secret)  # fail now, not at the deadline
            if len(reply) > _MAX_LIST_LINES or size > _MAX_LIST_BYTES:
                raise NutError("protocol", "LIST VAR reply is too long")
    return parse_list_var(reply, ups, secret=secret)


def read_vars(url: NutURL, *, timeout_s: float = 2.0) -> dict[str, str]:
    """All variables of ``url.ups`` as reported by its upsd: ``{"ups.status": "OL", ...}``.

    One TCP connection per call: USERNAME/PASSWORD when the URL has them (each must be answered
    OK), ``LIST VAR``, then ``LOGOUT``. The whole call, name resolution included, takes at most
    about ``timeout_s`` seconds. LOGOUT is a courtesy: once the variables are in, a failure to log
    out does not fail the call. Values are returned as sent (escapes decoded, no trimming).

    Raises NutError (see its kinds; ``unreachable`` also for a timeout or a connection closed
    mid-reply) and ValueError for a non-positive ``timeout_s``. upsd 2.8.0 does not check a
    password on reads, so a wrong one is not reported (see the module docstring).
    """
    if not timeout_s > 0:
        raise ValueError(f"ups: timeout_s must be > 0, got {timeout_s}")
    deadline = time.monotonic() + timeout_s
    secret = url.password
    sock = _connect(url, deadline, timeout_s)
    try:
        lines = _Lines(sock, deadline)
        try:
            if url.user is not None and url.password is not None:  # both or neither
                lines.send(f"USERNAME {quote_arg(url.user)}")
                _expect_ok(lines, secret, "USERNAME")
                lines.send(f"PASSWORD {quote_arg(url.password)}")
                _expect_ok(lines, secret, "PASSWORD")
            variables = _list_var(lines, url.ups, secret)
        except NutError as exc:
            raise exc.at(url) from None
        except TimeoutError:
            raise NutError("unreachable", f"no complete answer within {timeout_s:g} s",
                           url=url) from None
        except OSError as exc:
            raise NutError("unreachable", "the server closed the connection mid-reply "
                           f"({exc.strerror or exc})", url=url) from None
        try:
            lines.send("LOGOUT")
            lines.read()
        except (OSError, NutError):
            pass
        return variables
    finally:
        sock.close()


def measure(url: NutURL, *, timeout_s: float = 2.0, clock: Clock) -> Sample:
    """One ``ups`` sample for ``url`` (fields in the module docstring), timed at ``clock.now()``
    when the call starts.

    Raises NutError when the server cannot be asked or gives no usable answer (the caller records
    and counts it and keeps measuring), ValueError for a non-positive ``timeout_s``.
    """
    start = clock.now()
    variables = read_vars(url, timeout_s=timeout_s)
    try:
        fields = ups_fields(variables)
    except NutError as exc:
        raise exc.at(url) from None
    return Sample("ups", {"ups": url.ups}, fields, start)


class UpsSensor:
    """The probe contract for a UPS: :meth:`measure` gives its reading now, with the ``power``
    row (tags ``source`` = ``ups`` and ``ups``; the fields of :func:`measure`). On battery means
    the mains is gone (:func:`~agent.probes.nut_protocol.mains_lost`). Raises NutError when the
    server gives no usable answer."""

    name = UPS

    def __init__(self, url: NutURL, *, timeout_s: float, clock: Clock) -> None:
        self.url, self.timeout_s, self.clock = url, timeout_s, clock

    def measure(self) -> Reading:
        s = measure(self.url, timeout_s=self.timeout_s, clock=self.clock)
        f = s.fields
        charge, status = f.get("charge_pct"), f.get("status")
        row = Sample("power", {"source": UPS, "ups": s.tags["ups"]}, f, s.time)
        return Reading(UPS, mains_lost(f), None if charge is None else float(charge),
                       None if status is None else str(status), row)
