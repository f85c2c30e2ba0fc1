"""Alerts end to end: the real `linewatch run` in a namespace lab, a real D-Bus session bus with
a test double of the desktop's notification daemon on it (tests/dbuslab.py), and doubles of
ntfy, the Telegram Bot API and a webhook receiver on the lab's internet host
(tests/alertlab.py), reachable only through the lab's gateway, as the real services are over a
user's line.

* The ISP is cut for 90 s: the desktop hears it within the debounce and a round of the cut;
  the agent is killed (-9) while the remote alerts wait for the line and started again; after
  the repair each remote service gets one message, with the cut's times and its cause. A
  webhook receiver on the gateway (the LAN side, ``on_lan``) gets the start during the cut.
* A 20 s blip gives no alert; a line that keeps dropping gives one "unstable" alert.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.alertlab import CHAT, PORTS, TOPIC, received
from tests.netlab import DNSMASQ, start_dnsmasq

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = 1.0
TOKEN = "4839574812:AAFD39kkdpWt3ywyRZergyOLMaJhac60qc"
SERVICES = "198.51.100.1"
LAN_SERVICES = "10.231.1.1"     # the gateway's LAN address: reachable while the ISP is cut


@pytest.fixture
def dns_server(net):
    if not Path(DNSMASQ).exists():
        pytest.skip("dnsmasq is not installed (tests/run.sh installs dnsmasq-base)")
    return start_dnsmasq(net)


def serve(net, ns: str, host: str, out: Path):
    """The doubles as a process on the lab host ``ns``, listening on ``host``."""
    proc = net.lab.popen(ns, sys.executable, "-m", "tests.alertlab", "--host", host,
                         "--out", str(out), "--token", TOKEN, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(1.0)
    assert proc.poll() is None, proc.stderr.read().decode()
    return proc


@pytest.fixture
def services(net, tmp_path):
    out = tmp_path / "received.jsonl"
    proc = serve(net, net.inet, SERVICES, out)
    yield out
    proc.terminate()
    proc.wait(10)


def write_config(tmp_path: Path, bus: str, *extra: str, **alerts) -> Path:
    lines = [
        "[agent]", f'state_dir = "{tmp_path / "state"}"', 'id = "lab-agent"',
        "[probe]", f"interval_s = {INTERVAL}", "timeout_s = 0.4", "count = 2",
        'targets = ["198.51.100.1", "198.51.100.2"]', 'dns_names = ["example.test"]',
        'dns_servers = ["198.51.100.53"]',
        "[outage]", "open_after = 3", "close_after = 2", "momentary_max_s = 5",
        "[services]", "urls = []",
        "[speedtest]", "enabled = false",
        "[alerts]", 'time_zone = "Asia/Karachi"',
        *(f"{k} = {json.dumps(v)}" for k, v in alerts.items()),
        "[[alerts.channels]]", 'kind = "desktop"', f'url = "{bus}"',
        "[[alerts.channels]]", 'kind = "ntfy"', f'url = "http://{SERVICES}:{PORTS["ntfy"]}/{TOPIC}"',
        "[[alerts.channels]]", 'kind = "telegram"', f'url = "http://{SERVICES}:{PORTS["telegram"]}"',
        f'chat_id = "{CHAT}"',
        "[[alerts.channels]]", 'kind = "webhook"', f'url = "http://{SERVICES}:{PORTS["webhook"]}/hook"',
        *extra,
    ]
    p = tmp_path / "config.toml"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def start_agent(net, cfg: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LINEWATCH_ALERT_TELEGRAM_SECRET": TOKEN}
    return net.lab.popen(net.agent, sys.executable, "-m", "agent", "run", "--config", str(cfg),
                         cwd=ROOT, env=env)


def stop_agent(agent) -> str:
    os.killpg(agent.pid, signal.SIGTERM)
    assert agent.wait(timeout=20) == 0
    return agent.stderr.read().decode()


def notified(notes) -> list[tuple[str, str]]:
    """(summary, body) of each notification the desktop double received."""
    return [(c.args[3], c.args[4]) for c in notes.notes]


def webhook_events(out: Path) -> list[dict]:
    return [json.loads(r["body"]) for r in received(out) if r["service"] == "webhook"]


def until(predicate, timeout_s: float) -> float | None:
    """Seconds until ``predicate`` held (polled every 0.1 s), None if it never did."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_a_90_s_cut_on_the_desktop_at_once_and_remote_once_after_the_repair_through_a_kill(
        net, dns_server, desktop, services, tmp_path):
    bus, notes = desktop
    lan_out = tmp_path / "lan.jsonl"
    lan = serve(net, net.gw, LAN_SERVICES, lan_out)
    cfg = write_config(tmp_path, bus.address, "[[alerts.channels]]", 'kind = "webhook"',
                       'name = "office"', f'url = "http://{LAN_SERVICES}:{PORTS["webhook"]}/hook"',
                       "on_lan = true")
    agent = start_agent(net, cfg)
    try:
        time.sleep(4)
        cut = datetime.now(UTC)
        net.cut_wan(True)
        waited = until(lambda: notes.notes, 80)
        assert waited is not None, "no desktop alert"
        # the episode starts at the first failed round; its alert is due 60 s later and is
        # made by the next tick (a round at most): within the debounce and a round of the cut
        assert 59 <= waited <= 60 + 2 * INTERVAL + 1.0, waited
        assert notified(notes)[0][0] == "Internet down (ISP)"
        # the LAN's receiver gets the start during the cut (the remote job's next tick)
        assert until(lambda: webhook_events(lan_out), 5), received(lan_out)
        assert [e["event"] for e in webhook_events(lan_out)] == ["outage_start"]
        assert received(services) == []          # the remote services are out of reach
        time.sleep(1.0)
        os.killpg(agent.pid, signal.SIGKILL)      # while the remote alerts wait
        agent.wait(timeout=10)
        agent = start_agent(net, cfg)
        time.sleep(max(0.0, 90 - (datetime.now(UTC) - cut).total_seconds()))
        fix = datetime.now(UTC)
        net.cut_wan(False)
        assert until(lambda: len({r["service"] for r in received(services)}) == 3, 30), \
            received(services)
        assert until(lambda: len(notes.notes) == 2, 10)
        assert until(lambda: len(webhook_events(lan_out)) == 2, 10), received(lan_out)
        time.sleep(5)                              # any repeat would come by now (5 ticks)
    finally:
        log = stop_agent(agent)
        lan.terminate()
        lan.wait(10)
    got = received(services)
    assert sorted(r["service"] for r in got) == ["ntfy", "telegram", "webhook"], got
    assert all(r["status"] == 200 or r["status"] == 204 for r in got), got
    (hook,) = webhook_events(services)
    assert hook["event"] == "outage_end" and hook["cause"] == "isp" and hook["agent"] == "lab-agent"
    start, end = parse(hook["start"]), parse(hook["end"])
    assert abs((start - cut).total_seconds()) <= INTERVAL + 1.0, (start, cut)
    assert abs((end - fix).total_seconds()) <= 2 * INTERVAL + 1.0, (end, fix)
    assert 85 <= hook["duration_s"] <= 95
    (ntfy,) = [r for r in got if r["service"] == "ntfy"]
    assert ntfy["headers"]["x-title"].startswith("Internet back after")
    assert ntfy["body"] == hook["text"] and "the ISP's side" in hook["text"]
    (tg,) = [r for r in got if r["service"] == "telegram"]
    assert json.loads(tg["body"])["text"] == hook["text"]
    # the LAN's receiver: the start during the cut (not again after the kill), then the end
    assert [(e["event"], e["start"]) for e in webhook_events(lan_out)] == [
        ("outage_start", hook["start"]), ("outage_end", hook["start"])]
    # the desktop: the start once (not again after the kill), then the end
    assert [s for s, _ in notified(notes)] == ["Internet down (ISP)", hook["title"]]
    assert TOKEN not in log


def test_a_blip_gives_nothing_and_a_flapping_line_one_alert(net, dns_server, desktop, services,
                                                            tmp_path):
    bus, notes = desktop
    cfg = write_config(tmp_path, bus.address, flap_changes=4, flap_window_s=300)
    agent = start_agent(net, cfg)
    try:
        time.sleep(4)
        net.cut_wan(True)                          # a 20 s blip
        time.sleep(20)
        net.cut_wan(False)
        time.sleep(4)
        for _ in range(4):                         # then 5 s drops, every 8 s
            net.cut_wan(True)
            time.sleep(5)
            net.cut_wan(False)
            time.sleep(3)
        # the blip closed under the debounce and the drops made the line unstable: it never rings
        assert until(lambda: len(webhook_events(services)) >= 1, 20)
        time.sleep(5)
    finally:
        stop_agent(agent)
    events = [e["event"] for e in webhook_events(services)]
    assert events == ["line_unstable"], events
    assert [r["service"] for r in received(services)].count("ntfy") == 1
    (summary, _), = notified(notes)
    assert summary.startswith("Line unstable: 4 drops in")
