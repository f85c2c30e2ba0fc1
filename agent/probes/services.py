"""Service checks: can the sites and VPN endpoints a worker needs be reached, and if not, at
which step does the way to them break, and how?

A line can be up while work is blocked: a site's name answered with a wrong address, its
address dropped, its TLS handshake reset once the ClientHello names it, a VPN endpoint's port
closed. A site is checked step by step, as OONI's web connectivity test does, and the result
names the first step that failed:

1. ``dns``: the name through the system's resolvers (:func:`agent.probes.dns.lookup`, our own
   bounded query) and, when ``resolver`` is set, through that second path: a resolver's
   address, asked at each check, or a DNS-over-HTTPS URL, asked only when the site then fails
   at TCP or TLS (a TLS handshake each time: about the cost of a check). An answer that
   cannot be a public site's (0.0.0.0/8, loopback, unspecified) is ``bogon``. Answers that share
   no address with the second path are only a clue (sites served by CDNs answer differently by
   resolver): they become ``mismatch`` when the system's address then fails the site at TCP or
   TLS, where the second path's address does not.
2. ``tcp``: a connect to the first address (port 443 or the URL's).
3. ``tls``: a handshake with the site's name as SNI, its certificate verified (``ca_file``
   adds a CA, as for a test or a company's own). When it is reset, closed or times out, a second
   handshake on the same address names ``control_sni`` instead: if that one completes, the
   blocking keys on the name (SNI filtering), which ``control_tls`` records.
4. ``http``: a HEAD request for the URL's path, its status line read (any status means the
   site answered; only a reset, a close or silence fails the step).

VPN endpoints are a name lookup and then: for ``tcp://host:port`` (a TCP-based VPN) a connect;
for ``openvpn://`` the client's first packet (a hard reset) and the server's answer to it; for
``wireguard://`` a handshake initiation made with the user's own keys (agent/probes/wireguard.py:
a WireGuard server answers nothing else) and the server's response, authenticated.

Throttling (optional: ``throttle_url``) is a ``throttle`` check per name: the same file
downloaded from a server the user or an NGO runs, once with ``control_sni`` as the TLS name and
once with the name; a box that slows traffic by the name it sees slows only the second. Its step
``throttled`` (how ``slow``) is a ratio of the two rates below :data:`THROTTLED_BELOW`; a name
whose own download fails is that step's failure (a reset by name is blocking); a neutral
download that fails leaves nothing to compare (how ``control``, no evidence either way).

Sample ``service``, tags ``target`` (the URL's host, or host:port), ``kind`` (``site``,
``tcp``, ``openvpn``, ``wireguard``), ``step`` (the step that failed, or ``ok``). Fields:

=============  =====  =======================================================================
field          type   meaning
=============  =====  =======================================================================
ok             bool   every step passed
how            str    how the failed step failed (only on failure): see :data:`HOW`
dns_ms         float  the system resolver's answer time (ms), when it answered
connect_ms     float  TCP connect time (ms), when it connected
tls_ms         float  TLS handshake time (ms), when it completed
http_ms        float  request sent -> status line read (ms), when it was read
vpn_ms         float  a VPN endpoint's first packet sent -> its answer read (ms)
kbps           float  throttle: the download's rate with the name as SNI (kbit/s)
control_kbps   float  throttle: the same download's rate with the neutral name (kbit/s)
ratio          float  throttle: kbps / control_kbps
status_code    int    the HTTP status, when it was read
addresses      int    addresses the system's resolvers gave (0 when none)
dns_agree      bool   the system's and the second path's answers share an address (only when
                      both answered)
control_tls    bool   the control SNI's handshake on the same address completed (only when the
                      site's own handshake was reset, closed or timed out)
=============  =====  =======================================================================

Nothing here is judged: one failed check is a measurement. Interference (an episode) is the
tracker's verdict over several checks while the line is up.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agent.clock import Clock
from agent.model import Sample, to_ns
from agent.probes.dns import Lookup, lookup, recv_exact
from agent.probes.dns_wire import validate_name
from kit.errors import ConfigError

STEPS = ("dns", "tcp", "tls", "http", "vpn", "throttled", "skipped")
# How each step fails: the word in ``how``.
HOW = {
    "dns": ("timeout", "nxdomain", "no_answer", "servfail", "refused", "network",
            "port_unreachable", "malformed", "rcode_N", "bogon", "mismatch"),
    "tcp": ("timeout", "refused", "reset", "unreachable", "network"),
    "tls": ("timeout", "reset", "closed", "cert", "alert", "error"),
    "http": ("timeout", "reset", "closed", "malformed"),
    "vpn": ("timeout", "refused", "reset", "closed", "malformed"),
    "throttled": ("slow",),
    # not checked, no finding either way: a wireguard:// endpoint's keys could not be read or
    # used (keys); a throttling check's neutral download failed, nothing to compare with
    # (control)
    "skipped": ("keys", "control"),
}
KINDS = ("site", "tcp", "openvpn", "wireguard", "throttle")
THROTTLED_BELOW = 0.5     # the name's rate under half the neutral one's
SCHEMES = {"https": "site", "tcp": "tcp", "openvpn": "openvpn", "wireguard": "wireguard"}
OPENVPN_PORT = 1194
WIREGUARD_PORT = 51820
USER_AGENT = "linewatch"
_MAX_STATUS_LINE = 4096


# -- the pure core -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Service:
    """A configured target: its kind, host, port, and (for a site) the path to request."""

    kind: str
    host: str
    port: int
    path: str = "/"
    text: str = ""          # as configured
    transport: str = "tcp"  # openvpn: "udp" or "tcp"; wireguard: "udp"
    keys_file: str = ""     # wireguard: the WireGuard config holding the keys
    via: str = ""           # throttle: the download server's host (``host`` is the SNI name)

    @property
    def target(self) -> str:
        """The ``target`` tag: a site's host (its port when not 443), an endpoint's host:port,
        a throttling check's name."""
        if self.kind == "throttle" or (self.kind == "site" and self.port == 443):
            return self.host
        if self.transport == "udp":
            return (f"[{self.host}]:{self.port}/udp" if ":" in self.host
                    else f"{self.host}:{self.port}/udp")
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_service(text: str) -> Service:
    """``https://host[:port][/path]`` (a site), ``tcp://host:port`` (a TCP endpoint, such as
    a VPN's), ``openvpn://host[:port][?transport=udp|tcp]`` (an OpenVPN server, port 1194
    and UDP by default) or ``wireguard://host[:port]?config=/path/to/wg.conf`` (a WireGuard
    server, port 51820, checked with the keys in that config). Raises ValueError naming what
    is wrong."""
    parts = urlsplit(text.strip())
    kind = SCHEMES.get(parts.scheme.lower())
    if kind is None:
        raise ValueError("must start with https:// (a site), tcp:// (an endpoint), "
                         "openvpn:// or wireguard:// (a VPN server)")
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if not host:
        raise ValueError("no host")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in a checked URL")
    if kind == "tcp":
        if port is None:
            raise ValueError("a tcp:// endpoint needs its port (tcp://host:port)")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("a tcp:// endpoint is host:port only")
    if not _is_ip(host):
        try:
            validate_name(host)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    if kind == "openvpn":
        query = dict(p.partition("=")[::2] for p in parts.query.split("&") if p)
        transport = query.pop("transport", "udp")
        if transport not in ("udp", "tcp") or query or parts.path not in ("", "/"):
            raise ValueError("an openvpn:// server is host[:port][?transport=udp|tcp]")
        return Service(kind, host.lower(), port or OPENVPN_PORT, "/", text.strip(), transport)
    if kind == "wireguard":
        given = parse_qs(parts.query, keep_blank_values=True)
        keys = given.pop("config", [""])
        if given or parts.path not in ("", "/") or len(keys) != 1:
            raise ValueError("a wireguard:// server is host[:port]?config=/path/to/wg.conf")
        if not keys[0]:
            raise ValueError("a wireguard:// server needs ?config=/path/to/wg.conf: a WireGuard "
                             "server answers only a peer's keys, so the check uses yours")
        if not os.path.isabs(keys[0]):
            raise ValueError(f"config={keys[0]} must be an absolute path")
        return Service(kind, host.lower(), port or WIREGUARD_PORT, "/", text.strip(), "udp",
                       keys[0])
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Service(kind, host.lower(), port or 443, path, text.strip())


def throttle_services(url: str, names: Sequence[str]) -> list[Service]:
    """A ``throttle`` check per name: the file at ``url`` (an https:// URL on a server the user
    or an NGO runs) fetched with the name as SNI. ValueError names what is wrong."""
    base = parse_service(url)
    if base.kind != "site":
        raise ValueError("the throttling download is an https:// URL")
    out = []
    for name in names:
        validate_name(name)
        out.append(Service("throttle", name.lower(), base.port, base.path, f"{THROTTLE_PREFIX}{name}",
                           via=base.host))
    return out


THROTTLE_PREFIX = "throttle:"   # a throttling check's text in the child's request


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def bogon(address: str) -> bool:
    """An address no public site resolves to: what resolvers that block answer with."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return ip in _BOGON4 or ip.is_loopback or ip.is_unspecified
    return ip.is_loopback or ip.is_unspecified


_BOGON4 = ipaddress.ip_network("0.0.0.0/8")


# OpenVPN's control channel (its protocol as documented in openvpn's ssl_pkt.h and
# reliable.h): the first byte is the opcode (high 5 bits) and key id (low 3).
_P_CONTROL_HARD_RESET_CLIENT_V2, _P_CONTROL_HARD_RESET_SERVER_V2 = 7, 8


def openvpn_reset(session_id: bytes) -> bytes:
    """A client's hard reset (key id 0, no tls-auth): opcode, our session id, no acks, packet
    id 0. Sent as it is over UDP; over TCP with a 2-byte length before it."""
    if len(session_id) != 8:
        raise ValueError("an OpenVPN session id is 8 bytes")
    return bytes([_P_CONTROL_HARD_RESET_CLIENT_V2 << 3]) + session_id + b"\x00" + b"\x00" * 4


def openvpn_answers(reply: bytes, session_id: bytes) -> bool:
    """Whether ``reply`` is an OpenVPN server's hard reset acknowledging ours: opcode 8, the
    server's session id, an ack of our packet 0 naming our session id."""
    if len(reply) < 1 + 8 + 1 + 4 + 8 + 4 or reply[0] >> 3 != _P_CONTROL_HARD_RESET_SERVER_V2:
        return False
    acks = reply[9]
    if acks < 1 or len(reply) < 10 + 4 * acks + 8 + 4:
        return False
    return reply[10 + 4 * acks:10 + 4 * acks + 8] == session_id


@dataclass
class Steps:
    """What the steps of one check found (filled in by the I/O edge, judged by :func:`verdict`).
    A step's ``*_fail`` is the failure word, "" when it passed, None when it was not reached."""

    dns_fail: str | None = None
    addresses: tuple[str, ...] = ()
    second: tuple[str, ...] | None = None      # the second path's addresses (None: not asked)
    second_fail_tls: bool | None = None        # the site failed on the second path's address
    tcp_fail: str | None = None
    tls_fail: str | None = None
    http_fail: str | None = None
    vpn_fail: str | None = None
    throttle_fail: str | None = None
    kbps: tuple[float, float] | None = None    # throttle: (the name's rate, the neutral's)
    control_tls: bool | None = None
    ms: dict[str, float] = field(default_factory=dict)
    status_code: int | None = None


def verdict(s: Steps) -> tuple[str, str]:
    """(step, how) of a check: the first step that failed and how, or ("ok", "").

    The system's answer is judged poisoned (``dns``, ``mismatch``) only when it shares no
    address with the second path's, the site then failed on it at TCP or TLS, and the site
    passed TLS on the second path's address: a CDN's differing answers are no finding."""
    if s.vpn_fail == "keys" or s.throttle_fail == "control":
        return "skipped", s.vpn_fail or s.throttle_fail or ""
    if s.dns_fail:
        return "dns", s.dns_fail
    failed = next(((st, how) for st, how in (("tcp", s.tcp_fail), ("tls", s.tls_fail),
                                             ("http", s.http_fail), ("vpn", s.vpn_fail),
                                             ("throttled", s.throttle_fail))
                   if how), None)
    if failed is None:
        return "ok", ""
    if failed[0] in ("tcp", "tls") and s.second and not set(s.second) & set(s.addresses) \
            and s.second_fail_tls is False:
        return "dns", "mismatch"
    return failed


def sample(service: Service, s: Steps, time_: datetime) -> Sample:
    """The ``service`` row of a check (see the module's table)."""
    step, how = verdict(s)
    fields: dict[str, float | int | bool | str] = {"ok": step == "ok",
                                                   "addresses": len(s.addresses)}
    if how:
        fields["how"] = how
    for k in ("dns", "connect", "tls", "http", "vpn"):
        if k in s.ms:
            fields[f"{k}_ms"] = round(s.ms[k], 3)
    if s.status_code is not None:
        fields["status_code"] = s.status_code
    if s.second is not None and s.addresses and s.second:
        fields["dns_agree"] = bool(set(s.second) & set(s.addresses))
    if s.control_tls is not None:
        fields["control_tls"] = s.control_tls
    if s.kbps is not None:
        fields["kbps"], fields["control_kbps"] = round(s.kbps[0], 1), round(s.kbps[1], 1)
        if s.kbps[1] > 0:
            fields["ratio"] = round(s.kbps[0] / s.kbps[1], 4)
    return Sample("service", {"target": service.target, "kind": service.kind, "step": step},
                  fields, time_)


# -- the I/O edge ------------------------------------------------------------------------------

def _os_word(exc: BaseException) -> str:
    """A socket error as a step's failure word."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH,
                                                  errno.EACCES, errno.EPERM):
        return "unreachable"
    return "network"


def _tls_word(exc: BaseException) -> str:
    # deferred: ssl loads OpenSSL (about 4 MB); parsing the config needs none of it
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return "cert"
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "closed"
    if isinstance(exc, ssl.SSLError):
        # an alert from the peer ("tlsv1 alert ..." / "sslv3 alert ...")
        return "alert" if "alert" in (exc.reason or "").lower() else "error"
    word = _os_word(exc)
    return word if word in ("timeout", "reset") else "error"


class Checker:
    """Checks services. ``system_servers()`` gives the system's DNS servers (read at each
    check); ``resolver`` is the second path ("" for none); each step waits at most
    ``timeout_s``. ``bogon(address)`` says which resolved addresses no public site has (a test
    serving sites on loopback passes its own). The world (clock, DNS port) comes in by
    constructor."""

    def __init__(self, *, system_servers: Callable[[], Sequence[str]], resolver: str = "",
                 control_sni: str = "example.com", ca_file: str = "", timeout_s: float = 10.0,
                 clock: Clock, dns_port: int = 53, config_file: str = "(defaults)",
                 bogon: Callable[[str], bool] = bogon, throttle_bytes: int = 1_000_000) -> None:
        self.system_servers, self.resolver = system_servers, resolver
        self.throttle_bytes = throttle_bytes
        self.control_sni, self.timeout_s, self.clock = control_sni, timeout_s, clock
        self.dns_port, self.bogon = dns_port, bogon
        # deferred: ssl loads OpenSSL (about 4 MB), for checks only
        import ssl

        self._verified = _system_trust(ssl)              # the system's CAs ...
        if ca_file:
            try:
                self._verified.load_verify_locations(cafile=ca_file)   # ... and the one given
            except (OSError, ssl.SSLError) as exc:
                reason = ("not a PEM certificate file" if isinstance(exc, ssl.SSLError)
                          else exc.strerror or str(exc))
                raise ConfigError(config_file, "services.ca_file", f"{ca_file}: {reason}") from None
        # the control handshake verifies nothing: no CA store loaded for it (0.8 MB)
        self._control = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._control.check_hostname = False
        self._control.verify_mode = ssl.CERT_NONE

    def check(self, service: Service) -> Sample:
        started = self.clock.now()
        s = Steps()
        if service.kind == "throttle":
            self._throttle(service, s)
            return sample(service, s, started)
        keys = None
        if service.kind == "wireguard":
            try:
                keys = wireguard_keys(service)
            except ValueError:
                s.vpn_fail = "keys"      # `linewatch check` and `services` say why
                return sample(service, s, started)
        if _is_ip(service.host):
            s.addresses = (service.host,)
            s.dns_fail = ""
        else:
            self._resolve(service, s)
        if not s.dns_fail:
            address = s.addresses[0]
            if service.kind == "openvpn" and service.transport == "udp":
                packet = openvpn_reset(session := os.urandom(8))
                self._udp(address, service.port, s, lambda: (packet, session),
                          lambda reply, session: openvpn_answers(reply, session))
                sock = None
            elif keys is not None:
                self._wireguard(address, service.port, keys, s)
                sock = None
            else:
                sock = self._connect(address, service.port, s)
            if sock is not None and service.kind == "site":
                self._site(service, address, sock, s)
            elif sock is not None and service.kind == "openvpn":
                self._openvpn_tcp(sock, s)
            elif sock is not None:
                sock.close()
            if (s.tcp_fail or s.tls_fail) and service.kind == "site" and \
                    self.resolver.startswith("https://"):
                s.second = self._doh(service.host)    # asked only now: a TLS handshake each
            if (s.tcp_fail or s.tls_fail) and service.kind == "site" and s.second \
                    and not set(s.second) & set(s.addresses):
                s.second_fail_tls = self._fails_tls(service, s.second[0])
        return sample(service, s, started)

    def _resolve(self, service: Service, s: Steps) -> None:
        found = self._lookup(service.host, list(self.system_servers()))
        s.dns_fail = found.error or ""
        s.addresses = tuple(a for a in found.addresses if "." in a)
        if found.answer is not None:
            s.ms["dns"] = found.rtt_ms
        if not s.dns_fail and not s.addresses:
            s.dns_fail = "no_answer"
        if not s.dns_fail and any(self.bogon(a) for a in s.addresses):
            s.dns_fail = "bogon"
        if self.resolver and not s.dns_fail and not self.resolver.startswith("https://"):
            second = self._lookup(service.host, [self.resolver])
            s.second = tuple(a for a in second.addresses if "." in a)

    def _doh(self, name: str) -> tuple[str, ...] | None:
        """The name's IPv4 addresses through DNS over HTTPS (RFC 8484: the query's wire format
        POSTed as application/dns-message) to ``resolver``, its certificate verified as a
        site's; None when it gave none (its failure is no finding about the site)."""
        # deferred: the DNS wire format and HTTP, for a DoH second path only
        import http.client

        from agent.probes.dns_wire import DnsFormatError, build_query, parse_response

        url = urlsplit(self.resolver)
        host = url.hostname or ""
        try:
            conn = http.client.HTTPSConnection(host, url.port or 443, timeout=self.timeout_s,
                                               context=self._verified)
            try:
                conn.request("POST", url.path or "/dns-query", build_query(name, 1, 0),
                             {"Content-Type": "application/dns-message",
                              "Accept": "application/dns-message", "User-Agent": USER_AGENT})
                answer = conn.getresponse()
                body = answer.read(65536)
            finally:
                conn.close()
            if answer.status != 200:
                return None
            got = parse_response(body, 0, name, 1)
        except (OSError, ValueError, DnsFormatError, http.client.HTTPException):
            return None
        return tuple(a for a in got.addresses if "." in a) or None

    def _lookup(self, name: str, servers: list[str]) -> Lookup:
        return lookup(name, servers=servers, timeout_s=self.timeout_s, clock=self.clock,
                      port=self.dns_port)

    def _connect(self, address: str, port: int, s: Steps) -> socket.socket | None:
        t0 = self.clock.monotonic()
        try:
            sock = socket.create_connection((address, port), timeout=self.timeout_s)
        except OSError as exc:
            s.tcp_fail = _os_word(exc)
            return None
        s.ms["connect"] = (self.clock.monotonic() - t0) * 1000.0
        s.tcp_fail = ""
        return sock

    def _handshake(self, sock: socket.socket, name: str, ctx: Any) -> tuple[Any, str, float]:
        # A full handshake every time. Resuming the last session would send about 2.3 kB less,
        # but reading SSLSocket.session leaks about 5 kB each time on Python 3.11 (CPython
        # gh-116810; Debian 12's Python): an agent running for months cannot afford that.
        t0 = self.clock.monotonic()
        try:
            tls = ctx.wrap_socket(sock, server_hostname=name)
        except (OSError, ValueError) as exc:
            sock.close()
            return None, _tls_word(exc), 0.0
        return tls, "", (self.clock.monotonic() - t0) * 1000.0

    def _site(self, service: Service, address: str, sock: socket.socket, s: Steps) -> None:
        tls, s.tls_fail, ms = self._handshake(sock, service.host, self._verified)
        if tls is None:
            if s.tls_fail in ("reset", "closed", "timeout"):
                s.control_tls = self._control_handshake(address, service.port)
            return
        s.ms["tls"] = ms
        with tls:
            self._http(service, tls, s)

    def _udp(self, address: str, port: int, s: Steps, make: Callable[[], tuple[bytes, Any]],
             answers: Callable[[bytes, Any], bool]) -> None:
        """A VPN's first datagram and the server's answer: ``make()`` gives a packet and what
        its answer is judged against, ``answers(reply, that)`` judges. Sent again (made anew)
        halfway through the wait, as a datagram may be lost; an answer to either counts, and
        one that answers neither is waited past."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        t0 = self.clock.monotonic()
        other, sent = False, []
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((address, port))
                for attempt in (1, 2):
                    packet, token = make()
                    sent.append(token)
                    sock.send(packet)
                    until = t0 + self.timeout_s * attempt / 2
                    while (left := until - self.clock.monotonic()) > 0:
                        sock.settimeout(left)
                        try:
                            reply = sock.recv(2048)
                        except TimeoutError:
                            break
                        if any(answers(reply, t) for t in sent):
                            s.vpn_fail = ""
                            s.ms["vpn"] = (self.clock.monotonic() - t0) * 1000.0
                            return
                        other = True
            except OSError as exc:
                s.vpn_fail = "refused" if isinstance(exc, ConnectionRefusedError) else _os_word(exc)
                return
        s.vpn_fail = "malformed" if other else "timeout"

    def _wireguard(self, address: str, port: int, keys: Any, s: Steps) -> None:
        """A handshake initiation with the user's keys, made anew for the second send (a
        server refuses an initiation it has seen: its timestamp must grow)."""
        # deferred: the handshake's cryptography, for WireGuard endpoints only
        from agent.probes import wireguard

        def make() -> tuple[bytes, Any]:
            return wireguard.initiation(keys, sender=int.from_bytes(os.urandom(4), "little"),
                                        ephemeral_private=os.urandom(32),
                                        unix_ns=to_ns(self.clock.now()))

        try:
            make()                  # a key that cannot make an initiation is no finding
        except ValueError:
            s.vpn_fail = "keys"
            return
        self._udp(address, port, s, make, lambda reply, pending: bool(
            wireguard.answer(pending, reply)))

    def _openvpn_tcp(self, sock: socket.socket, s: Steps) -> None:
        session = os.urandom(8)
        packet = openvpn_reset(session)
        t0 = self.clock.monotonic()
        with sock:
            try:
                sock.settimeout(self.timeout_s)
                sock.sendall(len(packet).to_bytes(2, "big") + packet)
                deadline = self.clock.monotonic() + self.timeout_s
                head = recv_exact(sock, 2, deadline, self.clock)
                reply = recv_exact(sock, int.from_bytes(head, "big"), deadline, self.clock)
            except ConnectionError as exc:
                s.vpn_fail = "reset" if isinstance(exc, ConnectionResetError) else "closed"
                return
            except OSError as exc:
                s.vpn_fail = _os_word(exc)
                return
        if not openvpn_answers(reply, session):
            s.vpn_fail = "malformed"
            return
        s.vpn_fail = ""
        s.ms["vpn"] = (self.clock.monotonic() - t0) * 1000.0

    def _throttle(self, service: Service, s: Steps) -> None:
        """The file fetched from the server (``via``) with the neutral name, then with the
        checked one, on the same address; the rates compared."""
        if _is_ip(service.via):
            address = service.via
        else:
            found = self._lookup(service.via, list(self.system_servers()))
            v4 = [a for a in found.addresses if "." in a]
            if found.error or not v4:
                s.throttle_fail = "control"
                return
            address = v4[0]
        s.dns_fail, s.addresses = "", (address,)      # the download server's
        neutral = Steps()
        control = self._download(service, address, self.control_sni, neutral)
        if control is None or control < 1.0:         # nothing (or next to nothing) came
            s.throttle_fail = "control"
            return
        rate = self._download(service, address, service.host, s)
        if rate is None:
            return                                   # its step and how are in ``s``
        s.kbps = (rate, control)
        s.throttle_fail = "slow" if rate < THROTTLED_BELOW * control else ""

    def _download(self, service: Service, address: str, sni: str, s: Steps) -> float | None:
        """``throttle_bytes`` of the file, or what came in 3 x timeout_s, or until the server
        was silent for timeout_s; its rate in kbit/s from the request sent to the last byte.
        None with the failed step in ``s``: the connection closed before the bytes asked
        (``http: closed``), no answer (``http: timeout``), one other than 200 or 206
        (``http: malformed``)."""
        sock = self._connect(address, service.port, s)
        if sock is None:
            return None
        tls, s.tls_fail, ms = self._handshake(sock, sni, self._control)
        if tls is None:
            return None
        s.ms["tls"] = ms
        request = (f"GET {service.path} HTTP/1.1\r\nHost: {service.via}\r\nUser-Agent: "
                   f"{USER_AGENT}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n")
        got, closed = 0, False
        head: bytes | None = b""
        t0 = self.clock.monotonic()
        cap = t0 + 3 * self.timeout_s
        with tls:
            try:
                tls.settimeout(self.timeout_s)
                tls.sendall(request.encode("ascii", "replace"))
                while got < self.throttle_bytes and (now := self.clock.monotonic()) < cap:
                    tls.settimeout(min(self.timeout_s, cap - now))
                    chunk = tls.recv(65536)
                    if not chunk:
                        closed = True
                        break
                    if head is not None:
                        head += chunk
                        if b"\r\n\r\n" not in head:
                            if len(head) > 65536:
                                s.http_fail = "malformed"          # headers without end
                                return None
                            continue
                        head, chunk = head.split(b"\r\n\r\n", 1)
                        status = head.split(b" ", 2)[1:2]
                        if status not in ([b"200"], [b"206"]):
                            s.http_fail = "malformed"
                            return None
                        s.status_code = int(status[0])
                        head = None
                    got += len(chunk)
            except TimeoutError:
                pass                                  # what came in counts: a stall is slow
            except (OSError, ValueError) as exc:
                word = _tls_word(exc) if type(exc).__module__ == "ssl" else _os_word(exc)
                s.http_fail = word if word in HOW["http"] else "reset"
                return None
            elapsed = self.clock.monotonic() - t0
        if head is not None:
            s.http_fail = "closed" if closed else "timeout"
            return None
        if closed and got < self.throttle_bytes:
            s.http_fail = "closed"                   # cut short (or a file shorter than asked)
            return None
        s.http_fail = ""
        s.ms["http"] = elapsed * 1000.0
        return got * 8 / 1000.0 / max(elapsed, 1e-6)

    def _control_handshake(self, address: str, port: int) -> bool:
        try:
            sock = socket.create_connection((address, port), timeout=self.timeout_s)
        except OSError:
            return False
        tls, fail, _ = self._handshake(sock, self.control_sni, self._control)
        if tls is not None:
            tls.close()
        return tls is not None or fail in ("alert", "cert")     # the server spoke TLS

    def _fails_tls(self, service: Service, address: str) -> bool:
        try:
            sock = socket.create_connection((address, service.port), timeout=self.timeout_s)
        except OSError:
            return True
        tls, _, _ = self._handshake(sock, service.host, self._verified)
        if tls is None:
            return True
        tls.close()
        return False

    def _http(self, service: Service, tls: Any, s: Steps) -> None:
        host = service.host if service.port == 443 else f"{service.host}:{service.port}"
        request = (f"HEAD {service.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii", "replace")
        t0 = self.clock.monotonic()
        try:
            tls.settimeout(self.timeout_s)
            tls.sendall(request)
            line = _status_line(tls, time.monotonic() + self.timeout_s)
        except (OSError, ValueError) as exc:
            s.http_fail = _tls_word(exc) if type(exc).__module__ == "ssl" else _os_word(exc)
            if s.http_fail not in HOW["http"]:
                s.http_fail = "reset" if s.http_fail == "refused" else "closed"
            return
        if line is None:
            s.http_fail = "closed"
            return
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() \
                or len(parts[1]) != 3:
            s.http_fail = "malformed"
            return
        s.http_fail = ""
        s.status_code = int(parts[1])
        s.ms["http"] = (self.clock.monotonic() - t0) * 1000.0


def wireguard_keys(service: Service) -> Any:
    """The keys of a ``wireguard://`` endpoint, read from its ``config=`` file; ValueError naming
    the file and what is wrong with it (never a key)."""
    # deferred: the handshake's cryptography, for WireGuard endpoints only
    from agent.probes import wireguard

    endpoint = f"[{service.host}]:{service.port}" if ":" in service.host \
        else f"{service.host}:{service.port}"
    return wireguard.read_keys(service.keys_file, endpoint)


def check_all(checker: Checker, services: Sequence[Service], parallel: int = 1) -> list[Sample]:
    """Every service checked, the rows in the order given: one after the other (the agent's
    job: each thread that runs OpenSSL grows the process by its own heap, bench/README.md), or
    ``parallel`` at once (``linewatch services``: a person waiting), but throttling checks
    always one at a time."""
    quick = [s for s in services if s.kind != "throttle"]
    if parallel <= 1 or len(quick) < 2:
        return [checker.check(s) for s in services]
    # deferred: threads only for a command that checks many at once
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(quick), parallel)) as pool:
        done = dict(zip((id(s) for s in quick), pool.map(checker.check, quick)))
    # downloads one at a time, after the rest: two at once would share the line and each
    # other's rate
    return [done[id(s)] if id(s) in done else checker.check(s) for s in services]


def _system_trust(ssl: Any) -> Any:
    """A client context that verifies certificates and names against the system's CAs. Where
    the system keeps them as a hashed directory (Debian, Raspberry Pi OS), each CA is read when
    a chain needs it instead of the whole bundle at once: about 1.4 MB less for an agent that
    runs all day (bench/README.md)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)      # certificate and host name checked
    paths = ssl.get_default_verify_paths()
    if paths.capath and os.path.isdir(paths.capath) and not os.environ.get(
            paths.openssl_cafile_env):
        ctx.load_verify_locations(capath=paths.capath)
    else:
        ctx.load_default_certs()
    return ctx


def _status_line(tls: Any, deadline: float) -> bytes | None:
    """The first line of the answer (None when the server closed first); at most
    :data:`_MAX_STATUS_LINE` bytes are read. ``deadline`` is on time.monotonic's clock."""
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no status line")
        tls.settimeout(left)
        chunk = tls.recv(_MAX_STATUS_LINE - len(buf))
        if not chunk:
            return None
        buf += chunk
        if len(buf) >= _MAX_STATUS_LINE and b"\n" not in buf:
            raise ValueError("status line too long")
    return buf.split(b"\n", 1)[0].rstrip(b"\r")


# -- in a child process ------------------------------------------------------------------------
# The agent runs its checks in a short-lived child (``python -m agent.probes.services``), so
# OpenSSL and the CA store never load into the process that runs all day (about 7 MB,
# bench/README.md) and a check that hangs in a library call cannot hold the agent.

def child_request(services: Sequence[Service], *, system_servers: Sequence[str], resolver: str,
                  control_sni: str, ca_file: str, timeout_s: float, config_file: str,
                  throttle_url: str = "", throttle_bytes: int = 1_000_000) -> bytes:
    """What the child reads on its standard input: the targets (as configured) and settings."""
    return json.dumps({"targets": [s.text for s in services],
                       "system_servers": list(system_servers), "resolver": resolver,
                       "control_sni": control_sni, "ca_file": ca_file, "timeout_s": timeout_s,
                       "config_file": config_file, "throttle_url": throttle_url,
                       "throttle_bytes": throttle_bytes}).encode()


def child_budget_s(services: Sequence[Service], timeout_s: float) -> float:
    """How long the child may take: each step of each check at its timeout (a site: two
    lookups, three connects and handshakes, a request, a DNS-over-HTTPS exchange; a throttling
    check: a lookup and two downloads of at most 3 x timeout_s after their connect and
    handshake: 12 timeouts at most either way), and a margin to start."""
    return len(services) * 12 * timeout_s + 30.0


def rows_of_child(out: bytes) -> list[Sample]:
    """The child's answer (one JSON array of rows) as samples; ValueError for anything else."""
    rows = json.loads(out)
    if not isinstance(rows, list):
        raise ValueError("not a list of rows")
    return [Sample("service", dict(r["tags"]), dict(r["fields"]),
                   datetime.fromisoformat(r["time"])) for r in rows]


def _child(stdin: bytes) -> str:
    from agent.clock import SystemClock  # deferred: only the child measures

    req = json.loads(stdin)
    servers = list(req["system_servers"])
    checker = Checker(system_servers=lambda: servers, resolver=req["resolver"],
                      control_sni=req["control_sni"], ca_file=req["ca_file"],
                      timeout_s=float(req["timeout_s"]), clock=SystemClock(),
                      config_file=req["config_file"], throttle_bytes=int(req["throttle_bytes"]))
    rows = check_all(checker, [
        throttle_services(req["throttle_url"], [t[len(THROTTLE_PREFIX):]])[0]
        if t.startswith(THROTTLE_PREFIX) else parse_service(t) for t in req["targets"]])
    return json.dumps([{"time": r.time.isoformat(), "tags": dict(r.tags),
                        "fields": dict(r.fields)} for r in rows])


if __name__ == "__main__":
    import sys

    try:
        sys.stdout.write(_child(sys.stdin.buffer.read()) + "\n")
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(2)
