"""The command line: init (scripted and at a real terminal), outages, status, errors and exit codes."""

import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import config
from agent.cli import main, parse_since
from agent.clock import FakeClock
from agent.runner import Agent
from tests.fakenet import FakeNet, tick

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("7d", NOW - timedelta(days=7)),
    ("12h", NOW - timedelta(hours=12)),
    ("30m", NOW - timedelta(minutes=30)),
    ("2w", NOW - timedelta(weeks=2)),
    ("1.5h", NOW - timedelta(minutes=90)),
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T05:00:00+05:00", datetime(2026, 11, 1, tzinfo=UTC)),
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


@pytest.mark.parametrize("args, agent", [
    (["--region", "Punjab"], ("PK-PB", "")),
    (["--region", "punjab", "--access", "DSL"], ("PK-PB", "dsl")),
    (["--region", "KPK"], ("PK-KP", "")),
    (["--region", "Khyber Pakhtunkhwa", "--access", "Fiber"], ("PK-KP", "fibre")),
    (["--region", "Islamabad"], ("PK-IS", "")),
    (["--region", "IN-MH"], ("IN-MH", "")),
], ids=["Punjab", "punjab-DSL", "KPK", "Khyber-Pakhtunkhwa-Fiber", "Islamabad", "other-country"])
def test_init_scripted_takes_names(tmp_path, args, agent):
    p = tmp_path / "c.toml"
    r = CliRunner().invoke(main, ["init", "--config", str(p), *args])
    assert r.exit_code == 0, r.output
    assert r.output == (f"wrote {p}\na running agent picks it up with `systemctl reload linewatch-agent` "
                        "(as a service) or `kill -HUP <pid>` (started by hand)\n")
    cfg = config.load(str(p), {"HOME": str(tmp_path)})
    assert (cfg.agent.region, cfg.agent.access) == agent


@pytest.mark.parametrize("args, message", [
    (["--region", "PK-XX"], "linewatch: --region: PK-XX is not one of Pakistan's ISO 3166-2 codes (PK-BA "
     "Balochistan, PK-GB Gilgit-Baltistan, PK-IS Islamabad Capital Territory, PK-JK Azad Jammu and Kashmir, "
     "PK-KP Khyber Pakhtunkhwa, PK-PB Punjab, PK-SD Sindh)"),
    (["--region", "Karachi"], "linewatch: --region: Karachi is a city, not a region; if it is the one in "
     "Sindh, use --region PK-SD (or Sindh)"),
    (["--region", "Atlantis"], "linewatch: --region: 'Atlantis' is not a region linewatch knows: expected a "
     "province or territory (Punjab, Sindh, KPK, Balochistan, Islamabad, GB, AJK) or an ISO 3166-2 code "
     "(PK-BA, PK-GB, PK-IS, PK-JK, PK-KP, PK-PB, PK-SD)"),
    (["--access", "4g"], "linewatch: --access: '4g' is not an access type: one of fibre, dsl, cable, "
     "mobile, hotspot, wireless, satellite, other"),
    (["--city", "x" * 65], f"linewatch: --city: '{'x' * 65}': must be one line of at most 64 characters"),
], ids=["unknown-pk-code", "city-as-region", "unknown-name", "access", "long-city"])
def test_init_scripted_rejects_bad_answers(tmp_path, args, message):
    r = CliRunner().invoke(main, ["init", "--config", str(tmp_path / "c.toml"), *args])
    assert r.exit_code == 2
    assert r.output.strip() == message
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


def converse(args: list[str], script: list[tuple[str, str]]) -> tuple[int, str]:
    """Run ``linewatch`` on a real pseudo-terminal: wait for each prompt (its text, then the ": "
    that ends it), type the answer, and return (exit code, everything the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "agent", *args], stdin=slave, stdout=slave,
                            stderr=slave, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(slave)
    seen, mark = b"", 0   # everything shown; where the output after the last answer starts
    steps = iter(script)
    step = next(steps, None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
        tail = seen[mark:].decode(errors="replace")
        if step is not None and step[0] in tail and tail.rstrip(" ").endswith(":"):
            os.write(master, (step[1] + "\n").encode())
            mark = len(seen)
            step = next(steps, None)
    proc.wait(timeout=10)
    os.close(master)
    assert step is None, f"never asked {step[0]!r}:\n" + seen.decode(errors="replace")
    return proc.returncode, seen.decode(errors="replace").replace("\r\n", "\n")


def test_init_at_a_terminal_asks_again_until_each_answer_is_valid(tmp_path):
    """A wrong region is refused at its own prompt and asked again; a city as the region is
    confirmed (and offered as the city); names and any case are taken; nothing is lost."""
    p = tmp_path / "config.toml"
    code, text = converse(["init", "--config", str(p)], [
        ("Region (a name such as Punjab or KPK, or a code; Enter to skip)", "PK-XX"),
        ("Region (", "Karachi"),
        ("Karachi is in Sindh (PK-SD). Use PK-SD? [Y/n]", "n"),
        ("Region (", "karachi"),
        ("karachi is in Sindh (PK-SD). Use PK-SD? [Y/n]", "y"),
        ("City [karachi]", "Karachi"),
        ("Internet provider", "StormFiber"),
        ("Access type (fibre, dsl, cable, mobile, hotspot, wireless, satellite, other; Enter to skip)", "4G"),
        ("Access type (", "DSL"),
    ])
    assert code == 0, text
    assert "  PK-XX is not one of Pakistan's ISO 3166-2 codes (PK-BA Balochistan," in text
    assert "  '4G' is not an access type: one of fibre, dsl," in text
    assert "[, " not in text and "()" not in text   # no empty choice shown
    assert text.count("Region (") == 3 and text.count("Access type (") == 2
    assert f"wrote {p}\na running agent picks it up with `systemctl reload linewatch-agent`" in text
    cfg = config.load(str(p), {"HOME": str(tmp_path)})
    assert (cfg.agent.region, cfg.agent.city, cfg.agent.isp, cfg.agent.access) == \
        ("PK-SD", "Karachi", "StormFiber", "dsl")


def test_init_at_a_terminal_takes_names_and_skips_with_enter(tmp_path):
    p = tmp_path / "config.toml"
    code, text = converse(["init", "--config", str(p), "--isp", "Nayatel"], [
        ("Region (", "Khyber Pakhtunkhwa"),
        ("City (Enter to skip)", ""),
        ("Access type (", ""),
    ])
    assert code == 0, text
    assert "Internet provider" not in text   # given as a flag: not asked
    cfg = config.load(str(p), {"HOME": str(tmp_path)})
    assert (cfg.agent.region, cfg.agent.city, cfg.agent.isp, cfg.agent.access) == \
        ("PK-KP", "", "Nayatel", "")


@pytest.fixture
def filled_store(tmp_path):
    """A store with two episodes and a degraded period, written by the real agent code."""
    clock = FakeClock(start=datetime.now(UTC) - timedelta(hours=2))
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
    # kit.definitions.availability: the dns outage is still open and runs to now, about 2 h
    # after the last of 63 rounds (630 s watched), so none of the watched time was available.
    assert st["availability_24h_pct"] == 0.0
    assert {t["role"] for t in st["targets"]} == {"gateway", "internet"}
    r = CliRunner().invoke(main, ["status", "--config", str(filled_store)])
    assert "IN PROGRESS: connectivity episode, cause dns" in r.output
    assert "availability, last 24 h:" in r.output


def test_status_availability_is_outage_time_over_watched_time(tmp_path):
    """The 24 h availability is the one definition the report and the collector use
    (kit.definitions.availability): 1 - connectivity outage seconds / watched seconds. Two down
    rounds that never open an episode (open_after = 3) cost nothing; a 60 s outage in 200 s
    watched costs 30 %. (Counting rounds, 8 of 20 were down: 60 %.)"""
    clock = FakeClock(start=datetime.now(UTC) - timedelta(hours=1))
    net = FakeNet()
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    agent = Agent(config.load(str(cfg_path)), clock=clock, probes=net.probes())
    for state, n in (("up", 3), ("isp", 2), ("up", 5), ("isp", 6), ("up", 4)):
        net.state = state
        tick(agent, clock, n)
    agent.store.close()
    st = json.loads(CliRunner().invoke(main, ["status", "--json", "--config", str(cfg_path)]).output)
    assert (st["rounds_24h"], st["watched_h_24h"], st["outage_s_24h"]) == (20, 0.06, 60.0)
    assert st["availability_24h_pct"] == 70.0
    assert st["episodes_in_progress"] == []


def test_status_counts_error_rounds_as_watched_time(tmp_path):
    """Rounds in which no probe could run (`error`) were still watched: their seconds count in
    the 24 h figure, as in the line report and the collector; they are not rounds with a verdict."""
    clock = FakeClock(start=datetime.now(UTC) - timedelta(hours=1))
    net = FakeNet()
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    agent = Agent(config.load(str(cfg_path)), clock=clock, probes=net.probes())
    for state, n in (("up", 10), ("no_probe", 10)):
        net.state = state
        tick(agent, clock, n)
    agent.store.close()
    st = json.loads(CliRunner().invoke(main, ["status", "--json", "--config", str(cfg_path)]).output)
    assert st["last_round"]["status"] == "error"
    assert (st["rounds_24h"], st["watched_h_24h"], st["availability_24h_pct"]) == (10, 0.06, 100.0)


def test_status_says_when_the_figure_rests_on_little_watching(filled_store):
    """63 rounds of 10 s are 0.2 h: the availability is shown with a warning beside it, and the
    small lines read as a person writes them."""
    st = json.loads(CliRunner().invoke(main, ["status", "--json", "--config", str(filled_store)]).output)
    assert st["thin_data"] is True and st["watched_h_24h"] == pytest.approx(63 * 10 / 3600, abs=0.01)
    assert st["running"] is False and st["pid"] is None          # no agent holds the lock
    out = CliRunner().invoke(main, ["status", "--config", str(filled_store)]).output
    line = next(ln for ln in out.splitlines() if ln.startswith("availability, last 24 h:"))
    assert "63 rounds" in line and ("only 10 min of watching, less than a day: "
                                    "too little to judge the line by") in line
    assert "agent NOT running; last round" in out
    store = next(ln for ln in out.splitlines() if ln.startswith("store:"))
    assert store.endswith("forwarding off") and "not yet forwarded" not in store
    nxt = next(ln for ln in out.splitlines() if "next test" in ln).strip()
    planned = st["speedtest"]["next"]
    assert nxt.startswith(f"next test {planned[:10]} {planned[11:16]} UTC;" if planned
                          else "next test not planned yet (the agent plans it);"), nxt


def test_status_on_an_empty_store(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(f'[agent]\nstate_dir = "{tmp_path / "s"}"\n')
    r = CliRunner().invoke(main, ["status", "--config", str(p)])
    assert r.exit_code == 0, r.output
    assert "no round recorded yet" in r.output
    assert "next test not planned yet" in r.output and " UTC;" not in r.output
    assert not (tmp_path / "s").exists()          # status creates nothing, not even the state dir


def test_bad_config_exit_code_and_one_line(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[outage]\nclose_after = \"two\"\n")
    for cmd in ("status", "outages", "probe", "check", "run"):
        r = CliRunner().invoke(main, [cmd, "--config", str(p)])
        assert r.exit_code == 2, (cmd, r.output)
        assert r.output.strip() == f"linewatch: {p}: outage.close_after: must be an integer, got 'two'"
