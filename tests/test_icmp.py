"""ICMP echo probe: the pure packet core here, then real echoes between network namespaces.

The namespace tests run the probe inside the agent namespace as a child process (Python 3.11 has
no os.setns) and read its result as JSON. Replies with a known delay and loss come from
tests/responder.py in a namespace whose kernel echo is switched off.
"""

import json
import os
import socket
import struct
import sys
import time
from pathlib import Path

import pytest

from agent.platform.linux import Linux
from agent.probes import icmp
from agent.probes.target import parse_target
from tests.netlab import responder, start_responder

# Runs alone (tests/run.sh): the echoes' round trips and waits are bounded to a few ms / tenths of a second.
pytestmark = pytest.mark.serial

REPO = Path(__file__).resolve().parents[1]
METHODS = pytest.mark.parametrize("method", icmp.METHODS)
ALL_GIDS = "0 2147483647"
TARGET = "198.51.100.1"  # in the "internet" namespace, behind the gateway


# -- pure core ------------------------------------------------------------------------------------

def test_checksum_rfc1071_example():
    # The worked example in RFC 1071 section 3: the sum is ddf2, the checksum its complement.
    assert icmp.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_odd_length_pads_with_zero():
    assert icmp.checksum(b"\x01") == icmp.checksum(b"\x01\x00")


def test_v4_request_checksums_to_zero():
    packet = icmp.build_echo_request(socket.AF_INET, 0xBEEF, 7, b"x" * 16)
    assert packet[0] == 8 and icmp.checksum(packet) == 0
    assert struct.unpack("!HH", packet[4:8]) == (0xBEEF, 7)


def test_v6_request_leaves_checksum_to_kernel():
    packet = icmp.build_echo_request(socket.AF_INET6, 1, 2, b"p")
    assert packet[0] == 128 and packet[2:4] == b"\0\0"


def _reply(kind=0, code=0, ident=0x1234, seq=5, payload=b"nonce"):
    return struct.pack("!BBHHH", kind, code, 0, ident, seq) + payload


def _ipv4(body, options=b""):
    ihl = (20 + len(options)) // 4
    return bytes([0x40 | ihl]) + bytes(19) + options + body


PARSE = [
    # id, data, family, ip_header, expected
    ("v4-reply", _reply(), socket.AF_INET, False, (0x1234, 5, b"nonce")),
    ("v4-reply-behind-ip-header", _ipv4(_reply()), socket.AF_INET, True, (0x1234, 5, b"nonce")),
    ("v4-ip-options-skipped", _ipv4(_reply(), b"\x01" * 8), socket.AF_INET, True,
     (0x1234, 5, b"nonce")),
    ("v4-echo-request", _reply(kind=8), socket.AF_INET, False, None),
    ("v4-dest-unreachable", _ipv4(_reply(kind=3, code=1)), socket.AF_INET, True, None),
    ("v4-nonzero-code", _reply(code=1), socket.AF_INET, False, None),
    ("v4-truncated", _reply()[:7], socket.AF_INET, False, None),
    ("v4-header-but-no-ip", _reply(), socket.AF_INET, True, None),
    ("v6-reply", _reply(kind=129), socket.AF_INET6, False, (0x1234, 5, b"nonce")),
    ("v6-echo-request", _reply(kind=128), socket.AF_INET6, False, None),
    ("v6-v4-reply-type", _reply(kind=0), socket.AF_INET6, False, None),
    ("empty", b"", socket.AF_INET, False, None),
]


@pytest.mark.parametrize("data, family, ip_header, expected", [c[1:] for c in PARSE],
                         ids=[c[0] for c in PARSE])
def test_parse_echo_reply(data, family, ip_header, expected):
    assert icmp.parse_echo_reply(data, family, ip_header=ip_header) == expected


@pytest.mark.parametrize("mono, wall_send, wall_recv, expected", [
    pytest.param(500_000, 1_000, 1_000 + 450_000, 450_000, id="kernel-stamp-used"),
    pytest.param(500_000, 1_000, None, 500_000, id="no-kernel-stamp"),
    pytest.param(500_000, 10_000_000_000, 1_000_000, 500_000, id="wall-stepped-back"),
    pytest.param(500_000, 1_000, 1_000 + 5_000_000_000, 500_000, id="wall-stepped-forward"),
])
def test_pick_rtt(mono, wall_send, wall_recv, expected):
    assert icmp._pick_rtt_ns(mono, wall_send, wall_recv) == expected


@pytest.mark.parametrize("data, expected", [
    pytest.param(struct.pack("@qq", 3, 5), 3_000_000_005, id="64-bit-timespec"),
    pytest.param(struct.pack("@ii", 3, 5), 3_000_000_005, id="32-bit-timespec"),
])
def test_kernel_timestamp(data, expected):
    anc = [(socket.SOL_SOCKET, icmp._SO_TIMESTAMPNS, data)]
    assert icmp._kernel_time_ns(anc) == expected
    assert icmp._kernel_time_ns([]) is None


@pytest.mark.parametrize("kwargs", [
    pytest.param(dict(count=0), id="count-zero"),
    pytest.param(dict(count=65537), id="count-beyond-seq-space"),
    pytest.param(dict(timeout_s=0), id="timeout-zero"),
    pytest.param(dict(spacing_s=-1), id="spacing-negative"),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        icmp.echo_rtts(parse_target("127.0.0.1"), method=icmp.RAW, **kwargs)


def test_unknown_method():
    with pytest.raises(ValueError, match="icmp_dgram, icmp_raw"):
        icmp.open_socket("icmp_magic")


def test_how_to_enable_names_the_fixes():
    text = Linux().icmp_help()
    for fragment in ("net.ipv4.ping_group_range", "/etc/sysctl.d", "cap_net_raw+ep",
                     "AmbientCapabilities=CAP_NET_RAW", "root"):
        assert fragment in text


# -- helpers for the namespace tests --------------------------------------------------------------

# Runs inside a namespace: one probe call (or available_method) described by argv[1] as JSON.
_PROBE = """
import json, socket, sys, time
from datetime import datetime
from agent.clock import FakeClock
from kit.errors import LinewatchError
from agent.platform.linux import Linux
from agent.probes import icmp
from agent.probes.target import parse_target
req = json.loads(sys.argv[1])
if req.get("available"):
    print(json.dumps({"v4": icmp.available_method(socket.AF_INET),
                      "v6": icmp.available_method(socket.AF_INET6)}))
    sys.exit()
clock = FakeClock(datetime.fromisoformat("2026-03-01T10:00:00+00:00"))
t0 = time.monotonic()
try:
    s = icmp.measure(parse_target(req["target"]), clock=clock, **req["kw"])
except LinewatchError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
else:
    print(json.dumps({"measurement": s.measurement, "tags": dict(s.tags), "fields": dict(s.fields),
                      "time": s.time.isoformat(), "elapsed_s": time.monotonic() - t0}))
"""


def run_in(lab, ns, request, python=sys.executable, user=None):
    cmd = [python, "-c", _PROBE, json.dumps(request)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    r = lab.run(ns, *cmd, cwd=str(REPO), env=env, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def ping(net, target=TARGET, method=icmp.RAW, ns=None, **kw):
    kw.setdefault("count", 3)
    kw.setdefault("timeout_s", 1.0)
    kw.setdefault("spacing_s", 0.05)
    return run_in(net.lab, ns or net.agent, {"target": target, "kw": dict(kw, method=method)})


def allow_dgram(net, ns=None):
    net.lab.sysctl(ns or net.agent, "net.ipv4.ping_group_range", ALL_GIDS)


def add_v6_lan(net):
    """IPv6 on the agent-gateway link: agent 2001:db8:1::2, gateway 2001:db8:1::1 (no DAD wait)."""
    for ns, dev, addr in ((net.agent, "eth0", "2001:db8:1::2/64"),
                          (net.gw, "lan0", "2001:db8:1::1/64")):
        net.lab.run(ns, "ip", "-6", "addr", "add", addr, "dev", dev, "nodad")


def assert_total_loss(result, count):
    assert "error" not in result, result
    assert result["fields"] == {"sent": count, "received": 0, "loss_pct": 100.0}


# -- methods and permissions ----------------------------------------------------------------------

@pytest.mark.netns
def test_dgram_refused_by_default_falls_back_to_raw(net):
    assert net.lab.run(net.agent, "sysctl", "-n", "net.ipv4.ping_group_range").stdout.split() == \
        ["1", "0"]
    assert run_in(net.lab, net.agent, {"available": True}) == {"v4": icmp.RAW, "v6": icmp.RAW}
    result = ping(net, method=icmp.DGRAM)
    assert result["error"] == "MethodUnavailable"
    assert "ping_group_range" in result["message"]


@pytest.mark.netns
def test_dgram_allowed_by_ping_group_range(net):
    allow_dgram(net)
    assert run_in(net.lab, net.agent, {"available": True}) == {"v4": icmp.DGRAM, "v6": icmp.DGRAM}
    result = ping(net, method=icmp.DGRAM)
    assert result["measurement"] == "ping"
    assert result["tags"] == {"target": TARGET, "method": "icmp_dgram"}
    assert result["fields"]["sent"] == 3 and result["fields"]["received"] == 3
    assert result["fields"]["loss_pct"] == 0.0
    assert 0 < result["fields"]["rtt_min_ms"] <= result["fields"]["rtt_max_ms"] < 50
    assert result["time"] == "2026-03-01T10:00:00+00:00"  # clock.now() at the start


def _unprivileged_python(lab, ns):
    """An interpreter that user nobody may run (the test runner's may live under /root)."""
    for python in (sys.executable, "/usr/bin/python3"):
        r = lab.run(ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python,
                    "-c", "import sys; assert sys.version_info >= (3, 11)", check=False)
        if r.returncode == 0:
            return python
    pytest.skip("no Python >= 3.11 that user nobody can run")


@pytest.mark.netns
def test_unprivileged_user_needs_the_sysctl(net):
    python = _unprivileged_python(net.lab, net.agent)
    req_avail = {"available": True}
    req = {"target": TARGET, "kw": {"method": icmp.DGRAM, "count": 2, "timeout_s": 1.0,
                                    "spacing_s": 0.05}}
    assert run_in(net.lab, net.agent, req_avail, python, user=65534) == {"v4": None, "v6": None}
    raw = dict(req, kw=dict(req["kw"], method=icmp.RAW))
    assert run_in(net.lab, net.agent, raw, python, user=65534)["error"] == "MethodUnavailable"

    net.lab.sysctl(net.agent, "net.ipv4.ping_group_range", "65534 65534")
    assert run_in(net.lab, net.agent, req_avail, python, user=65534) == \
        {"v4": icmp.DGRAM, "v6": icmp.DGRAM}
    assert run_in(net.lab, net.agent, req, python, user=65534)["fields"]["received"] == 2


# -- known delay and loss -------------------------------------------------------------------------

@pytest.mark.netns
@METHODS
def test_known_delay_and_deterministic_loss(net, method):
    allow_dgram(net)
    responder(net, "--delay-ms", "20", "--drop-every", "10")
    result = ping(net, method=method, count=20, spacing_s=0.03)
    f = result["fields"]
    # Sequence numbers start at 0, so echoes 0 and 10 are the ones dropped.
    assert (f["sent"], f["received"], f["loss_pct"]) == (20, 18, 10.0)
    assert 20.0 <= f["rtt_min_ms"] <= f["rtt_avg_ms"] < 25.0
    assert 0.0 <= f["jitter_ms"] < 5.0


@pytest.mark.netns
@METHODS
def test_duplicates_and_foreign_replies_are_ignored(net, method):
    allow_dgram(net)
    # The bogus replies come at once, even for dropped echoes: taking one would show up as a
    # shorter RTT or less loss.
    responder(net, "--delay-ms", "10", "--drop-every", "2", "--duplicate", "--bogus")
    f = ping(net, method=method, count=6, spacing_s=0.02)["fields"]
    assert (f["sent"], f["received"]) == (6, 3)
    assert f["rtt_min_ms"] >= 10.0


@pytest.mark.netns
@METHODS
def test_late_replies_count_as_lost(net, method):
    allow_dgram(net)
    responder(net, "--delay-ms", "300")
    result = ping(net, method=method, count=3, timeout_s=0.1, spacing_s=0.05)
    assert_total_loss(result, 3)
    assert result["elapsed_s"] < 0.6  # it did not wait for the late replies


@pytest.mark.netns
def test_concurrent_raw_probes_keep_their_own_replies(net):
    """Every raw socket sees every echo reply: identifiers keep two probes apart."""
    responder(net, "--delay-ms", "10")
    code = """
import json, sys, threading
from agent.platform.linux import Linux
from agent.probes import icmp
from agent.probes.target import parse_target
out = [None, None]
def go(i):
    out[i] = icmp.echo_rtts(parse_target(sys.argv[1]), count=10, timeout_s=1, spacing_s=0.01,
                            method=icmp.RAW)
threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps(out))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = net.lab.run(net.agent, sys.executable, "-c", code, TARGET, env=env, cwd=str(REPO))
    for rtts in json.loads(r.stdout):
        assert len(rtts) == 10 and all(x is not None and x >= 10.0 for x in rtts)


# -- outages: always a sample, never an exception -------------------------------------------------

@pytest.mark.netns
@METHODS
def test_wan_cut_is_total_loss(net, method):
    allow_dgram(net)
    net.cut_wan()
    result = ping(net, method=method, count=3, timeout_s=0.5, spacing_s=0.1)
    assert_total_loss(result, 3)
    # Bounded by (count - 1) * spacing + timeout, whatever ICMP errors the gateway sends back.
    assert result["elapsed_s"] < 0.2 + 0.5 + 0.3


@pytest.mark.netns
@METHODS
def test_silent_target_is_total_loss(net, method):
    allow_dgram(net)
    net.lab.sysctl(net.inet, "net.ipv4.icmp_echo_ignore_all", "1")
    result = ping(net, method=method, count=4, timeout_s=0.3, spacing_s=0.05)
    assert_total_loss(result, 4)
    assert 0.3 <= result["elapsed_s"] < 0.15 + 0.3 + 0.3


@pytest.mark.netns
@METHODS
def test_agent_link_down_is_total_loss(net, method):
    allow_dgram(net)
    net.lab.link(net.agent, "eth0", up=False)  # sendto fails: Network is unreachable
    result = ping(net, method=method, count=3, timeout_s=1.0, spacing_s=0.05)
    assert_total_loss(result, 3)
    assert result["elapsed_s"] < 0.5  # nothing left the host, so nothing to wait for


@pytest.mark.netns
@METHODS
def test_router_lan_side_down_is_total_loss(net, method):
    allow_dgram(net)
    net.cut_lan()
    assert_total_loss(ping(net, net.gateway_ip, method, count=3, timeout_s=0.5), 3)
    assert_total_loss(ping(net, TARGET, method, count=3, timeout_s=0.5), 3)


@pytest.mark.netns
@METHODS
def test_line_back_after_cut(net, method):
    allow_dgram(net)
    net.cut_wan()
    assert ping(net, method=method, timeout_s=0.3)["fields"]["received"] == 0
    net.cut_wan(down=False)
    assert ping(net, method=method)["fields"]["received"] == 3


# -- IPv6 -----------------------------------------------------------------------------------------

@pytest.mark.netns
@METHODS
def test_ipv6_loopback(net, method):
    allow_dgram(net)
    result = ping(net, "::1", method)
    assert result["tags"] == {"target": "::1", "method": method}
    assert result["fields"]["received"] == 3


@pytest.mark.netns
@METHODS
def test_ipv6_on_the_lan(net, method):
    allow_dgram(net)
    add_v6_lan(net)
    f = ping(net, "2001:db8:1::1", method)["fields"]
    assert f["received"] == 3 and f["rtt_max_ms"] < 50


@pytest.mark.netns
@METHODS
def test_ipv6_known_delay_and_loss(net, method):
    allow_dgram(net)
    add_v6_lan(net)
    net.lab.sysctl(net.gw, "net.ipv6.icmp.echo_ignore_all", "1")
    start_responder(net.lab, net.gw, "--family", "6", "--delay-ms", "15", "--drop-every", "5",
                    "--drop-residues", "1,2")
    f = ping(net, "2001:db8:1::1", method, count=10, spacing_s=0.02)["fields"]
    assert (f["sent"], f["received"], f["loss_pct"]) == (10, 6, 40.0)  # seq 1, 2, 6, 7 dropped
    assert 15.0 <= f["rtt_min_ms"] <= f["rtt_avg_ms"] < 20.0


def wait_for_dad(net, *namespaces, limit_s=10.0):
    """Link-local addresses are unusable while IPv6 duplicate address detection runs (~2 s)."""
    deadline = time.monotonic() + limit_s
    while any(net.lab.run(ns, "ip", "-6", "addr", "show", "tentative").stdout.strip()
              for ns in namespaces):
        if time.monotonic() > deadline:
            raise RuntimeError("IPv6 addresses still tentative")
        time.sleep(0.1)


@pytest.mark.netns
@METHODS
def test_ipv6_link_local_with_scope(net, method):
    allow_dgram(net)
    wait_for_dad(net, net.agent, net.gw)
    r = net.lab.run(net.gw, "ip", "-6", "-o", "addr", "show", "dev", "lan0", "scope", "link")
    gw_ll = r.stdout.split("inet6 ")[1].split("/")[0]
    f = ping(net, f"{gw_ll}%eth0", method)["fields"]
    assert f["received"] == 3


@pytest.mark.netns
@METHODS
def test_ipv6_unroutable_is_total_loss(net, method):
    allow_dgram(net)
    add_v6_lan(net)
    # No IPv6 default route in the agent: sendto fails at once with "Network is unreachable".
    assert_total_loss(ping(net, "2001:db8:99::1", method, timeout_s=0.5), 3)
