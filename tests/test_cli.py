"""The command line: init (scripted and at a real terminal), outages, status, errors and exit codes."""

import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import config
from agent.cli import main, parse_since
from agent.clock import FakeClock
from agent.config import parse
from agent.runner import Agent
from tests.test_round import FakeNet, tick

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("7d", NOW - timedelta(days=7)),
    ("12h", NOW - timedelta(hours=12)),
    ("30m", NOW - timedelta(minutes=30)),
    ("2w", NOW - timedelta(weeks=2)),
    ("1.5h", NOW - timedelta(minutes=90)),
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("2026-11-01T05:00:00+05:00", datetime(2026, 11, 1, tzinfo=timezone.utc)),
], ids=["days", "hours", "minutes", "weeks", "fraction", "date", "pkt-time"])
def test_parse_since(text, expected):
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["7 days", "yesterday", "-3d", ""])
def test_parse_since_rejects(text):
    with pytest.raises(ValueError, match="expected a span"):
        parse_since(text, NOW)


def test_init_scripted_writes_private_valid_config(tmp_path):
    p = tmp_path / "sub" / "config.toml"
    r = CliRunner().invoke(main, ["init", "--config", str(p), "--region", "pk-sd", "--city", "حیدرآباد",
                                  "--isp", "StormFiber", "--access", "Cable"])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    cfg = config.load(str(p), {"HOME": str(tmp_path)})
    assert (cfg.agent.region, cfg.agent.city, cfg.agent.isp, cfg.agent.access) == \
        ("PK-SD", "حیدرآباد", "StormFiber", "cable")
    again = CliRunner().invoke(main, ["init", "--config", str(p)])
    assert again.exit_code == 1 and "use --force" in again.output


def test_init_rejects_bad_answers(tmp_path):
    r = CliRunner().invoke(main, ["init", "--config", str(tmp_path / "c.toml"), "--region", "Punjab"])
    assert r.exit_code == 2
    assert "agent.region: must be an ISO 3166-2 code" in r.output
    assert not (tmp_path / "c.toml").exists()


def test_init_asks_at_a_terminal(tmp_path):
    """A real pseudo-terminal: the prompts appear and the typed answers land in the file."""
    p = tmp_path / "config.toml"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "agent", "init", "--config", str(p)], stdin=slave,
                            stdout=slave, stderr=slave, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(slave)
    answers = iter(["PK-IS\n", "Islamabad\n", "Nayatel\n", "fibre\n"])
    seen = b""
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            seen += chunk
            if chunk.rstrip().endswith(b":"):
                os.write(master, next(answers).encode())
    proc.wait(timeout=10)
    os.close(master)
    text = seen.decode(errors="replace")
    assert "PK-PB Punjab" in text and "Region" in text and "Access type" in text
    assert proc.returncode == 0, text
    cfg = config.load(str(p), {"HOME": str(tmp_path)})
    assert (cfg.agent.region, cfg.agent.city, cfg.agent.isp, cfg.agent.access) == \
        ("PK-IS", "Islamabad", "Nayatel", "fibre")


@pytest.fixture
def filled_store(tmp_path):
    """A store with two episodes and a degraded period, written by the real agent code."""
    clock = FakeClock(start=datetime.now(timezone.utc) - timedelta(hours=2))
    net = FakeNet()
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\nregion = "PK-PB"\n')
    agent = Agent(config.load(str(cfg_path)), clock=clock, probes=net.probes())
    tick(agent, clock, 3)
    net.state = "isp"
    tick(agent, clock, 40)      # 400 s: sustained
    net.state = "up"
    tick(agent, clock, 5)
    net.state = "lan"
    tick(agent, clock, 6)       # 60 s: momentary
    net.state = "up"
    tick(agent, clock, 5)
    net.state = "dns"
    tick(agent, clock, 4)       # still in progress
    agent.store.close()
    return cfg_path


def test_outages_json_and_csv(filled_store):
    r = CliRunner().invoke(main, ["outages", "--json", "--config", str(filled_store)])
    assert r.exit_code == 0, r.output
    eps = json.loads(r.output)
    assert [(e["type"], e["cause"], e["sustained"]) for e in eps] == \
        [("connectivity", "isp", True), ("connectivity", "lan", False), ("connectivity", "dns", False)]
    assert eps[0]["duration_s"] == 400 and eps[1]["duration_s"] == 60
    assert eps[2]["end"] is None
    for e in eps:
        assert e["start"].endswith("Z") and (e["end"] is None or e["end"].endswith("Z"))
        assert {"type", "cause", "start", "end", "duration_s", "sustained"} <= set(e)
    r = CliRunner().invoke(main, ["outages", "--csv", "--config", str(filled_store)])
    lines = r.output.splitlines()
    assert lines[0] == "type,cause,start,end,duration_s,sustained" and len(lines) == 4
    r = CliRunner().invoke(main, ["outages", "--since", "1m", "--json", "--config", str(filled_store)])
    assert [e["cause"] for e in json.loads(r.output)] == ["dns"]   # only the one in progress
    r = CliRunner().invoke(main, ["outages", "--config", str(filled_store)])
    assert "in progress" in r.output and "sustained" in r.output and "momentary" in r.output


def test_outages_bad_options(filled_store):
    r = CliRunner().invoke(main, ["outages", "--json", "--csv", "--config", str(filled_store)])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["outages", "--since", "lately", "--config", str(filled_store)])
    assert r.exit_code == 2 and "--since: expected a span" in r.output


def test_status_human_and_json(filled_store):
    r = CliRunner().invoke(main, ["status", "--json", "--config", str(filled_store)])
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["agent"]["region"] == "PK-PB"
    assert [e["cause"] for e in st["episodes_in_progress"]] == ["dns"]
    assert st["last_round"]["status"] == "down"
    assert st["rounds_24h"] == 63
    assert st["availability_24h_pct"] == pytest.approx(100 * (63 - 50) / 63, abs=0.01)
    assert {t["role"] for t in st["targets"]} == {"gateway", "internet"}
    r = CliRunner().invoke(main, ["status", "--config", str(filled_store)])
    assert "IN PROGRESS: connectivity episode, cause dns" in r.output
    assert "availability, last 24 h:" in r.output


def test_status_on_an_empty_store(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(f'[agent]\nstate_dir = "{tmp_path / "s"}"\n')
    r = CliRunner().invoke(main, ["status", "--config", str(p)])
    assert r.exit_code == 0, r.output
    assert "no round recorded yet" in r.output


def test_bad_config_exit_code_and_one_line(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[outage]\nclose_after = \"two\"\n")
    for cmd in ("status", "outages", "probe", "check", "run"):
        r = CliRunner().invoke(main, [cmd, "--config", str(p)])
        assert r.exit_code == 2, (cmd, r.output)
        assert r.output.strip() == f"linewatch: {p}: outage.close_after: must be an integer, got 'two'"
