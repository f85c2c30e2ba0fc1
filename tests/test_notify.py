"""sd_notify: the agent talks to a real notify socket opened by the test, the way systemd's
Type=notify and WatchdogSec= listen, and stays silent without one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from agent.clock import FakeClock
from agent.notify import Notifier
from tests.fakenet import FakeNet, make_agent

ROOT = Path(__file__).resolve().parents[1]


def test_without_systemd_nothing_is_sent():
    n = Notifier(env={})
    assert not n.enabled and n.watchdog_s is None
    assert n.ready("x") is False and n.watchdog() is False


def test_environment_is_read_as_systemd_sets_it():
    n = Notifier(env={"NOTIFY_SOCKET": "@linewatch-test", "WATCHDOG_USEC": "30000000"}, pid=42)
    assert n.address == "\0linewatch-test" and n.watchdog_s == 30.0
    other = Notifier(env={"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"},
                     pid=42)
    assert other.watchdog_s is None   # the watchdog is another process's


def test_a_dead_socket_never_stops_the_agent(tmp_path):
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.send("READY=1") is False and n.send("WATCHDOG=1") is False


class Sink:
    """A notify socket like systemd's: a datagram socket bound to a path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.messages: list[dict[str, str]] = []

    def collect(self, until, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines() if "=" in line))
            if until(self.messages):
                return True
        return False


def test_agent_notifies_ready_watchdog_status_and_stopping(tmp_path):
    sink = Sink(tmp_path / "notify")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
                   '[probe]\ninterval_s = 1\ntimeout_s = 0.3\ncount = 1\ngateway = "off"\n'
                   'targets = ["127.0.0.1:9"]\ndns_names = []\n[speedtest]\nenabled = false\n'
                   '[services]\nurls = []\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(sink.path),
           "WATCHDOG_USEC": "3000000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert sink.collect(lambda ms: sum("WATCHDOG" in m for m in ms) >= 2, 30), \
            (sink.messages, proc.poll())
        ready = sink.messages[0]
        assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
        assert "rounds" in ready["STATUS"]
        pings = [m for m in sink.messages if m.get("WATCHDOG") == "1"]
        assert all("rounds" in m["STATUS"] for m in pings)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert sink.collect(lambda ms: any(m.get("STOPPING") == "1" for m in ms), 5), sink.messages
    assert proc.returncode == 0


class Recorder:
    enabled = True
    watchdog_s = 30.0

    def __init__(self):
        self.sent = []

    def watchdog(self, status=None):
        self.sent.append(("WATCHDOG", status))

    def status(self, text):
        self.sent.append(("STATUS", text))


def test_watchdog_pings_stop_when_rounds_stop(tmp_path):
    clock = FakeClock()
    agent = make_agent(tmp_path, FakeNet(), clock)
    agent.watchdog.notifier = rec = Recorder()
    agent.watchdog.last_round_end = clock.monotonic()
    agent.rounds.run()
    agent.watchdog.run()
    assert rec.sent[-1][0] == "WATCHDOG"
    clock.advance(40)        # no round for 40 s at a 10 s cadence (watchdog 30 s): hung
    agent.watchdog.run()
    assert rec.sent[-1] == ("STATUS", "no probe round for 40 s")
