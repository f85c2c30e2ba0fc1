"""A real `linewatch run` process reloads its config on a real SIGHUP.

The agent probes only a TCP listener on 127.0.0.1 that this test opens (no gateway, no DNS name,
no speed test, no battery), so nothing leaves the machine. What the agent did is read back from
its own store (the tags of the rounds it wrote) and its log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def config_text(state: Path, port: int, agent: str, interval_s: int = 1,
                timeout: str = "timeout_s = 0.3\n") -> str:
    return (f'[agent]\nstate_dir = "{state}"\n{agent}\n'
            f'[probe]\ninterval_s = {interval_s}\n{timeout}count = 1\ngateway = "off"\n'
            f'targets = ["127.0.0.1:{port}"]\ndns_names = []\ndns_servers = ["127.0.0.1"]\n'
            'netio_interval_s = 60\n'
            '[power]\nbattery = "off"\n[speedtest]\nenabled = false\n[services]\nurls = []\n')


class RunningAgent:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.config = tmp / "config.toml"
        self.log = tmp / "agent.log"
        self.proc: subprocess.Popen | None = None

    def write(self, agent: str, **kw) -> None:
        self.config.write_text(config_text(self.tmp / "state", self.port, agent, **kw))

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.config)],
                cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log)
        self.wait_for_log("linewatch agent ")

    def log_lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines()

    def wait_for_log(self, text: str, after: int = 0, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines()[after:]:
                if text in line:
                    return line
            assert self.proc.poll() is None, "the agent exited:\n" + "\n".join(self.log_lines())
            time.sleep(0.1)
        raise AssertionError(f"no log line with {text!r}:\n" + "\n".join(self.log_lines()))

    def rounds(self) -> list[tuple[float, dict]]:
        """(time in s, tags) of every round in the store, oldest first."""
        c = sqlite3.connect(f"file:{self.tmp / 'state/linewatch.db'}?mode=ro", uri=True, timeout=10)
        try:
            rows = c.execute("SELECT s.time_ns, r.tags FROM samples s JOIN series r ON r.id = s.series_id "
                             "WHERE r.measurement = 'round' ORDER BY s.time_ns").fetchall()
        finally:
            c.close()
        return [(ns / 1e9, json.loads(t)) for ns, t in rows]

    def round_tags(self) -> list[dict]:
        return [t for _, t in self.rounds()]

    def wait_for_rounds(self, n: int, **tags) -> list[dict]:
        """Wait until ``n`` more rounds carry ``tags``; return every round's tags."""
        before = sum(all(t.get(k) == v for k, v in tags.items()) for t in self.round_tags())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rounds = self.round_tags()
            if sum(all(t.get(k) == v for k, v in tags.items()) for t in rounds) >= before + n:
                return rounds
            assert self.proc.poll() is None, "the agent exited:\n" + "\n".join(self.log_lines())
            time.sleep(0.2)
        raise AssertionError(f"no {n} rounds with {tags}: {self.round_tags()[-3:]}")

    def hup(self) -> int:
        """Send SIGHUP; return how many log lines there were before it."""
        n = len(self.log_lines())
        self.proc.send_signal(signal.SIGHUP)
        return n

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.listener.close()


@pytest.fixture
def agent(tmp_path):
    a = RunningAgent(tmp_path)
    yield a
    a.close()


def test_sighup_applies_new_tags_and_names_keys_that_need_a_restart(agent):
    agent.write('region = "PK-PB"\ncity = "Lahore"')
    agent.start()
    agent.wait_for_rounds(2, region="PK-PB", city="Lahore")

    # what `init` changes, plus a key the running jobs cannot take
    agent.write('region = "PK-SD"\ncity = "Karachi"\naccess = "dsl"', interval_s=2)
    n = agent.hup()
    line = agent.wait_for_log("config reloaded", after=n)
    assert line.endswith(
        f'WARNING linewatch: config reloaded from {agent.config}: applied agent.region = "PK-SD", '
        'agent.city = "Karachi", agent.access = "dsl"; needs a restart to take effect: probe.interval_s')
    rounds = agent.wait_for_rounds(4, region="PK-SD", city="Karachi", access="dsl")
    first_new = next(i for i, t in enumerate(rounds) if t.get("region") == "PK-SD")
    assert all(t.get("region") == "PK-SD" for t in rounds[first_new:])   # every round after it
    assert all(t["agent"] == rounds[0]["agent"] for t in rounds)          # the same agent
    times = [t for t, _ in agent.rounds()[first_new:]]
    assert statistics.median(b - a for a, b in zip(times, times[1:])) < 1.5   # still every 1 s

    # the same file again: the tags are in place, the interval still waits for the restart
    n = agent.hup()
    line = agent.wait_for_log("config reloaded", after=n)
    assert line.endswith(f"WARNING linewatch: config reloaded from {agent.config}: needs a restart to "
                         "take effect: probe.interval_s")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=20) == 0
    log = agent.log.read_text()
    assert "Traceback" not in log and "linewatch agent stopped cleanly" in log


def test_sighup_with_a_bad_file_keeps_the_running_config(agent):
    # interval_s = 1 alone: the unset timeout follows it (0.5 s); a fixed 2 s default refused it
    agent.write('region = "PK-KP"', timeout="")
    agent.start()
    agent.wait_for_rounds(1, region="PK-KP")

    agent.write('region = "PK-XX"', timeout="")
    n = agent.hup()
    agent.wait_for_log("config reload", after=n)
    rounds = agent.wait_for_rounds(3, region="PK-KP")   # still measuring, still tagged as before
    assert [line.split(" ", 2)[2] for line in agent.log_lines()[n:] if "config reload" in line] == [
        f"ERROR linewatch: config reload refused: {agent.config}: agent.region: must be one of Pakistan's "
        "ISO 3166-2 codes (PK-BA Balochistan, PK-GB Gilgit-Baltistan, PK-IS Islamabad Capital "
        "Territory, PK-JK Azad Jammu and Kashmir, PK-KP Khyber Pakhtunkhwa, PK-PB Punjab, PK-SD "
        "Sindh), got 'PK-XX'; keeping the running config"]
    assert all(t.get("region") == "PK-KP" for t in rounds)

    agent.config.unlink()   # a file that went away is refused the same way
    n = agent.hup()
    line = agent.wait_for_log("config reload", after=n)
    assert line.endswith(f"ERROR linewatch: config reload refused: {agent.config}: file not found; "
                         "keeping the running config")

    agent.write('region = "Punjab"', timeout="")   # a name belongs to `init`; the file takes codes
    n = agent.hup()
    line = agent.wait_for_log("config reload", after=n)
    assert line.endswith(f"ERROR linewatch: config reload refused: {agent.config}: agent.region: must be "
                         "an ISO 3166-2 code: \"PK-PB\" for Punjab, got 'Punjab'; keeping the running config")

    agent.write('region = "PK-BA"', timeout="")   # fixed: applied
    n = agent.hup()
    line = agent.wait_for_log("config reload", after=n)
    assert line.endswith(f"INFO linewatch: config reloaded from {agent.config}: "
                         'applied agent.region = "PK-BA"')
    agent.wait_for_rounds(1, region="PK-BA")
    n = agent.hup()
    line = agent.wait_for_log("config reload", after=n)
    assert line.endswith(f"INFO linewatch: config reloaded from {agent.config}: nothing changed")
    assert "Traceback" not in agent.log.read_text()


def test_a_reload_refused_for_a_url_never_logs_its_password(agent):
    agent.write('region = "PK-KP"', timeout="")
    agent.start()
    agent.wait_for_rounds(1, region="PK-KP")
    # the [influx] table ends where [probe] begins: a URL with a password, which the file refuses
    agent.write('region = "PK-KP"\n[influx]\nurl = "https://writer:S3cretPassw0rd@influx.lan:8086"\n'
                'bucket = "lw"', timeout="")
    n = agent.hup()
    line = agent.wait_for_log("config reload refused", after=n)
    assert line.endswith(f"ERROR linewatch: config reload refused: {agent.config}: influx.url: must not "
                         "hold credentials: put them in influx.token_file, got "
                         "'https://writer:***@influx.lan:8086'; keeping the running config")
    assert "S3cret" not in agent.log.read_text() and "Passw0rd" not in agent.log.read_text()


def test_init_beside_a_running_agent_names_its_pid_and_how_to_reload(tmp_path):
    """`init` writes the config the service reads (state in $STATE_DIRECTORY, as under systemd),
    sees the agent's lock there and says how that very process picks the file up."""
    state = tmp_path / "state"
    a = RunningAgent(tmp_path)
    a.write('region = "PK-PB"')
    a.start()
    try:
        out = subprocess.run([sys.executable, "-m", "agent", "init", "--config", str(tmp_path / "new.toml"),
                              "--region", "Sindh", "--city", "", "--isp", "", "--access", ""],
                             cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "STATE_DIRECTORY": str(state)},
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr
        assert f"the agent running now (pid {a.proc.pid})" in out.stdout
        assert f"kill -HUP {a.proc.pid}" in out.stdout
    finally:
        a.close()
