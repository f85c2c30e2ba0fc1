"""DNS probe: pure wire format (tables + properties), a fake server on loopback for misbehaving
replies, and a real dnsmasq in the standard namespace topology for the network edges."""

from __future__ import annotations

import json
import struct
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from agent.clock import FakeClock, SystemClock
from agent.probes import dns, dns_wire
from agent.probes.dns_wire import Answer, DnsFormatError, build_query, parse_response
from kit.errors import ProbeError
from tests import netlab
from tests.dnsserver import FakeServer, answer_to_query, reply, rr_a, rr_aaaa, rr_cname, wire_name

# Runs alone (tests/run.sh): the queries' waits are bounded to tenths of a second.
pytestmark = pytest.mark.serial

ROOT = Path(__file__).resolve().parents[1]


# -- build_query ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, qtype, qid, question", [
    ("example.com", 1, 0x1234, b"\x07example\x03com\x00\x00\x01\x00\x01"),
    ("example.com.", 28, 1, b"\x07example\x03com\x00\x00\x1c\x00\x01"),
    ("a", 1, 0, b"\x01a\x00\x00\x01\x00\x01"),
    ("_dmarc.Example.COM", 1, 65535, b"\x06_dmarc\x07Example\x03COM\x00\x00\x01\x00\x01"),
    ("bücher.example", 1, 7, b"\x0dxn--bcher-kva\x07example\x00\x00\x01\x00\x01"),
    ("例え。テスト", 1, 7, b"\x0bxn--r8jz45g\x0axn--zckzah\x00\x00\x01\x00\x01"),
], ids=["plain", "fqdn-aaaa", "single-label", "underscore-case-kept", "idna", "idna-ideographic-dot"])
def test_build_query_wire(name, qtype, qid, question):
    q = build_query(name, qtype, qid)
    assert q[:12] == struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD only, one question
    assert q[12:] == question


@pytest.mark.parametrize("name", [
    "", ".", "a..b", ".leading", "a" * 64 + ".com", ".".join(["a" * 63] * 4),
    "exa mple.com", "foo/bar.com", "tab\t.com", "semi;colon.com", "xn--\u00e4" + "a" * 70,
], ids=["empty", "root", "empty-label", "leading-dot", "label-64", "name-255", "space",
        "slash", "tab", "semicolon", "idna-too-long"])
def test_invalid_names_raise_value_error(name):
    with pytest.raises(ValueError):
        dns_wire.validate_name(name)
    with pytest.raises(ValueError):
        build_query(name, 1, 1)


@pytest.mark.parametrize("name", [
    "example.com", "example.com.", "a" * 63 + ".com", ".".join(["a" * 63] * 3 + ["a" * 61]),
    "münchen.de", "xn--mnchen-3ya.de", "1.2.3.4", "_sip._udp.example.org",
], ids=["plain", "fqdn", "label-63", "name-253", "idna", "punycode", "numeric", "service"])
def test_valid_names(name):
    assert dns_wire.validate_name(name) is None


def test_validate_name_message_names_the_problem():
    with pytest.raises(ValueError, match="at most 63"):
        dns_wire.validate_name("x" * 64 + ".com")
    with pytest.raises(ValueError, match="at most 253"):
        dns_wire.validate_name(".".join(["a" * 63] * 4))


@pytest.mark.parametrize("qid", [-1, 65536])
def test_build_query_rejects_bad_id(qid):
    with pytest.raises(ValueError):
        build_query("example.com", 1, qid)


# -- parse_response: tables -------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (reply(5, "example.com", records=[rr_a("192.0.2.1")]), Answer(0, False, ("192.0.2.1",))),
    (reply(5, "example.com", 28, [rr_aaaa("2001:db8::1"), rr_aaaa("2001:db8::2")]),
     Answer(0, False, ("2001:db8::1", "2001:db8::2"))),
    (reply(5, "example.com", records=[rr_cname("cdn.example.net"),
                                      rr_a("192.0.2.7", owner=wire_name("cdn.example.net"))]),
     Answer(0, False, ("192.0.2.7",))),
    (reply(5, "example.com", rcode=3), Answer(3, False, ())),
    (reply(5, "example.com", rcode=2, question=False), Answer(2, False, ())),
    (reply(5, "example.com", tc=True), Answer(0, True, ())),
    # TC set and the answer section cut mid-record: what arrived whole is kept.
    (reply(5, "example.com", records=[rr_a("192.0.2.1"), rr_a("192.0.2.2")[:7]], tc=True),
     Answer(0, True, ("192.0.2.1",))),
    (reply(5, "EXAMPLE.com", records=[rr_a("192.0.2.1")]), Answer(0, False, ("192.0.2.1",))),
], ids=["a", "aaaa-two", "cname-then-a", "nxdomain", "servfail-no-question", "truncated-empty",
        "truncated-cut", "0x20-case"])
def test_parse_response_table(data, expected):
    assert parse_response(data, 5, "example.com") == expected


HEADER_OK = struct.pack("!HHHHHH", 5, 0x8180, 1, 1, 0, 0)
QUESTION = wire_name("example.com") + b"\x00\x01\x00\x01"


@pytest.mark.parametrize("data, reason", [
    (b"", "shorter than a header"),
    (b"\x00\x05\x81\x80\x00", "shorter than a header"),
    (reply(6, "example.com"), "id mismatch"),
    (reply(5, "example.com", qr=False), "not a response"),
    (reply(5, "example.org"), "question mismatch"),
    (reply(5, "example.com", qtype=28), "question mismatch"),
    (reply(5, "example.com", question=False), "without a question"),
    (struct.pack("!HHHHHH", 5, 0x8180, 2, 0, 0, 0) + QUESTION * 2, "2 questions"),
    (HEADER_OK + b"\xc0\x0c", "does not point backwards"),                    # self pointer
    (HEADER_OK + b"\xc0\x0e\xc0\x0c", "does not point backwards"),            # forward, loop
    (HEADER_OK + QUESTION + b"\xc0\x1d" + b"\x00" * 10, "does not point backwards"),  # to itself
    (HEADER_OK + b"\xc0", "truncated compression pointer"),
    (HEADER_OK + b"\x07exam", "past the end"),
    (HEADER_OK + b"\x47example\x00", "label type"),
    (HEADER_OK + b"\x87example\x00", "label type"),
    (HEADER_OK + QUESTION, "past the end"),                                    # missing answer
    (HEADER_OK + QUESTION + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0",
     "past the end"),
    (HEADER_OK + QUESTION + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x03\xc0\x00\x02",
     "A record with 3 bytes"),
    (HEADER_OK + QUESTION + b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01",
     "AAAA record with 4 bytes"),
    (struct.pack("!HHHHHH", 5, 0x8180, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 4 + b"\x00"
     + b"\x00\x01\x00\x01", "longer than 255"),
], ids=["empty", "short-header", "wrong-id", "query-not-reply", "wrong-name", "wrong-type",
        "noerror-no-question", "two-questions", "self-pointer", "pointer-pair-loop",
        "answer-points-to-itself", "half-pointer", "label-past-end", "label-type-01",
        "label-type-10", "answer-missing", "rdata-past-end", "a-bad-length", "aaaa-bad-length",
        "name-too-long"])
def test_parse_response_rejects(data, reason):
    with pytest.raises(DnsFormatError, match=reason) as info:
        parse_response(data, 5, "example.com", qtype=1)
    assert isinstance(info.value, ProbeError)
    assert info.value.reason


def test_pointer_chain_backwards_is_accepted():
    # Answer owner -> pointer to "www" label in question region -> pointer to "example.com".
    head = struct.pack("!HHHHHH", 9, 0x8180, 1, 1, 0, 0)
    q = b"\x03www" + b"\x07example\x03com\x00" + b"\x00\x01\x00\x01"
    # Offsets: question name at 12 ("www" at 12, "example" at 16).
    answer = b"\x03cdn\xc0\x10" + struct.pack("!HHIH", 1, 1, 5, 4) + bytes([192, 0, 2, 9])
    ans = parse_response(head + q + answer, 9, "www.example.com")
    assert ans.addresses == ("192.0.2.9",)


# -- parse_response: properties -----------------------------------------------------------------

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
names = st.lists(label, min_size=1, max_size=5).map(".".join)
addresses = st.lists(st.ip_addresses(), max_size=8)


def _flip_case(name: str, data) -> str:
    return "".join(c.upper() if c.isalpha() and data.draw(st.booleans()) else c for c in name)


@given(name=names, qid=st.integers(0, 0xFFFF), addrs=addresses, compress=st.booleans(),
       data=st.data())
def test_round_trip_with_hand_built_reply(name, qid, addrs, compress, data):
    query = build_query(name, 1, qid)
    owner = b"\xc0\x0c" if compress else wire_name(name)
    records = [rr_a(str(a), owner) if a.version == 4 else rr_aaaa(str(a), owner) for a in addrs]
    echoed = _flip_case(name, data)  # servers may echo the question in another case
    raw = reply(qid, echoed, 1, records)
    assert raw[12:].startswith(wire_name(echoed))
    assert query[12:].lower() == wire_name(name).lower() + b"\x00\x01\x00\x01"
    ans = parse_response(raw, qid, name, qtype=1)
    assert ans == Answer(0, False, tuple(str(a) for a in addrs))


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_garbage_only_raises_format_error(data):
    try:
        parse_response(data, 5, "example.com")
    except DnsFormatError:
        pass


@settings(max_examples=300)
@given(counts=st.tuples(*[st.integers(0, 0xFFFF)] * 4), flags=st.integers(0, 0xFFFF),
       body=st.binary(max_size=400))
def test_fuzz_plausible_header_then_garbage(counts, flags, body):
    data = struct.pack("!HHHHHH", 5, flags | 0x8000, *counts) + body
    try:
        parse_response(data, 5, "example.com")
    except DnsFormatError:
        pass


@settings(max_examples=300)
@given(addrs=addresses, edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                       min_size=1, max_size=6))
def test_fuzz_mutated_valid_reply(addrs, edits):
    records = [rr_a(str(a)) if a.version == 4 else rr_aaaa(str(a)) for a in addrs]
    raw = bytearray(reply(5, "example.com", 1, records))
    for pos, value in edits:
        raw[pos % len(raw)] = value
    try:
        ans = parse_response(bytes(raw), 5, "example.com")
    except DnsFormatError:
        return
    assert 0 <= ans.rcode <= 15
    assert all(isinstance(a, str) for a in ans.addresses)


# -- system_servers -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("nameserver 192.0.2.53\n", ["192.0.2.53"]),
    ("# generated\nsearch lan\nnameserver 10.0.0.1\n; old\nnameserver 2001:db8::53\n",
     ["10.0.0.1", "2001:db8::53"]),
    ("nameserver fe80::1%wlan0\n", ["fe80::1"]),
    ("nameserver   192.0.2.1   # trailing\n", ["192.0.2.1"]),
    ("nameserver dns.example\nnameserver 192.0.2.2\n", ["192.0.2.2"]),
    ("#nameserver 192.0.2.9\n nameserver 192.0.2.8\n", ["192.0.2.8"]),
    ("".join(f"nameserver 192.0.2.{i}\n" for i in range(1, 6)),
     ["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
    ("options edns0\n", ["127.0.0.1"]),
    ("", ["127.0.0.1"]),
], ids=["one", "comments-and-v6", "v6-zone-stripped", "extra-spaces", "hostname-skipped",
        "commented-out", "glibc-maxns-3", "none-fallback", "empty-fallback"])
def test_system_servers(tmp_path, text, expected):
    conf = tmp_path / "resolv.conf"
    conf.write_text(text)
    assert dns.system_servers(str(conf)) == expected


def test_system_servers_missing_file(tmp_path):
    assert dns.system_servers(str(tmp_path / "absent")) == ["127.0.0.1"]


# -- measure: argument checks ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"name": "bad name", "servers": ["127.0.0.1"]},
    {"name": "example.com", "servers": []},
    {"name": "example.com", "servers": ["dns.example"]},
    {"name": "example.com", "servers": ["127.0.0.1"], "qtype": "MX"},
    {"name": "example.com", "servers": ["127.0.0.1"], "timeout_s": 0},
], ids=["bad-name", "no-servers", "hostname-server", "qtype", "zero-timeout"])
def test_measure_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        dns.measure(clock=SystemClock(), **kwargs)


# -- a misbehaving server on loopback (tests/dnsserver.py) ---------------------------------------

@pytest.fixture
def fake_server():
    servers = []

    def start(handler, **kw):
        s = FakeServer(handler, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


A1 = rr_a("192.0.2.1")


def _measure(srv, timeout_s=0.6, servers=("127.0.0.1",), **kw):
    t = time.monotonic()
    sample = dns.measure("example.test", servers=list(servers), timeout_s=timeout_s,
                         clock=SystemClock(), port=srv.port, **kw)
    return sample, time.monotonic() - t


@pytest.mark.parametrize("handler, error", [
    (lambda q: [b"\x00\x01garbage"], "malformed"),
    (lambda q: [b"\x12"], "malformed"),
    (lambda q: [answer_to_query(q, [A1], qid=(q[0] << 8 | q[1]) ^ 0xFFFF)], "malformed"),
    (lambda q: [q[:2] + reply(0, "other.test", records=[A1])[2:]], "malformed"),
    (lambda q: [answer_to_query(q, [rr_a("192.0.2.1")[:-1]])], "malformed"),
    (lambda q: [], "timeout"),
], ids=["garbage", "one-byte", "wrong-id-only", "wrong-question", "cut-record", "silent"])
def test_unusable_replies(fake_server, handler, error):
    srv = fake_server(handler)
    sample, elapsed = _measure(srv)
    assert sample.fields["success"] is False
    assert sample.fields["error"] == error
    assert "rtt_ms" not in sample.fields and "rcode" not in sample.fields
    assert sample.fields["answers"] == 0
    assert sample.tags == {"name": "example.test", "server": "127.0.0.1"}
    assert elapsed < 0.6 + 0.5


def test_stray_wrong_id_then_real_reply_is_accepted(fake_server):
    def handler(q):
        (qid,) = struct.unpack_from("!H", q)
        return [answer_to_query(q, [rr_a("203.0.113.66")], qid=qid ^ 0x5A5A), b"junk", 0.05,
                answer_to_query(q, [A1])]

    sample, _ = _measure(fake_server(handler))
    assert sample.fields["success"] is True
    assert sample.fields["answers"] == 1
    assert sample.fields["rtt_ms"] >= 40  # the real reply came after the pause
    assert "error" not in sample.fields


@pytest.mark.parametrize("rcode, error", [
    (3, "nxdomain"), (2, "servfail"), (5, "refused"), (4, "rcode_4"), (0, "no_answer"),
], ids=["nxdomain", "servfail", "refused", "notimp", "nodata"])
def test_rcodes(fake_server, rcode, error):
    sample, _ = _measure(fake_server(lambda q: [answer_to_query(q, rcode=rcode)]))
    assert sample.fields["success"] is False
    assert sample.fields["error"] == error
    assert sample.fields["rcode"] == rcode
    assert sample.fields["rtt_ms"] >= 0


def test_success_fields_and_time(fake_server):
    srv = fake_server(lambda q: [answer_to_query(q, [A1, rr_a("192.0.2.2")])])
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    sample = dns.measure("example.test", servers=["127.0.0.1"], clock=FakeClock(start),
                         port=srv.port)
    assert sample.measurement == "dns"
    assert sample.time == start
    assert dict(sample.fields) == {"success": True, "rtt_ms": 0.0, "rcode": 0, "answers": 2}
    assert isinstance(sample.fields["rtt_ms"], float)


def test_query_ids_and_source_ports_vary(fake_server):
    srv = fake_server(lambda q: [answer_to_query(q, [A1])])
    for _ in range(6):
        _measure(srv)
    ids = {q[:2] for q, _ in srv.queries}
    ports = {peer[1] for _, peer in srv.queries}
    assert len(ids) > 1 and len(ports) > 1


def test_aaaa_query(fake_server):
    srv = fake_server(lambda q: [answer_to_query(q, [rr_aaaa("2001:db8::5")])])
    sample, _ = _measure(srv, qtype="AAAA")
    assert sample.fields["success"] is True
    assert srv.queries[0][0][-4:] == b"\x00\x1c\x00\x01"


def test_truncated_reply_is_retried_over_tcp(fake_server):
    srv = fake_server(lambda q: [answer_to_query(q, tc=True)],
                      tcp_handler=lambda q: answer_to_query(q, [A1, rr_a("192.0.2.2"),
                                                                rr_a("192.0.2.3")]))
    sample, _ = _measure(srv)
    assert sample.fields["success"] is True
    assert sample.fields["answers"] == 3


def test_truncated_reply_without_tcp_keeps_the_udp_answer(fake_server):
    srv = fake_server(lambda q: [answer_to_query(q, [A1], tc=True)])
    sample, elapsed = _measure(srv)
    assert sample.fields["success"] is True
    assert sample.fields["answers"] == 1
    assert elapsed < 0.6 + 0.5


def test_servfail_moves_on_to_the_next_server(fake_server):
    first = fake_server(lambda q: [answer_to_query(q, rcode=2)])
    second = fake_server(lambda q: [answer_to_query(q, [A1])], host="127.0.0.2", port=first.port)
    sample, _ = _measure(first, servers=("127.0.0.1", "127.0.0.2"))
    assert sample.fields["success"] is True
    assert sample.tags["server"] == "127.0.0.2"
    assert len(first.queries) == len(second.queries) == 1


def test_servfail_everywhere_reports_the_first_reply(fake_server):
    first = fake_server(lambda q: [answer_to_query(q, rcode=2)])
    fake_server(lambda q: [], host="127.0.0.2", port=first.port)
    sample, elapsed = _measure(first, servers=("127.0.0.1", "127.0.0.2"))
    assert sample.fields["error"] == "servfail"
    assert sample.tags["server"] == "127.0.0.1"
    assert elapsed < 0.6 + 0.5


def test_nxdomain_is_final(fake_server):
    first = fake_server(lambda q: [answer_to_query(q, rcode=3)])
    second = fake_server(lambda q: [answer_to_query(q, [A1])], host="127.0.0.2", port=first.port)
    sample, _ = _measure(first, servers=("127.0.0.1", "127.0.0.2"))
    assert sample.fields["error"] == "nxdomain"
    assert second.queries == []


def test_silent_first_server_hands_the_rest_of_the_budget_on(fake_server):
    first = fake_server(lambda q: [])
    fake_server(lambda q: [answer_to_query(q, [A1])], host="127.0.0.2", port=first.port)
    sample, elapsed = _measure(first, timeout_s=1.0, servers=("127.0.0.1", "127.0.0.2"))
    assert sample.fields["success"] is True
    assert sample.tags["server"] == "127.0.0.2"
    assert 0.45 <= elapsed < 1.0 + 0.5  # the first server had its half of the budget


def test_closed_port_is_port_unreachable(fake_server):
    srv = fake_server(lambda q: [])
    srv.close()  # the port is free now: the kernel answers with ICMP port unreachable
    sample, elapsed = _measure(srv, timeout_s=2.0)
    assert sample.fields == {"success": False, "answers": 0, "error": "port_unreachable"}
    assert elapsed < 0.5


# -- the real thing: dnsmasq in the standard topology -------------------------------------------

PROBE = """
import json, sys, time
from agent.clock import SystemClock
from agent.probes import dns
out = []
for spec in json.loads(sys.argv[1]):
    t = time.monotonic()
    s = dns.measure(spec["name"], servers=spec["servers"], timeout_s=spec.get("timeout_s", 2.0),
                    qtype=spec.get("qtype", "A"), clock=SystemClock())
    out.append({"tags": dict(s.tags), "fields": dict(s.fields), "elapsed_s": time.monotonic() - t})
print(json.dumps(out))
"""


def probe_in(net, ns, *specs):
    r = net.lab.run(ns, sys.executable, "-c", PROBE, json.dumps(specs), cwd=str(ROOT))
    return json.loads(r.stdout.strip().splitlines()[-1])


DNSMASQ_RECORDS = (
    "--address=/example.test/198.51.100.1",
    "--address=/nx.test/",                           # an empty address means NXDOMAIN
    "--host-record=v4only.test,198.51.100.2", "--local=/v4only.test/",  # AAAA -> NODATA
)


@pytest.fixture
def dnsmasq(net):
    if not Path(netlab.DNSMASQ).exists():
        pytest.skip("dnsmasq is not installed (apt-get install -y dnsmasq-base)")
    return netlab.start_dnsmasq(net, *DNSMASQ_RECORDS)


DNS = "198.51.100.53"


@pytest.mark.netns
def test_dnsmasq_answers(net, dnsmasq):
    ok, upper, sub = probe_in(net, net.agent, {"name": "example.test", "servers": [DNS]},
                              {"name": "EXAMPLE.Test", "servers": [DNS]},
                              {"name": "www.example.test", "servers": [DNS]})
    for r in (ok, upper, sub):
        assert r["fields"]["success"] is True
        assert r["fields"]["answers"] == 1 and r["fields"]["rcode"] == 0
        assert 0 < r["fields"]["rtt_ms"] < 1000
        assert "error" not in r["fields"]
        assert r["tags"]["server"] == DNS
    assert ok["tags"]["name"] == "example.test"


@pytest.mark.netns
def test_dnsmasq_negative_answers(net, dnsmasq):
    unknown, nx, nodata = probe_in(net, net.agent,
                                   {"name": "unknown.invalid", "servers": [DNS]},
                                   {"name": "gone.nx.test", "servers": [DNS]},
                                   {"name": "v4only.test", "servers": [DNS], "qtype": "AAAA"})
    # dnsmasq 2.90 with --no-resolv has nowhere to forward a name it does not know and says
    # REFUSED (its log: "config error is REFUSED (EDE: not ready)"), not NXDOMAIN.
    assert unknown["fields"]["success"] is False
    assert (unknown["fields"]["rcode"], unknown["fields"]["error"]) in ((5, "refused"),
                                                                         (3, "nxdomain"))
    assert (nx["fields"]["rcode"], nx["fields"]["error"]) == (3, "nxdomain")
    assert (nodata["fields"]["rcode"], nodata["fields"]["error"]) == (0, "no_answer")
    for r in (unknown, nx, nodata):
        assert r["fields"]["answers"] == 0 and r["fields"]["rtt_ms"] > 0


@pytest.mark.netns
def test_dnsmasq_stopped_is_port_unreachable(net, dnsmasq):
    dnsmasq.kill()
    dnsmasq.wait(timeout=10)
    (r,) = probe_in(net, net.agent, {"name": "example.test", "servers": [DNS]})
    # The inet host is up and says "port unreachable": a DNS failure on a working line.
    assert r["fields"] == {"success": False, "answers": 0, "error": "port_unreachable"}
    assert r["tags"]["server"] == DNS
    assert r["elapsed_s"] < 1.0


@pytest.mark.netns
def test_wan_cut_times_out_within_budget(net, dnsmasq):
    net.cut_wan()
    (r,) = probe_in(net, net.agent, {"name": "example.test", "servers": [DNS], "timeout_s": 1.5})
    assert r["fields"] == {"success": False, "answers": 0, "error": "timeout"}
    assert 1.4 <= r["elapsed_s"] <= 1.5 + 0.5
    net.cut_wan(down=False)
    # Taking wan0 down flushed the gateway's route to the internet block; netlab's cut_wan(False)
    # only raises the link again, so put the route back as a router's routing daemon would.
    net.lab.run(net.gw, "ip", "route", "replace", "198.51.100.0/24", "via", "10.231.2.2")
    (r,) = probe_in(net, net.agent, {"name": "example.test", "servers": [DNS]})
    assert r["fields"]["success"] is True


@pytest.mark.netns
def test_dead_first_server_falls_back_to_second(net, dnsmasq):
    # 198.51.100.99 is routed to the inet host, which does not forward: the query is dropped
    # silently, like a resolver that hangs. 198.51.100.1 exists but runs no DNS server.
    silent, closed = probe_in(net, net.agent,
                              {"name": "example.test", "servers": ["198.51.100.99", DNS],
                               "timeout_s": 2.0},
                              {"name": "example.test", "servers": ["198.51.100.1", DNS]})
    for r in (silent, closed):
        assert r["fields"]["success"] is True
        assert r["tags"]["server"] == DNS
    assert 0.9 <= silent["elapsed_s"] <= 2.0 + 0.5   # half the budget went to the silent one
    assert closed["elapsed_s"] < 0.5                 # ICMP made the first fail at once


@pytest.mark.netns
def test_all_servers_dead(net, dnsmasq):
    (r,) = probe_in(net, net.agent, {"name": "example.test",
                                     "servers": ["198.51.100.99", "198.51.100.98"],
                                     "timeout_s": 1.0})
    assert r["fields"] == {"success": False, "answers": 0, "error": "timeout"}
    assert r["tags"]["server"] == "198.51.100.99"
    assert r["elapsed_s"] <= 1.0 + 0.5


@pytest.mark.netns
def test_no_route_is_network_error(lab):
    lonely = lab.ns("lonely")  # only loopback: no route to anywhere
    r = lab.run(lonely, sys.executable, "-c", PROBE,
                json.dumps([{"name": "example.test", "servers": ["192.0.2.53"]}]), cwd=str(ROOT))
    (out,) = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["fields"] == {"success": False, "answers": 0, "error": "network"}
    assert out["elapsed_s"] < 0.5
