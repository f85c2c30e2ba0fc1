"""Reports and the config are written whole, through a temporary file of a random name: a name
planted in a shared directory (a symlink, or another user's file at the old fixed ``<out>.tmp``)
is never written through, and a crash mid-write leaves the previous report as it was.

The real commands write the pages: ``linewatch-collector report`` (the published regional page,
0644) from a volunteer's store file, and ``linewatch report`` (a worker's own line, 0600) from a
store the agent's round job wrote (tests/linestore.py, as in tests/test_line_report.py). We run
as root, so "another user" is nobody (os.chown).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import resource
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fakeinflux import WINDOW, FakeInflux
from tests.fleet import Fleet
from tests.linestore import MONDAY, Watch

BIN = Path(sys.executable).parent
DAY = 86400
START = (int(time.time()) // DAY - 4) * DAY
NOBODY = pwd.getpwnam("nobody").pw_uid
VICTIM = "a file the planter wants overwritten\n"


def _since_until(start: float, end: float) -> list[str]:
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    return ["--since", iso(start), "--until", iso(end)]


class Command:
    """One report command, ready to write ``--out PATH``; ``mode`` is the page's mode."""

    def __init__(self, argv: list[str], mode: int) -> None:
        self.argv, self.mode = argv, mode

    def run(self, out: Path, preexec=None, env=None) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        return subprocess.run([*self.argv, "--out", str(out)], capture_output=True, text=True,
                              timeout=180, env=env, preexec_fn=preexec)


@pytest.fixture(scope="module")
def regional(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regional")
    Fleet(agents=1, days=1, start=START, round_s=60, seed=3).write_store(0, tmp / "vol")
    cfg = tmp / "collector.toml"
    cfg.write_text(f'[collector]\nstores = ["{tmp / "vol"}"]\n')
    return Command([str(BIN / "linewatch-collector"), "report", "--config", str(cfg),
                    *_since_until(START, START + DAY)], 0o644)


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("line")
    w = Watch(tmp, MONDAY + timedelta(hours=10))
    w.rounds(20)
    w.rounds(6, "isp")
    w.rounds(6)
    end = w.clock.now()
    w.close()
    return Command([str(BIN / "linewatch"), "report", "--config", str(tmp / "config.toml"),
                    *_since_until(MONDAY.timestamp(), end.timestamp() + 1)], 0o600)


@pytest.fixture(params=["collector-report", "agent-report"])
def command(request):
    return request.getfixturevalue("regional" if request.param == "collector-report" else "line")


def _shared_dir(tmp_path: Path) -> Path:
    """A /tmp-like directory: world-writable and sticky."""
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o1777)
    return d


def _landed(out: Path, mode: int) -> None:
    st = out.lstat()
    assert stat.S_ISREG(st.st_mode), "the report must be a file of its own, not a link"
    assert stat.S_IMODE(st.st_mode) == mode, oct(st.st_mode)
    assert st.st_uid == os.getuid()
    assert out.read_text(encoding="utf-8").rstrip().endswith("</html>")


def _no_leftovers(d: Path, *keep: Path) -> None:
    assert sorted(p.name for p in d.iterdir()) == sorted(p.name for p in keep)


def test_a_symlink_planted_at_the_old_temporary_name_is_not_followed(command, tmp_path):
    shared = _shared_dir(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    out = shared / "report.html"
    planted = shared / "report.html.tmp"
    planted.symlink_to(victim)
    p = command.run(out)
    assert p.returncode == 0, p.stderr
    assert victim.read_text() == VICTIM
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    _landed(out, command.mode)
    _no_leftovers(shared, out, planted)


def test_another_users_file_at_the_old_temporary_name_is_left_alone(command, tmp_path):
    shared = _shared_dir(tmp_path)
    out = shared / "report.html"
    planted = shared / "report.html.tmp"
    planted.write_text(VICTIM)
    os.chown(planted, NOBODY, NOBODY)
    os.chmod(planted, 0o666)
    p = command.run(out)
    assert p.returncode == 0, p.stderr
    _landed(out, command.mode)       # ours: the planter cannot change what is published
    assert planted.read_text() == VICTIM and planted.stat().st_uid == NOBODY
    _no_leftovers(shared, out, planted)


def test_a_report_owned_by_another_user_is_replaced_not_written_into(command, tmp_path):
    shared = _shared_dir(tmp_path)
    out = shared / "report.html"
    out.write_text(VICTIM)
    os.chown(out, NOBODY, NOBODY)
    os.chmod(out, 0o666)
    held = os.open(out, os.O_RDONLY)     # what the other user still holds open
    try:
        p = command.run(out)
        assert p.returncode == 0, p.stderr
        assert os.pread(held, 1000, 0).decode() == VICTIM
    finally:
        os.close(held)
    _landed(out, command.mode)


def test_a_symlink_at_the_report_name_is_replaced_not_followed(command, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    out = tmp_path / "report.html"
    out.symlink_to(victim)
    p = command.run(out)
    assert p.returncode == 0, p.stderr
    assert victim.read_text() == VICTIM
    _landed(out, command.mode)


def _file_size_limit(size: int):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


# Kills the process (SIGKILL: no clean-up runs) just before it renames a file onto the report:
# the page is written, not yet in place.
KILL_AT_RENAME = """
import os, signal, sys

def _hook(event, args):
    if event == "os.rename" and str(args[1]).endswith("report.html"):
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(_hook)
"""


def test_a_crash_mid_write_leaves_the_previous_report(command, tmp_path):
    out = tmp_path / "report.html"
    p = command.run(out)
    assert p.returncode == 0, p.stderr
    previous = out.read_bytes()
    assert len(previous) > 8192
    site = tmp_path.parent / f"{tmp_path.name}-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(KILL_AT_RENAME)
    p = command.run(out, env={"PYTHONPATH": f"{site}:{os.environ.get('PYTHONPATH', '')}"})
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr)
    assert out.read_bytes() == previous
    for stray in tmp_path.iterdir():     # what the killed process could not clean up
        if stray != out:
            stray.unlink()
    # The disk fills up (here: the file size limit) in the middle of the page: one line, exit 1,
    # the previous page intact and nothing half-written left behind. (Python ignores SIGXFSZ, so
    # the write fails with EFBIG.) Unmeasured: the limit would stop coverage saving its data too,
    # when the test command measures the processes tests start (empty: coverage does not start).
    p = command.run(out, preexec=_file_size_limit(4096),
                    env={"COVERAGE_PROCESS_CONFIG": "", "COVERAGE_PROCESS_START": ""})
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    [msg] = p.stderr.splitlines()
    assert str(out) in msg and "File too large" in msg, msg
    assert out.read_bytes() == previous
    _no_leftovers(tmp_path, out)


# -- the helper itself -----------------------------------------------------------------------

def test_write_atomic_sets_the_mode_whatever_the_umask(tmp_path):
    from kit.files import write_atomic

    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "a.html", "<html></html>\n", 0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.html").stat().st_mode) == 0o644
    write_atomic(tmp_path / "b.toml", b"x = 1\n", 0o600)
    assert (tmp_path / "b.toml").read_bytes() == b"x = 1\n"
    assert stat.S_IMODE((tmp_path / "b.toml").stat().st_mode) == 0o600


def test_write_atomic_names_the_target_when_the_directory_is_missing(tmp_path):
    from kit.files import write_atomic

    with pytest.raises(FileNotFoundError) as err:
        write_atomic(tmp_path / "no" / "such" / "dir.html", "x", 0o644)
    assert err.value.filename == str(tmp_path / "no" / "such" / "dir.html")


def test_write_atomic_leaves_nothing_when_the_rename_fails(tmp_path):
    from kit.files import write_atomic

    (tmp_path / "out.html").mkdir()            # a directory in the way: the rename fails
    with pytest.raises(OSError) as err:
        write_atomic(tmp_path / "out.html", "x", 0o644)
    assert err.value.filename == str(tmp_path / "out.html")
    _no_leftovers(tmp_path, tmp_path / "out.html")


def test_init_does_not_write_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM)
    cfg = tmp_path / "config.toml"
    cfg.symlink_to(victim)
    p = subprocess.run([str(BIN / "linewatch"), "init", "--config", str(cfg), "--force",
                        "--region", "PK-PB"], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, env={**os.environ, "HOME": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    assert victim.read_text() == VICTIM
    assert not cfg.is_symlink() and 'region = "PK-PB"' in cfg.read_text()
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600


# -- the collector's cache of closed days ------------------------------------------------------

def _cache_case(tmp_path: Path):
    srv = FakeInflux()
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f'[influx]\nurl = "{srv.url}"\ndatabase = "linewatch"\n\n'
                   f'[collector]\ncache_dir = "{cache_dir}"\n')
    key = hashlib.sha256(f"{srv.url}\nlinewatch\n".encode()).hexdigest()[:20]
    argv = [str(BIN / "linewatch-collector"), "aggregate", "--config", str(cfg), *WINDOW]
    return srv, cache_dir / f"{key}.db", argv


def test_the_cache_is_private_from_its_first_byte(tmp_path):
    srv, db, argv = _cache_case(tmp_path)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                           preexec_fn=lambda: os.umask(0o022))
    finally:
        srv.close()
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and db.stat().st_uid == os.getuid()


def test_a_symlink_planted_at_the_cache_name_is_not_followed(tmp_path):
    srv, db, argv = _cache_case(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("")          # empty: SQLite would happily make it a database
    db.symlink_to(victim)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        srv.close()
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    [line] = p.stderr.splitlines()
    assert line.startswith(f"linewatch-collector: {db}: ") and "link" in line, line
    assert victim.read_bytes() == b""


def test_a_damaged_cache_is_one_line(tmp_path):
    srv, db, argv = _cache_case(tmp_path)
    db.write_bytes(b"not a database, whatever its name says" * 200)
    os.chmod(db, 0o600)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        srv.close()
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    [line] = p.stderr.splitlines()
    assert line.startswith(f"linewatch-collector: {db}: ") and "--cache off" in line, line


@pytest.mark.parametrize("damage", ["substr(hours, 1, 5)", "x'" + "e7030000" * 24 + "'"])
def test_damaged_hours_in_the_cache_are_an_error_naming_the_file(tmp_path, damage):
    """A kept day's packed hours that do not line up (cut short, or a unit id the file does not
    hold) are one SourceError naming the file and the way out, never a wrong answer or a
    traceback from numpy."""
    import sqlite3

    from collector.cache import Cache
    from kit.definitions import Unit
    from kit.errors import SourceError
    from kit.records import ObsHour

    day = START - 10 * DAY
    unit = Unit("a1", "PK-PB", "PTCL", "", "", "")
    path = tmp_path / "c.db"
    c = Cache(path)
    c.store([day], [ObsHour(unit, day + h * 3600, 3600.0, "hourly") for h in range(24)], [])
    [block], _ = c.load([day])
    assert list(block.hour) == [day + h * 3600 for h in range(24)] and block.units == (unit,)
    c.close()
    column = "hours" if damage.startswith("substr") else "units"
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE obs_days SET {column} = {damage}")
    c = Cache(path)
    try:
        with pytest.raises(SourceError) as err:
            c.load([day])
    finally:
        c.close()
    assert str(err.value).startswith(f"{path}: ") and "--cache refresh" in str(err.value)


def test_kept_episodes_and_speed_tests_come_back_as_columns(tmp_path):
    """The cache hands kept episodes and speed tests back as column blocks that give the
    records kept (a missing upload as none), for the days asked only; a row naming a unit the
    file does not hold is one SourceError naming the file, never a wrong answer."""
    import sqlite3

    from collector.cache import Cache
    from kit.definitions import Unit
    from kit.errors import SourceError
    from kit.records import Episode, EpisodeColumns, SpeedColumns, SpeedTest

    d1, d2 = START - 10 * DAY, START - 9 * DAY
    a = Unit("a1", "PK-PB", "PTCL", "", "", "")
    b = Unit("b2", "PK-SD", "Nayatel", "", "", "")
    eps = [Episode(a, "connectivity", "isp", d1 + 60.0, 90.5), Episode(b, "power", "ac_lost", d1 + 7.25, 3.0),
           Episode(a, "connectivity", "dns", d2 + 5.0, 30.0)]
    tests = [SpeedTest(a, d1 + 100.0, 2.5e7, None), SpeedTest(b, d2 + 50.0, 1e7, 2e6)]
    path = tmp_path / "c.db"
    c = Cache(path)
    try:
        c.store_rows({d1: (2, 1), d2: (1, 1)}, [EpisodeColumns.of(eps)], [SpeedColumns.of(tests)])
        e_blocks, s_blocks = c.load_rows([d1])
        assert [r for blk in e_blocks for r in blk.records()] == eps[:2]
        assert [r for blk in s_blocks for r in blk.records()] == tests[:1]
        e_blocks, s_blocks = c.load_rows([d1, d2])
        assert [r for blk in e_blocks for r in blk.records()] == eps
        assert [r for blk in s_blocks for r in blk.records()] == tests
    finally:
        c.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE speeds SET unit = 999")
    c = Cache(path)
    try:
        with pytest.raises(SourceError) as err:
            c.load_rows([d1])
    finally:
        c.close()
    assert str(err.value).startswith(f"{path}: ") and "--cache refresh" in str(err.value)
