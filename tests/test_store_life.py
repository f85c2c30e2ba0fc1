"""The store's life as a user meets it, with real processes and real file systems:

* one agent per state dir: a second ``linewatch run`` is refused, ``status`` and ``check`` tell a
  running agent by its lock, and kill -9 leaves no stale lock;
* a damaged store: read-only commands change nothing and say so in one line; ``run`` moves it
  aside and keeps what it can still read, and ``status`` says it happened;
* OS errors are one line: a store owned by another user, a read-only file system, a missing folder;
* a full disk (a small tmpfs) while the agent runs: one warning when it starts and one when it
  ends, the rounds of the full minutes kept in memory and written afterwards.

The agents probe only 127.0.0.1 (TCP to a closed port, or ICMP to loopback): nothing leaves the
machine. Mounting file systems and switching users needs root; without it those tests skip.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.model import Episode, Sample
from agent.store import DB_NAME, Store
from tests.hosttree import fill_file_system

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def config(tmp: Path, state: Path, targets='["127.0.0.1:9"]', extra: str = "") -> Path:
    p = tmp / "config.toml"
    p.write_text(f'[agent]\nstate_dir = "{state}"\nregion = "PK-SD"\n'
                 '[probe]\ninterval_s = 1\ntimeout_s = 0.3\ncount = 1\ngateway = "off"\n'
                 f'targets = {targets}\ndns_names = []\nnetio_interval_s = 5\n'
                 '[power]\nbattery = "off"\n[speedtest]\nenabled = false\n[services]\nurls = []\n' + extra)
    p.chmod(0o644)
    return p


# Root without its capabilities: file permissions apply to it (no CAP_DAC_OVERRIDE) and it may
# not open raw sockets (no CAP_NET_RAW), like an ordinary user, while it can still run the
# interpreter under /root that the suite uses.
NO_CAPS = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]


def cli(cfg: Path, *args, unprivileged: bool = False, timeout=60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agent", *args, "--config", str(cfg)]
    if unprivileged:
        cmd = NO_CAPS + cmd
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


class Agent:
    """A real ``linewatch run``; its log goes to a file (a pipe nobody reads would fill)."""

    def __init__(self, cfg: Path, log: Path, unprivileged: bool = False) -> None:
        self.log = log
        cmd = [sys.executable, "-m", "agent", "run", "--config", str(cfg)]
        if unprivileged:
            cmd = NO_CAPS + cmd
        self._out = open(log, "w")  # noqa: SIM115 - held while the agent runs, closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=self._out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while what not in self.text():
            assert self.proc.poll() is None, f"agent exited {self.proc.returncode}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {what!r} in the log:\n{self.text()}"
            time.sleep(0.2)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self._out.close()
        return rc


def wait_rounds(cfg: Path, n: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = cli(cfg, "status", "--json")
        if r.returncode == 0:
            st = json.loads(r.stdout)
            if st["rounds_24h"] >= n:
                return st
        assert time.monotonic() < deadline, r.stdout + r.stderr
        time.sleep(0.3)


def run_briefly(cfg: Path, log: Path, rounds: int, unprivileged: bool = False) -> str:
    """Start a real agent, let it record ``rounds`` rounds, stop it cleanly; its log."""
    agent = Agent(cfg, log, unprivileged=unprivileged)
    try:
        agent.wait_for("started")
        wait_rounds(cfg, rounds)
    finally:
        assert agent.stop() == 0
    return agent.text()


def snapshot(d: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(d.iterdir())}


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (run the suite as root or in CI)")


# -- one agent per store ----------------------------------------------------------------------

def test_a_second_agent_is_refused_and_kill_9_leaves_no_stale_lock(tmp_path):
    state = tmp_path / "state"
    cfg = config(tmp_path, state)
    first = Agent(cfg, tmp_path / "first.log")
    try:
        st = wait_rounds(cfg, 2)
        assert st["running"] is True and st["pid"] == first.proc.pid
        second = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(cfg)], cwd=ROOT,
                                env=ENV, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert second.stderr.strip().count("\n") == 0, second.stderr       # one line
        assert str(state) in second.stderr and f"pid {first.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        human = cli(cfg, "status").stdout
        assert f"agent running (pid {first.proc.pid})" in human
        chk = cli(cfg, "check")
        assert f"agent: running (pid {first.proc.pid})" in chk.stdout
        # The refused agent recorded nothing: no fake agent gap.
        eps = json.loads(cli(cfg, "outages", "--type", "all", "--json").stdout)
        assert [e for e in eps if e["type"] == "agent_gap"] == []
    finally:
        first.stop(signal.SIGKILL)
    st = json.loads(cli(cfg, "status", "--json").stdout)
    assert st["running"] is False and st["pid"] is None
    assert "agent NOT running" in cli(cfg, "status").stdout
    again = Agent(cfg, tmp_path / "again.log")                 # the kernel dropped the lock
    try:
        again.wait_for("started")
        assert json.loads(cli(cfg, "status", "--json").stdout)["pid"] == again.proc.pid
    finally:
        assert again.stop() == 0


# -- a damaged store --------------------------------------------------------------------------

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def _evidence(state: Path, samples: int = 6000) -> list[Episode]:
    """A store with rounds first (many pages) and then three closed episodes."""
    s = Store.open(state)
    rounds = [Sample("round", {"agent": "c0ffee"}, {"status": "up", "online": 1, "interval_s": 1.0,
                                                     "pad": "x" * 80}, T0 + timedelta(seconds=k))
              for k in range(samples)]
    eps = [Episode(f"connectivity:{k}", "connectivity", "isp", T0 + timedelta(minutes=20 * k),
                   T0 + timedelta(minutes=20 * k + 7), 420.0, True, {"failed_rounds": 42})
           for k in range(1, 4)]
    s.write(rounds)
    # A heartbeat without its monotonic part, as a hand-edited or salvaged store may hold: the
    # agent must start anyway (it says it cannot judge how the previous run ended).
    s.write(episodes=eps, state={"heartbeat": json.dumps({"time": T0.isoformat()})})
    s.close()
    return eps


def _damage_pages(db: Path, first: float, last: float) -> None:
    """Overwrite the pages between two fractions of the samples' part of the file with junk."""
    c = sqlite3.connect(db)
    (ps,), = c.execute("PRAGMA page_size").fetchall()
    (pc,), = c.execute("PRAGMA page_count").fetchall()
    c.close()
    with open(db, "r+b") as f:
        for page in range(int(pc * first), int(pc * last)):
            f.seek(page * ps)
            f.write(os.urandom(ps))


@pytest.mark.parametrize("damage", ["header", "pages"])
def test_read_only_commands_on_a_damaged_store_change_nothing_and_say_so(tmp_path, damage):
    state = tmp_path / "state"
    _evidence(state)
    db = state / DB_NAME
    if damage == "header":
        with open(db, "r+b") as f:
            f.write(b"this is no database" * 5)
    else:
        _damage_pages(db, 0.3, 0.6)
    cfg = config(tmp_path, state)
    before = snapshot(state)
    out = tmp_path / "report.html"
    for args in (("status",), ("status", "--json"), ("outages",), ("check",),
                 ("report", "--since", "2d", "--out", str(out))):
        r = cli(cfg, *args)
        assert "Traceback" not in r.stderr + r.stdout, (args, r.stderr)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        if args[0] == "check":
            line = next(ln for ln in r.stdout.splitlines() if ln.startswith("[FAIL] store"))
            assert str(db) in line and "damaged" in line
            assert "linewatch run" in r.stdout                     # the fix
        else:
            assert r.stderr.count("\n") == 1, (args, r.stderr)     # one line
            assert str(db) in r.stderr and "damag" in r.stderr.lower(), (args, r.stderr)
        assert snapshot(state) == before, args                     # nothing moved, made or changed
    assert not out.exists()
    # `push` writes, but only `run` repairs: it says so and leaves the file alone too.
    from tests.nutlab import free_port

    pcfg = config(tmp_path, state,
                  extra=f'[influx]\nurl = "http://127.0.0.1:{free_port()}"\ndatabase = "linewatch"\n')
    r = cli(pcfg, "push")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "damaged" in r.stderr, r.stderr
    assert snapshot(state) == before


def test_run_moves_a_damaged_store_aside_and_keeps_what_it_can_read(tmp_path):
    state = tmp_path / "state"
    eps = _evidence(state)
    _damage_pages(state / DB_NAME, 0.3, 0.5)
    cfg = config(tmp_path, state)
    log = run_briefly(cfg, tmp_path / "agent.log", rounds=1)
    said = next(ln for ln in log.splitlines() if "the local store was damaged" in ln)
    assert "moved it to" in said and "kept 3 episodes" in said and "lost at most" in said
    moved = [p for p in state.glob(f"{DB_NAME}.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(moved) == 1 and moved[0].stat().st_size > 0
    kept = {e["id"]: e for e in json.loads(cli(cfg, "outages", "--since", "2d", "--json").stdout)}
    for e in eps:                                            # the evidence survived, exactly
        assert kept[e.id]["duration_s"] == 420.0 and kept[e.id]["start"].startswith(
            e.start.strftime("%Y-%m-%dT%H:%M:%S"))
    st = json.loads(cli(cfg, "status", "--json").stdout)
    rec = st["store_recovered"]
    assert rec["moved_to"] == str(moved[0])
    assert rec["tables"]["episodes"] == {"kept": 3, "lost": 0}
    assert 0 < rec["tables"]["samples"]["kept"] < 6000 and rec["tables"]["samples"]["lost"] > 0
    human = cli(cfg, "status").stdout
    assert "the store was damaged and replaced on" in human and str(moved[0]) in human


# -- every OS error is one line ---------------------------------------------------------------

def test_a_store_of_another_user_is_one_line_not_a_traceback(tmp_path):
    need_root("dropping capabilities (setpriv)")
    state = tmp_path / "state"
    _evidence(state, samples=50)
    for p in [state, *state.iterdir()]:
        os.chown(p, 65534, 65534)                 # another user's store, 0700 and 0600
    cfg = config(tmp_path, state)
    for args in (("status",), ("outages",), ("check",), ("run",),
                 ("report", "--since", "2d", "--out", str(tmp_path / "r.html"))):
        r = cli(cfg, *args, unprivileged=True, timeout=30)
        text = r.stderr if args[0] != "check" else next(
            (ln for ln in r.stdout.splitlines() if ln.startswith("[FAIL] store")), r.stdout)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout, (args, r.stderr)
        assert args[0] == "check" or r.stderr.count("\n") == 1, (args, r.stderr)
        assert str(state) in text and "ermission denied" in text, (args, text)
    dbg = cli(cfg, "--debug", "status", unprivileged=True, timeout=30)
    assert dbg.returncode == 1 and "Traceback" in dbg.stderr   # --debug shows it


def test_report_into_a_missing_folder_is_one_line(tmp_path):
    state = tmp_path / "state"
    _evidence(state, samples=50)
    cfg = config(tmp_path, state)
    out = tmp_path / "no" / "such" / "folder" / "r.html"
    r = cli(cfg, "report", "--since", "2d", "--out", str(out))
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert str(out.parent) in r.stderr


def test_a_read_only_file_system_is_one_line(tmp_path, mount_point):
    state = mount_point / "state"
    _evidence(state, samples=50)
    cfg = config(tmp_path, state)
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
    r = cli(cfg, "run", timeout=30)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "ead-only file system" in r.stderr and str(state) in r.stderr
    st = cli(cfg, "status", "--json")                              # reading still works
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["running"] is False


def test_a_full_disk_while_running_warns_twice_and_loses_no_round(tmp_path, mount_point):
    state = mount_point / "state"
    cfg = config(tmp_path, state)
    agent = Agent(cfg, tmp_path / "agent.log")
    filler = mount_point / "filler"
    try:
        wait_rounds(cfg, 3)
        fill_file_system(filler)
        full_from = datetime.now(UTC)
        agent.wait_for("cannot be written since", timeout=30)
        time.sleep(4)                                             # some rounds while full
        st = cli(cfg, "status")
        assert st.returncode == 0, st.stderr
        assert "store cannot be written since" in st.stdout
        chk = cli(cfg, "check")
        assert "[FAIL] agent" in chk.stdout and "cannot be written" in chk.stdout
        full_to = datetime.now(UTC)
        filler.unlink()
        agent.wait_for("can be written again", timeout=30)
        time.sleep(1.5)
    finally:
        if filler.exists():
            filler.unlink()
        assert agent.stop() == 0
    log = agent.text()
    assert log.count("cannot be written since") == 1 and log.count("can be written again") == 1, log
    assert "Traceback" not in log
    c = sqlite3.connect(f"file:{state / DB_NAME}?mode=ro", uri=True)
    times = [t for (t,) in c.execute(
        "SELECT s.time_ns FROM samples s JOIN series r ON r.id = s.series_id "
        "WHERE r.measurement = 'round' ORDER BY s.time_ns")]
    c.close()
    during = [t for t in times if full_from.timestamp() * 1e9 <= t <= full_to.timestamp() * 1e9]
    assert len(during) >= 3, (len(during), len(times))           # the full seconds' rounds are there
    gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:])]
    assert max(gaps) < 3.0, max(gaps)                              # and no hole in the record


def test_refused_icmp_is_said_once_at_start_with_the_fix(tmp_path):
    need_root("dropping capabilities (setpriv)")
    lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    if lo <= os.getgid() <= hi:
        pytest.skip("unprivileged ICMP is allowed here for this group: nothing to fall back from")
    cfg = config(tmp_path, tmp_path / "state", targets='["127.0.0.1"]')
    log = run_briefly(cfg, tmp_path / "agent.log", rounds=2, unprivileged=True)
    notice = [ln for ln in log.splitlines() if "ICMP echo is refused" in ln]
    assert len(notice) == 1 and "ping_group_range" in notice[0] and "TCP" in notice[0], log


def test_a_locked_database_is_one_line(tmp_path):
    """Another process holds the store's write lock longer than SQLite waits (10 s): a command
    that must write says so in one line instead of a traceback."""
    state = tmp_path / "state"
    _evidence(state, samples=50)
    holder = sqlite3.connect(state / DB_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        from tests.nutlab import free_port

        cfg = config(tmp_path, state, extra=f'[influx]\nurl = "http://127.0.0.1:{free_port()}"\n'
                                            'database = "linewatch"\n')
        r = cli(cfg, "push", "--requeue", timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert str(state / DB_NAME) in r.stderr and "locked" in r.stderr
