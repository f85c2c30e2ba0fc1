"""Echo targets: an IP address literal with an optional port, parsed once from configuration text.

Host names are refused on purpose. A name would make every latency probe depend on DNS, so a DNS
failure would look like a dead line; linewatch measures DNS with its own probe and keeps the echo
targets independent of it.

Accepted forms (surrounding whitespace is ignored)::

    1.1.1.1                 2606:4700::1111            fe80::1%eth0 (link-local with a scope)
    1.1.1.1:443             [2606:4700::1111]:443      [2606:4700::1111]

A bare IPv6 address never carries a port: ``2606:4700::1111:443`` is the address ...:1111:443, as
in every other tool; write ``[2606:4700::1111]:443`` for a port.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

_EXAMPLES = "e.g. 1.1.1.1, 2606:4700::1111, 1.1.1.1:443 or [2606:4700::1111]:443"
_PORT = re.compile(r"[0-9]{1,10}")
# Something a person would type as a host name: labels of letters, digits, '-' or '_', with at least
# one letter somewhere (so a mistyped address such as "1.1.1" gets the generic message instead).
_NAME = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


@dataclass(frozen=True)
class Target:
    """An echo target: ``host`` is a normalized IP literal, ``port`` is 1..65535 or None.

    ``family`` is ``socket.AF_INET`` or ``socket.AF_INET6``. IPv6 hosts are in RFC 5952 form
    (lower case, ``::`` compression) and may carry a ``%scope`` for link-local addresses.
    Build one with :func:`parse_target`; ``str(target)`` gives the canonical text back.
    """

    host: str
    port: int | None
    family: socket.AddressFamily

    def __str__(self) -> str:
        if self.port is None:
            return self.host
        if self.family == socket.AF_INET6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def with_port(self, port: int | None) -> Target:
        """The same host with ``port`` (None for none)."""
        return Target(self.host, port, self.family)

    def sockaddr(self, port: int | None = None) -> tuple:
        """The socket address for ``sendto``/``connect``: ``port`` or this target's port or 0.

        Raises OSError (socket.gaierror) when a scoped IPv6 address names an interface that does
        not exist right now, e.g. an unplugged USB modem.
        """
        p = port if port is not None else (self.port or 0)
        if self.family == socket.AF_INET:
            return (self.host, p)
        if "%" not in self.host:
            return (self.host, p, 0, 0)
        # Only the resolver turns an interface name into the numeric scope id the kernel wants.
        info = socket.getaddrinfo(self.host, p, socket.AF_INET6, socket.SOCK_DGRAM, 0,
                                  socket.AI_NUMERICHOST)
        return info[0][4]

    @property
    def packed(self) -> bytes:
        """The address in network byte order (4 or 16 bytes), without any scope."""
        return socket.inet_pton(self.family, self.host.partition("%")[0])


def parse_target(text: str) -> Target:
    """Parse ``text`` into a :class:`Target`; raise ValueError with a message meant for a person.

    Refused: host names, IPv4 in brackets, ports outside 1..65535, and addresses that are not one
    host (unspecified ``0.0.0.0``/``::``, multicast, the IPv4 limited broadcast). IPv4-mapped IPv6
    addresses (``::ffff:1.2.3.4``) become the IPv4 address they carry, since that is where an echo
    actually goes.
    """
    if not isinstance(text, str):
        raise ValueError(f"target must be text, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise ValueError(f"empty target: give an IP address, {_EXAMPLES}")

    if "/" in s:  # a URL or a network, not a host: say so rather than guess at the parts
        raise ValueError(f"{text!r} is not an IP address ({_EXAMPLES})")
    host, port_text, bracketed = _split(s, text)
    addr = _address(host)
    if addr is None:
        if _NAME.fullmatch(host):
            raise ValueError(f"{text!r}: use an IP address: names depend on DNS, which linewatch "
                             f"probes separately")
        raise ValueError(f"{text!r} is not an IP address ({_EXAMPLES})")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    elif bracketed and addr.version == 4:
        raise ValueError(f"{text!r}: brackets are for IPv6 addresses only; write "
                         f"{addr}{':' + port_text if port_text is not None else ''}")

    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{text!r} is not the address of one host (unspecified, multicast or "
                         f"broadcast)")

    port = None
    if port_text is not None:
        if not _PORT.fullmatch(port_text):
            raise ValueError(f"{text!r}: port must be a number 1..65535, got {port_text!r}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"{text!r}: port must be 1..65535, got {port}")

    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    return Target(str(addr), port, family)


def _split(s: str, original: str) -> tuple[str, str | None, bool]:
    """(host, port text or None, whether the host was in brackets)."""
    if s.startswith("["):
        m = re.fullmatch(r"\[([^\[\]]*)\](?::(.*))?", s)
        if m is None:
            raise ValueError(f"{original!r}: expected [IPv6]:port, {_EXAMPLES}")
        return m.group(1), m.group(2), True
    if s.count(":") == 1:  # IPv4 (or a name) with a port; IPv6 always has two colons or more
        host, _, port = s.partition(":")
        return host, port, False
    return s, None, False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
