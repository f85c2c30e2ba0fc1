"""WireGuard's first handshake message, made and answered with the user's own keys: the one way
to learn whether a WireGuard server can be reached, since it answers nothing else.

A WireGuard server stays silent to any packet that does not prove the sender is one of its
peers. So the check sends what a peer's client sends first, a handshake initiation
(Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, as the WireGuard paper specifies it), made with the
private key and the server's public key from the user's WireGuard config, and waits for the
server's handshake response, which it authenticates the same way a client does. The check
never completes the session: no data is sent, no tunnel is made.

Everything here is pure: the cryptography (X25519 from RFC 7748, ChaCha20-Poly1305 from
RFC 8439, BLAKE2s from the standard library), the two messages, and the reading of a
wg-quick config. The socket is agent/probes/services.py's.

The X25519 here is Python integer arithmetic, not constant-time: it runs on the user's own
machine for a check every half hour, with nothing timed from outside. A peer kept for
monitoring alone (its own key pair on the server) is still the better practice: a server that
accepts an initiation sends that peer's tunnel to where it came from, until the peer's own
client sends again (the ``services.vpn`` key's documentation says so).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

# -- X25519 (RFC 7748) -------------------------------------------------------------------------

_P = 2 ** 255 - 19
_A24 = 121665
BASE_POINT = (9).to_bytes(32, "little")


def x25519(scalar: bytes, u: bytes) -> bytes:
    """The X25519 function: ``scalar`` (32 bytes, clamped here) times the point ``u``."""
    if len(scalar) != 32 or len(u) != 32:
        raise ValueError("X25519 takes 32-byte values")
    k = bytearray(scalar)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    n = int.from_bytes(k, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in range(254, -1, -1):
        bit = (n >> t) & 1
        if swap ^ bit:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % _P, (x2 - z2) % _P
        aa, bb = a * a % _P, b * b % _P
        e = (aa - bb) % _P
        c, d = (x3 + z3) % _P, (x3 - z3) % _P
        da, cb = d * a % _P, c * b % _P
        x3 = (da + cb) ** 2 % _P
        z3 = x1 * (da - cb) ** 2 % _P
        x2 = aa * bb % _P
        z2 = e * (aa + _A24 * e) % _P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(32, "little")


def public_key(private: bytes) -> bytes:
    return x25519(private, BASE_POINT)


def _dh(private: bytes, public: bytes) -> bytes:
    shared = x25519(private, public)
    if shared == bytes(32):
        raise ValueError("a low-order public key (the shared secret is zero)")
    return shared


# -- ChaCha20-Poly1305 (RFC 8439) --------------------------------------------------------------

_M32 = 0xFFFFFFFF


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & _M32


def _quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & _M32
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _M32
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & _M32
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _M32
    s[b] = _rotl(s[b] ^ s[c], 7)


def chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """One 64-byte block of the ChaCha20 key stream (RFC 8439, section 2.3)."""
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574,
             *struct.unpack("<8I", key), counter & _M32, *struct.unpack("<3I", nonce)]
    w = list(state)
    for _ in range(10):
        _quarter(w, 0, 4, 8, 12)
        _quarter(w, 1, 5, 9, 13)
        _quarter(w, 2, 6, 10, 14)
        _quarter(w, 3, 7, 11, 15)
        _quarter(w, 0, 5, 10, 15)
        _quarter(w, 1, 6, 11, 12)
        _quarter(w, 2, 7, 8, 13)
        _quarter(w, 3, 4, 9, 14)
    return struct.pack("<16I", *((x + y) & _M32 for x, y in zip(w, state)))


def _chacha20(key: bytes, counter: int, nonce: bytes, data: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(data), 64):
        block = chacha20_block(key, counter + i // 64, nonce)
        out += bytes(x ^ y for x, y in zip(data[i:i + 64], block))
    return bytes(out)


def poly1305(key: bytes, msg: bytes) -> bytes:
    """The Poly1305 tag of ``msg`` under a one-time 32-byte key (RFC 8439, section 2.5)."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:32], "little")
    p, acc = (1 << 130) - 5, 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i:i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _pad16(n: int) -> bytes:
    return bytes(-n % 16)


def _tag(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    otk = chacha20_block(key, 0, nonce)[:32]
    return poly1305(otk, aad + _pad16(len(aad)) + ciphertext + _pad16(len(ciphertext))
                    + struct.pack("<QQ", len(aad), len(ciphertext)))


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """ChaCha20-Poly1305 (RFC 8439, section 2.8): the ciphertext and its 16-byte tag."""
    ciphertext = _chacha20(key, 1, nonce, plaintext)
    return ciphertext + _tag(key, nonce, ciphertext, aad)


def aead_open(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """The plaintext of ``sealed``, or None when its tag is wrong (or it is too short)."""
    if len(sealed) < 16:
        return None
    ciphertext, tag = sealed[:-16], sealed[-16:]
    if not hmac.compare_digest(_tag(key, nonce, ciphertext, aad), tag):
        return None
    return _chacha20(key, 1, nonce, ciphertext)


# -- WireGuard's handshake (the WireGuard paper, section 5.4) ---------------------------------

_CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
_IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
_LABEL_MAC1 = b"mac1----"
INITIATION, RESPONSE, COOKIE_REPLY = 1, 2, 3
INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE = 148, 92, 64
_TAI64_BASE = 0x400000000000000A    # TAI64's label for 1970 (2**62 + the TAI-UTC offset then)


def _hash(*parts: bytes) -> bytes:
    return hashlib.blake2s(b"".join(parts)).digest()


def _mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def _kdf(key: bytes, data: bytes, n: int) -> list[bytes]:
    t0 = _hmac(key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = _hmac(t0, prev + bytes([i]))
        out.append(prev)
    return out


def _nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "little")


def tai64n(unix_ns: int) -> bytes:
    """The 12-byte TAI64N timestamp an initiation carries (a server refuses one not later than
    the last it accepted from the peer). Nanoseconds are rounded down to 2**24 ns, as
    WireGuard's own clients do, so the message tells nothing of the machine's clock below that."""
    seconds, ns = divmod(unix_ns, 1_000_000_000)
    return struct.pack(">QI", _TAI64_BASE + seconds, ns & ~0xFFFFFF)


@dataclass(frozen=True)
class Keys:
    """What the check needs of a WireGuard config: our private key, the server's public key,
    and the pre-shared key (32 zero bytes when none). Never logged, never in a row."""

    private: bytes
    server_public: bytes
    preshared: bytes = bytes(32)

    def __repr__(self) -> str:
        return "Keys(...)"


@dataclass(frozen=True)
class Pending:
    """An initiation sent: what its answer is checked against."""

    sender: int
    ephemeral_private: bytes
    chaining: bytes
    hash: bytes
    keys: Keys


def initiation(keys: Keys, *, sender: int, ephemeral_private: bytes,
               unix_ns: int) -> tuple[bytes, Pending]:
    """The 148-byte handshake initiation (no cookie: its mac2 is zero), and what its answer
    is checked against. ``sender`` is our 32-bit session index, ``ephemeral_private`` 32
    random bytes: both fresh for every check."""
    static_public = public_key(keys.private)
    c = _hash(_CONSTRUCTION)
    h = _hash(c, _IDENTIFIER)
    h = _hash(h, keys.server_public)
    ephemeral = public_key(ephemeral_private)
    c = _kdf(c, ephemeral, 1)[0]
    h = _hash(h, ephemeral)
    c, k = _kdf(c, _dh(ephemeral_private, keys.server_public), 2)
    static = aead_seal(k, _nonce(0), static_public, h)
    h = _hash(h, static)
    c, k = _kdf(c, _dh(keys.private, keys.server_public), 2)
    stamp = aead_seal(k, _nonce(0), tai64n(unix_ns), h)
    h = _hash(h, stamp)
    body = struct.pack("<BxxxI", INITIATION, sender & _M32) + ephemeral + static + stamp
    mac1 = _mac(_hash(_LABEL_MAC1, keys.server_public), body)
    return body + mac1 + bytes(16), Pending(sender & _M32, ephemeral_private, c, h, keys)


def answer(pending: Pending, reply: bytes) -> str:
    """What ``reply`` is to our initiation: ``"response"`` (the server's handshake response,
    authenticated: it holds our keys), ``"cookie"`` (a cookie reply to us: the server is
    under load and asks us to prove our address; it received the initiation), or ``""``
    (anything else: not to us, damaged, or forged)."""
    if len(reply) == COOKIE_REPLY_SIZE and reply[0] == COOKIE_REPLY and reply[1:4] == bytes(3):
        return "cookie" if struct.unpack_from("<I", reply, 4)[0] == pending.sender else ""
    if len(reply) != RESPONSE_SIZE or reply[0] != RESPONSE or reply[1:4] != bytes(3):
        return ""
    receiver = struct.unpack_from("<I", reply, 8)[0]
    if receiver != pending.sender:
        return ""
    keys = pending.keys
    if not hmac.compare_digest(_mac(_hash(_LABEL_MAC1, public_key(keys.private)), reply[:60]),
                               reply[60:76]):
        return ""
    ephemeral, empty = reply[12:44], reply[44:60]
    c = _kdf(pending.chaining, ephemeral, 1)[0]
    h = _hash(pending.hash, ephemeral)
    try:
        c = _kdf(c, _dh(pending.ephemeral_private, ephemeral), 1)[0]
        c = _kdf(c, _dh(keys.private, ephemeral), 1)[0]
    except ValueError:
        return ""
    c, tau, k = _kdf(c, keys.preshared, 3)
    h = _hash(h, tau)
    return "response" if aead_open(k, _nonce(0), empty, h) == b"" else ""


# -- the user's WireGuard config ---------------------------------------------------------------

def _key(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{what} is not a WireGuard key (32 bytes in base64)")
    return raw


def parse_config(text: str, endpoint: str = "") -> Keys:
    """The keys for ``endpoint`` (``host:port`` as configured) from a wg-quick config: the
    ``[Interface]``'s PrivateKey and the ``[Peer]``'s PublicKey and PresharedKey, where the peer
    is the one whose Endpoint is ``endpoint``, or the only one. ValueError names what is
    missing; no key's value is ever in a message."""
    sections: list[tuple[str, dict[str, str]]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip().lower(), {}))
            continue
        name, eq, value = line.partition("=")
        if not eq or not sections:
            raise ValueError(f"line {n} is not 'Key = value' inside a [section]")
        sections[-1][1][name.strip().lower()] = value.strip()
    interface = [s for name, s in sections if name == "interface"]
    peers = [s for name, s in sections if name == "peer"]
    if len(interface) != 1 or "privatekey" not in interface[0]:
        raise ValueError("needs one [Interface] with its PrivateKey")
    chosen = [p for p in peers if p.get("endpoint", "").lower() == endpoint.lower()] \
        if endpoint else []
    if not chosen and len(peers) == 1:
        chosen = peers
    if len(chosen) != 1 or "publickey" not in chosen[0]:
        raise ValueError(f"needs a [Peer] with the server's PublicKey (Endpoint = {endpoint}, or "
                         "the only [Peer])")
    peer = chosen[0]
    keys = Keys(_key(interface[0]["privatekey"], "PrivateKey"),
                _key(peer["publickey"], "the [Peer]'s PublicKey"),
                _key(peer["presharedkey"], "PresharedKey") if "presharedkey" in peer
                else bytes(32))
    try:
        _dh(keys.private, keys.server_public)
    except ValueError:
        raise ValueError("the [Peer]'s PublicKey is a low-order point: no server has it") from None
    return keys


def read_keys(path: str, endpoint: str = "") -> Keys:
    """:func:`parse_config` of the file at ``path``; ValueError naming the file and the
    problem (unreadable, or what is missing)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(65536)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"{path}: {reason}") from None
    try:
        return parse_config(text, endpoint)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
