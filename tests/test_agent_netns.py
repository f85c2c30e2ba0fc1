"""End to end: the real `linewatch` command in a network namespace, against a real gateway host,
an "internet" host and a real DNS server (dnsmasq). Links are cut the way outages happen:

* ISP outage: the gateway's WAN link goes down (the gateway still answers);
* LAN outage: the gateway's LAN side goes down (router off: nothing answers);
* DNS outage: the DNS server stops while the targets keep answering.

Each episode's start, end, duration and cause are checked against the moments of the cuts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.hosttree import power_supply
from tests.netlab import DNSMASQ, responder, start_dnsmasq

# Runs alone (tests/run.sh): episodes' starts and ends are bounded to a round and 0.65 s of
# the cut and the repair.
pytestmark = pytest.mark.serial

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = 1.0


def write_config(tmp_path: Path, net, **probe) -> Path:
    state = tmp_path / "state"
    lines = [
        "[agent]", f'state_dir = "{state}"', 'region = "PK-SD"', 'city = "کراچی"', 'isp = "Test, ISP"',
        "[probe]", f"interval_s = {INTERVAL}", "timeout_s = 0.4", "count = 2",
        'targets = ["198.51.100.1", "198.51.100.2"]', 'dns_names = ["example.test"]',
        'dns_servers = ["198.51.100.53"]', "netio_interval_s = 5",
        *(f"{k} = {json.dumps(v)}" for k, v in probe.items()),
        "[outage]", "open_after = 3", "close_after = 2", "momentary_max_s = 5",
        "[services]", "urls = []",
    ]
    p = tmp_path / "config.toml"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def linewatch(net, ns, *args, no_raw=False, check=True):
    cmd = [sys.executable, "-m", "agent", *args]
    if no_raw:  # as a normal user: no CAP_NET_RAW (it is dropped from the bounding set)
        cmd = ["setpriv", "--bounding-set=-net_raw", *cmd]
    r = net.lab.run(ns, *cmd, check=False, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check and r.returncode not in (0,):
        raise AssertionError(f"linewatch {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def start_agent(net, cfg: Path):
    """`linewatch run` in the agent namespace."""
    return net.lab.popen(net.agent, sys.executable, "-m", "agent", "run", "--config", str(cfg),
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def stop_agent(agent) -> int:
    """SIGTERM, as systemd stops it; returns the exit code."""
    os.killpg(agent.pid, signal.SIGTERM)
    return agent.wait(timeout=15)


def now():
    return datetime.now(UTC)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@pytest.fixture
def dns_server(net):
    if not Path(DNSMASQ).exists():
        pytest.skip("dnsmasq is not installed (tests/run.sh installs dnsmasq-base)")
    return start_dnsmasq(net)


def test_outages_with_causes_end_to_end(net, dns_server, tmp_path):
    cfg = write_config(tmp_path, net)
    agent = start_agent(net, cfg)
    marks = {}
    try:
        time.sleep(4)
        st = json.loads(linewatch(net, net.agent, "status", "--json", "--config", str(cfg)).stdout)
        assert st["running"] and st["last_round"]["status"] == "up", st
        assert {t["role"] for t in st["targets"]} == {"gateway", "internet"}

        def outage(name, cut, restore, hold=8.0):
            t = now()
            cut()
            marks[name] = [t, now()]
            time.sleep(hold)
            if name == "isp":  # while it lasts, status shows the episode in progress
                st = json.loads(linewatch(net, net.agent, "status", "--json", "--config", str(cfg)).stdout)
                assert [e["cause"] for e in st["episodes_in_progress"]] == ["isp"], st
            t = now()
            restore()
            marks[name] += [t, now()]
            time.sleep(4)

        outage("isp", lambda: net.cut_wan(True), lambda: net.cut_wan(False))
        outage("lan", lambda: net.cut_lan(True), lambda: net.cut_lan(False))
        outage("dns", lambda: os.killpg(dns_server.pid, signal.SIGKILL),
               lambda: start_dnsmasq(net))
    finally:
        code = stop_agent(agent)
    err = agent.stderr.read().decode()
    assert code == 0, err
    assert "stopped cleanly" in err

    eps = json.loads(linewatch(net, net.agent, "outages", "--json", "--config", str(cfg)).stdout)
    assert [e["cause"] for e in eps] == ["isp", "lan", "dns"], eps
    # A round lasts at most (count - 1) x 0.25 s spacing + timeout; one that straddles a cut or a
    # repair may go either way, and is stamped with its start.
    round_s = 0.25 + 0.4
    for e in eps:
        cut0, cut1, fix0, fix1 = marks[e["cause"]]
        start, end = parse(e["start"]), parse(e["end"])
        # starts at the first failed round after the cut, ends at the first good round after
        # the repair: each within one interval (plus a round's length) of the moment
        assert -round_s <= (start - cut0).total_seconds(), (e, cut0)
        assert (start - cut1).total_seconds() <= INTERVAL + round_s, (e, cut1)
        assert -round_s <= (end - fix0).total_seconds(), (e, fix0)
        assert (end - fix1).total_seconds() <= INTERVAL + round_s + 0.5, (e, fix1)
        assert e["duration_s"] == pytest.approx((end - start).total_seconds(), abs=0.01)
        assert 6.0 <= e["duration_s"] <= 10.5
        assert e["type"] == "connectivity" and e["sustained"] is True and e["end"] is not None

    csv_out = linewatch(net, net.agent, "outages", "--csv", "--config", str(cfg)).stdout.splitlines()
    assert csv_out[0] == "type,cause,start,end,duration_s,sustained" and len(csv_out) == 4
    st = json.loads(linewatch(net, net.agent, "status", "--json", "--config", str(cfg)).stdout)
    assert not st["running"] and st["episodes_in_progress"] == []
    assert 0 < st["availability_24h_pct"] < 100
    assert st["store"]["rows"] > 0 and st["store"]["backlog_rows"] == st["store"]["rows"]
    state = tmp_path / "state"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "linewatch.db").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("group_range, method", [
    ("1 0", "tcp"),                       # Debian's default: no unprivileged ICMP -> TCP connect
    ("0 2147483647", "icmp_dgram"),       # ping_group_range opened: ICMP without root
], ids=["icmp-refused", "icmp-allowed"])
def test_unprivileged_agent_picks_a_method_and_check_explains(net, dns_server, tmp_path, group_range, method):
    # The process keeps uid 0 (the test's Python lives under /root) but loses CAP_NET_RAW, which
    # is what ICMP permission depends on; the gid 0 is inside the opened range, not the default.
    net.lab.sysctl(net.agent, "net.ipv4.ping_group_range", group_range)
    # A listener on the internet host so TCP connect timing has something to reach on one target.
    net.lab.popen(net.inet, sys.executable, "-c",
                  "import socket,time; s=socket.socket(); "
                  "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
                  "s.bind(('198.51.100.1', 443)); s.listen(); time.sleep(60)")
    time.sleep(0.3)
    cfg = write_config(tmp_path, net)
    r = linewatch(net, net.agent, "probe", "--json", "--config", str(cfg), no_raw=True)
    out = json.loads(r.stdout)
    assert out["status"] == "up", out
    assert {t["method"] for t in out["targets"]} == {method}
    assert all(t["received"] == t["sent"] == 2 for t in out["targets"]), out
    chk = linewatch(net, net.agent, "check", "--config", str(cfg), no_raw=True, check=False)
    if method == "tcp":
        assert "[WARN] echo method: ICMP is refused" in chk.stdout
        assert "ping_group_range" in chk.stdout  # the fix is spelled out
    else:
        assert "[ok  ] echo method: ICMP through an unprivileged datagram socket" in chk.stdout


def test_bad_config_fails_before_anything_starts(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[probe]\ninterval_s = 0\n")
    r = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(p)], capture_output=True,
                       text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip() == f"linewatch: {p}: probe.interval_s: must be >= 1, got 0"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "clean-stop"])
def test_episode_survives_agent_restart(net, dns_server, tmp_path, how):
    cfg = write_config(tmp_path, net)
    agent = start_agent(net, cfg)
    try:
        time.sleep(3)
        cut0 = now()
        net.cut_wan(True)
        time.sleep(6)                                  # the episode is open now
        os.killpg(agent.pid, how)
        agent.wait(timeout=15)
        time.sleep(2)                                  # the agent is away for a moment
        st = json.loads(linewatch(net, net.agent, "status", "--json", "--config", str(cfg)).stdout)
        assert [e["cause"] for e in st["episodes_in_progress"]] == ["isp"], st
        start_in_progress = parse(st["episodes_in_progress"][0]["start"])
        agent = start_agent(net, cfg)
        time.sleep(4)
        fix0 = now()
        net.cut_wan(False)
        time.sleep(4)
    finally:
        assert stop_agent(agent) == 0
    eps = json.loads(linewatch(net, net.agent, "outages", "--json", "--config", str(cfg)).stdout)
    assert len(eps) == 1, eps                          # neither lost nor duplicated
    e = eps[0]
    assert e["cause"] == "isp" and e["end"] is not None
    # the start seen while it was in progress is the start it closed with
    assert abs((parse(e["start"]) - start_in_progress).total_seconds()) < 0.01
    assert abs((parse(e["start"]) - cut0).total_seconds()) <= INTERVAL + 0.7
    assert abs((parse(e["end"]) - fix0).total_seconds()) <= INTERVAL + 1.2
    span = (fix0 - cut0).total_seconds()                # includes the agent's time away
    assert abs(e["duration_s"] - span) <= 2 * INTERVAL + 0.7, (e, span)


def test_loss_without_outage_is_a_degraded_period(net, dns_server, tmp_path):
    """Half of the echoes to the internet host are lost (a responder with a known drop pattern
    replaces the kernel's echo): the line is degraded, not down."""
    cfg = write_config(tmp_path, net)
    agent = start_agent(net, cfg)
    try:
        time.sleep(3)
        lossy = responder(net, "--drop-every", "2")     # each round's first echo of 2 is dropped
        time.sleep(7)
        lossy.kill()
        lossy.wait()
        net.lab.sysctl(net.inet, "net.ipv4.icmp_echo_ignore_all", "0")
        time.sleep(4)
    finally:
        assert stop_agent(agent) == 0
    outages = json.loads(linewatch(net, net.agent, "outages", "--json", "--config", str(cfg)).stdout)
    assert outages == []
    deg = json.loads(linewatch(net, net.agent, "outages", "--type", "degraded", "--json",
                               "--config", str(cfg)).stdout)
    assert [(e["type"], e["cause"]) for e in deg] == [("degraded", "loss")], deg
    assert 4.0 <= deg[0]["duration_s"] <= 10.0 and deg[0]["end"] is not None


def test_outage_while_on_battery_has_cause_power(net, dns_server, tmp_path):
    """Load-shedding: the laptop goes on battery and the router dies with the mains."""
    sysfs = tmp_path / "sys"
    ac = power_supply(sysfs, online="1", capacity=70)
    cfg = write_config(tmp_path, net)
    text = cfg.read_text().replace("[agent]\n", f'[agent]\nsysfs = "{sysfs}"\n')
    cfg.write_text(text + "[power]\npoll_s = 0.5\n")
    agent = start_agent(net, cfg)
    try:
        time.sleep(3)
        (ac / "online").write_text("0\n")           # the mains went...
        net.cut_lan(True)                           # ...and took the router with it
        time.sleep(7)
        (ac / "online").write_text("1\n")
        net.cut_lan(False)
        time.sleep(4)
    finally:
        assert stop_agent(agent) == 0
    eps = json.loads(linewatch(net, net.agent, "outages", "--json", "--config", str(cfg)).stdout)
    assert sorted((e["type"], e["cause"]) for e in eps) == [("connectivity", "power"),
                                                            ("power", "ac_lost")], eps
