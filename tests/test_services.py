"""The service checks' pure core (agent/probes/services.py): the configured targets, the
addresses no site has, and the verdict of a check's steps. The steps against real servers, a
real censor in namespaces, are tests/test_services_netns.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.probes.services import (
    Service,
    Steps,
    bogon,
    check_all,
    child_budget_s,
    parse_service,
    sample,
    throttle_services,
    verdict,
)

T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, want", [
    ("https://www.upwork.com/", Service("site", "www.upwork.com", 443, "/")),
    ("https://GitHub.com", Service("site", "github.com", 443, "/")),
    ("https://pay.example.org:8443/login?x=1", Service("site", "pay.example.org", 8443, "/login?x=1")),
    ("tcp://vpn.example.org:1194", Service("tcp", "vpn.example.org", 1194, "/")),
    ("tcp://[2001:db8::1]:443", Service("tcp", "2001:db8::1", 443, "/")),
    ("https://198.51.100.10/", Service("site", "198.51.100.10", 443, "/")),
    ("wireguard://wg.example.org?config=/etc/linewatch/wg.conf",
     Service("wireguard", "wg.example.org", 51820, "/", transport="udp",
             keys_file="/etc/linewatch/wg.conf")),
    ("wireguard://[2001:db8::2]:443?config=/home/a%20b/wg0.conf",
     Service("wireguard", "2001:db8::2", 443, "/", transport="udp", keys_file="/home/a b/wg0.conf")),
], ids=["site", "bare", "port-path-query", "tcp", "tcp-v6", "site-ip", "wireguard",
        "wireguard-v6-quoted"])
def test_parse_service(text, want):
    got = parse_service(text)
    assert (got.kind, got.host, got.port, got.path, got.transport, got.keys_file) == \
        (want.kind, want.host, want.port, want.path, want.transport, want.keys_file)
    assert got.text == text


@pytest.mark.parametrize("text, message", [
    ("http://example.org/", "must start with https:// (a site), tcp:// (an endpoint), openvpn://"),
    ("wireguard://vpn.example.org:51820", "needs ?config=/path/to/wg.conf: a WireGuard server"),
    ("wireguard://vpn.example.org?config=wg.conf", "config=wg.conf must be an absolute path"),
    ("wireguard://vpn.example.org?config=/a&config=/b", "host[:port]?config="),
    ("wireguard://vpn.example.org/x?config=/a", "host[:port]?config="),
    ("tcp://vpn.example.org", "needs its port"),
    ("tcp://vpn.example.org:443/path", "host:port only"),
    ("https:///path", "no host"),
    ("https://user:secret@example.org/", "credentials do not belong"),
    ("https://example.org:99999/", "Port out of range"),
    ("https://exa mple.org/", ""),
], ids=["http", "wireguard-no-keys", "wireguard-relative", "wireguard-twice", "wireguard-path",
        "no-port", "tcp-path", "no-host", "credentials", "port", "space"])
def test_parse_service_refuses(text, message):
    with pytest.raises(ValueError) as err:
        parse_service(text)
    assert message in str(err.value)
    assert "secret" not in str(err.value)


def test_target_tag():
    assert parse_service("https://zoom.us/").target == "zoom.us"
    assert parse_service("https://zoom.us:8443/").target == "zoom.us:8443"
    assert parse_service("tcp://vpn.example.org:443").target == "vpn.example.org:443"
    assert parse_service("tcp://[2001:db8::1]:443").target == "[2001:db8::1]:443"


@pytest.mark.parametrize("address, want", [
    ("0.0.0.0", True), ("0.1.2.3", True), ("127.0.0.1", True), ("127.10.0.1", True),
    ("::1", True), ("::", True), ("198.51.100.10", False), ("10.0.0.1", False),
    ("2001:db8::1", False),
])
def test_bogon(address, want):
    assert bogon(address) is want


def _steps(**kw) -> Steps:
    base = dict(dns_fail="", addresses=("198.51.100.12",), tcp_fail="", tls_fail="", http_fail="")
    return Steps(**{**base, **kw})


@pytest.mark.parametrize("steps, want", [
    (_steps(), ("ok", "")),
    (_steps(dns_fail="nxdomain", addresses=(), tcp_fail=None, tls_fail=None, http_fail=None),
     ("dns", "nxdomain")),
    (_steps(dns_fail="bogon", addresses=("0.0.0.0",), tcp_fail=None, tls_fail=None,
            http_fail=None), ("dns", "bogon")),
    (_steps(tcp_fail="timeout", tls_fail=None, http_fail=None), ("tcp", "timeout")),
    (_steps(tls_fail="reset", http_fail=None, control_tls=True), ("tls", "reset")),
    (_steps(http_fail="closed"), ("http", "closed")),
    # the second path answers otherwise and its address works: the system's answer was poisoned
    (_steps(second=("198.51.100.10",), tcp_fail="refused", tls_fail=None, http_fail=None,
            second_fail_tls=False), ("dns", "mismatch")),
    (_steps(second=("198.51.100.10",), tls_fail="cert", http_fail=None, second_fail_tls=False),
     ("dns", "mismatch")),
    # ... but not when the second path's address fails too (the site is down, not poisoned)
    (_steps(second=("198.51.100.10",), tcp_fail="refused", tls_fail=None, http_fail=None,
            second_fail_tls=True), ("tcp", "refused")),
    # ... nor when the answers share an address, nor for a failure after TLS
    (_steps(second=("198.51.100.12", "198.51.100.10"), tcp_fail="timeout", tls_fail=None,
            http_fail=None, second_fail_tls=False), ("tcp", "timeout")),
    (_steps(second=("198.51.100.10",), http_fail="reset", second_fail_tls=None), ("http", "reset")),
    # a CDN's differing answers, the site fine: ok
    (_steps(second=("198.51.100.10",)), ("ok", "")),
], ids=["ok", "nxdomain", "bogon", "tcp", "tls", "http", "mismatch-tcp", "mismatch-tls",
        "down-both", "shared", "http-after", "cdn"])
def test_verdict(steps, want):
    assert verdict(steps) == want


def test_sample_fields():
    s = sample(parse_service("https://sni.test/"),
               _steps(tls_fail="reset", http_fail=None, control_tls=True, second=("198.51.100.12",),
                      ms={"dns": 1.23456, "connect": 7.0}), T)
    assert (s.measurement, s.time) == ("service", T)
    assert s.tags == {"target": "sni.test", "kind": "site", "step": "tls"}
    assert s.fields == {"ok": False, "how": "reset", "addresses": 1, "dns_ms": 1.235,
                        "connect_ms": 7.0, "dns_agree": True, "control_tls": True}
    ok = sample(parse_service("https://ok.test/"), _steps(status_code=204, ms={"http": 2.0}), T)
    assert ok.tags["step"] == "ok" and ok.fields == {"ok": True, "addresses": 1, "http_ms": 2.0,
                                                     "status_code": 204}


def test_openvpn_urls():
    udp = parse_service("openvpn://vpn.example.org")
    assert (udp.kind, udp.port, udp.transport, udp.target) == ("openvpn", 1194, "udp",
                                                               "vpn.example.org:1194/udp")
    tcp = parse_service("openvpn://vpn.example.org:443?transport=tcp")
    assert (tcp.port, tcp.transport, tcp.target) == (443, "tcp", "vpn.example.org:443")
    for bad in ("openvpn://vpn.example.org?transport=quic", "openvpn://vpn.example.org/x",
                "openvpn://vpn.example.org?cipher=x"):
        with pytest.raises(ValueError, match="host\\[:port\\]\\[\\?transport=udp\\|tcp\\]"):
            parse_service(bad)


SESSION = bytes.fromhex("0102030405060708")


def _server_reset(acked_session: bytes, acks: int = 1) -> bytes:
    # opcode 8, key 0 | server session | n acks | acked packet ids | our session | packet id
    return (bytes([8 << 3]) + bytes.fromhex("a1a2a3a4a5a6a7a8") + bytes([acks]) + b"\0" * 4 * acks
            + acked_session + b"\0\0\0\0")


def test_openvpn_packets():
    from agent.probes.services import openvpn_answers, openvpn_reset
    assert openvpn_reset(SESSION) == bytes([7 << 3]) + SESSION + b"\0" + b"\0\0\0\0"
    with pytest.raises(ValueError):
        openvpn_reset(b"short")
    assert openvpn_answers(_server_reset(SESSION), SESSION)
    assert openvpn_answers(_server_reset(SESSION, acks=2), SESSION)
    assert not openvpn_answers(_server_reset(b"\x09" * 8), SESSION)      # another's session
    assert not openvpn_answers(_server_reset(SESSION, acks=0)[:14], SESSION)
    assert not openvpn_answers(bytes([7 << 3]) + _server_reset(SESSION)[1:], SESSION)
    assert not openvpn_answers(_server_reset(SESSION)[:20], SESSION)
    assert not openvpn_answers(b"", SESSION)


def test_throttle_services():
    got = throttle_services("https://probe.example.org:8443/1mb.bin", ["Zoom.us", "slack.com"])
    assert [(t.kind, t.host, t.port, t.path, t.via, t.target) for t in got] == [
        ("throttle", "zoom.us", 8443, "/1mb.bin", "probe.example.org", "zoom.us"),
        ("throttle", "slack.com", 8443, "/1mb.bin", "probe.example.org", "slack.com")]
    with pytest.raises(ValueError, match="https:// URL"):
        throttle_services("tcp://probe.example.org:443", ["zoom.us"])
    with pytest.raises(ValueError):
        throttle_services("https://probe.example.org/", ["not a name"])


def test_throttle_verdict_and_fields():
    target = throttle_services("https://198.51.100.20/bytes/1000", ["slow.test"])[0]
    slow = sample(target, _steps(throttle_fail="slow", kbps=(1500.0, 90000.0)), T)
    assert slow.tags == {"target": "slow.test", "kind": "throttle", "step": "throttled"}
    assert (slow.fields["how"], slow.fields["kbps"], slow.fields["control_kbps"],
            slow.fields["ratio"]) == ("slow", 1500.0, 90000.0, 0.0167)
    fine = sample(target, _steps(throttle_fail="", kbps=(80000.0, 90000.0)), T)
    assert fine.tags["step"] == "ok" and fine.fields["ratio"] == 0.8889
    # the name's own download reset: blocking by name, before any rate
    reset = sample(target, _steps(tls_fail="reset", http_fail=None), T)
    assert (reset.tags["step"], reset.fields["how"]) == ("tls", "reset")
    assert "ratio" not in reset.fields
    control = sample(target, Steps(throttle_fail="control"), T)
    assert (control.tags["step"], control.fields["how"]) == ("skipped", "control")


def test_child_budget_counts_downloads():
    site, throttle = parse_service("https://a.test/"), throttle_services(
        "https://s.test/f", ["a.test"])[0]
    assert child_budget_s([site, site], 10) == 2 * 12 * 10 + 30
    assert child_budget_s([site, throttle], 10) == 2 * 12 * 10 + 30


def test_throttling_checks_run_one_at_a_time_after_the_rest(monkeypatch):
    """With a person waiting the quick checks go in parallel; downloads never overlap (two at
    once would share the line and halve each other's rate), and rows keep the order given."""
    import threading
    import time

    running, overlap, lock = [0], [False], threading.Lock()

    class Slow:
        def check(self, service):
            with lock:
                running[0] += 1
                if service.kind == "throttle" and running[0] > 1:
                    overlap[0] = True
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return service.target

    targets = [parse_service("https://a.test/"), *throttle_services("https://s.test/f",
                                                                    ["x.test", "y.test"]),
               parse_service("https://b.test/"), parse_service("https://c.test/")]
    assert check_all(Slow(), targets, parallel=8) == ["a.test", "x.test", "y.test", "b.test",
                                                      "c.test"]
    assert not overlap[0]


def test_the_second_path_is_an_address_or_a_doh_url():
    from agent.config import parse
    from kit.errors import ConfigError

    assert parse('[services]\nresolver = "https://1.1.1.1/dns-query"\n').services.resolver == \
        "https://1.1.1.1/dns-query"
    assert parse('[services]\nresolver = "9.9.9.9"\n').services.resolver == "9.9.9.9"
    for bad in ("dns.example", "tls://1.1.1.1", "https://user:pw@1.1.1.1/dns-query"):
        with pytest.raises(ConfigError, match=r"services\.resolver"):
            parse(f'[services]\nresolver = "{bad}"\n')
