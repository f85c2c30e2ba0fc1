"""DNS resolution probe: one timed, bounded query of our own per sample (no resolver library).

A home line often "is down" only because its DNS is: the router's forwarder hangs, the ISP's
resolvers time out, a captive portal answers REFUSED. So the probe speaks DNS itself over UDP,
times each reply with the injected monotonic clock and never waits longer than its budget.

Pure core: :func:`build_query`, :func:`parse_response`, :func:`validate_name`,
:func:`parse_resolv_conf`. I/O edge: :func:`system_servers` (reads a file) and :func:`measure`
(sockets). :class:`DnsProbe` is one name of the round (the probe contract,
:mod:`agent.probes.contract`).

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
import re
import socket
import struct
from dataclasses import dataclass
from typing import Callable, Sequence

from agent.clock import Clock
from agent.model import Sample
from agent.probes.contract import DNS, DnsFn
from kit.errors import ProbeError

QTYPES = {"A": 1, "AAAA": 28}


def _random_qid() -> int:
    """An unpredictable query id (os.urandom: the `secrets` module would load OpenSSL, +4 MB)."""
    return int.from_bytes(os.urandom(2), "big")
CLASS_IN = 1
PORT = 53

RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 2, 3, 5

ERRORS = ("timeout", "nxdomain", "servfail", "refused", "no_answer", "malformed", "network",
          "port_unreachable", "rcode_N")

_HEADER = struct.Struct("!HHHHHH")
_FLAG_QR, _FLAG_TC, _FLAG_RD = 0x8000, 0x0200, 0x0100
_MAX_NAME_TEXT = 253  # dotted text without the trailing dot; 255 bytes on the wire
_MAX_LABEL = 63
# A name can have at most 127 labels, so a legitimate name never needs more jumps than that;
# more means a crafted reply.
_MAX_POINTER_JUMPS = 127
# IDNA (RFC 3490 3.1) treats these as label separators too.
_DOTS = re.compile("[\u002e\u3002\uff0e\uff61]")
# Letters, digits, hyphen, plus underscore for service names (_dmarc, _sip._udp). Anything else in
# an ASCII name is a typo in the config, not something worth querying.
_ASCII_LABEL = re.compile(r"[A-Za-z0-9_-]+\Z")
_MAX_UDP_REPLY = 65535


class DnsFormatError(ProbeError):
    """A reply that cannot be used: malformed, for another query id, or for another question.

    ``reason`` is a short human explanation ("pointer loop", "id mismatch: 4660 != 1").
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"dns: malformed reply: {reason}")


@dataclass(frozen=True)
class Answer:
    """What a reply says: RCODE, the TC bit and the A/AAAA addresses of its answer section.

    ``addresses`` are in reply order, as text (``"192.0.2.1"``, ``"2001:db8::1"``); CNAME records
    are not followed, any A/AAAA record in the answer section counts.
    """

    rcode: int
    truncated: bool
    addresses: tuple[str, ...]


# -- pure core ---------------------------------------------------------------------------------

def _labels(name: str) -> list[bytes]:
    """Wire labels of ``name`` (IDNA for non-ASCII labels); ValueError naming the problem."""
    if not isinstance(name, str):
        raise ValueError(f"dns name must be a string, got {type(name).__name__}")
    text = _DOTS.sub(".", name)
    if text.endswith("."):
        text = text[:-1]  # a fully qualified name is the same query
    if not text:
        raise ValueError("dns name is empty")
    labels: list[bytes] = []
    for label in text.split("."):
        if not label:
            raise ValueError(f"dns name {name!r}: empty label")
        if label.isascii():
            if not _ASCII_LABEL.match(label):
                raise ValueError(f"dns name {name!r}: label {label!r} may contain only letters, "
                                 "digits, '-' and '_'")
            raw = label.encode("ascii")
        else:
            try:
                # The stdlib codec is IDNA 2003 (nameprep + punycode); it needs no dependency and
                # agrees with IDNA 2008 for ordinary names.
                raw = label.encode("idna")
            except UnicodeError as exc:
                raise ValueError(f"dns name {name!r}: label {label!r} is not valid IDNA: "
                                 f"{exc}") from None
        if len(raw) > _MAX_LABEL:
            raise ValueError(f"dns name {name!r}: label {label!r} is {len(raw)} bytes, "
                             f"at most {_MAX_LABEL} allowed")
        labels.append(raw)
    length = sum(len(x) for x in labels) + len(labels) - 1
    if length > _MAX_NAME_TEXT:
        raise ValueError(f"dns name {name!r} is {length} characters encoded, "
                         f"at most {_MAX_NAME_TEXT} allowed")
    return labels


def validate_name(name: str) -> None:
    """Raise ValueError with a message when ``name`` cannot be queried; return None when it can.

    Accepted: 1..253 characters after IDNA encoding (a trailing dot is allowed and ignored),
    labels of 1..63 bytes made of letters, digits, ``-`` and ``_``, or non-ASCII labels that IDNA
    can encode. The config loader calls this so a typo fails at start-up, not every minute.
    """
    _labels(name)


def _qtype_code(qtype: str) -> int:
    # Only A and AAAA: success is defined by the addresses they return.
    try:
        return QTYPES[str(qtype).upper()]
    except KeyError:
        raise ValueError(f"dns qtype must be one of {sorted(QTYPES)}, got {qtype!r}") from None


def build_query(name: str, qtype: int, qid: int) -> bytes:
    """The wire bytes of a standard query (RD set, one question, class IN, no EDNS).

    ``qtype`` is the numeric type (1 = A, 28 = AAAA); ``qid`` is 0..65535. Raises ValueError for
    an invalid name (see :func:`validate_name`), qtype or qid.
    """
    if not 0 <= qid <= 0xFFFF:
        raise ValueError(f"dns query id must be 0..65535, got {qid}")
    if not 0 <= qtype <= 0xFFFF:
        raise ValueError(f"dns qtype must be 0..65535, got {qtype}")
    qname = b"".join(bytes([len(x)]) + x for x in _labels(name)) + b"\x00"
    # No OPT record: a plain 512-byte query is understood by every forwarder in a home router;
    # the rare truncated reply is retried over TCP.
    return _HEADER.pack(qid, _FLAG_RD, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, CLASS_IN)


def _read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """Decode the (possibly compressed) name at ``offset``: (lower-cased labels, next offset).

    Loop protection: every pointer must point strictly before the label run that contains it, so
    decoding always moves backwards and terminates; jumps and total length are also bounded.
    """
    labels: list[bytes] = []
    total = 0
    jumps = 0
    end: int | None = None  # where the name ends in the record (after the first pointer)
    run_start = offset
    pos = offset
    while True:
        if pos >= len(data):
            raise DnsFormatError("name runs past the end of the message")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(data):
                raise DnsFormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= run_start:
                raise DnsFormatError("compression pointer does not point backwards (loop)")
            jumps += 1
            if jumps > _MAX_POINTER_JUMPS:
                raise DnsFormatError("too many compression pointers")
            if end is None:
                end = pos + 2
            pos = run_start = target
            continue
        if kind != 0:
            raise DnsFormatError(f"unsupported label type 0x{kind:02x}")
        if length == 0:
            break
        if pos + 1 + length > len(data):
            raise DnsFormatError("label runs past the end of the message")
        total += length + 1
        if total > 254:  # plus the root label's zero byte: 255 on the wire at most
            raise DnsFormatError("name longer than 255 bytes")
        labels.append(data[pos + 1:pos + 1 + length])
        pos += 1 + length
    if end is None:
        end = pos + 1
    return tuple(label.lower() for label in labels), end


def parse_response(data: bytes, qid: int, name: str, qtype: int | None = None) -> Answer:
    """Decode a reply to the query ``(qid, name[, qtype])``.

    Raises :class:`DnsFormatError` (and nothing else, whatever the bytes) when the message is
    malformed, is not a response, carries another id, or asks another question (names compare
    case-insensitively, as resolvers using 0x20 randomisation expect). A reply with no question
    section is accepted only with a non-zero RCODE (servers may drop it from errors, RFC 1035).
    With the TC bit set, a section cut short ends the parse instead of failing it.
    """
    # An invalid ``name`` is the caller's mistake and raises ValueError, not DnsFormatError.
    want = tuple(label.lower() for label in _labels(name))
    if len(data) < _HEADER.size:
        raise DnsFormatError(f"message of {len(data)} bytes is shorter than a header")
    rid, flags, qdcount, ancount, _nscount, _arcount = _HEADER.unpack_from(data)
    if rid != qid:
        raise DnsFormatError(f"id mismatch: {rid} != {qid}")
    if not flags & _FLAG_QR:
        raise DnsFormatError("not a response (QR clear)")
    rcode = flags & 0x000F
    truncated = bool(flags & _FLAG_TC)
    if qdcount > 1:
        raise DnsFormatError(f"{qdcount} questions, expected 1")
    if qdcount == 0 and rcode == RCODE_NOERROR:
        raise DnsFormatError("NOERROR reply without a question")
    pos = _HEADER.size
    if qdcount == 1:
        qname, pos = _read_name(data, pos)
        if pos + 4 > len(data):
            raise DnsFormatError("question runs past the end of the message")
        rtype, rclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        if qname != want:
            shown = b".".join(qname).decode("ascii", "replace")
            raise DnsFormatError(f"question mismatch: {shown!r}")
        if (qtype is not None and rtype != qtype) or rclass != CLASS_IN:
            raise DnsFormatError(f"question mismatch: type {rtype} class {rclass}")
    addresses = _addresses(data, pos, ancount, truncated)
    return Answer(rcode=rcode, truncated=truncated, addresses=addresses)


def _addresses(data: bytes, pos: int, ancount: int, truncated: bool) -> tuple[str, ...]:
    """The A/AAAA addresses of the ``ancount`` answer records from ``pos`` on."""
    addresses: list[str] = []
    for _ in range(ancount):
        try:
            _owner, pos = _read_name(data, pos)
            if pos + 10 > len(data):
                raise DnsFormatError("record header runs past the end of the message")
            rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
            pos += 10
            if pos + rdlength > len(data):
                raise DnsFormatError("record data runs past the end of the message")
        except DnsFormatError:
            if truncated:
                break  # the server cut the message at its size limit, as TC says
            raise
        rdata = data[pos:pos + rdlength]
        pos += rdlength
        if rclass != CLASS_IN:
            continue
        if rtype == 1:
            if rdlength != 4:
                raise DnsFormatError(f"A record with {rdlength} bytes of data")
            addresses.append(str(ipaddress.IPv4Address(rdata)))
        elif rtype == 28:
            if rdlength != 16:
                raise DnsFormatError(f"AAAA record with {rdlength} bytes of data")
            addresses.append(str(ipaddress.IPv6Address(rdata)))
    return tuple(addresses)


def parse_resolv_conf(text: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf text, like glibc reads them.

    Only the first three count (glibc's MAXNS); entries that are not IP addresses are skipped;
    an IPv6 zone (``fe80::1%eth0``) is stripped. Comments start with ``#`` or ``;``.
    """
    servers: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        addr = words[1].split("%", 1)[0]
        try:
            servers.append(str(ipaddress.ip_address(addr)))
        except ValueError:
            continue
        if len(servers) == 3:
            break
    return servers


def _error_for(answer: Answer) -> str | None:
    if answer.rcode == RCODE_NOERROR:
        return None if answer.addresses else "no_answer"
    return {RCODE_NXDOMAIN: "nxdomain", RCODE_SERVFAIL: "servfail",
            RCODE_REFUSED: "refused"}.get(answer.rcode, f"rcode_{answer.rcode}")


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
    rtt_ms: float | None = None
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


def _recv_exact(sock: socket.socket, n: int, deadline: float, clock: Clock) -> bytes:
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
            (length,) = struct.unpack("!H", _recv_exact(sock, 2, deadline, clock))
            data = _recv_exact(sock, length, deadline, clock)
        return parse_response(data, qid, name, qtype)
    except (OSError, DnsFormatError):
        return None


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
    validate_name(name)
    qcode = _qtype_code(qtype)
    if not servers:
        raise ValueError("dns: at least one server is needed")
    if not timeout_s > 0:
        raise ValueError(f"dns: timeout_s must be > 0, got {timeout_s}")
    for server in servers:
        ipaddress.ip_address(server)  # ValueError for a host name or typo: resolving it would loop
    start = clock.now()
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
    tags = {"name": name, "server": chosen[0] if chosen else servers[0]}
    fields: dict[str, float | int | bool | str] = {}
    if chosen and chosen[1].answer is not None:
        answer = chosen[1].answer
        error = _error_for(answer)
        fields.update(success=error is None, rtt_ms=chosen[1].rtt_ms, rcode=answer.rcode,
                      answers=len(answer.addresses))
    else:
        # The first server's failure is reported, as the tag names the first server.
        error = outcomes[0][1].error if outcomes else "timeout"
        fields.update(success=False, answers=0)
    if error is not None:
        fields["error"] = error
    return Sample("dns", tags, fields, start)


def _choose(outcomes: list[tuple[str, _Outcome]]) -> tuple[str, _Outcome] | None:
    """The reply to report: the final one (NOERROR/NXDOMAIN) if any, else the first reply."""
    replies = [(s, o) for s, o in outcomes if o.answer is not None]
    for server, outcome in replies:
        if outcome.answer.rcode in (RCODE_NOERROR, RCODE_NXDOMAIN):
            return server, outcome
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
