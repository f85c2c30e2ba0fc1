"""Default gateway: parse tables over fixture procfs text, a property for the metric choice, and the
real routing table of the agent namespace."""

from __future__ import annotations

import ipaddress
import os
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from agent.platform.linux import Linux, parse_ipv6_route, parse_route

ROOT = Path(__file__).resolve().parents[1]

HEAD = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"
        "                                                       \n")


def v4(iface: str, dest: str, gw: str, flags: int, metric: int = 0, mask: str = "0.0.0.0") -> str:
    """One /proc/net/route line as a little-endian kernel prints it."""
    def word(addr: str) -> str:
        return "{:08X}".format(struct.unpack("<I", ipaddress.IPv4Address(addr).packed)[0])
    return (f"{iface}\t{word(dest)}\t{word(gw)}\t{flags:04X}\t0\t0\t{metric}\t{word(mask)}"
            "\t0\t0\t0\n")


def v6(dest: str, plen: int, nexthop: str, metric: int, flags: int, iface: str) -> str:
    """One /proc/net/ipv6_route line."""
    def hexa(addr: str) -> str:
        return ipaddress.IPv6Address(addr).packed.hex()
    zero = "0" * 32
    return (f"{hexa(dest)} {plen:02x} {zero} 00 {hexa(nexthop)} {metric:08x} 00000001 00000000 "
            f"{flags:08x} {iface:>8}\n")


# A real table captured on a Debian host: default via 192.0.2.1 on eth0.
REAL_ROUTE = (HEAD +
              "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0"
              "                                                                               \n"
              "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0"
              "                                                                               \n")


@pytest.mark.parametrize("text, expected", [
    (REAL_ROUTE, "192.0.2.1"),
    (HEAD + v4("eth0", "0.0.0.0", "10.231.1.1", 0x3), "10.231.1.1"),
    (HEAD + v4("wlan0", "0.0.0.0", "192.168.1.1", 0x3, 600)
     + v4("eth0", "0.0.0.0", "192.168.0.1", 0x3, 100), "192.168.0.1"),
    (HEAD + v4("eth0", "0.0.0.0", "192.168.0.1", 0x3, 100)
     + v4("wlan0", "0.0.0.0", "192.168.1.1", 0x3, 600), "192.168.0.1"),
    (HEAD + v4("eth0", "0.0.0.0", "192.168.0.1", 0x3, 100)
     + v4("usb0", "0.0.0.0", "192.168.42.129", 0x3, 100), "192.168.0.1"),
    (HEAD + v4("eth0", "0.0.0.0", "192.168.0.1", 0x2, 0)
     + v4("wlan0", "0.0.0.0", "192.168.1.1", 0x3, 600), "192.168.1.1"),
    (HEAD + v4("ppp0", "0.0.0.0", "0.0.0.0", 0x1), None),
    (HEAD + v4("eth0", "0.0.0.0", "0.0.0.0", 0x0201), None),
    (HEAD + v4("eth0", "10.0.0.0", "10.0.0.1", 0x3, 0, "255.0.0.0"), None),
    (HEAD + v4("eth0", "0.0.0.0", "10.0.0.1", 0x7, 0, "255.255.255.255"), None),
    (HEAD + v4("eth0", "192.0.2.0", "0.0.0.0", 0x1, 0, "255.255.255.0"), None),
    (HEAD, None),
    ("", None),
    (HEAD + "garbage line\n" + "eth0\tZZZZ\t0101A8C0\t0003\t0\t0\t0\t00000000\n"
     + v4("eth0", "0.0.0.0", "192.168.1.1", 0x3), "192.168.1.1"),
], ids=["real-host", "one-default", "lowest-metric-last", "lowest-metric-first",
        "tie-first-wins", "down-route-skipped", "ppp-no-gateway", "unreachable-default",
        "no-default", "host-route-not-default", "connected-only", "header-only", "empty",
        "garbage-skipped"])
def test_parse_route(text, expected):
    assert parse_route(text, byteorder="little") == expected


def test_parse_route_big_endian_kernel():
    text = HEAD + "eth0\t00000000\tC0000201\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    assert parse_route(text, byteorder="big") == "192.0.2.1"


ROUTES = st.lists(st.tuples(st.ip_addresses(v=4).filter(lambda a: int(a) != 0),
                            st.integers(0, 2**31 - 1), st.booleans()), max_size=6)


@given(ROUTES)
def test_parse_route_picks_the_lowest_metric_up_default(routes):
    text = HEAD + "".join(v4("eth0", "0.0.0.0", str(gw), 0x3 if up else 0x2, metric)
                          for gw, metric, up in routes)
    up = [(metric, i, str(gw)) for i, (gw, metric, is_up) in enumerate(routes) if is_up]
    expected = min(up)[2] if up else None
    assert parse_route(text, byteorder="little") == expected


# ipv6_route lines captured on a Debian host, plus made-up defaults.
LO_REJECT = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
             "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n")
REAL_V6 = ("fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
           "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
           "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
           "fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
           + LO_REJECT)


@pytest.mark.parametrize("text, expected", [
    (REAL_V6, "fd00::1"),
    (v6("::", 0, "fe80::1", 1024, 0x00450003, "wlan0"), "fe80::1%wlan0"),
    (v6("::", 0, "2001:db8::1", 600, 0x3, "wlan0") + v6("::", 0, "2001:db8:1::1", 100, 0x3,
                                                          "eth0"), "2001:db8:1::1"),
    (v6("::", 0, "2001:db8::1", 100, 0x2, "eth0"), None),
    (v6("::", 0, "::", 1024, 0x1, "ppp0"), None),
    (v6("2001:db8::", 32, "fe80::1", 1024, 0x3, "eth0"), None),
    (LO_REJECT, None),
    ("", None),
    ("short line\n" + v6("::", 0, "2001:db8::9", 1, 0x3, "eth0"), "2001:db8::9"),
], ids=["real-host", "link-local-with-zone", "lowest-metric", "down", "no-gateway",
        "not-default", "lo-reject-only", "empty", "garbage-skipped"])
def test_parse_ipv6_route(text, expected):
    assert parse_ipv6_route(text) == expected


def _procfs(tmp_path: Path, route: str | None, ipv6: str | None) -> str:
    (tmp_path / "net").mkdir()
    if route is not None:
        (tmp_path / "net" / "route").write_text(route)
    if ipv6 is not None:
        (tmp_path / "net" / "ipv6_route").write_text(ipv6)
    return str(tmp_path)


@pytest.fixture
def sys_byteorder_little():
    if sys.byteorder != "little":
        pytest.skip("fixture text is little-endian kernel output")


V6_DEFAULT = v6("::", 0, "2001:db8::1", 1024, 0x3, "eth0")


@pytest.mark.parametrize("route, ipv6, expected", [
    (REAL_ROUTE, V6_DEFAULT, "192.0.2.1"),
    (HEAD, V6_DEFAULT, "2001:db8::1"),
    (None, V6_DEFAULT, "2001:db8::1"),
    (HEAD, LO_REJECT, None),
    (HEAD, None, None),
    (None, None, None),
], ids=["ipv4-wins", "ipv6-fallback", "no-ipv4-file", "neither", "no-ipv6-file", "no-files"])
def test_default_gateway_on_fixture_tree(sys_byteorder_little, tmp_path, route, ipv6, expected):
    assert Linux(_procfs(tmp_path, route, ipv6)).default_gateway() == expected


def test_default_gateway_missing_procfs(tmp_path):
    assert Linux(str(tmp_path / "nowhere")).default_gateway() is None


def test_default_gateway_unreadable_file(tmp_path):
    procfs = _procfs(tmp_path, None, None)
    (tmp_path / "net" / "route").mkdir()  # a directory: open() fails with IsADirectoryError
    assert Linux(procfs).default_gateway() is None


CODE = "from agent.platform.linux import Linux; print(Linux().default_gateway())"


@pytest.mark.netns
def test_agent_namespace_gateway(net):
    # /proc/net is the reading process's namespace's view, so run inside each namespace.
    def gateway_in(ns):
        r = net.lab.run(ns, sys.executable, "-c", CODE, cwd=str(ROOT))
        return r.stdout.strip()

    assert gateway_in(net.agent) == net.gateway_ip
    assert gateway_in(net.gw) == "None"  # the gateway itself has no default route here
    # Two defaults: the kernel's tables, not our fixtures, show the lowest metric winning.
    net.lab.run(net.agent, "ip", "route", "add", "default", "via", "10.231.1.3", "metric", "50")
    assert gateway_in(net.agent) == net.gateway_ip  # metric 0 beats 50
    net.lab.run(net.agent, "ip", "route", "del", "default", "via", net.gateway_ip)
    net.lab.run(net.agent, "ip", "route", "add", "default", "via", net.gateway_ip, "metric", "100")
    assert gateway_in(net.agent) == "10.231.1.3"  # 50 beats 100


def test_routes_readable_only_where_the_kernel_tables_exist(tmp_path):
    assert not Linux(str(tmp_path)).routes_known()         # no /proc/net: not Linux
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "ipv6_route").write_text("")
    assert Linux(str(tmp_path)).routes_known()
    assert Linux("/proc").routes_known()                   # this machine (Linux)


# --------------------------------------------------------------- the gateway's hardware address

ARP_HEAD = "IP address       HW type     Flags       HW address            Mask     Device\n"


def arp(ip: str, mac: str, flags: int = 0x2, dev: str = "eth0") -> str:
    return f"{ip:<16} 0x1         0x{flags:x}         {mac:<21} *        {dev}\n"


@pytest.mark.parametrize("text,address,expected", [
    (ARP_HEAD + arp("192.0.2.1", "02:FC:00:00:00:05"), "192.0.2.1", "02:fc:00:00:00:05"),
    (ARP_HEAD + arp("192.0.2.7", "02:aa:00:00:00:07") + arp("192.0.2.1", "02:fc:00:00:00:05"),
     "192.0.2.1", "02:fc:00:00:00:05"),
    (ARP_HEAD + arp("192.0.2.1", "00:00:00:00:00:00", flags=0x0), "192.0.2.1", None),
    (ARP_HEAD + arp("192.0.2.1", "02:fc:00:00:00:05", flags=0x0), "192.0.2.1", None),
    (ARP_HEAD + arp("192.0.2.1", "00:00:00:00:00:00"), "192.0.2.1", None),
    (ARP_HEAD + arp("192.0.2.10", "02:fc:00:00:00:05"), "192.0.2.1", None),
    (ARP_HEAD + arp("192.0.2.1", "02:fc:00:00:05"), "192.0.2.1", None),
    (ARP_HEAD + arp("192.0.2.1", "zz:fc:00:00:00:05"), "192.0.2.1", None),
    (ARP_HEAD, "192.0.2.1", None),
    ("", "192.0.2.1", None),
], ids=["found", "among-others", "incomplete", "not-complete-flag", "zero-address",
        "other-address-only", "short-address", "not-hex", "empty-table", "no-header"])
def test_parse_arp(text, address, expected):
    from agent.platform.linux import parse_arp

    assert parse_arp(text, address) == expected


def test_gateway_mac_on_fixture_tree(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "arp").write_text(ARP_HEAD + arp("192.0.2.1", "02:fc:00:00:00:05"))
    assert Linux(str(tmp_path)).gateway_mac("192.0.2.1") == "02:fc:00:00:00:05"
    assert Linux(str(tmp_path)).gateway_mac("fe80::1%eth0") is None       # IPv6: not in that table
    assert Linux(str(tmp_path)).gateway_mac(None) is None
    assert Linux(str(tmp_path / "nothere")).gateway_mac("192.0.2.1") is None  # not Linux


def test_site_id_is_a_salted_hash_of_the_address_bytes():
    import hashlib

    from agent.probes.gateway import site_id

    want = hashlib.sha256(b"linewatch-site:\x02\xfc\x00\x00\x00\x05").hexdigest()[:12]
    assert site_id("02:fc:00:00:00:05") == site_id("02-FC-00-00-00-05") == want
    assert len(want) == 12
    assert site_id("02:fc:00:00:00:06") != want
    with pytest.raises(ValueError):
        site_id("02:fc:00:00:05")


def test_site_id_does_not_load_openssl():
    """The agent's footprint: one hash a round is no reason to load OpenSSL through hashlib."""
    import subprocess

    code = ("import sys\nimport agent.runner\nfrom agent.probes.gateway import site_id\n"
            "site_id('02:fc:00:00:00:05')\nprint(sorted({'hashlib', '_hashlib'} & set(sys.modules)))\n")
    # Unmeasured: coverage, when the test command measures the processes tests start, loads hashlib.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
