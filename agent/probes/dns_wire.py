"""The DNS wire format, pure: names, queries, replies, and resolv.conf.

Everything here takes bytes or text and returns values, or raises :class:`DnsFormatError` (a reply
that cannot be used) or ValueError (the caller's mistake: an invalid name or query). The probe that
sends queries and times the replies is :mod:`agent.probes.dns`.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from kit.errors import ProbeError

QTYPES = {"A": 1, "AAAA": 28}
CLASS_IN = 1

RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 2, 3, 5

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


def qtype_code(qtype: str) -> int:
    """The numeric type of ``"A"`` or ``"AAAA"``; ValueError for anything else."""
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


def error_word(answer: Answer) -> str | None:
    """The sample's ``error`` for a reply: None when it resolved (NOERROR with addresses)."""
    if answer.rcode == RCODE_NOERROR:
        return None if answer.addresses else "no_answer"
    return {RCODE_NXDOMAIN: "nxdomain", RCODE_SERVFAIL: "servfail",
            RCODE_REFUSED: "refused"}.get(answer.rcode, f"rcode_{answer.rcode}")
