"""The default gateway, read from the kernel's routing tables under ``<procfs>/net``.

Knowing the gateway lets the agent ping the router separately from internet targets, which is how
an outage is blamed on the LAN (router down) or on the ISP. Reading procfs needs no subprocess and
no privileges, and tests hand the pure parsers fixture text.

``/proc/net/route`` (IPv4) prints each address as the kernel's 32-bit word in host byte order
(little-endian hex on x86 and ARM); ``/proc/net/ipv6_route`` prints addresses as 32 hex digits in
network order. Only routes that are up and go via a gateway (RTF_UP | RTF_GATEWAY) count; blackhole,
unreachable and on-link default routes have no gateway to ping and are skipped.
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
