"""How forwarding handles each kind of answer, over real HTTP, through every real writer (the
builtin client and influxdb-client's synchronous API on /api/v2/write, the builtin client on v1
/write), against a small local server that answers with the statuses a real InfluxDB sends
(tests/statusserver.py).

The forwarder gets a fake clock so that backoffs and Retry-After are checked without waiting;
the HTTP exchange, gzip, headers and timeouts are real."""

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from agent.clock import FakeClock
from agent.config import parse
from agent.forward import HALT_RETRY_S, Forwarder
from agent.model import Sample
from agent.store import Store
from kit.influx import Sink, Token
from tests.statusserver import Reply, StatusServer

TOKEN = "s3cr3t-T0ken-never-shown"
VERSIONS = {"v2": "2.7.1", "v1": "1.6.7~rc0"}
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(params=[("v2", "builtin"), ("v2", "influxdb-client"), ("v1", "builtin")],
                ids=["v2", "v2-influxdb-client", "v1"])
def server(request):
    api, client = request.param
    with StatusServer(version=VERSIONS[api]) as srv:
        srv.api, srv.client = api, client
        yield srv


def fill(store, n):
    store.write([Sample("ping", {"agent": "a1", "target": "1.1.1.1"}, {"rtt_avg_ms": 1.0 + i, "seq": i},
                        NOW - timedelta(seconds=10 * (n - i))) for i in range(n)])


def forwarder(store, srv, clock=None, token=TOKEN, **kw):
    extra = ('database = "lw"\nretention_policy = "autogen"\n' if srv.api == "v1"
             else 'org = "ngo"\nbucket = "lw"\n')
    extra += f'client = "{getattr(srv, "client", "builtin")}"\n'
    cfg = parse(f'[influx]\nurl = "{srv.url}"\n{extra}timeout_s = 1\n'
                + "".join(f"{k} = {v}\n" for k, v in kw.items()))
    sink = Sink(cfg.influx, Token(token, "test"))
    return Forwarder(store, sink, clock or FakeClock(NOW), batch_size=cfg.influx.batch_size,
                     rand=lambda: 1.0)


def write_path(srv):
    return "/write" if srv.api == "v1" else "/api/v2/write"


def test_detects_the_api_and_writes_gzipped_with_the_token(server, store):
    fill(store, 25)
    fw = forwarder(store, server)
    rep = fw.push()
    assert (rep.sent, rep.outcome) == (25, "done")
    req = server.requests[-1]
    assert req.path == write_path(server)
    assert req.headers.get("content-encoding") == "gzip"
    if server.api == "v1":
        assert req.query == {"db": "lw", "rp": "autogen", "precision": "ns"}
        assert req.headers["authorization"].startswith("Token ")  # no colon: not user:password
    else:
        assert req.query["bucket"] == "lw" and req.query["org"] == "ngo" and req.query["precision"] == "ns"
        assert req.headers["authorization"] == f"Token {TOKEN}"
    assert TOKEN not in json.dumps(req.query)
    assert len(req.lines) == 25 and req.lines[0].startswith("ping,agent=a1,target=1.1.1.1 ")
    assert json.loads(store.get_state("forward"))["server"]["api"] == server.api


def test_v1_user_password_goes_as_basic_auth_not_in_the_url(store):
    with StatusServer(version="1.7.10") as srv:
        srv.api = "v1"
        fill(store, 2)
        forwarder(store, srv, token="writer:pa ss").push()
        req = srv.requests[-1]
        assert req.headers["authorization"] == "Basic d3JpdGVyOnBhIHNz"
        assert "u" not in req.query and "p" not in req.query


def test_400_quarantines_only_the_row_the_server_names(server, store):
    fill(store, 20)

    def respond(req):
        bad = [ln for ln in req.lines if "seq=7i" in ln]
        if bad:
            msg = f"unable to parse '{bad[0]}': invalid field format"
            return Reply.json_error(400, msg)
        return Reply(204)
    server.responder = respond
    rep = forwarder(store, server).push()
    assert (rep.sent, rep.quarantined) == (19, 1)
    n, recent = store.quarantined()
    assert n == 1 and recent[0]["status"] == 400 and "invalid field format" in recent[0]["message"]
    sent = [ln for r in server.requests if r.path == write_path(server) for ln in r.lines]
    assert len({ln for ln in sent if "seq=7i" not in ln}) == 19


def test_401_stops_forwarding_and_retries_rarely(server, store):
    fill(store, 10)
    clock = FakeClock(NOW)
    server.default = Reply.json_error(401, "unauthorized access")
    fw = forwarder(store, server, clock)
    rep = fw.push()
    assert rep.outcome == "halt" and "refused the token (401)" in fw.state.halted
    writes = [r for r in server.requests if r.path == write_path(server)]
    assert len(writes) == 1  # no retry storm
    clock.advance(HALT_RETRY_S / 2)
    assert not fw.due()
    clock.advance(HALT_RETRY_S / 2 + 1)
    assert fw.due()
    assert store.backlog()[0] == 10


def test_413_splits_the_batch(server, store):
    fill(store, 64)
    server.responder = lambda req: Reply(413) if len(req.lines) > 16 else Reply(204)
    fw = forwarder(store, server)
    rep = fw.push()
    assert rep.sent == 64 and rep.quarantined == 0 and fw.state.batch_limit == 16


def test_429_with_retry_after_is_honoured(server, store):
    fill(store, 5)
    clock = FakeClock(NOW)
    server.script(Reply.json_error(429, "too many requests", headers={"Retry-After": "42"}))
    fw = forwarder(store, server, clock)
    rep = fw.push()
    assert rep.outcome == "retry" and rep.answer.status == 429 and rep.answer.retry_after == "42"
    clock.advance(41.5)
    assert not fw.due()
    clock.advance(1)
    assert fw.due() and fw.push().sent == 5


def test_503_backs_off_and_keeps_the_rows(server, store):
    fill(store, 5)
    clock = FakeClock(NOW)
    server.default = Reply.json_error(503, "service unavailable")
    fw = forwarder(store, server, clock)
    waits = []
    for _ in range(4):
        assert fw.push().outcome == "retry"
        t0 = clock.monotonic()
        while not fw.due():
            clock.advance(0.25)
        waits.append(clock.monotonic() - t0)
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert store.backlog()[0] == 5
    assert fw.state.last_error["status"] == 503 and "service unavailable" in fw.state.last_error["message"]


def test_a_hanging_server_times_out_and_the_rows_stay(server, store):
    fill(store, 3)
    server.default = Reply(hang=True)
    fw = forwarder(store, server)
    t0 = time.monotonic()
    rep = fw.push()
    took = time.monotonic() - t0
    assert rep.outcome == "retry" and rep.answer.status is None
    assert "timeout" in rep.answer.message
    assert took < 5  # influx.timeout_s = 1
    assert store.backlog()[0] == 3


def test_connection_refused_is_a_retry(store, tmp_path):
    from tests.nutlab import free_port

    class Nowhere:
        url = f"http://127.0.0.1:{free_port()}"
        api = "v2"
    fill(store, 2)
    rep = forwarder(store, Nowhere).push()
    assert rep.outcome == "retry" and rep.answer.message == "connection refused"


# -- what the user sees: status and check, and never the token -------------------------------

def cli(*args, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "LINEWATCH_INFLUX_TOKEN"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def config_file(tmp_path, srv, extra=""):
    """A config whose checks reach only 127.0.0.1 (no gateway, no DNS, no speed test)."""
    p = tmp_path / "lw.toml"
    p.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n'
                 '[probe]\ngateway = "off"\ntargets = ["127.0.0.1:9"]\ndns_names = []\n'
                 '[power]\nbattery = "off"\n[speedtest]\nenabled = false\n[services]\nurls = []\n'
                 f'[influx]\nurl = "{srv.url}"\nbucket = "lw"\norg = "ngo"\ntimeout_s = 2\n{extra}')
    return p


def test_check_names_the_wrong_part_and_never_prints_the_token(tmp_path):
    with StatusServer(version="2.7.1") as srv:
        cfg = config_file(tmp_path, srv)
        env = {"LINEWATCH_INFLUX_TOKEN": TOKEN}
        srv.default = Reply.json_error(401, "unauthorized access")
        r = cli("check", "--json", "--config", str(cfg), env_extra=env)
        rows = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
        assert rows["influx url"]["result"] == "ok"
        assert (rows["influx credentials"]["result"] == "fail"
                and "401" in rows["influx credentials"]["detail"])
        srv.default = Reply.json_error(404, 'bucket "lw" not found')
        rows = {c["name"]: c for c in json.loads(cli("check", "--json", "--config", str(cfg),
                                                     env_extra=env).stdout)["checks"]}
        assert rows["influx credentials"]["result"] == "ok"
        assert rows["influx bucket"]["result"] == "fail" and "not found" in rows["influx bucket"]["detail"]
        srv.default = Reply(204)
        r2 = cli("check", "--config", str(cfg), env_extra=env)
        assert "[ok  ] influx bucket" in r2.stdout
        for out in (r.stdout, r.stderr, r2.stdout, r2.stderr):
            assert TOKEN not in out
        # The empty test write carried the token in a header, never in the URL.
        assert all(TOKEN not in json.dumps(q.query) for q in srv.requests)
        assert srv.requests[-1].lines == []
    with StatusServer(version="2.7.1") as dead:
        url = dead.url
    rows = {c["name"]: c for c in json.loads(cli("check", "--json", "--config",
                                                 str(config_file(tmp_path, type("S", (), {"url": url}))),
                                                 env_extra=env).stdout)["checks"]}
    assert rows["influx url"]["result"] == "fail" and "refused" in rows["influx url"]["detail"]


def test_status_and_push_show_backlog_and_last_error_without_the_token(tmp_path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    os.chmod(tok, 0o600)
    with StatusServer(version="2.7.1") as srv:
        cfg = config_file(tmp_path, srv, f'token_file = "{tok}"\n')
        st = Store.open(tmp_path / "state")
        fill(st, 30)
        st.close()
        # The server echoes the Authorization header back in its error: it must be scrubbed.
        srv.responder = lambda req: Reply.json_error(503, f"overloaded ({req.headers.get('authorization')})")
        r = cli("push", "--config", str(cfg))
        assert r.returncode == 1 and "30 rows stay in the store" in r.stderr
        s = json.loads(cli("status", "--json", "--config", str(cfg)).stdout)["forward"]
        assert s["state"] == "retrying" and s["backlog_rows"] == 30
        assert s["oldest_unsent_age_s"] >= 290 and s["last_error"]["status"] == 503
        assert "overloaded (Token ***)" in s["last_error"]["message"]
        human = cli("status", "--config", str(cfg)).stdout
        assert "RETRYING" in human and "backlog: 30 rows" in human and "HTTP 503" in human
        srv.responder = lambda req: Reply(204)
        r = cli("push", "--json", "--config", str(cfg))
        out = json.loads(r.stdout)
        assert r.returncode == 0 and out["sent"] == 30 and out["backlog_rows"] == 0
        s = json.loads(cli("status", "--json", "--config", str(cfg)).stdout)["forward"]
        assert s["state"] == "ok" and s["backlog_rows"] == 0
        every = r.stdout + r.stderr + human + json.dumps(s)
        assert TOKEN not in every


def test_a_refused_token_shows_in_status_and_check_as_stopped(tmp_path):
    with StatusServer(version="2.7.1") as srv:
        cfg = config_file(tmp_path, srv)
        st = Store.open(tmp_path / "state")
        fill(st, 4)
        st.close()
        srv.default = Reply.json_error(401, "unauthorized access")
        env = {"LINEWATCH_INFLUX_TOKEN": TOKEN}
        r = cli("push", "--config", str(cfg), env_extra=env)
        assert r.returncode == 1 and "refused the token (401)" in r.stderr
        s = json.loads(cli("status", "--json", "--config", str(cfg), env_extra=env).stdout)["forward"]
        assert s["state"] == "stopped" and "refused the token" in s["stopped_reason"]
        assert s["backlog_rows"] == 4
        rows = {c["name"]: c for c in json.loads(cli("check", "--json", "--config", str(cfg),
                                                     env_extra=env).stdout)["checks"]}
        assert rows["influx forwarding"]["result"] == "fail"
        assert "stopped: the server refused the token" in rows["influx forwarding"]["detail"]
        human = cli("status", "--config", str(cfg), env_extra=env).stdout
        assert "STOPPED" in human and "linewatch check" in human
        assert TOKEN not in r.stderr + r.stdout + human + json.dumps(s)


# -- a token the server echoes across the 500-character cut ----------------------------------

CUT_TOKEN = "q7Rv2+Lm9/Xe4Tk8Wd3Hz6Pb1Nc5Yf0Ga-Ju8Ks4Ow2Ei7Uo9Ar3St6Ql1Mx5Vy0Bh=="
V1_CREDENTIAL = "writer:" + CUT_TOKEN


def echoed_forms() -> list[str]:
    """What of the credential a server could echo: the token as sent (v2), the Basic form of
    user:password (v1) and the URL-encoded token."""
    return [CUT_TOKEN, base64.b64encode(V1_CREDENTIAL.encode()).decode(),
            urllib.parse.quote(CUT_TOKEN, safe="")]


def straddling(echo: str) -> str:
    """A server message whose echoed credential starts 20 characters before character 500."""
    head = ("the write was refused by the gateway in front of the database; " * 10)[:480]
    return f"{head}{echo} (request id 7f3a)"


def safe_config(tmp_path, srv, extra=""):
    """A config whose checks and agent reach only 127.0.0.1 (no gateway, no DNS, no speed test)."""
    p = tmp_path / "lw.toml"
    p.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n'
                 '[probe]\ninterval_s = 1\ntimeout_s = 0.3\ncount = 1\ngateway = "off"\n'
                 'targets = ["127.0.0.1:9"]\ndns_names = []\n'
                 '[power]\nbattery = "off"\n[speedtest]\nenabled = false\n[services]\nurls = []\n'
                 f'[influx]\nurl = "{srv.url}"\ntimeout_s = 2\npush_interval_s = 1\n'
                 + ('database = "lw"\n' if srv.api == "v1" else 'bucket = "lw"\norg = "ngo"\n')
                 + extra)
    return p


def store_text(tmp_path) -> str:
    """Everything the store keeps about forwarding: its state rows and quarantined messages."""
    import sqlite3

    c = sqlite3.connect(f"file:{tmp_path / 'state/linewatch.db'}?mode=ro", uri=True)
    try:
        rows = c.execute("SELECT value FROM state").fetchall()
        rows += c.execute("SELECT message FROM quarantine").fetchall()
    finally:
        c.close()
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("api, echo, client", [
    ("v2", "header", "builtin"), ("v1", "header", "builtin"), ("v2", "urlencoded", "builtin"),
    ("v2", "header", "influxdb-client"),
], ids=["v2-token", "v1-basic", "v2-urlencoded", "v2-token-influxdb-client"])
def test_a_token_across_the_cut_never_shows_in_part(tmp_path, api, echo, client):
    credential = CUT_TOKEN if api == "v2" else V1_CREDENTIAL
    env = {"LINEWATCH_INFLUX_TOKEN": credential}

    def answer(status):
        def respond(req):
            sent = (req.headers.get("authorization", "").split(" ", 1)[-1] if echo == "header"
                    else urllib.parse.quote(CUT_TOKEN, safe=""))
            text = straddling(sent)
            assert text.index(sent) < 500 < text.index(sent) + len(sent)  # the cut runs through it
            return Reply.json_error(status, text, v1=api == "v1")
        return respond

    def run(*args):
        r = cli(*args, "--config", str(cfg), env_extra=env)
        shown.extend([r.stdout, r.stderr])
        return r

    shown = []
    with StatusServer(version=VERSIONS[api]) as srv:
        srv.api = api
        cfg = safe_config(tmp_path, srv, f'client = "{client}"\n')
        st = Store.open(tmp_path / "state")
        fill(st, 6)
        st.close()
        # 503, retrying: the agent's log, then push --json, status, check and the store
        srv.responder = answer(503)
        log = tmp_path / "agent.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                                    env={**os.environ, **env}, stdout=out, stderr=out)
        try:
            srv.wait_requests(1, timeout=30)
            deadline = time.monotonic() + 10
            while "InfluxDB write failed" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        shown.append(log.read_text())
        assert "InfluxDB write failed (HTTP 503: the write was refused" in shown[-1]
        assert json.loads(run("push", "--json").stdout)["error"]["status"] == 503
        assert json.loads(run("status", "--json").stdout)["forward"]["state"] == "retrying"
        run("status")
        run("check", "--json")
        shown.append(store_text(tmp_path))
        # 400: the rows are quarantined with the message
        srv.responder = answer(400)
        assert json.loads(run("push", "--json").stdout)["quarantined"] >= 6
        run("status")
        # 401: forwarding stops, and says why
        st = Store.open(tmp_path / "state")
        fill(st, 3)
        st.close()
        srv.responder = answer(401)
        assert json.loads(run("push", "--json").stdout)["stopped_reason"]
        assert json.loads(run("status", "--json").stdout)["forward"]["state"] == "stopped"
        run("status")
        run("check", "--json")
        shown.append(store_text(tmp_path))
    every = "\n".join(shown)
    assert "the write was refused by the gateway" in every and "***" in every
    for form in echoed_forms():
        assert_no_fragment(every, form)


def assert_no_fragment(text: str, secret: str, n: int = 8) -> None:
    runs = {secret[i:i + n] for i in range(len(secret) - n + 1)}
    found = sorted(f for f in runs if f in text)
    assert not found, f"fragments of the credential shown: {found[:5]}"
