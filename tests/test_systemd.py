"""The service units, read by systemd's own tools: `systemd-analyze verify` (no warning at all)
and `systemd-analyze security --offline=true` (exposure at most 1.5 for the agent, 1.1 for the
collector, as measured with systemd 252); the sysctl drop-in applied in a network namespace; the
collector's statistics under the filter MemoryDenyWriteExecute= installs. No systemd runs as
PID 1 here, so the units are not started; the agent's side of Type=notify is tested against a
real socket in test_notify.py."""

from __future__ import annotations

import json
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


def test_the_agent_with_an_alert_secret_credential_verifies(tmp_path):
    (f,) = installed(tmp_path, "linewatch-agent.service", dropin="alert-secret.conf")
    assert "LoadCredential=alert-phone:" in f.read_text()
    r = analyze("verify", f.name, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_the_user_unit_verifies_in_user_mode(tmp_path):
    """systemd/user/linewatch-agent.service (the agent as the user, for desktop alerts), read by
    a user manager's rules; its ExecStart under the user's home pointed at this checkout."""
    text = (UNITS / "user" / "linewatch-agent.service").read_text()
    assert "ExecStart=%h/.linewatch/bin/linewatch run" in text
    unit = tmp_path / "linewatch-agent.service"
    unit.write_text(text.replace("%h/.linewatch/bin/", f"{BIN}/"))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    r = subprocess.run([ANALYZE, "--user", "verify", unit.name], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120, env={**os.environ, "SYSTEMD_LOG_COLOR": "0",
                                                       "XDG_RUNTIME_DIR": str(runtime)})
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    bad = unit.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    unit.write_text(bad)
    r = subprocess.run([ANALYZE, "--user", "verify", unit.name], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120, env={**os.environ, "SYSTEMD_LOG_COLOR": "0",
                                                       "XDG_RUNTIME_DIR": str(runtime)})
    assert "Unknown key" in r.stderr


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


def test_agent_unit_exposure_is_at_most_1_5(tmp_path):
    (f,) = installed(tmp_path, "linewatch-agent.service")
    assert exposure(f) <= 1.5


def test_collector_unit_exposure_is_at_most_1_1(tmp_path):
    (f,) = installed(tmp_path, "linewatch-collector.service")
    assert exposure(f) <= 1.1


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


@pytest.mark.parametrize("unit", ["linewatch-agent.service", "linewatch-collector.service"])
def test_units_keep_their_mounts_private(unit):
    assert "\nPrivateMounts=yes\n" in (UNITS / unit).read_text()


def test_the_ups_password_credential_verifies(tmp_path):
    (f,) = installed(tmp_path, "linewatch-agent.service", dropin="ups-password.conf")
    assert "LoadCredential=ups-password:" in f.read_text()
    r = analyze("verify", f.name, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr


# The filter systemd installs for MemoryDenyWriteExecute=yes (its seccomp_memory_deny_write_execute
# on x86-64: mmap asking for write and execute at once, mprotect and pkey_mprotect adding execute,
# shmat with SHM_EXEC: EPERM), built here with libseccomp, then a check that it bites (a writable
# and executable mapping is refused), then the collector's statistics through its real command.
WX_FILTER = r'''
import ctypes, errno, mmap, sys

class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64),
                ("b", ctypes.c_uint64)]

MASKED_EQ, ALLOW, EPERM = 7, 0x7FFF0000, 0x00050000 | errno.EPERM
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS, as NoNewPrivileges=yes
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                       ctypes.POINTER(Cmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = lib.seccomp_init(ALLOW)
for name, mask in (("mmap", PROT_WRITE | PROT_EXEC), ("mprotect", PROT_EXEC),
                   ("pkey_mprotect", PROT_EXEC), ("shmat", SHM_EXEC)):
    rule = Cmp(2, MASKED_EQ, mask, mask)
    assert lib.seccomp_rule_add_array(ctx, EPERM, lib.seccomp_syscall_resolve_name(name.encode()),
                                      1, ctypes.byref(rule)) == 0, name
assert lib.seccomp_load(ctx) == 0
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("the filter did not refuse a writable and executable mapping")
except PermissionError:
    pass
from collector.cli import main
sys.argv = ["linewatch-collector", *sys.argv[1:]]
try:
    main()
finally:
    assert "numpy" in sys.modules, "the statistics ran without numpy"
'''


def test_the_collector_runs_under_memory_deny_write_execute(tmp_path):
    """MemoryDenyWriteExecute=yes in the collector's unit: numpy, OpenBLAS and CPython map no
    memory that is both writable and executable."""
    from tests.fleet import Fleet

    assert "\nMemoryDenyWriteExecute=yes\n" in (UNITS / "linewatch-collector.service").read_text()
    start = 1_772_409_600   # 2026-03-02 00:00 UTC
    fleet = Fleet(agents=3, days=2, start=start, round_s=300, seed=3)
    for i in range(3):
        fleet.write_store(i, tmp_path / f"a{i}")
    cfg = tmp_path / "collector.toml"
    cfg.write_text('[collector]\nmin_agents = 1\nmin_watch_h = 1\nbootstrap = 200\ncache_dir = "off"\n')
    r = subprocess.run([sys.executable, "-c", WX_FILTER, "aggregate", "--config", str(cfg),
                        *[a for i in range(3) for a in ("--store", str(tmp_path / f"a{i}"))],
                        "--since", "2026-03-02", "--until", "2026-03-04", "--format", "json"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    shown = [c for c in json.loads(r.stdout) if not c["suppressed"]]
    assert shown and all(c["internet_availability_ci"] for c in shown)   # bootstrap intervals
