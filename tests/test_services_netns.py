"""Site and endpoint checks against a censor (tests/censorlab.py): real DNS servers (dnsmasq),
a real HTTPS site with a test CA, a blackhole route and a middlebox that resets a ClientHello by
its server name, all in network namespaces. `linewatch services` runs in the agent's namespace
as a user runs it; each way of blocking must come out as its step and how."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests import censorlab

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.netns

EXPECTED = {   # target -> (step, how)
    "ok.test": ("ok", ""),
    "fine.test": ("ok", ""),                     # through the middlebox: not a name it blocks
    "poison.test": ("dns", "mismatch"),          # a wrong address; the second resolver's works
    "zero.test": ("dns", "bogon"),
    "gone.test": ("dns", "nxdomain"),
    "hole.test": ("tcp", "timeout"),
    "sni.test": ("tls", "reset"),
    "wrong.test": ("tls", "cert"),
    "198.51.100.10:443": ("ok", ""),
    "198.51.100.10:8443": ("tcp", "refused"),
}


def _config(tmp_path: Path, ca: Path, **extra: str) -> Path:
    cfg = tmp_path / "services.toml"
    services = {
        "urls": json.dumps([f"https://{t}/" for t in EXPECTED if not t[0].isdigit()]),
        "vpn": json.dumps([f"tcp://{t}" for t in EXPECTED if t[0].isdigit()]),
        "resolver": json.dumps(censorlab.SECOND_DNS), "control_sni": '"control.test"',
        "ca_file": json.dumps(str(ca)), "timeout_s": "2", **extra}
    cfg.write_text("\n".join([
        "[agent]", f'state_dir = "{tmp_path / "state"}"',
        "[probe]", 'targets = ["198.51.100.1"]', "dns_names = []",
        f'dns_servers = ["{censorlab.SYSTEM_DNS}"]',
        "[speedtest]", "enabled = false",
        "[services]", *(f"{k} = {v}" for k, v in services.items()),
    ]) + "\n", encoding="utf-8")
    return cfg


def _services(censor, cfg: Path, *args: str):
    return censor.net.lab.run(censor.net.agent, sys.executable, "-m", "agent", "services",
                              "--config", str(cfg), *args, check=False, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_each_way_of_blocking_is_named_by_its_step_and_how(lab, tmp_path):
    censor = censorlab.build(lab, tmp_path)
    r = _services(censor, _config(tmp_path, censor.ca), "--json")
    assert r.returncode == 1, r.stderr            # some checks failed
    rows = {row["target"]: row for row in json.loads(r.stdout)}
    assert {t: (row["step"], row.get("how", "")) for t, row in rows.items()} == EXPECTED
    ok = rows["ok.test"]
    assert ok["ok"] is True and ok["status_code"] == 200 and ok["dns_agree"] is True
    assert all(ok[k] > 0 for k in ("dns_ms", "connect_ms", "tls_ms", "http_ms"))
    # SNI filtering: the same address completes a handshake that names another site
    assert rows["sni.test"]["control_tls"] is True and "connect_ms" in rows["sni.test"]
    assert rows["poison.test"]["dns_agree"] is False
    assert rows["gone.test"]["addresses"] == 0 and "connect_ms" not in rows["gone.test"]
    assert rows["hole.test"]["dns_agree"] is True and "control_tls" not in rows["hole.test"]
    assert all(row["kind"] == ("tcp" if t[0].isdigit() else "site") for t, row in rows.items())

    table = _services(censor, _config(tmp_path, censor.ca))
    assert table.returncode == 1
    lines = {ln.split()[0]: ln for ln in table.stdout.splitlines()[2:] if ln.strip()}
    assert "tls: reset" in lines["sni.test"] and "blocked by name (SNI)" in lines["sni.test"]
    assert "dns: mismatch" in lines["poison.test"] and lines["ok.test"].split()[2] == "ok"


def test_without_the_test_ca_every_site_fails_its_certificate(lab, tmp_path):
    """TLS verification is on: the lab's CA is trusted only when services.ca_file names it."""
    censor = censorlab.build(lab, tmp_path)
    cfg = _config(tmp_path, censor.ca, ca_file='""', urls='["https://ok.test/"]', vpn="[]")
    r = _services(censor, cfg, "--json")
    assert r.returncode == 1
    (row,) = json.loads(r.stdout)
    assert (row["step"], row["how"]) == ("tls", "cert")


def test_a_bad_ca_file_is_a_config_error_naming_the_key(lab, tmp_path):
    censor = censorlab.build(lab, tmp_path)
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("hello\n")
    for path, reason in ((bad, "not a PEM certificate file"), (tmp_path / "none.pem", "No such file")):
        r = _services(censor, _config(tmp_path, path))
        assert r.returncode == 2
        head = f"linewatch: {tmp_path / 'services.toml'}: services.ca_file: "
        assert r.stderr.strip().startswith(head), r.stderr
        assert reason in r.stderr and "Traceback" not in r.stderr


def _agent_config(tmp_path: Path, ca: Path, urls: list[str]) -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("\n".join([
        "[agent]", f'state_dir = "{tmp_path / "agent-state"}"', 'id = "w1"',
        "[probe]", "interval_s = 1.0", "timeout_s = 0.4", "count = 2",
        'targets = ["198.51.100.1", "198.51.100.2"]', "dns_names = []",
        f'dns_servers = ["{censorlab.SYSTEM_DNS}"]', "netio_interval_s = 5",
        "[outage]", "open_after = 2", "close_after = 2", "momentary_max_s = 5",
        "[power]", 'battery = "off"',
        "[speedtest]", "enabled = false",
        "[services]", f"urls = {json.dumps(urls)}", 'vpn = ["tcp://198.51.100.10:443"]',
        f'resolver = "{censorlab.SECOND_DNS}"', 'control_sni = "control.test"',
        f"ca_file = {json.dumps(str(ca))}", "timeout_s = 2", "interval_s = 10", "retry_s = 10",
        "open_after = 2",
    ]) + "\n", encoding="utf-8")
    return cfg


def _outages(censor, cfg: Path, kind: str) -> list[dict]:
    r = censor.net.lab.run(censor.net.agent, sys.executable, "-m", "agent", "outages", "--type",
                           kind, "--since", "1h", "--json", "--config", str(cfg), cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(r.stdout)


def _wait(pred, timeout: float, what: str):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def test_the_running_agent_records_blocking_as_interference_and_an_outage_as_none(lab, tmp_path):
    """`linewatch run` with [services]: a site reset by its name opens an interference episode
    (cause tls) after two checks and closes when the middlebox stops blocking; the sites that
    work give none; while the ISP link is cut, the failing checks open none either."""
    import signal
    import time

    censor = censorlab.build(lab, tmp_path)
    net = censor.net
    cfg = _agent_config(tmp_path, censor.ca, ["https://ok.test/", "https://fine.test/",
                                              "https://sni.test/"])
    agent = lab.popen(net.agent, sys.executable, "-m", "agent", "run", "--config", str(cfg),
                      cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        opened = _wait(lambda: _outages(censor, cfg, "interference"), 60,
                       "an interference episode for sni.test")
        (ep,) = opened
        assert (ep["type"], ep["cause"], ep["end"]) == ("interference", "tls", None), ep
        assert ep["target"] == "sni.test" and ep["how"] == "reset"
        st = censor.net.lab.run(net.agent, sys.executable, "-m", "agent", "status", "--config",
                                str(cfg), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "BLOCKED while the line is up: sni.test (tls: reset), since " in st.stdout
        assert "no outage in progress" in st.stdout
        # the ISP link cut: every check would fail, and none counts
        net.cut_wan()
        _wait(lambda: [e for e in _outages(censor, cfg, "connectivity") if e["end"] is None], 30,
              "the connectivity outage")
        time.sleep(12)                        # a check interval inside the outage: none runs
        net.cut_wan(down=False)
        _wait(lambda: all(e["end"] for e in _outages(censor, cfg, "connectivity")), 30,
              "the outage's end")
        # the censor stops: the next check passes and ends the episode
        censorlab.unblock(censor)
        closed = _wait(lambda: [e for e in _outages(censor, cfg, "interference") if e["end"]], 40,
                       "the interference episode's end")
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(timeout=20)
    eps = _outages(censor, cfg, "interference")
    assert [e["id"] for e in eps] == [ep["id"]] and closed[0]["id"] == ep["id"]
    assert all(e["target"] == "sni.test" for e in eps)   # none for ok.test, fine.test
    assert closed[0]["duration_s"] > 20


def test_openvpn_servers_answer_the_hard_reset_until_their_address_is_dropped(lab, tmp_path):
    """Real OpenVPN servers (Debian's openvpn 2.6, UDP and TCP): the check's hard reset gets
    their answer; once the gateway drops their address, the UDP check times out at the VPN
    step and the TCP one at connecting; a port where no server listens is refused."""
    import shutil
    if shutil.which("openvpn") is None:
        pytest.skip("openvpn is not installed (apt-get install openvpn)")
    censor = censorlab.build(lab, tmp_path)
    censorlab.start_openvpn(censor, tmp_path)
    vpn = ["openvpn://vpn.test", "openvpn://vpn.test:1195?transport=tcp", "openvpn://vpn.test:1196"]
    cfg = _config(tmp_path, censor.ca, urls="[]", vpn=json.dumps(vpn))
    rows = json.loads(_services(censor, cfg, "--json").stdout)
    got = {r["target"]: (r["kind"], r["step"], r.get("how", "")) for r in rows}
    assert got == {"vpn.test:1194/udp": ("openvpn", "ok", ""), "vpn.test:1195": ("openvpn", "ok", ""),
                   "vpn.test:1196/udp": ("openvpn", "vpn", "refused")}
    assert all(r["vpn_ms"] > 0 for r in rows if r["ok"])
    censor.net.lab.run(censor.net.gw, "ip", "route", "add", "blackhole", f"{censorlab.VPN}/32")
    r = _services(censor, cfg, "--json")
    assert r.returncode == 1
    got = {r["target"]: (r["step"], r.get("how", "")) for r in json.loads(r.stdout)}
    assert got == {"vpn.test:1194/udp": ("vpn", "timeout"), "vpn.test:1195": ("tcp", "timeout"),
                   "vpn.test:1196/udp": ("vpn", "timeout")}


def test_wireguard_server_answers_the_peers_keys_only(lab, tmp_path):
    """A real WireGuard server (Debian's wireguard-go, keys made by Debian's wg): the check's
    handshake initiation, made with the peer's keys from its wg-quick config, gets the server's
    response, which the check authenticates. A stranger's keys get silence (the server answers
    no one else), a wrong pre-shared key an answer that does not authenticate, an unreadable
    config a refusal naming the key; when the gateway drops the server's address, a timeout."""
    import shutil
    if shutil.which("wireguard-go") is None or shutil.which("wg") is None:
        pytest.skip("wireguard-go and wg are not installed (apt-get install wireguard-go "
                    "wireguard-tools)")
    censor = censorlab.build(lab, tmp_path)
    server = censorlab.start_wireguard(censor, tmp_path)
    try:
        conf = server.client_conf
        text = conf.read_text()
        stranger, wrong_psk = tmp_path / "stranger.conf", tmp_path / "wrong-psk.conf"
        key = next(line for line in text.splitlines() if line.startswith("PrivateKey"))
        psk = next(line for line in text.splitlines() if line.startswith("PresharedKey"))
        other = censor.net.lab.run(censor.net.inet, "wg", "genkey").stdout.strip()
        stranger.write_text(text.replace(key, f"PrivateKey = {other}"))
        wrong_psk.write_text(text.replace(psk, f"PresharedKey = {other}"))
        # one check per peer at a time: a server takes one initiation per peer per 20 ms
        # and refuses one not newer than the last (the command checks 8 targets at once)
        vpn = [f"wireguard://vpn.test?config={conf}", f"wireguard://vpn.test:51820?config={stranger}"]
        cfg = _config(tmp_path, censor.ca, urls="[]", vpn=json.dumps(vpn))
        r = _services(censor, cfg, "--json")
        assert r.returncode == 1 and r.stdout, r.stderr
        rows = json.loads(r.stdout)
        assert [(r["target"], r["kind"], r["step"], r.get("how", "")) for r in rows] == [
            ("vpn.test:51820/udp", "wireguard", "ok", ""),
            ("vpn.test:51820/udp", "wireguard", "vpn", "timeout")], json.dumps(rows)
        assert 0 < rows[0]["vpn_ms"] < 2000
        wrong = _config(tmp_path, censor.ca, urls="[]", vpn=json.dumps(
            [f"wireguard://198.51.100.30?config={wrong_psk}"]))
        r = _services(censor, wrong, "--json")
        assert r.returncode == 1 and r.stdout, r.stderr
        rows += json.loads(r.stdout)
        assert [(r["target"], r["step"], r["how"]) for r in rows[2:]] == [
            ("198.51.100.30:51820/udp", "vpn", "malformed")]
        assert other not in json.dumps(rows) and key.split("=", 1)[1].strip() not in json.dumps(rows)

        # an unreadable config: the command refuses it, naming the key and the file
        missing = _config(tmp_path, censor.ca, urls="[]", vpn=json.dumps(
            [f"wireguard://vpn.test?config={tmp_path / 'none.conf'}"]))
        r = _services(censor, missing)
        assert r.returncode == 2
        assert f"services.vpn: the keys for vpn.test:51820/udp: {tmp_path / 'none.conf'}: No such " \
            "file" in r.stderr, r.stderr

        censor.net.lab.run(censor.net.gw, "ip", "route", "add", "blackhole", f"{censorlab.VPN}/32")
        cfg = _config(tmp_path, censor.ca, urls="[]", vpn=json.dumps(vpn))
        r = _services(censor, cfg, "--json")
        assert r.stdout, r.stderr
        assert [(r["step"], r.get("how", "")) for r in json.loads(r.stdout)] == [("vpn", "timeout")] * 2
    finally:
        server.stop()


@pytest.mark.serial   # rates over a shaped link, bounded (tests/run.sh runs it alone)
def test_throttling_by_name_is_told_from_a_slow_server(lab, tmp_path):
    """Throttling by the TLS name, as a DPI box does it: the middlebox marks connections naming
    slow.test and the gateway's htb qdisc, through a u32 filter on that mark, holds them to
    2 Mbit/s. The download through the middlebox with slow.test as SNI comes out `throttled:
    slow` (ratio far under 0.5 against the neutral name); ok.test passes; sni.test, which the
    middlebox resets, fails at TLS (blocking by name on the way to the user's own server);
    with the server's address throttled (a u32 match on it: every name alike) nothing is
    throttled by name; with the neutral download failing there is nothing to compare with
    (`control`)."""
    censor = censorlab.build(lab, tmp_path)
    censorlab.block(censor, "sni.test", "slow:slow.test")
    censorlab.shape_marked(censor, 2000)
    throttle = {"urls": "[]", "vpn": "[]",
                "throttle_url": json.dumps(f"https://{censorlab.MIDDLEBOX}/bytes/400000"),
                "throttle_names": json.dumps(["ok.test", "slow.test", "sni.test"]),
                "throttle_bytes": "400000", "timeout_s": "3"}
    cfg = _config(tmp_path, censor.ca, **throttle)
    r = _services(censor, cfg, "--json")
    assert r.returncode == 1 and r.stdout, r.stderr
    rows = {x["target"]: x for x in json.loads(r.stdout)}
    assert {t: (x["kind"], x["step"], x.get("how", "")) for t, x in rows.items()} == {
        "ok.test": ("throttle", "ok", ""), "slow.test": ("throttle", "throttled", "slow"),
        "sni.test": ("throttle", "tls", "reset")}, r.stdout
    slow = rows["slow.test"]
    assert slow["ratio"] < 0.2 and 1200 < slow["kbps"] < 2100, slow   # the class's 2 Mbit/s
    assert rows["ok.test"]["ratio"] > 0.5 and rows["ok.test"]["control_kbps"] > 10_000
    table = _services(censor, cfg)
    assert "kbit/s with this name" in table.stdout

    # one destination throttled (tc's u32 on the server's address): every name alike, so no
    # throttling by name (the rates are still recorded)
    censorlab.block(censor, "sni.test")
    censorlab.shape_marked(censor, 2000, ("src", f"{censorlab.MIDDLEBOX}/32"))
    r = _services(censor, _config(tmp_path, censor.ca, **{
        **throttle, "throttle_names": json.dumps(["ok.test", "slow.test"]),
        "throttle_bytes": "100000"}), "--json")
    rows = json.loads(r.stdout)
    assert [(x["step"], 0.5 < x["ratio"] < 2) for x in rows] == [("ok", True)] * 2, rows
    assert all(x["kbps"] < 3000 and x["control_kbps"] < 3000 for x in rows), json.dumps(rows)

    # nothing listens at the URL's port: nothing to compare with, no finding
    r = _services(censor, _config(tmp_path, censor.ca, **{
        **throttle, "throttle_url": json.dumps(f"https://{censorlab.MIDDLEBOX}:8443/x")}), "--json")
    assert {(x["step"], x["how"]) for x in json.loads(r.stdout)} == {("skipped", "control")}


def test_dns_over_https_as_the_second_path(lab, tmp_path):
    """The second path through a real DNS-over-HTTPS server (Debian's dnsdist, the test CA's
    certificate, the honest resolver behind it): a poisoned answer is still told as `dns:
    mismatch`; DoH is asked only when a site fails (a site that works has no dns_agree); with
    the DoH server gone, the poisoned name is only a TCP failure (no finding against DNS)."""
    import shutil
    if shutil.which("dnsdist") is None:
        pytest.skip("dnsdist is not installed (apt-get install dnsdist)")
    censor = censorlab.build(lab, tmp_path)
    url = censorlab.start_doh(censor, tmp_path)
    sites = json.dumps(["https://poison.test/", "https://ok.test/"])
    cfg = _config(tmp_path, censor.ca, urls=sites, vpn="[]", resolver=json.dumps(url))
    r = _services(censor, cfg, "--json")
    assert r.stdout, r.stderr
    rows = {x["target"]: x for x in json.loads(r.stdout)}
    assert (rows["poison.test"]["step"], rows["poison.test"]["how"],
            rows["poison.test"]["dns_agree"]) == ("dns", "mismatch", False)
    assert rows["ok.test"]["ok"] and "dns_agree" not in rows["ok.test"]
    censor.net.lab.run(censor.net.gw, "ip", "route", "add", "blackhole", f"{censorlab.DOH}/32")
    r = _services(censor, cfg, "--json")
    rows = {x["target"]: x for x in json.loads(r.stdout)}
    assert rows["poison.test"]["step"] == "tcp" and "dns_agree" not in rows["poison.test"]
