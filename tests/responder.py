"""An ICMP echo responder with a known delay and a deterministic loss pattern (tests, benches).

The test kernel has no netem, so delay and loss cannot be injected on a link. Instead this program
runs inside a test namespace where the kernel's own echo replies are switched off
(``net.ipv4.icmp_echo_ignore_all=1``, or ``net.ipv6.icmp.echo_ignore_all=1`` for ``--family 6``),
reads echo requests on a raw socket and answers them itself:

- each reply leaves ``--delay-ms`` after the request arrived (other requests are served meanwhile);
- a request is dropped when ``seq % N`` is in ``--drop-residues`` for ``--drop-every N``
  (``--drop-every 10`` alone drops sequence numbers 0, 10, 20, ...), so a prober that numbers its
  echoes from 0 knows the exact loss in advance;
- ``--duplicate`` sends every reply twice; ``--bogus`` answers every request (dropped ones too) at
  once with three replies a careful prober must ignore (wrong identifier, wrong payload, unrelated
  sequence number).

A reply goes out from the address the request was sent to (IP_PKTINFO / IPV6_PKTINFO), since a
prober checks the source. Prints ``ready`` on stdout once listening; runs until killed. Needs
CAP_NET_RAW. Usage::

    python3 tests/responder.py --delay-ms 20 --drop-every 10
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import select
import socket
import struct
import sys
import time

_IP_PKTINFO = 8  # Linux; Python 3.11 does not export it
_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1
_HEADER = struct.Struct("!BBHHH")


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (independent of the agent's, on purpose)."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def make_reply(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    if family == socket.AF_INET:
        body = _HEADER.pack(0, 0, 0, ident, seq) + payload
        return _HEADER.pack(0, 0, checksum(body), ident, seq) + payload
    return _HEADER.pack(129, 0, 0, ident, seq) + payload  # the kernel sums ICMPv6


def dropped(seq: int, every: int, residues: frozenset[int]) -> bool:
    return every > 0 and seq % every in residues


def open_socket(family: int) -> socket.socket:
    if family == socket.AF_INET:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        # Wake only for echo requests (type 8): our own replies and everything else stay out.
        sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", ~(1 << 8) & 0xFFFFFFFF))
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        words = [0xFFFFFFFF] * 8
        words[128 >> 5] &= ~(1 << (128 & 31)) & 0xFFFFFFFF
        sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("8I", *words))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.setblocking(False)
    return sock


def read_request(sock: socket.socket, family: int):
    """(ident, seq, payload, reply-to sockaddr, ancillary data to send from the right address), or
    None for anything that is not an echo request."""
    data, anc, _flags, src = sock.recvmsg(4096, socket.CMSG_SPACE(20))
    if family == socket.AF_INET:
        if len(data) < 20:
            return None
        local = data[16:20]  # the IPv4 header's destination address
        data = data[(data[0] & 0x0F) * 4:]
        cmsg = [(socket.IPPROTO_IP, _IP_PKTINFO, struct.pack("=I4s4s", 0, local, bytes(4)))]
        want = 8
    else:
        info = [d for lvl, kind, d in anc
                if lvl == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO]
        if not info:
            return None
        cmsg = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info[0][:20])]
        want = 128
    if len(data) < _HEADER.size:
        return None
    kind, code, _sum, ident, seq = _HEADER.unpack_from(data)
    if kind != want or code != 0:
        return None
    return ident, seq, data[_HEADER.size:], src, cmsg


def serve(family: int, delay_s: float, every: int, residues: frozenset[int], duplicate: bool,
          bogus: bool, out=sys.stdout) -> None:
    sock = open_socket(family)
    pending: list = []  # heap of (due perf_counter, tie-breaker, packet, address, ancillary data)
    tie = itertools.count()
    print("ready", file=out, flush=True)
    while True:
        timeout = None
        if pending:
            timeout = max(0.0, pending[0][0] - time.perf_counter())
        # select() takes a float timeout (microsecond resolution), unlike poll()'s whole ms.
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            while True:
                try:
                    req = read_request(sock, family)
                except BlockingIOError:
                    break
                if req is None:
                    continue
                ident, seq, payload, src, cmsg = req
                now = time.perf_counter()
                if bogus:
                    # At once and even for dropped requests: a prober that took one of these
                    # would show less loss or a shorter RTT than the truth.
                    fakes = [(ident ^ 0xFFFF, seq, payload),
                             (ident, seq, bytes(b ^ 0xFF for b in payload)),
                             (ident, seq ^ 0x8000, payload)]
                    for f_ident, f_seq, f_payload in fakes:
                        heapq.heappush(pending, (now, next(tie),
                                                 make_reply(family, f_ident, f_seq, f_payload),
                                                 src, cmsg))
                if dropped(seq, every, residues):
                    continue
                due = now + delay_s
                for _ in range(2 if duplicate else 1):
                    reply = make_reply(family, ident, seq, payload)
                    heapq.heappush(pending, (due, next(tie), reply, src, cmsg))
        now = time.perf_counter()
        while pending and pending[0][0] <= now:
            _due, _tie, packet, dst, cmsg = heapq.heappop(pending)
            try:
                sock.sendmsg([packet], cmsg, 0, dst)
            except OSError:
                pass  # the prober's network went away: a lost reply, as on a real line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", type=int, choices=(4, 6), default=4)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="reply delay in ms (default 0)")
    ap.add_argument("--drop-every", type=int, default=0, metavar="N",
                    help="drop requests whose seq %% N is in --drop-residues (0 = drop none)")
    ap.add_argument("--drop-residues", default="0", metavar="R[,R...]",
                    help="residues of seq %% N to drop (default 0)")
    ap.add_argument("--duplicate", action="store_true", help="send every reply twice")
    ap.add_argument("--bogus", action="store_true",
                    help="precede each reply with replies a prober must ignore")
    args = ap.parse_args(argv)
    if args.delay_ms < 0 or args.drop_every < 0:
        ap.error("--delay-ms and --drop-every must be >= 0")
    try:
        residues = frozenset(int(r) for r in args.drop_residues.split(",") if r.strip())
    except ValueError:
        ap.error(f"--drop-residues: expected comma-separated numbers, got {args.drop_residues!r}")
    family = socket.AF_INET if args.family == 4 else socket.AF_INET6
    try:
        serve(family, args.delay_ms / 1000.0, args.drop_every, residues, args.duplicate, args.bogus)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
