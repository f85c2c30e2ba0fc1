"""The default gateway, read from the kernel's routing tables under ``<procfs>/net``.

Knowing the gateway lets the agent ping the router separately from internet targets, which is how
an outage is blamed on the LAN (router down) or on the ISP. Reading procfs needs no subprocess and
no privileges, and tests hand the pure parsers fixture text.

``/proc/net/route`` (IPv4) prints each address as the kernel's 32-bit word in host byte order
(little-endian hex on x86 and ARM); ``/proc/net/ipv6_route`` prints addresses as 32 hex digits in
network order. Only routes that are up and go via a gateway (RTF_UP | RTF_GATEWAY) count; blackhole,
unreachable and on-link default routes have no gateway to ping and are skipped.

The gateway's hardware (MAC) address, from the neighbour table ``/proc/net/arp``, tells which
line the agent is on: agents behind one router see the same one. It is never stored or sent;
only :func:`site_id`, a one-way hash of it, is (the ``site`` tag).
"""

from __future__ import annotations

import ipaddress
import os
import struct
import sys

RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
_WANTED = RTF_UP | RTF_GATEWAY


def parse_route(text: str, byteorder: str = sys.byteorder) -> str | None:
    """The IPv4 default gateway in a ``/proc/net/route`` text, or None when there is none.

    Among up default routes via a gateway (destination and mask 0) the lowest metric wins; on a tie
    the first listed (the kernel's preference) wins. ``byteorder`` is how the kernel that wrote the
    text prints its words ("little" or "big"; the running machine's by default). Lines that do not
    parse are skipped.
    """
    fmt = "<I" if byteorder == "little" else ">I"
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1:]:  # first line is the column header
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            # Addresses and flags are hex, the metric is decimal (the kernel's format string).
            dest, gateway, flags, mask = (int(cols[i], 16) for i in (1, 2, 3, 7))
            metric = int(cols[6])
        except ValueError:
            continue
        if dest != 0 or mask != 0 or flags & _WANTED != _WANTED or gateway == 0:
            continue
        if not 0 <= gateway <= 0xFFFFFFFF:
            continue
        addr = str(ipaddress.IPv4Address(struct.pack(fmt, gateway)))
        if best is None or metric < best[0]:
            best = (metric, addr)
    return best[1] if best else None


def parse_ipv6_route(text: str) -> str | None:
    """The IPv6 default gateway in a ``/proc/net/ipv6_route`` text, or None when there is none.

    Columns: destination, prefix length, source, source prefix length, next hop, metric, refcount,
    use, flags, interface (all hex). Among up ``::/0`` routes via a gateway the lowest metric wins.
    A link-local next hop (the usual case: routers advertise fe80::...) is only usable with its
    interface, so it is returned with a zone, ``fe80::1%eth0``, which sockets and ping accept.
    """
    best: tuple[int, str] | None = None
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 10:
            continue
        try:
            dest, plen, nexthop = int(cols[0], 16), int(cols[1], 16), int(cols[4], 16)
            metric, flags = int(cols[5], 16), int(cols[8], 16)
        except ValueError:
            continue
        if dest != 0 or plen != 0 or flags & _WANTED != _WANTED or nexthop == 0:
            continue
        if len(cols[4]) != 32:
            continue
        addr = ipaddress.IPv6Address(nexthop)
        text_addr = f"{addr}%{cols[9]}" if addr.is_link_local else str(addr)
        if best is None or metric < best[0]:
            best = (metric, text_addr)
    return best[1] if best else None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def routes_readable(procfs: str = "/proc") -> bool:
    """Whether this system has the kernel routing tables to read (Linux). Elsewhere a missing
    gateway proves nothing about the link."""
    return any(os.access(os.path.join(procfs, "net", name), os.R_OK) for name in ("route", "ipv6_route"))


def default_gateway(procfs: str = "/proc") -> str | None:
    """The default gateway's address: IPv4 from ``<procfs>/net/route``, else IPv6 from
    ``<procfs>/net/ipv6_route``; None when neither has one or the files cannot be read.

    The tables are those of the reading process's network namespace.
    """
    text = _read(os.path.join(procfs, "net", "route"))
    gateway = parse_route(text) if text is not None else None
    if gateway is None:
        text6 = _read(os.path.join(procfs, "net", "ipv6_route"))
        gateway = parse_ipv6_route(text6) if text6 is not None else None
    return gateway


ATF_COM = 0x02  # the neighbour entry is complete: its hardware address is known
SITE_SALT = b"linewatch-site:"


def parse_arp(text: str, address: str) -> str | None:
    """The hardware address ``/proc/net/arp`` lists for the IPv4 ``address`` ("aa:bb:cc:dd:ee:ff",
    lower case), or None: no entry, an incomplete one, or one without a 6-byte address.

    Columns: IP address, HW type, Flags (hex), HW address, Mask, Device; a header line first.
    """
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 4 or cols[0] != address:
            continue
        try:
            flags = int(cols[2], 16)
        except ValueError:
            continue
        mac = cols[3].lower()
        parts = mac.split(":")
        if not flags & ATF_COM or len(parts) != 6 or any(len(p) != 2 for p in parts):
            continue
        try:
            raw = bytes.fromhex("".join(parts))
        except ValueError:
            continue
        if raw == bytes(6):
            continue
        return mac
    return None


def gateway_mac(address: str | None, procfs: str = "/proc") -> str | None:
    """The hardware address of the gateway ``address`` in the kernel's neighbour table, or None
    (no gateway, an IPv6 one: not in that table, a point-to-point or VPN link with no neighbour
    entry, the table unreadable: not Linux)."""
    if not address:
        return None
    text = _read(os.path.join(procfs, "net", "arp"))
    return parse_arp(text, address) if text is not None else None


def site_id(mac: str) -> str:
    """The ``site`` tag for a gateway's hardware address: the first 12 hex digits of
    sha256("linewatch-site:" + the 6 address bytes). The same router gives the same id on every
    agent behind it, and the address cannot be read back from the id by a casual reader.

    It is not anonymity: a MAC address has 48 bits, and who knows the router's vendor prefix
    (24 bits; a few common routers cover most homes) can try the other 2^24, about 17 million,
    hashes in seconds and find the address. The collector never publishes site ids.
    """
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a 6-byte hardware address: {mac!r}")
    return _sha256()(SITE_SALT + raw).hexdigest()[:12]


def _sha256():
    """CPython's own SHA-256, not hashlib's: importing hashlib loads OpenSSL (about 4 MB
    resident, measured) for one hash a round. Imported here, at the first use, for that cost."""
    try:
        from _sha256 import sha256          # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256        # CPython 3.12+
        except ImportError:                 # another Python
            from hashlib import sha256
    return sha256
