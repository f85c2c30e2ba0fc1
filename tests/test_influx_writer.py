"""The builtin writer for /api/v2/write (kit.influx.HTTPWriter, ``influx.client = "builtin"``)
against influxdb-client's (``"influxdb-client"``): the same request, the same :class:`Answer`
for every status, the token never in a message, one kept-alive connection, gzip that a real
server accepts, and influxdb_client never imported unless chosen.

Real servers where they can give the answer: VictoriaMetrics (Debian's) for gzip and the data
arriving. The statuses are from tests/statusserver.py, a small server in this process over a real
socket, because no real server here answers 401, 403, 413, 429 or 503 on demand (InfluxDB 1.6.7
has no /api/v2/write at all); its error bodies are those InfluxDB 2.x and 3.x send."""

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from agent.clock import FakeClock
from agent.config import parse
from agent.forward import BAD_DATA, HALT, OK, RETRY, TOO_LARGE, Forwarder, classify
from agent.model import Sample
from kit.errors import ConfigError
from kit.influx import Answer, ClientWriter, HTTPWriter, Sink, Token
from tests.statusserver import Reply, StatusServer

CLIENTS = ["builtin", "influxdb-client"]
TOKEN = "wr1te-T0ken-9f8e7d6c5b4a"
NOW = datetime.now(UTC).replace(microsecond=0)
BODY = b"ping,agent=a1,target=1.1.1.1 rtt_avg_ms=11.5,sent=3i 1764979200000000000\n" \
       b"round,agent=a1 status=\"up\",duration_s=0.6 1764979200000000000\n"


def sink(url, client, token=TOKEN, extra=""):
    cfg = parse(f'[influx]\nurl = "{url}"\napi = "v2"\norg = "ngo"\nbucket = "lw"\ntimeout_s = 2\n'
                f'client = "{client}"\n{extra}')
    return Sink(cfg.influx, Token(token, "test"))


def answer_of(url, client, body=BODY) -> Answer:
    s = sink(url, client)
    try:
        return s.send(body)
    finally:
        s.close()


# -- the answers: each status, the same through both clients -----------------------------------

# InfluxDB 3.x (and Cloud Dedicated) name the refused lines by number in a 400.
PARTIAL = ("failed to parse line protocol: errors encountered on line(s):\n"
           "error parsing line 2 (1-based): Invalid measurement was provided")
STATUSES = [
    ("204", Reply(204), 204, "", None, OK),
    ("400-partial-write", Reply(400, {"Content-Type": "application/json"},
                                json.dumps({"code": "invalid", "line": 2, "message": PARTIAL})),
     400, "error parsing line 2 (1-based): Invalid measurement", None, BAD_DATA),
    ("401", Reply.json_error(401, "unauthorized access"), 401, "unauthorized access", None, HALT),
    ("403", Reply.json_error(403, "insufficient permissions for write"), 403,
     "insufficient permissions for write", None, HALT),
    ("413", Reply.json_error(413, "request too large"), 413, "request too large", None, TOO_LARGE),
    ("413-empty", Reply(413), 413, "", None, TOO_LARGE),
    ("429-retry-after", Reply.json_error(429, "too many requests", headers={"Retry-After": "42"}),
     429, "too many requests", "42", RETRY),
    ("503-retry-after-date", Reply.json_error(503, "unavailable",
                                              headers={"Retry-After": "Fri, 20 Nov 2026 00:01:30 GMT"}),
     503, "unavailable", "Fri, 20 Nov 2026 00:01:30 GMT", RETRY),
    ("500", Reply.json_error(500, "internal error: shard write failed"), 500,
     "internal error: shard write failed", None, RETRY),
    ("502-html", Reply(502, {"Content-Type": "text/html"}, "<html><body>\n Bad Gateway \n</body></html>"),
     502, "<html><body> Bad Gateway </body></html>", None, RETRY),
]


@pytest.mark.parametrize("reply, status, message, retry_after, kind",
                         [case[1:] for case in STATUSES], ids=[case[0] for case in STATUSES])
def test_each_status_gives_the_same_answer_through_both_clients(reply, status, message, retry_after, kind):
    got = {}
    with StatusServer(version="2.7.1") as srv:
        srv.default = reply
        for client in CLIENTS:
            got[client] = answer_of(srv.url, client)
    for client, ans in got.items():
        assert (ans.status, ans.retry_after, classify(ans.status)) == (status, retry_after, kind), client
        assert message in ans.message if message else ans.message == "", (client, ans.message)
        assert "\n" not in ans.message
    assert got["builtin"] == got["influxdb-client"]  # status, message, Retry-After


def test_no_answer_is_status_none_through_both_clients():
    with StatusServer(version="2.7.1") as srv:
        srv.default = Reply(hang=True)
        hung = {c: answer_of(srv.url, c) for c in CLIENTS}
    url = srv.url  # closed now: nothing listens there
    refused = {c: answer_of(url, c) for c in CLIENTS}
    for c in CLIENTS:
        assert hung[c].status is None and hung[c].message == "no answer within the timeout", c
        assert refused[c] == Answer(None, "connection refused"), c


@pytest.mark.parametrize("client", CLIENTS)
def test_the_request_is_the_same_through_both_clients(client):
    with StatusServer(version="2.7.1") as srv:
        assert answer_of(srv.url, client).ok
        [req] = srv.requests
        assert req.path == "/api/v2/write"
        assert req.query == {"org": "ngo", "bucket": "lw", "precision": "ns"}
        assert req.headers["authorization"] == f"Token {TOKEN}"
        assert req.headers["content-encoding"] == "gzip"
        assert req.headers["content-type"].startswith("text/plain")
        assert req.body == BODY
        assert TOKEN not in json.dumps(req.query)


def test_no_org_is_sent_as_dash_as_influxdb_client_does():
    for client in CLIENTS:
        with StatusServer(version="1.8.10") as srv:
            s = Sink(parse(f'[influx]\nurl = "{srv.url}"\nbucket = "lw/autogen"\nclient = "{client}"\n'
                           ).influx, Token(None, "test"))
            assert s.send(BODY).ok
            s.close()
            assert srv.requests[-1].query == {"org": "-", "bucket": "lw/autogen", "precision": "ns"}
            assert "authorization" not in srv.requests[-1].headers


@pytest.mark.parametrize("client", CLIENTS)
def test_the_token_a_server_echoes_is_redacted(client):
    with StatusServer(version="2.7.1") as srv:
        srv.responder = lambda req: Reply.json_error(
            503, f"upstream refused {req.headers.get('authorization')} (token {TOKEN})")
        ans = answer_of(srv.url, client)
    assert ans.status == 503 and TOKEN not in ans.message
    assert ans.message == "upstream refused Token *** (token ***)"


# -- the builtin client's own ways: the writer it builds, one connection, gzip, the import ------

def test_the_writer_follows_influx_client_and_v1_is_always_builtin():
    for client, api, kind in [("builtin", "v2", HTTPWriter), ("influxdb-client", "v2", ClientWriter),
                              ("builtin", "v1", HTTPWriter), ("influxdb-client", "v1", HTTPWriter)]:
        with StatusServer(version="1.6.7" if api == "v1" else "2.7.1") as srv:
            s = Sink(parse(f'[influx]\nurl = "{srv.url}"\ndatabase = "lw"\nclient = "{client}"\n'
                           ).influx, Token(TOKEN, "test"))
            assert s.send(BODY).ok
            assert type(s._writer) is kind, (client, api)
            assert srv.requests[-1].path == ("/write" if api == "v1" else "/api/v2/write")
            s.close()


def test_one_kept_alive_connection_carries_every_write_and_a_closed_one_is_reopened():
    with StatusServer(version="2.7.1") as srv:
        s = sink(srv.url, "builtin")
        ports = set()
        for _ in range(5):
            assert s.send(BODY).ok
            ports.add(s._writer.http._conn.sock.getsockname()[1])
        assert len(ports) == 1 and len(srv.requests) == 5
        # The server ends the connection after an answer: the next write opens a new one.
        srv.script(Reply(204, {"Connection": "close"}))
        assert s.send(BODY).ok and s._writer.http._conn is None
        assert s.send(BODY).ok and len(srv.requests) == 7
        s.close()


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
def test_victoriametrics_takes_the_builtin_writes(vm, store, gzip):
    store.write([Sample("ping", {"agent": "a1", "target": "1.1.1.1"}, {"rtt_avg_ms": 10.0 + i, "sent": 3},
                        NOW - timedelta(seconds=10 * (300 - i))) for i in range(300)])
    cfg = parse(f'[influx]\nurl = "{vm.url}"\nbucket = "lw"\ngzip = {str(gzip).lower()}\n')
    fw = Forwarder(store, Sink(cfg.influx, Token(None, "test")), FakeClock(NOW), batch_size=100)
    rep = fw.push()
    assert (rep.outcome, rep.sent, rep.requests) == ("done", 300, 3)
    assert type(fw.sink._writer) is HTTPWriter and fw.sink._writer.gzip is gzip
    assert vm.wait_count("ping_rtt_avg_ms", 300) == 300
    values = vm.export('{__name__="ping_rtt_avg_ms"}')[0]["values"]
    assert sorted(values) == [10.0 + i for i in range(300)]


SEND_AND_LIST = textwrap.dedent("""
    import sys
    from agent.config import parse
    from kit.influx import Sink, Token
    s = Sink(parse('[influx]\\nurl = "%s"\\nbucket = "lw"\\nclient = "%s"\\n').influx, Token("t", "x"))
    assert s.send(b"m v=1 1\\n").ok
    s.close()
    print("influxdb_client" in sys.modules)
""")


@pytest.mark.parametrize("client, imported", [("builtin", "False"), ("influxdb-client", "True")])
def test_influxdb_client_is_imported_only_when_chosen(client, imported):
    with StatusServer(version="2.7.1") as srv:
        out = subprocess.run([sys.executable, "-c", SEND_AND_LIST % (srv.url, client)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == imported
        assert len(srv.requests) == 1


def test_influxdb_client_chosen_but_missing_is_a_config_error_naming_the_key(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "influxdb_client" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        parse('[influx]\nclient = "influxdb-client"\n', "lw.toml")
    assert str(err.value).startswith("lw.toml: influx.client: influxdb-client is not installed")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    # Checked at load; an installation that breaks later fails the first write by the same key.
    s = sink("http://127.0.0.1:9", "influxdb-client")
    monkeypatch.setitem(sys.modules, "influxdb_client", None)  # import influxdb_client: ImportError
    with pytest.raises(ConfigError, match=r"influx\.client: \"influxdb-client\" cannot be imported"):
        s.send(BODY)
