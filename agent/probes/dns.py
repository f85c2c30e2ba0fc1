"""DNS resolution probe: one timed, bounded query of our own per sample (no resolver library).

A home line often "is down" only because its DNS is: the router's forwarder hangs, the ISP's
resolvers time out, a captive portal answers REFUSED. So the probe speaks DNS itself over UDP,
times each reply with the injected monotonic clock and never waits longer than its budget.

The wire format is pure and has its own module (:mod:`agent.probes.dns_wire`); this one is the I/O
edge: :func:`system_servers` (reads a file) and :func:`measure` (sockets). :class:`DnsProbe` is one
name of the round (the probe contract, :mod:`agent.probes.contract`).

Sample ``dns``, tags ``name``, ``server`` (the server that answered; the first configured server
when none did). Fields:

=============  =====  ====================================================================
field          type   meaning
=============  =====  ====================================================================
success        bool   NOERROR with at least one A/AAAA address
rtt_ms         float  query sent -> usable reply received (ms); only when a reply came
rcode          int    the reply's RCODE (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED ...);
                      only when a reply came
answers        int    number of A/AAAA addresses in the reply (0 when no reply)
error          str    only on failure, one of ``ERRORS``
=============  =====  ====================================================================

Error values: ``timeout`` (no usable reply within the budget), ``nxdomain``, ``servfail``,
``refused`` (RCODE 5 from the server), ``no_answer`` (NOERROR without addresses: NODATA),
``malformed`` (only unusable packets came back), ``network`` (the query could not be sent or the
network reported the server unreachable: ENETUNREACH, EHOSTUNREACH, no route),
``port_unreachable`` (the server's host answered with ICMP port unreachable: the path works but
nothing listens on port 53 — a DNS failure, not a line failure), ``rcode_N`` (any other RCODE).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.clock import Clock
from agent.model import Sample
from agent.probes.contract import DNS, DnsFn
from agent.probes.dns_wire import (
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    Answer,
    DnsFormatError,
    build_query,
    error_word,
    parse_resolv_conf,
    parse_response,
    qtype_code,
    validate_name,
)

PORT = 53
ERRORS = ("timeout", "nxdomain", "servfail", "refused", "no_answer", "malformed", "network",
          "port_unreachable", "rcode_N")
_MAX_UDP_REPLY = 65535


def _random_qid() -> int:
    """An unpredictable query id (os.urandom: the `secrets` module would load OpenSSL, +4 MB)."""
    return int.from_bytes(os.urandom(2), "big")


# -- I/O edge ----------------------------------------------------------------------------------

def system_servers(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    """The system's DNS servers from ``resolv_conf``; ``["127.0.0.1"]`` (glibc's fallback) when the
    file is missing, unreadable or lists none."""
    try:
        with open(resolv_conf, encoding="utf-8", errors="replace") as f:
            servers = parse_resolv_conf(f.read())
    except OSError:
        servers = []
    return servers or ["127.0.0.1"]


@dataclass(frozen=True)
class _Outcome:
    """One server's result: an Answer with its RTT, or an error word."""

    answer: Answer | None = None
    rtt_ms: float = 0.0  # with an answer only
    error: str | None = None


def _os_error_word(exc: OSError) -> str:
    """Sorts a socket error: ICMP port unreachable arrives as ECONNREFUSED on a connected UDP
    socket (the server's host is reachable, its DNS service is not); anything else (ENETUNREACH,
    EHOSTUNREACH, no usable source address, a firewall's EPERM) means the query never got there."""
    if exc.errno == errno.ECONNREFUSED:
        return "port_unreachable"
    return "network"


def _query_udp(server: str, port: int, name: str, qtype: int, budget_s: float,
               clock: Clock) -> _Outcome:
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    qid = _random_qid()
    query = build_query(name, qtype, qid)
    deadline = clock.monotonic() + budget_s
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return _Outcome(error="network")
    with sock:
        try:
            # Port 0: the kernel picks a random ephemeral source port (with the random id, the
            # defence against off-path spoofing). Connecting filters out packets from other
            # sources and turns ICMP errors into errno values on recv.
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            sock.connect((server, port))
            sent_at = clock.monotonic()
            sock.send(query)
        except OSError as exc:
            return _Outcome(error=_os_error_word(exc))
        unusable = False
        while True:
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                break
            try:
                sock.settimeout(remaining)
                data = sock.recv(_MAX_UDP_REPLY)
            except TimeoutError:  # socket.timeout; an OSError too, so it is caught first
                break
            except OSError as exc:
                return _Outcome(error=_os_error_word(exc))
            received_at = clock.monotonic()
            try:
                answer = parse_response(data, qid, name, qtype)
            except DnsFormatError:
                # A stray or forged packet must not end the query: keep listening for the real
                # reply until the deadline, but remember that something unusable came back.
                unusable = True
                continue
            rtt_ms = (received_at - sent_at) * 1000.0
            if answer.truncated:
                answer = _retry_tcp(server, port, name, qtype, deadline, clock) or answer
            return _Outcome(answer=answer, rtt_ms=rtt_ms)
        return _Outcome(error="malformed" if unusable else "timeout")


def recv_exact(sock: socket.socket, n: int, deadline: float, clock: Clock) -> bytes:
    """Exactly ``n`` bytes from a stream socket by ``deadline`` (on ``clock.monotonic``):
    TimeoutError past it, ConnectionError "closed" when the peer closes first. The DNS-over-TCP
    retry and the OpenVPN check (agent/probes/services.py) read framed answers with it."""
    buf = b""
    while len(buf) < n:
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _retry_tcp(server: str, port: int, name: str, qtype: int, deadline: float,
               clock: Clock) -> Answer | None:
    """The full reply over TCP within what is left of the budget, or None (the caller then keeps
    the truncated UDP answer, which is still a reply)."""
    remaining = deadline - clock.monotonic()
    if remaining <= 0:
        return None
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    qid = _random_qid()
    query = build_query(name, qtype, qid)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(remaining)
            sock.connect((server, port))
            sock.sendall(struct.pack("!H", len(query)) + query)
            (length,) = struct.unpack("!H", recv_exact(sock, 2, deadline, clock))
            data = recv_exact(sock, length, deadline, clock)
        return parse_response(data, qid, name, qtype)
    except (OSError, DnsFormatError):
        return None


@dataclass(frozen=True)
class Lookup:
    """What :func:`lookup` found: the server whose reply counts (the first asked when none
    replied), the reply (None when none came), its RTT in ms, and the error word (None when the
    name resolved to at least one address)."""

    server: str
    answer: Answer | None
    rtt_ms: float
    error: str | None

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.answer.addresses if self.answer is not None and self.error is None else ()


def lookup(name: str, *, servers: Sequence[str], timeout_s: float = 2.0, qtype: str = "A",
           clock: Clock, port: int = PORT) -> Lookup:
    """Resolve ``name`` as :func:`measure` does (the same servers in turn, budget and errors)
    and return what was found, addresses included."""
    validate_name(name)
    qcode = qtype_code(qtype)
    if not servers:
        raise ValueError("dns: at least one server is needed")
    if not timeout_s > 0:
        raise ValueError(f"dns: timeout_s must be > 0, got {timeout_s}")
    for server in servers:
        ipaddress.ip_address(server)  # ValueError for a host name or typo: resolving it would loop
    deadline = clock.monotonic() + timeout_s
    outcomes: list[tuple[str, _Outcome]] = []
    for i, server in enumerate(servers):
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            break
        share = remaining / (len(servers) - i)
        outcome = _query_udp(server, port, name, qcode, share, clock)
        outcomes.append((server, outcome))
        if outcome.answer is not None and outcome.answer.rcode in (RCODE_NOERROR, RCODE_NXDOMAIN):
            break
    chosen = _choose(outcomes)
    if chosen and chosen[1].answer is not None:
        return Lookup(chosen[0], chosen[1].answer, chosen[1].rtt_ms, error_word(chosen[1].answer))
    # The first server's failure is reported, as the tag names the first server.
    return Lookup(servers[0], None, 0.0, outcomes[0][1].error if outcomes else "timeout")


def measure(name: str, *, servers: Sequence[str], timeout_s: float = 2.0, qtype: str = "A",
            clock: Clock, port: int = PORT) -> Sample:
    """Resolve ``name`` once and return a ``dns`` sample; never raises for network trouble.

    Servers are asked in order over UDP (``port``, 53 by default). Budget: the whole call takes at
    most about ``timeout_s`` seconds. Each server gets an even share of what is left
    (``remaining / servers_left``), so a server that times out hands the rest to the next one and
    one that fails fast (ICMP unreachable) hands over nearly all of it. A NOERROR or NXDOMAIN reply
    ends the query; SERVFAIL, REFUSED or another RCODE moves on to the next server, and if none
    does better the first such reply is reported. A truncated reply is retried over TCP within the
    budget. Packets with a wrong id or question are ignored while waiting; if nothing usable came
    back the error is ``malformed``. When no server replied, ``error`` is the first server's
    failure, matching the ``server`` tag.

    ``time`` is ``clock.now()`` at the start; ``rtt_ms`` comes from ``clock.monotonic()``.
    Raises ValueError for an invalid name, qtype, empty server list or non-positive timeout.
    """
    start = clock.now()
    found = lookup(name, servers=servers, timeout_s=timeout_s, qtype=qtype, clock=clock, port=port)
    tags = {"name": name, "server": found.server}
    fields: dict[str, float | int | bool | str] = {}
    error = found.error
    if found.answer is not None:
        fields.update(success=error is None, rtt_ms=found.rtt_ms, rcode=found.answer.rcode,
                      answers=len(found.answer.addresses))
    else:
        fields.update(success=False, answers=0)
    if error is not None:
        fields["error"] = error
    return Sample("dns", tags, fields, start)


def _choose(outcomes: list[tuple[str, _Outcome]]) -> tuple[str, _Outcome] | None:
    """The reply to report: the final one (NOERROR/NXDOMAIN) if any, else the first reply."""
    for server, outcome in outcomes:
        if outcome.answer is not None and outcome.answer.rcode in (RCODE_NOERROR, RCODE_NXDOMAIN):
            return server, outcome
    replies = [(s, o) for s, o in outcomes if o.answer is not None]
    return replies[0] if replies else None


class DnsProbe:
    """One name resolved every round: a ``dns`` row. ``servers`` gives the servers to ask, read
    at each measurement (the system's may change while the agent runs)."""

    name = "dns"
    role = DNS

    def __init__(self, query: str, resolve: DnsFn, servers: Callable[[], Sequence[str]], *,
                 timeout_s: float, clock: Clock) -> None:
        self.query, self.resolve, self.servers = query, resolve, servers
        self.timeout_s, self.clock = timeout_s, clock

    def measure(self) -> Sequence[Sample]:
        return [self.resolve(self.query, servers=self.servers(), timeout_s=self.timeout_s,
                             clock=self.clock)]
