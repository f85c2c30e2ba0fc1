"""The service units, read by systemd's own tools: `systemd-analyze verify` (no warning at all)
and `systemd-analyze security --offline=true` (the agent's exposure at most 2.0); the sysctl
drop-in applied in a network namespace. No systemd runs as PID 1 here, so the units are not
started; the agent's side of Type=notify is tested against a real socket in test_notify.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
BIN = Path(sys.executable).parent
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed "
                                "(apt-get install systemd)")


def installed(tmp_path: Path, *names: str, dropin: str | None = None) -> list[Path]:
    """Copies of the units with ExecStart pointing at this checkout's commands (verify checks
    that they exist), the agent's drop-in merged in when asked."""
    out = []
    for name in names:
        text = (UNITS / name).read_text().replace("/opt/linewatch/bin/", f"{BIN}/")
        if dropin:
            text += "\n" + (UNITS / f"{name}.d" / dropin).read_text()
        p = tmp_path / name
        p.write_text(text)
        out.append(p)
    return out


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


def test_units_verify_without_a_warning(tmp_path):
    files = installed(tmp_path, "linewatch-agent.service", "linewatch-collector.service",
                      "linewatch-collector.timer")
    r = analyze("verify", *[f.name for f in files], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


@pytest.mark.parametrize("unit", ["linewatch-agent.service", "linewatch-collector.service"])
def test_units_with_the_token_credential_verify(tmp_path, unit):
    (f,) = installed(tmp_path, unit, dropin="influx-token.conf")
    assert "LoadCredential=influx-token:" in f.read_text()
    r = analyze("verify", f.name, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_verify_would_catch_a_mistake(tmp_path):
    """The check above is not vacuous: a misspelt key is reported."""
    (f,) = installed(tmp_path, "linewatch-agent.service")
    f.write_text(f.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    r = analyze("verify", f.name, cwd=tmp_path)
    assert "Unknown key" in r.stderr


def exposure(path: Path) -> float:
    r = analyze("security", "--offline=true", str(path), cwd=path.parent)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


def test_agent_unit_exposure_is_at_most_2(tmp_path):
    (f,) = installed(tmp_path, "linewatch-agent.service")
    assert exposure(f) <= 2.0


def test_collector_unit_exposure_is_at_most_2(tmp_path):
    (f,) = installed(tmp_path, "linewatch-collector.service")
    assert exposure(f) <= 2.0


def test_units_ask_for_what_the_issue_names():
    agent = (UNITS / "linewatch-agent.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=always", "DynamicUser=yes",
                 "StateDirectory=linewatch", "ConfigurationDirectory=linewatch",
                 "ProtectSystem=strict", "AmbientCapabilities=CAP_NET_RAW", "StartLimitBurst="):
        assert line in agent, line
    timer = (UNITS / "linewatch-collector.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer


def test_exec_lines_name_real_commands():
    for unit, cmd in (("linewatch-agent.service", ["linewatch", "run", "--help"]),
                      ("linewatch-collector.service", ["linewatch-collector", "run", "--help"])):
        text = (UNITS / unit).read_text()
        assert f"/opt/linewatch/bin/{cmd[0]} {cmd[1]}" in text
        r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "--config" in r.stdout
    assert "--once" in (UNITS / "linewatch-collector.service").read_text()


@pytest.mark.netns
def test_sysctl_dropin_allows_unprivileged_icmp(tmp_path):
    """In a fresh network namespace (ping_group_range is per namespace; Debian's default "1 0"
    refuses everyone), an ICMP datagram socket fails, then works once the drop-in is applied."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    ns = f"lwtest-sysctl-{os.getpid()}"
    probe = [sys.executable, "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, "
             "socket.IPPROTO_ICMP); print('ok')"]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        before = subprocess.run(["ip", "netns", "exec", ns, *probe], capture_output=True, text=True)
        assert before.returncode != 0 and "Permission denied" in before.stderr
        apply = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-p",
                                str(UNITS / "sysctl.d" / "60-linewatch-ping.conf")],
                               capture_output=True, text=True)
        assert apply.returncode == 0, apply.stderr
        after = subprocess.run(["ip", "netns", "exec", ns, *probe], capture_output=True, text=True)
        assert after.returncode == 0 and after.stdout.strip() == "ok", after.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_the_ups_password_credential_verifies(tmp_path):
    (f,) = installed(tmp_path, "linewatch-agent.service", dropin="ups-password.conf")
    assert "LoadCredential=ups-password:" in f.read_text()
    r = analyze("verify", f.name, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
