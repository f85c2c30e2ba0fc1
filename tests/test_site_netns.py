"""One line, one vote, end to end: three real agents behind one router and a fourth on a line of
its own, in network namespaces; the shared router's internet link is cut once. Each agent tags
its rows with the site derived from its gateway's hardware address (never the address itself),
and the real linewatch-collector, reading their store files, counts the cut once.

    h1, h2, h3 (10.231.1.11-13) --br0-- gw (10.231.1.1 | 10.231.2.1) --wan0-- inet
    solo (10.231.3.2) --lan0-- gw2 (10.231.3.1 | 10.231.4.1) ----------------- inet
                                                         inet: 198.51.100.1, .2 (targets)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_MAC, SOLO_MAC = "02:00:5e:10:00:01", "02:00:5e:10:00:02"


def expected_site(mac: str) -> str:
    """The documented derivation (docs/metrics.md), computed here independently."""
    return hashlib.sha256(b"linewatch-site:" + bytes.fromhex(mac.replace(":", ""))).hexdigest()[:12]


def build(lab):
    inet, gw, gw2 = lab.ns("inet"), lab.ns("gw"), lab.ns("gw2")
    hosts = [lab.ns(f"h{i}") for i in (1, 2, 3)]
    solo = lab.ns("solo")
    lab.veth(gw, "wan0", "10.231.2.1/24", inet, "eth0", "10.231.2.2/24")
    lab.veth(gw2, "wan0", "10.231.4.1/24", inet, "eth1", "10.231.4.2/24")
    lab.veth(solo, "eth0", "10.231.3.2/24", gw2, "lan0", "10.231.3.1/24")
    lab.run(gw2, "ip", "link", "set", "lan0", "address", SOLO_MAC)
    # The shared router: one bridge, one address, one hardware address, three ports.
    lab.run(gw, "ip", "link", "add", "br0", "type", "bridge")
    lab.run(gw, "ip", "link", "set", "br0", "address", SHARED_MAC)
    for i, h in enumerate(hosts, 1):
        lab.run(gw, "ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", h)
        lab.run(gw, "ip", "link", "set", f"p{i}", "master", "br0")
        lab.run(gw, "ip", "link", "set", f"p{i}", "up")
        lab.run(h, "ip", "addr", "add", f"10.231.1.{10 + i}/24", "dev", "eth0")
        lab.run(h, "ip", "link", "set", "eth0", "up")
        lab.run(h, "ip", "route", "add", "default", "via", "10.231.1.1")
    lab.run(gw, "ip", "addr", "add", "10.231.1.1/24", "dev", "br0")
    lab.run(gw, "ip", "link", "set", "br0", "up")
    lab.run(solo, "ip", "route", "add", "default", "via", "10.231.3.1")
    for g, via in ((gw, "10.231.2.2"), (gw2, "10.231.4.2")):
        lab.sysctl(g, "net.ipv4.ip_forward", "1")
        lab.run(g, "ip", "route", "add", "198.51.100.0/24", "via", via)
    for addr in ("198.51.100.1/32", "198.51.100.2/32"):
        lab.run(inet, "ip", "addr", "add", addr, "dev", "lo")
    lab.run(inet, "ip", "route", "add", "10.231.1.0/24", "via", "10.231.2.1")
    lab.run(inet, "ip", "route", "add", "10.231.3.0/24", "via", "10.231.4.1")
    return gw, hosts, solo


def config(tmp_path: Path, name: str) -> Path:
    """Lab addresses only; no DNS lookups, no speed tests."""
    p = tmp_path / f"{name}.toml"
    p.write_text("\n".join([
        "[agent]", f'id = "{name}"', f'state_dir = "{tmp_path / name}"', 'region = "PK-SD"',
        'isp = "Test ISP"',
        "[probe]", "interval_s = 1.0", "timeout_s = 0.4", "count = 2",
        'targets = ["198.51.100.1", "198.51.100.2"]', "dns_names = []",
        'dns_servers = ["198.51.100.53"]', "netio_interval_s = 5",
        "[outage]", "open_after = 3", "close_after = 2", "momentary_max_s = 5",
        "[speedtest]", "enabled = false", "[services]", "urls = []",
    ]) + "\n", encoding="utf-8")
    return p


def round_sites(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tags = [json.loads(t) for (t,) in conn.execute("SELECT tags FROM series")]
    finally:
        conn.close()
    assert tags
    return {t.get("site") for t in tags}


@pytest.mark.netns
def test_agents_behind_one_router_are_one_line(lab, tmp_path):
    gw, hosts, solo = build(lab)
    names = ["h1", "h2", "h3", "solo"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    agents = [lab.popen(ns, sys.executable, "-m", "agent", "run", "--config", str(config(tmp_path, n)),
                        cwd=ROOT, env=env) for ns, n in zip(hosts + [solo], names)]
    time.sleep(6)
    lab.link(gw, "wan0", False)                       # the shared line's ISP fails
    time.sleep(7)
    lab.link(gw, "wan0", True)
    lab.run(gw, "ip", "route", "replace", "198.51.100.0/24", "via", "10.231.2.2")
    time.sleep(6)
    for a in agents:
        os.killpg(a.pid, signal.SIGTERM)
    for a, n in zip(agents, names):
        assert a.wait(timeout=20) == 0, (n, a.stderr.read().decode())

    # Every row of the three agents carries the shared router's site, from the first round on;
    # the fourth agent is another line.
    for n in names[:3]:
        assert round_sites(tmp_path / n / "linewatch.db") == {expected_site(SHARED_MAC)}, n
    assert round_sites(tmp_path / "solo" / "linewatch.db") == {expected_site(SOLO_MAC)}
    # The hardware address itself is in no file the agents wrote.
    for n in names:
        for f in (tmp_path / n).iterdir():
            data = f.read_bytes().lower()
            for mac in (SHARED_MAC, SHARED_MAC.replace(":", ""), SOLO_MAC, SOLO_MAC.replace(":", "")):
                assert mac.encode() not in data, (f, mac)

    # Each of the three agents saw the cut.
    for n in names[:3]:
        conn = sqlite3.connect(f"file:{tmp_path / n / 'linewatch.db'}?mode=ro", uri=True)
        rows = conn.execute("SELECT cause FROM episodes WHERE type = 'connectivity'").fetchall()
        conn.close()
        assert rows == [("isp",)], n

    since = int(t0 // 3600 * 3600)
    until = int(time.time()) + 60
    iso = lambda t: datetime.fromtimestamp(t, UTC).isoformat()  # noqa: E731
    cfg = tmp_path / "collector.toml"
    cfg.write_text("[collector]\nmin_agents = 1\nmin_watch_h = 0\nbootstrap = 100\n")
    stores = [a for n in names for a in ("--store", str(tmp_path / n / "linewatch.db"))]
    args = ["aggregate", "--config", str(cfg), *stores, "--since", iso(since), "--until", iso(until),
            "--by", "region"]
    p = subprocess.run([str(BIN / "linewatch-collector"), *args, "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    (cell,) = json.loads(p.stdout)
    assert (cell["agents"], cell["sites"]) == (4, 2)
    # One outage of one line: customers served N = line-seconds / T.
    n_served = cell["agent_hours"] * 3600 / (until - since)
    assert cell["internet_outages_per_agent"] * n_served == pytest.approx(1.0)
    assert cell["internet_outages_per_agent_isp"] * n_served == pytest.approx(1.0)
    assert "site_merged 2" in p.stderr
    # The two lines watched about as long as the agents ran, not four agents' worth.
    ran_h = (time.time() - t0) / 3600
    assert 1.5 * ran_h < cell["agent_hours"] <= 2 * ran_h
    # Three agents of one line are no regional event.
    p = subprocess.run([str(BIN / "linewatch-collector"), *args], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Regional events\n  none\n" in p.stdout
