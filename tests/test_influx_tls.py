"""TLS towards the server: verification is on unless turned off explicitly, a private CA is
trusted through influx.ca_file, and every writer (the builtin client for v2 and v1,
influxdb-client for v2 when chosen) behaves the same. A real HTTPS server on loopback with a
certificate made by openssl."""

import json
import shutil
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from agent.clock import FakeClock
from agent.config import parse
from agent.forward import Forwarder
from agent.model import Sample
from agent.store import Store
from kit.influx import Sink, Token
from tests.statusserver import StatusServer

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(params=[("2.7.1", "builtin"), ("2.7.1", "influxdb-client"), ("1.6.7", "builtin")],
                ids=["v2", "v2-influxdb-client", "v1"])
def server(request, cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*map(str, cert))
    version, client = request.param
    with StatusServer(version=version, tls=ctx) as srv:
        srv.client = client
        yield srv


def push(tmp_path, srv, extra=""):
    store = Store.open(tmp_path / "state")
    try:
        store.write([Sample("round", {"agent": "a1"}, {"duration_s": 0.5}, NOW - timedelta(seconds=i))
                     for i in range(3)])
        cfg = parse(f'[influx]\nurl = "{srv.url}"\nbucket = "b"\ndatabase = "d"\ntimeout_s = 3\n'
                    f'client = "{srv.client}"\n{extra}')
        return Forwarder(store, Sink(cfg.influx, Token("tok", "test")), FakeClock(NOW)).push()
    finally:
        store.close()


def test_an_untrusted_certificate_is_refused_by_default(tmp_path, server):
    rep = push(tmp_path, server)
    assert rep.outcome == "retry" and rep.sent == 0
    assert "TLS certificate not trusted" in rep.answer.message
    assert not [r for r in server.requests if r.lines]  # nothing was sent


def test_a_private_ca_is_trusted_through_ca_file(tmp_path, server, cert):
    rep = push(tmp_path, server, f'ca_file = "{cert[0]}"\n')
    assert rep.outcome == "done" and rep.sent == 3
    assert server.requests[-1].headers["authorization"] == "Token tok"
    assert server.requests[-1].path == ("/write" if server.version.startswith("1.") else "/api/v2/write")


def test_verification_off_works_only_when_asked_and_check_warns(tmp_path, server):
    rep = push(tmp_path, server, "verify_tls = false\n")
    assert rep.outcome == "done" and rep.sent == 3
    cfg = tmp_path / "lw.toml"
    # check probes the line too: only 127.0.0.1 (no gateway, no DNS, no speed-test server).
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n'
                   '[probe]\ngateway = "off"\ntargets = ["127.0.0.1:9"]\ndns_names = []\n'
                   '[power]\nbattery = "off"\n[speedtest]\nenabled = false\n[services]\nurls = []\n'
                   f'[influx]\nurl = "{server.url}"\nbucket = "b"\ndatabase = "d"\nverify_tls = false\n')
    out = subprocess.run([sys.executable, "-m", "agent", "check", "--json", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60).stdout
    rows = {c["name"]: c for c in json.loads(out)["checks"]}
    assert rows["influx tls"]["result"] == "warn" and "not checked" in rows["influx tls"]["detail"]
    assert rows["influx url"]["result"] == "ok"
