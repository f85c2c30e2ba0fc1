"""parse_target: IP literals with an optional port; names and junk refused with a message (pure)."""

import ipaddress
import socket

import pytest
from hypothesis import given, strategies as st

from agent.probes.target import Target, parse_target

V4, V6 = socket.AF_INET, socket.AF_INET6

ACCEPTED = [
    # id, text, host, port, family, canonical text
    ("v4", "1.1.1.1", "1.1.1.1", None, V4, "1.1.1.1"),
    ("v6", "2606:4700::1111", "2606:4700::1111", None, V6, "2606:4700::1111"),
    ("v4-port", "1.1.1.1:443", "1.1.1.1", 443, V4, "1.1.1.1:443"),
    ("v6-port", "[2606:4700::1111]:443", "2606:4700::1111", 443, V6, "[2606:4700::1111]:443"),
    ("v6-brackets-no-port", "[2606:4700::1111]", "2606:4700::1111", None, V6, "2606:4700::1111"),
    ("v6-normalized", "2606:4700:0000:0000:0000:0000:0000:1111", "2606:4700::1111", None, V6,
     "2606:4700::1111"),
    ("v6-lowercased", "2001:DB8::A", "2001:db8::a", None, V6, "2001:db8::a"),
    ("whitespace", "  8.8.8.8:53\n", "8.8.8.8", 53, V4, "8.8.8.8:53"),
    ("port-1", "10.0.0.1:1", "10.0.0.1", 1, V4, "10.0.0.1:1"),
    ("port-65535", "10.0.0.1:65535", "10.0.0.1", 65535, V4, "10.0.0.1:65535"),
    ("loopback-v6", "::1", "::1", None, V6, "::1"),
    ("v4-mapped-becomes-v4", "::ffff:192.0.2.7", "192.0.2.7", None, V4, "192.0.2.7"),
    ("link-local-scope", "fe80::1%eth0", "fe80::1%eth0", None, V6, "fe80::1%eth0"),
    ("v6-trailing-group-is-address", "2606:4700::1111:443", "2606:4700::1111:443", None, V6,
     "2606:4700::1111:443"),
]


@pytest.mark.parametrize("text, host, port, family, canonical", [c[1:] for c in ACCEPTED],
                         ids=[c[0] for c in ACCEPTED])
def test_parse_accepts(text, host, port, family, canonical):
    t = parse_target(text)
    assert (t.host, t.port, t.family) == (host, port, family)
    assert str(t) == canonical
    assert parse_target(str(t)) == t  # the canonical text is itself accepted, unchanged


REFUSED = [
    # id, text, a fragment the message must contain
    ("empty", "", "empty target"),
    ("blank", "   ", "empty target"),
    ("name", "one.one.one.one", "use an IP address: names depend on DNS"),
    ("name-with-port", "example.com:443", "use an IP address"),
    ("localhost", "localhost", "use an IP address"),
    ("v6-name-in-brackets", "[example.com]:443", "use an IP address"),
    ("partial-v4", "1.1.1", "not an IP address"),
    ("v4-octet-too-big", "1.1.1.256", "not an IP address"),
    ("v4-leading-zero", "01.1.1.1", "not an IP address"),
    ("port-zero", "1.1.1.1:0", "port must be 1..65535, got 0"),
    ("port-too-big", "1.1.1.1:65536", "port must be 1..65535, got 65536"),
    ("port-empty", "1.1.1.1:", "port must be a number"),
    ("port-not-number", "1.1.1.1:https", "port must be a number"),
    ("port-signed", "1.1.1.1:+80", "port must be a number"),
    ("port-non-ascii-digits", "1.1.1.1:\u0664\u0664\u0663", "port must be a number"),
    ("v6-port-zero", "[::1]:0", "port must be 1..65535"),
    ("v4-in-brackets", "[1.1.1.1]:443", "brackets are for IPv6"),
    ("unclosed-bracket", "[2606:4700::1111:443", "expected [IPv6]:port"),
    ("junk-after-bracket", "[::1]x", "expected [IPv6]:port"),
    ("unspecified-v4", "0.0.0.0", "not the address of one host"),
    ("unspecified-v6", "::", "not the address of one host"),
    ("multicast", "224.0.0.1", "not the address of one host"),
    ("broadcast", "255.255.255.255", "not the address of one host"),
    ("url", "http://1.1.1.1/", "not an IP address"),
    ("cidr", "10.0.0.0/8", "not an IP address"),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_parse_refuses(text, fragment):
    with pytest.raises(ValueError) as exc:
        parse_target(text)
    assert fragment in str(exc.value)


def test_refuses_non_text():
    with pytest.raises(ValueError):
        parse_target(443)  # type: ignore[arg-type]


def test_target_is_frozen_and_hashable():
    t = parse_target("1.1.1.1")
    with pytest.raises(AttributeError):
        t.host = "8.8.8.8"  # type: ignore[misc]
    assert {t, parse_target(" 1.1.1.1 ")} == {t}


@pytest.mark.parametrize("text, port, expected", [
    pytest.param("192.0.2.1", None, ("192.0.2.1", 0), id="v4-no-port"),
    pytest.param("192.0.2.1:80", None, ("192.0.2.1", 80), id="v4-own-port"),
    pytest.param("192.0.2.1:80", 443, ("192.0.2.1", 443), id="v4-explicit-port-wins"),
    pytest.param("2001:db8::1", 443, ("2001:db8::1", 443, 0, 0), id="v6"),
    pytest.param("fe80::1%lo", 0, ("fe80::1", 0, 0, 1), id="v6-scope-resolved"),
])
def test_sockaddr(text, port, expected):
    assert parse_target(text).sockaddr(port) == expected


def test_sockaddr_missing_interface_is_oserror():
    with pytest.raises(OSError):
        parse_target("fe80::1%lwnosuchif0").sockaddr()


def test_with_port():
    assert str(parse_target("2001:db8::1").with_port(853)) == "[2001:db8::1]:853"


@given(st.ip_addresses(), st.one_of(st.none(), st.integers(min_value=1, max_value=65535)))
def test_round_trip_property(addr, port):
    """Any one-host address, with any valid port, survives str() -> parse_target() unchanged."""
    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        return
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return
    text = str(addr) if port is None else (
        f"{addr}:{port}" if addr.version == 4 else f"[{addr}]:{port}")
    t = parse_target(text)
    assert ipaddress.ip_address(t.host) == addr
    assert t.port == port
    assert str(t) == text
    assert t.packed == addr.packed
    assert isinstance(t, Target)
