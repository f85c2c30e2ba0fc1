"""The site id: which line the agent is on, from the gateway's hardware address.

Knowing the gateway lets the agent ping the router separately from internet targets, which is how
an outage is blamed on the LAN (router down) or on the ISP; the platform finds it
(:meth:`agent.platform.Platform.default_gateway`). The gateway's hardware (MAC) address tells
which line the agent is on: agents behind one router see the same one. It is never stored or sent;
only :func:`site_id`, a one-way hash of it, is (the ``site`` tag).
"""

from __future__ import annotations


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
    try:
        from _sha256 import sha256          # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256        # CPython 3.12+
        except ImportError:                 # another Python
            from hashlib import sha256
    return sha256
