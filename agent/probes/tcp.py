"""TCP connect probe: an echo that needs no privileges and passes where ICMP is filtered.

Each "echo" is a non-blocking ``connect()``; its RTT is the time from the SYN to the answer:

- SYN-ACK (the connection opens): a reply; the connection is closed again at once;
- RST (ECONNREFUSED): also a reply, since the host (or a firewall in front of it) answered;
- no answer within the timeout, an ICMP error (host/net unreachable), or no route: lost.

A reply to a *retransmitted* SYN counts as lost: the first SYN was lost, and the time measured
would include the kernel's 1 s retransmission timeout rather than the path's RTT. The kernel's
TCP_INFO tells whether it retransmitted.

The RTT is taken in user space with ``perf_counter_ns`` (no kernel timestamps exist for a
handshake), so it includes the wake-up of this process: tens of microseconds on a PC, more on a
Raspberry Pi.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time

from agent.clock import Clock
from agent.model import Sample
from agent.probes.stats import echo_stats
from agent.probes.target import Target
from kit.errors import ProbeError

METHOD = "tcp"
_ANSWERED = {0, errno.ECONNREFUSED}  # SO_ERROR values that prove the host answered
_TOTAL_RETRANS = struct.Struct("=I")  # struct tcp_info.tcpi_total_retrans (linux/tcp.h) ...
_TOTAL_RETRANS_AT = 100  # ... at this byte offset, unchanged since Linux 2.6
_POLL_DONE = select.POLLOUT | select.POLLERR | select.POLLHUP


def connect_rtts(target: Target, *, port: int = 443, count: int = 3, timeout_s: float = 2.0,
                 spacing_s: float = 0.25) -> list[float | None]:
    """Time ``count`` connects to ``target`` (its own port, else ``port``); RTTs in ms, None = lost.

    Connect ``i`` starts ``i * spacing_s`` seconds after the first and may overlap the others; it
    counts only if answered within ``timeout_s`` of its own start. Returns after at most
    ``(count - 1) * spacing_s + timeout_s`` seconds. Raises ProbeError when no socket can be opened
    (e.g. out of file descriptors), ValueError for bad arguments.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not timeout_s > 0 or not spacing_s >= 0:
        raise ValueError(f"need timeout_s > 0 and spacing_s >= 0, got {timeout_s}, {spacing_s}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    try:
        addr = target.sockaddr(target.port or port)
    except OSError:
        return [None] * count  # a scoped interface that is gone: nothing can be sent

    timeout_ns = int(timeout_s * 1e9)
    spacing_ns = int(spacing_s * 1e9)
    rtts: list[float | None] = [None] * count
    inflight: dict[int, tuple[int, socket.socket, int]] = {}  # fd -> (index, socket, start ns)
    poller = select.poll()
    start = time.perf_counter_ns()
    n = 0
    try:
        while True:
            now = time.perf_counter_ns()
            if n < count and now >= start + n * spacing_ns:
                _start_connect(target.family, addr, n, rtts, inflight, poller, timeout_ns)
                n += 1
                continue
            for fd, (_i, _sock, t0) in list(inflight.items()):
                if now - t0 >= timeout_ns:
                    _forget(fd, inflight, poller)
            if n >= count and not inflight:
                break
            wakes = [t0 + timeout_ns for _i, _s, t0 in inflight.values()]
            if n < count:
                wakes.append(start + n * spacing_ns)
            # poll() takes whole ms; rounding up means we never wake early and spin.
            events = poller.poll(max(0, -(-(min(wakes) - now) // 1_000_000)))
            done = time.perf_counter_ns()
            for fd, _ev in events:
                i, sock, t0 = inflight[fd]
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err in _ANSWERED and not _syn_retransmitted(sock) and done - t0 <= timeout_ns:
                    rtts[i] = (done - t0) / 1e6
                _forget(fd, inflight, poller)
    finally:
        for fd in list(inflight):
            _forget(fd, inflight, poller)
    return rtts


def measure(target: Target, *, port: int = 443, count: int = 3, timeout_s: float = 2.0,
            spacing_s: float = 0.25, clock: Clock) -> Sample:
    """One "ping" sample from TCP connects to ``target`` (its own port, else ``port``).

    Tags: ``target`` (address and the port used, e.g. ``1.1.1.1:443``), ``method`` = ``tcp``.
    Fields: see :func:`~agent.probes.stats.echo_stats`. ``time`` is ``clock.now()`` at the start.
    """
    started = clock.now()
    rtts = connect_rtts(target, port=port, count=count, timeout_s=timeout_s, spacing_s=spacing_s)
    tagged = target if target.port is not None else target.with_port(port)
    return Sample("ping", {"target": str(tagged), "method": METHOD}, echo_stats(count, rtts),
                  started)


def _start_connect(family: int, addr: tuple, i: int, rtts: list, inflight: dict,
                   poller: select.poll, timeout_ns: int) -> None:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ProbeError(f"tcp: cannot open a socket: {exc}") from exc
    sock.setblocking(False)
    t0 = time.perf_counter_ns()
    err = sock.connect_ex(addr)
    if err == errno.EINPROGRESS:
        inflight[sock.fileno()] = (i, sock, t0)
        poller.register(sock, _POLL_DONE)
        return
    # Loopback can finish at once; any other immediate error (ENETUNREACH on a link that is down,
    # EINVAL on a blackhole route, EACCES from a firewall) is a lost echo.
    if err in _ANSWERED:
        rtts[i] = (time.perf_counter_ns() - t0) / 1e6
    sock.close()


def _forget(fd: int, inflight: dict, poller: select.poll) -> None:
    _i, sock, _t0 = inflight.pop(fd)
    poller.unregister(fd)
    sock.close()


def _syn_retransmitted(sock: socket.socket) -> bool:
    """Whether the kernel had to resend the SYN (False when TCP_INFO is not available)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return False
    if len(info) < _TOTAL_RETRANS_AT + _TOTAL_RETRANS.size:
        return False
    return _TOTAL_RETRANS.unpack_from(info, _TOTAL_RETRANS_AT)[0] > 0
