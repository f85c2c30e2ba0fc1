"""The gateway: the round's echo of the router, and the site id from its hardware address.

Knowing the gateway lets the agent ping the router separately from internet targets, which is how
an outage is blamed on the LAN (router down) or on the ISP. :class:`GatewayProbe` finds it each
round through the platform (``probe.gateway = "auto"``: the default route's gateway) or echoes the
configured address, and remembers the last one it knew: with no default route (the link is down)
it echoes that one, which records the loss against the right address.

The gateway's hardware (MAC) address tells which line the agent is on: agents behind one router
see the same one. It is never stored or sent; only :func:`site_id`, a one-way hash of it, is (the
``site`` tag).
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.clock import Clock
from agent.model import Sample
from agent.probes.contract import GATEWAY, Network
from agent.probes.target import parse_target


class GatewayProbe:
    """The echo of the gateway: ``setting`` is "auto" or an address (the config's
    ``probe.gateway``; "off" builds no probe at all).

    After :meth:`measure`, ``routed`` says whether a route to the gateway existed (False only when
    the routing table is readable and has no default route: the link is down) and ``last`` is the
    last address found. :meth:`measure` returns no row when there is no address to echo at all.
    """

    name = "ping"
    role = GATEWAY

    def __init__(self, setting: str, net: Network, *, count: int, timeout_s: float,
                 clock: Clock) -> None:
        self.setting, self.net = setting, net
        self.count, self.timeout_s, self.clock = count, timeout_s, clock
        self.last: str | None = None
        self.routed = True

    def locate(self) -> tuple[str | None, bool]:
        """(address to echo, whether a route to it exists now)."""
        if self.setting != "auto":
            return self.setting, True
        found = self.net.gateway()
        if found:
            self.last = found
            return found, True
        if not self.net.routes_known():
            return self.last, True
        return self.last, False

    def measure(self) -> Sequence[Sample]:
        address, self.routed = self.locate()
        if not address:
            return []
        s = self.net.echo(parse_target(address), count=self.count, timeout_s=self.timeout_s,
                          clock=self.clock)
        return [s.with_tags({"role": GATEWAY})]


SITE_SALT = b"linewatch-site:"


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
    # deferred: hashlib would load OpenSSL (see above)
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython 3.12+
        except ImportError:                 # another Python
            from hashlib import sha256  # deferred, as above
    return sha256
