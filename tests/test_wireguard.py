"""WireGuard's handshake, pure (agent/probes/wireguard.py): the primitives against their RFCs'
test vectors, the initiation and its answer against one exchange recorded from a real server
(Debian's wireguard-go, keys made for this test only), and the reading of a wg-quick config.
tests/test_services_netns.py checks against a running wireguard-go."""

from __future__ import annotations

import base64
import os

import pytest

from agent.probes import wireguard as wg

H = bytes.fromhex


def test_x25519_rfc7748_vectors():
    # RFC 7748, section 5.2, the first vector
    assert wg.x25519(H("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
                     H("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")) == \
        H("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    # section 6.1: both sides' public keys and their shared secret
    a = H("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    b = H("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    assert wg.public_key(a) == H("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert wg.public_key(b) == H("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = H("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert wg.x25519(a, wg.public_key(b)) == wg.x25519(b, wg.public_key(a)) == shared


def test_chacha20_block_rfc8439_vector():
    # RFC 8439, section 2.3.2
    block = wg.chacha20_block(bytes(range(32)), 1, H("000000090000004a00000000"))
    assert block == H("10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
                      "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e")


def test_poly1305_rfc8439_vector():
    # RFC 8439, section 2.5.2
    key = H("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
    assert wg.poly1305(key, b"Cryptographic Forum Research Group") == \
        H("a8061dc1305136c6c22b8baf0c0127a9")


def test_aead_rfc8439_vector_and_tampering():
    # RFC 8439, section 2.8.2
    key, nonce = bytes(range(0x80, 0xA0)), H("070000004041424344454647")
    aad = H("50515253c0c1c2c3c4c5c6c7")
    text = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
            b"the future, sunscreen would be it.")
    sealed = wg.aead_seal(key, nonce, text, aad)
    assert sealed[:16] == H("d31a8d34648e60db7b86afbc53ef7ec2")
    assert sealed[-16:] == H("1ae10b594f09e26a7e902ecbd0600691")
    assert len(sealed) == len(text) + 16
    assert wg.aead_open(key, nonce, sealed, aad) == text
    flipped = bytes([sealed[0] ^ 1]) + sealed[1:]
    assert wg.aead_open(key, nonce, flipped, aad) is None
    assert wg.aead_open(key, nonce, sealed, aad + b"x") is None
    assert wg.aead_open(key, nonce, sealed[:15], aad) is None
    assert wg.aead_open(key, nonce, wg.aead_seal(key, nonce, b"", aad), aad) == b""


def test_low_order_point_refused():
    with pytest.raises(ValueError, match="low-order"):
        wg.initiation(wg.Keys(os.urandom(32), bytes(32)), sender=1,
                      ephemeral_private=os.urandom(32), unix_ns=0)


def test_tai64n():
    # 2**62 + 10 + the Unix seconds, then the nanoseconds rounded down to 2**24
    stamp = wg.tai64n(1_700_000_000 * 10**9 + 123_456_789)
    assert stamp[:8] == (0x400000000000000A + 1_700_000_000).to_bytes(8, "big")
    assert int.from_bytes(stamp[8:], "big") == 123_456_789 & ~0xFFFFFF


# One exchange with Debian's wireguard-go 0.0.20220316, recorded: keys made for this test,
# our ephemeral key bytes(range(32)) and sender index 0x01020304.
REC = {
    "client_private": "2LfN/RbP18NaRJRAcpK8nYpu3cDh/7EkNjdC3kiHq18=",
    "server_public": "N3ztrnvf3GH1HS6wwTholiE2MF9HwdWs3T59oB2BR30=",
    "psk": "9jfXbl5D6a8W5y/SZ4AVvEY9jdduRBOei92Db6QkonU=",
    "unix_ns": 1796633333158266727,
    "initiation": "01000000040302018f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285fd3"
                  "e3493eb9eddcf2d4be7fed9e446b827805ad9cf778090383f768073bfc948be5af022337c7f92bd9"
                  "c58aa1ffdf22679154ec1cfff863867c777a10f385ff02bcf1f9bfa55f6ebd6b263e4d8c5a623168"
                  "9e8fafebb7739fcceda87900000000000000000000000000000000",
    "response": "020000004c1e666b040302010f94a836260870a79103fca94ab747125441d042d166aaeff481c997"
                "2e8db8594fa2f68900a8e57344cbb0cfd2d1865ac7c27176fc3d191e23a61a305e45d224000000"
                "00000000000000000000000000",
}


def _recorded():
    keys = wg.Keys(*(base64.b64decode(REC[k]) for k in ("client_private", "server_public", "psk")))
    return wg.initiation(keys, sender=0x01020304, ephemeral_private=bytes(range(32)),
                         unix_ns=REC["unix_ns"])


def test_initiation_is_what_the_real_server_answered():
    message, pending = _recorded()
    assert len(message) == wg.INITIATION_SIZE
    assert message.hex() == REC["initiation"]
    assert wg.answer(pending, H(REC["response"])) == "response"


@pytest.mark.parametrize("change", ["receiver", "ephemeral", "empty", "mac1", "type", "short",
                                    "wrong-psk", "wrong-key"])
def test_answer_refuses_what_is_not_the_servers_response(change):
    _, pending = _recorded()
    reply = bytearray(H(REC["response"]))
    if change == "receiver":
        reply[8] ^= 1
    elif change == "ephemeral":
        reply[20] ^= 1
    elif change == "empty":
        reply[50] ^= 1
    elif change == "mac1":
        reply[70] ^= 1
    elif change == "type":
        reply[0] = 4
    elif change == "short":
        del reply[-1]
    elif change == "wrong-psk":        # the server used another pre-shared key
        pending = wg.Pending(pending.sender, pending.ephemeral_private, pending.chaining,
                             pending.hash, wg.Keys(pending.keys.private,
                                                   pending.keys.server_public, bytes(32)))
    elif change == "wrong-key":        # an answer made for another peer
        pending = wg.Pending(pending.sender, pending.ephemeral_private, pending.chaining,
                             pending.hash, wg.Keys(os.urandom(32), pending.keys.server_public,
                                                   pending.keys.preshared))
    assert wg.answer(pending, bytes(reply)) == ""


def test_cookie_reply_to_us_counts_as_an_answer():
    _, pending = _recorded()
    cookie = bytes([3, 0, 0, 0]) + (0x01020304).to_bytes(4, "little") + os.urandom(56)
    assert wg.answer(pending, cookie) == "cookie"
    other = bytes([3, 0, 0, 0]) + (7).to_bytes(4, "little") + os.urandom(56)
    assert wg.answer(pending, other) == ""


KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(1, 33))).decode()
KEY_C = base64.b64encode(bytes(range(2, 34))).decode()


def test_parse_config_picks_the_peer_by_endpoint():
    text = f"""# a wg-quick config
[Interface]
PrivateKey = {KEY_A}   # ours
Address = 10.9.0.2/32
DNS = 10.9.0.1

[Peer]
PublicKey = {KEY_B}
Endpoint = other.example.org:51820
AllowedIPs = 0.0.0.0/0

[Peer]
PublicKey = {KEY_C}
PresharedKey = {KEY_B}
Endpoint = WG.example.org:51820
"""
    keys = wg.parse_config(text, "wg.example.org:51820")
    assert keys.private == bytes(range(32))
    assert keys.server_public == bytes(range(2, 34)) and keys.preshared == bytes(range(1, 33))
    assert wg.parse_config(text, "other.example.org:51820").preshared == bytes(32)
    assert repr(keys) == "Keys(...)"
    with pytest.raises(ValueError, match="Endpoint = nowhere:1, or the only"):
        wg.parse_config(text, "nowhere:1")


def test_parse_config_only_peer_and_errors_name_no_key():
    only = f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = {KEY_B}\n"
    assert wg.parse_config(only, "anything:1").server_public == bytes(range(1, 33))
    bad = [("", "one [Interface] with its PrivateKey"),
           (f"PrivateKey = {KEY_A}", "line 1 is not 'Key = value' inside a [section]"),
           (f"[Interface]\nPrivateKey = {KEY_A}", "needs a [Peer]"),
           (f"[Interface]\nPrivateKey = {KEY_A[:-4]}\n[Peer]\nPublicKey = {KEY_B}",
            "PrivateKey is not a WireGuard key"),
           (f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = not-base64!",
            "PublicKey is not a WireGuard key"),
           (f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = "
            f"{base64.b64encode(bytes(32)).decode()}", "PublicKey is a low-order point")]
    for text, message in bad:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
            wg.parse_config(text)
        assert KEY_A not in str(e.value) and KEY_A[:-4] not in str(e.value)


def test_read_keys_names_the_file(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}/none.conf: No such file"):
        wg.read_keys(str(tmp_path / "none.conf"))
    f = tmp_path / "wg.conf"
    f.write_text(f"[Interface]\nPrivateKey = {KEY_A}\n")
    with pytest.raises(ValueError, match=f"{f}: needs a \\[Peer\\]"):
        wg.read_keys(str(f))
