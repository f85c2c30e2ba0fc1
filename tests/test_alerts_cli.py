"""`linewatch alerts test`, `alerts list`, and `check` and `run` on the alert channels, as a
user runs them (subprocesses), against real HTTP servers on loopback (tests/alertservers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.clock import FakeClock
from agent.config import load
from agent.runner import Agent
from tests.alertservers import NtfyDouble, TelegramDouble, WebhookDouble
from tests.fakenet import FakeNet, outage

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "4839574812:AAFD39kkdpWt3ywyRZergyOLMaJhac60qc"


def linewatch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, **(env or {})})


def config(tmp_path: Path, *channels: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\nid = "cli-agent"\n'
                 '[services]\nurls = []\n[speedtest]\nenabled = false\n[alerts]\n'
                 'min_duration_s = 0\n' + "".join(f"[[alerts.channels]]\n{c}\n" for c in channels))
    return p


def test_alerts_test_sends_to_each_channel_and_says_how_each_went(tmp_path):
    with NtfyDouble("lw") as ntfy, TelegramDouble(TOKEN) as tg, WebhookDouble() as hook:
        cfg = config(tmp_path, f'kind = "ntfy"\nurl = "{ntfy.url}/lw"',
                     f'kind = "telegram"\nurl = "{tg.url}"\nchat_id = "123456789"',
                     f'kind = "webhook"\nurl = "{hook.url}/in"')
        r = linewatch("alerts", "test", "--json", "--config", str(cfg),
                      env={"LINEWATCH_ALERT_TELEGRAM_SECRET": TOKEN})
        assert r.returncode == 0, r.stdout + r.stderr
        rows = json.loads(r.stdout)
        assert [(x["channel"], x["ok"]) for x in rows] == [("ntfy", True), ("telegram", True),
                                                          ("webhook", True)]
        assert ntfy.published[0]["title"] == "linewatch test alert"
        assert "cli-agent" in tg.sent[0]["text"]
        (req,) = hook.requests
        assert req.json()["event"] == "test" and req.headers["idempotency-key"] == req.json()["id"]
        assert ntfy.problems == tg.problems == hook.problems == []
        # without the bot token: that channel fails, naming where the token is read from
        r = linewatch("alerts", "test", "--config", str(cfg))
        assert r.returncode == 1
        assert "alerts.channels[1].secret_file: a telegram channel needs its secret" in r.stdout
        assert "LINEWATCH_ALERT_TELEGRAM_SECRET" in r.stdout
        # a wrong token: refused, and the token is not shown
        r = linewatch("alerts", "test", "--config", str(cfg),
                      env={"LINEWATCH_ALERT_TELEGRAM_SECRET": "1:wrong-token-for-this-bot"})
        assert r.returncode == 1 and "401" in r.stdout and "wrong-token" not in r.stdout


def test_run_refuses_a_channel_without_its_secret(tmp_path):
    """As for a UPS user without its password: one line naming the key, exit 1."""
    cfg = config(tmp_path, 'kind = "telegram"\nchat_id = "1"')
    r = linewatch("run", "--config", str(cfg))
    assert r.returncode == 1
    assert r.stderr.strip().endswith("or the systemd credential alert-telegram")


def test_alerts_test_without_channels_is_a_usage_error(tmp_path):
    r = linewatch("alerts", "test", "--config", str(config(tmp_path)))
    assert r.returncode == 2 and "no [[alerts.channels]]" in r.stderr


def test_alerts_list_and_check_read_the_outbox(tmp_path):
    with WebhookDouble() as ok, WebhookDouble(token="theirs") as refusing:
        cfg = config(tmp_path, f'kind = "webhook"\nname = "ok"\nurl = "{ok.url}/in"',
                     f'kind = "webhook"\nname = "refusing"\nurl = "{refusing.url}/in"',
                     'kind = "ntfy"\nurl = "http://127.0.0.1:9/lw"\nevents = ["outage_end"]')
        clock, net = FakeClock(), FakeNet()
        agent = Agent(load(str(cfg)), clock=clock, probes=net.probes())
        outage(agent, clock, net)
        agent.store.close()
    r = linewatch("alerts", "list", "--json", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["channels"]["ok"]["sent"] == 1 and out["channels"]["refusing"]["refused"] == 1
    assert out["channels"]["ntfy"]["queued"] == 1   # port 9 answers nothing: tried again later
    refused = [a for a in out["alerts"] if a["channel"] == "refusing"]
    assert refused[0]["state"] == "refused" and "401" in refused[0]["note"]
    text = linewatch("alerts", "list", "--config", str(cfg)).stdout
    assert "refusing" in text and "outage_end" in text
    chk = linewatch("check", "--config", str(cfg)).stdout
    assert "[ok  ] alerts ntfy: ntfy: ready" in chk and "1 alert waiting" in chk


def test_check_warns_of_a_readable_secret_file_and_of_tls_unchecked(tmp_path):
    secret = tmp_path / "hook-token"
    secret.write_text("Zx9-not-shown-anywhere\n")
    secret.chmod(0o644)
    cfg = config(tmp_path, 'kind = "webhook"\nurl = "https://hooks.example/api/webhooks/1/Zx9PATH"'
                 f'\nsecret_file = "{secret}"\nverify_tls = false')
    out = linewatch("check", "--config", str(cfg)).stdout
    line = next(x for x in out.splitlines() if "alerts webhook" in x)
    assert line.startswith("[WARN]") and "readable by other users" in line
    assert "verify_tls is false" in line
    assert "Zx9" not in out                     # neither the token nor the URL's secret path
    assert "on this network" not in out


def test_check_says_which_channel_is_alerted_during_an_isp_outage(tmp_path):
    cfg = config(tmp_path, 'kind = "ntfy"\nurl = "http://127.0.0.1:9/lw"\non_lan = true')
    line = next(x for x in linewatch("check", "--config", str(cfg)).stdout.splitlines()
                if "alerts ntfy" in x)
    assert "on this network (on_lan): alerted during an ISP outage too" in line


def test_status_names_the_channels_and_what_waits(tmp_path):
    cfg = config(tmp_path, 'kind = "ntfy"\nurl = "http://127.0.0.1:9/lw"')
    st = json.loads(linewatch("status", "--json", "--config", str(cfg)).stdout)
    assert st["alerts"]["channels"]["ntfy"] == {"kind": "ntfy", "queued": 0, "sent": 0,
                                                "replaced": 0, "refused": 0, "expired": 0}
    clock, net = FakeClock(), FakeNet()
    agent = Agent(load(str(cfg)), clock=clock, probes=net.probes())
    outage(agent, clock, net)          # port 9 answers nothing: the end waits
    agent.store.close()
    st = json.loads(linewatch("status", "--json", "--config", str(cfg)).stdout)
    assert st["alerts"]["channels"]["ntfy"]["queued"] == 1
    assert "alerts: ntfy (0 sent, 1 waiting)" in linewatch("status", "--config", str(cfg)).stdout
