"""ICMP echo ("ping") probe, without root where the system allows it.

Two ways to send an echo, tried in this order by :func:`available_method`:

``icmp_dgram``
    ``socket(AF_INET[6], SOCK_DGRAM, IPPROTO_ICMP[V6])``, the "ping socket". Allowed when the
    process's group is inside ``net.ipv4.ping_group_range`` (the same sysctl covers IPv6). The
    kernel writes the echo identifier, fills in the checksum, hands each socket only the replies
    carrying its identifier, and delivers them without the IP header.
``icmp_raw``
    ``SOCK_RAW``; needs CAP_NET_RAW. We choose a random identifier and filter replies ourselves
    (identifier, sequence, payload nonce, source address). IPv4 raw sockets receive the IP header
    in front of the ICMP message; IPv6 raw sockets do not, and the kernel computes the ICMPv6
    checksum on send.

Timing. The send time is read just before ``sendto``. The receive time is the kernel's receive
timestamp (SO_TIMESTAMPNS), so the RTT excludes the time Python takes to wake up and read the
packet, the same technique fping uses; it is taken against the wall clock, so each RTT is checked
against a ``perf_counter_ns`` measurement of the same echo and the latter is used when the wall
clock stepped in between (or the kernel gave no timestamp).

Everything that goes wrong with one echo is a lost echo, never an exception: an unreachable host,
an ICMP error, a link that is down (``sendto`` fails with ENETUNREACH). Only a socket the system
refuses to open raises :class:`~kit.errors.MethodUnavailable`.
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
import time

from agent.clock import Clock
from agent.model import Sample
from agent.probes.stats import echo_stats
from agent.probes.target import Target
from kit.errors import MethodUnavailable, ProbeError

DGRAM = "icmp_dgram"
RAW = "icmp_raw"
METHODS = (DGRAM, RAW)

PAYLOAD_BYTES = 16  # a random nonce per measurement; small on purpose (metered mobile data)

_ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
_PROTO: dict[int, int] = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence

# Linux socket options that Python 3.11 does not name.
_SOL_RAW = 255
_ICMP_FILTER = 1  # SOL_RAW: bitmask of ICMP types to *drop* on an IPv4 raw socket
_ICMP6_FILTER = 1  # IPPROTO_ICMPV6: 256-bit mask of ICMPv6 types to drop on an IPv6 raw socket
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # 35 on x86, ARM, RISC-V
_ANC_SIZE = socket.CMSG_SPACE(16)  # one struct timespec
_RECV_SIZE = 2048  # room for an IPv4 header with options + our small echo; larger strays truncate

# Errors from socket() that mean "not allowed / not supported here", as opposed to a broken system.
_REFUSED = {errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT,
            errno.ESOCKTNOSUPPORT}


# -- pure core ------------------------------------------------------------------------------------

def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``: 16-bit one's complement of the one's complement
    sum of big-endian 16-bit words, an odd last byte padded with zero."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP (IPv4) or ICMPv6 echo request with ``ident``/``seq`` (0..65535) and ``payload``.

    The IPv4 checksum is computed here (raw sockets send it as is). For ICMPv6 it is left 0: the
    kernel must compute it, since it covers a pseudo-header with the source address it chooses.
    """
    if family == socket.AF_INET:
        unsummed = _HEADER.pack(8, 0, 0, ident, seq) + payload
        return _HEADER.pack(8, 0, checksum(unsummed), ident, seq) + payload
    return _HEADER.pack(128, 0, 0, ident, seq) + payload


def parse_echo_reply(data: bytes, family: int, *, ip_header: bool) -> tuple[int, int, bytes] | None:
    """``(ident, seq, payload)`` when ``data`` is an echo reply, else None (requests, errors, junk).

    ``ip_header``: whether ``data`` starts with an IPv4 header (IPv4 raw sockets). Checksums are
    not verified: the kernel has already dropped corrupt packets for both socket kinds.
    """
    if ip_header:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        data = data[(data[0] & 0x0F) * 4:]
    if len(data) < _HEADER.size:
        return None
    kind, code, _sum, ident, seq = _HEADER.unpack_from(data)
    if kind != _ECHO_REPLY[family] or code != 0:
        return None
    return ident, seq, bytes(data[_HEADER.size:])


def _kernel_time_ns(ancdata: list) -> int | None:
    """The SO_TIMESTAMPNS receive time (ns since the epoch) from ``recvmsg`` ancillary data."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
            # struct timespec is two C longs: 8 bytes each on 64-bit, 4 each on 32-bit
            # Raspberry Pi OS.
            if len(data) >= 16:
                sec, nsec = struct.unpack_from("@qq", data)
            elif len(data) >= 8:
                sec, nsec = struct.unpack_from("@ii", data)
            else:
                return None
            return sec * 1_000_000_000 + nsec
    return None


def _pick_rtt_ns(mono_rtt: int, wall_send: int, wall_recv: int | None) -> int:
    """The kernel-timestamped RTT when it is consistent with the monotonic one, else the latter.

    The kernel stamps a packet before Python reads it, so its RTT can only be shorter than the
    monotonic one; a wall-clock step in between shows up as a negative or too long value.
    """
    if wall_recv is None:
        return mono_rtt
    kernel_rtt = wall_recv - wall_send
    if 0 <= kernel_rtt <= mono_rtt + 100_000:  # 0.1 ms: the two send times are read one call apart
        return kernel_rtt
    return mono_rtt


# -- I/O edge -------------------------------------------------------------------------------------

def open_socket(method: str, family: int = socket.AF_INET) -> socket.socket:
    """A new, non-blocking ICMP socket for ``method`` and ``family``.

    Raises MethodUnavailable when the system refuses it (no permission, no kernel support; a
    one-line message, :meth:`agent.platform.Platform.icmp_help` has the fixes), ProbeError for
    anything else (e.g. out of file descriptors), ValueError for an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ICMP method {method!r}; expected one of {', '.join(METHODS)}")
    kind = socket.SOCK_DGRAM if method == DGRAM else socket.SOCK_RAW
    fam = "IPv6" if family == socket.AF_INET6 else "IPv4"
    try:
        sock = socket.socket(family, kind, _PROTO[family])
    except OSError as exc:
        if exc.errno in _REFUSED:
            why = (f"net.ipv4.ping_group_range does not include gid {os.getgid()}"
                   if method == DGRAM else "needs CAP_NET_RAW")
            raise MethodUnavailable(f"{method} ({fam}) refused: {exc.strerror} ({why}); "
                                    f"`linewatch check` shows how to allow it") from exc
        raise ProbeError(f"{method} ({fam}): cannot open a socket: {exc}") from exc
    sock.setblocking(False)
    return sock


def permitted(method: str, family: int = socket.AF_INET) -> bool:
    """Whether this process may open the socket ``method`` needs for ``family``: the one test of
    ICMP permission (opening the socket is how every system answers it). Methods that are not
    ICMP ("tcp", "auto") need no permission."""
    if method not in METHODS:
        return True
    try:
        open_socket(method, family).close()
    except ProbeError:
        return False
    return True


def available_method(family: int = socket.AF_INET) -> str | None:
    """The first ICMP method this process may use for ``family`` (dgram, then raw), or None.
    How to allow one: :meth:`agent.platform.Platform.icmp_help`."""
    for method in METHODS:
        if permitted(method, family):
            return method
    return None


def echo_rtts(target: Target, *, count: int = 3, timeout_s: float = 2.0, spacing_s: float = 0.25,
              method: str) -> list[float | None]:
    """Send ``count`` echoes to ``target`` and return each one's RTT in ms (None = lost), in order.

    Echo ``i`` (sequence number ``i``) leaves ``i * spacing_s`` seconds after the first; its reply
    counts only if it arrives within ``timeout_s`` of its own send. The call returns as soon as
    every echo is answered or has timed out, i.e. after at most
    ``(count - 1) * spacing_s + timeout_s`` seconds. Duplicates, replies to other probes, late
    replies and ICMP errors are ignored; an echo whose ``sendto`` fails (link down, no route) is
    lost at once. Raises MethodUnavailable when ``method`` is not permitted, ValueError for bad
    arguments.
    """
    if not 1 <= count <= 65536:
        raise ValueError(f"count must be 1..65536 (16-bit sequence numbers), got {count}")
    if not timeout_s > 0 or not spacing_s >= 0:
        raise ValueError(f"need timeout_s > 0 and spacing_s >= 0, got {timeout_s}, {spacing_s}")
    family = target.family
    sock = open_socket(method, family)
    with sock:
        if method == RAW:
            _drop_all_but_echo_replies(sock, family)
            # Every raw socket sees every echo reply the host receives: ours carry this identifier.
            ident = random.getrandbits(16)
        else:
            ident = 0  # overwritten by the kernel with the socket's own identifier
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            pass  # no kernel timestamps: _pick_rtt_ns falls back to perf_counter_ns
        try:
            addr = target.sockaddr(0)
        except OSError:
            addr = None  # the scoped interface is gone: every echo is lost (see below)
        return _EchoRound(sock, family, ident, addr, target.packed, method == RAW,
                          count, timeout_s, spacing_s).run()


def measure(target: Target, *, count: int = 3, timeout_s: float = 2.0, spacing_s: float = 0.25,
            method: str, clock: Clock) -> Sample:
    """One "ping" sample for ``target``: loss and RTT statistics over ``count`` echoes.

    Tags: ``target`` (canonical address text), ``method`` (icmp_dgram | icmp_raw). Fields: see
    :func:`~agent.probes.stats.echo_stats` (a dead target gives loss_pct 100.0 and no RTT fields).
    ``time`` is ``clock.now()`` read when the measurement starts. Timing semantics and errors as
    for :func:`echo_rtts`.
    """
    started = clock.now()
    rtts = echo_rtts(target, count=count, timeout_s=timeout_s, spacing_s=spacing_s, method=method)
    return Sample("ping", {"target": str(target), "method": method}, echo_stats(count, rtts),
                  started)


def _drop_all_but_echo_replies(sock: socket.socket, family: int) -> None:
    """Let the kernel discard every other ICMP type before it wakes us (CPU on a busy host)."""
    reply = _ECHO_REPLY[family]
    try:
        if family == socket.AF_INET:
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", ~(1 << reply) & 0xFFFFFFFF))
        else:
            words = [0xFFFFFFFF] * 8
            words[reply >> 5] &= ~(1 << (reply & 31)) & 0xFFFFFFFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("8I", *words))
    except OSError:
        pass  # only an optimization: parse_echo_reply ignores other types anyway


class _EchoRound:
    """The send/receive loop of one :func:`echo_rtts` call, on one socket, driven by poll()."""

    def __init__(self, sock: socket.socket, family: int, ident: int, addr: tuple | None,
                 source: bytes, raw: bool, count: int, timeout_s: float, spacing_s: float) -> None:
        self.sock, self.family, self.ident, self.raw = sock, family, ident, raw
        self.addr, self.source = addr, source
        self.ip_header = raw and family == socket.AF_INET
        self.count = count
        self.timeout_ns = int(timeout_s * 1e9)
        self.spacing_ns = int(spacing_s * 1e9)
        self.payload = os.urandom(PAYLOAD_BYTES)
        self.sent_mono: list[int | None] = [None] * count  # perf_counter_ns; None = not sent
        self.sent_wall: list[int] = [0] * count  # time_ns, paired with the kernel's timestamps
        self.rtt_ns: list[int | None] = [None] * count
        self.n_sent = 0  # echoes attempted so far, successful or not

    def run(self) -> list[float | None]:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        start = time.perf_counter_ns()
        while True:
            now = time.perf_counter_ns()
            if self.n_sent < self.count:
                due = start + self.n_sent * self.spacing_ns
                if now >= due:
                    self._send()
                    continue
                wake = due
            else:
                pairs = zip(self.sent_mono, self.rtt_ns, strict=True)
                open_until = [t + self.timeout_ns for t, r in pairs if t is not None and r is None]
                if not open_until or max(open_until) <= now:
                    break
                wake = max(open_until)
            # poll() takes whole ms; rounding up means we never wake early and spin.
            if poller.poll(-(-(wake - now) // 1_000_000)):
                self._drain()
        return [None if r is None else r / 1e6 for r in self.rtt_ns]

    def _send(self) -> None:
        seq = self.n_sent
        self.n_sent += 1
        if self.addr is None:
            return
        packet = build_echo_request(self.family, self.ident, seq, self.payload)
        wall = time.time_ns()
        mono = time.perf_counter_ns()
        try:
            self.sock.sendto(packet, self.addr)
        except OSError:
            return  # link down, no route, firewall, full buffer: this echo is lost
        self.sent_mono[seq] = mono
        self.sent_wall[seq] = wall

    def _drain(self) -> None:
        """Read every queued packet and keep the ones that answer our outstanding echoes."""
        errors = 0
        while True:
            try:
                data, anc, _flags, src = self.sock.recvmsg(_RECV_SIZE, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # A ping socket reports an ICMP error (host/net unreachable) as one recv error,
                # cleared by reading it; the echo it concerns times out as lost. The cap only
                # guards against a kernel that would keep repeating an error.
                errors += 1
                if errors > 64:
                    return
                continue
            mono = time.perf_counter_ns()
            reply = parse_echo_reply(data, self.family, ip_header=self.ip_header)
            if reply is None:
                continue
            ident, seq, payload = reply
            if self.raw and ident != self.ident:
                continue
            if payload != self.payload or seq >= self.n_sent:
                continue  # another probe's echo, or a forged/garbled sequence number
            sent = self.sent_mono[seq]
            if sent is None or self.rtt_ns[seq] is not None:
                continue  # never left, or a duplicate
            if _packed(self.family, src[0]) != self.source:
                continue
            rtt = _pick_rtt_ns(mono - sent, self.sent_wall[seq], _kernel_time_ns(anc))
            if rtt <= self.timeout_ns:
                self.rtt_ns[seq] = rtt


def _packed(family: int, text: str) -> bytes | None:
    try:
        return socket.inet_pton(family, text.partition("%")[0])
    except OSError:
        return None
