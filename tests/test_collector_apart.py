"""Large answers read in worker processes (collector/apart.py): the same records, counts and
figures as reading every answer in the collector's own process; errors redacted wherever they
were raised; a worker that dies costs nothing but time. The processes are real (spawned, as the
collector spawns them); the reading test reads a real InfluxDB 1.6.7."""

from __future__ import annotations

import multiprocessing
import os
from functools import partial

import pytest

from collector.apart import Apart, describe
from collector.influxql import Reader
from kit.errors import SourceError
from kit.influx import HTTP
from tests import hourlyfleet
from tests.fleet import Fleet

START = 1_793_232_000          # a UTC midnight
SECRET = "tok-3f9a"


def _echo_size(body: bytes) -> tuple[int, bool]:
    return len(body), multiprocessing.parent_process() is not None


def _refuse(body: bytes, token: str) -> None:
    raise SourceError(f"the answer {body[:4]!r} is not InfluxDB's (sent with {token})")


def _die_in_worker(body: bytes) -> int:
    if multiprocessing.parent_process() is not None:
        os._exit(3)     # a worker killed mid-answer (the kernel's OOM killer, say)
    return len(body)


def _redact(text: str) -> str:
    return text.replace(SECRET, "***")


def test_small_answers_are_read_here_and_large_ones_in_a_worker():
    apart = Apart(1, min_bytes=1000)
    try:
        assert apart.run(_echo_size, b"x" * 10) == (10, False)
        assert apart._pool is None          # no process started for a small answer
        assert apart.run(_echo_size, b"x" * 5000) == (5000, True)
        assert apart.sent == 1 and describe(apart) == ", 1 answers read in 1 worker processes"
    finally:
        apart.close()
    assert apart._pool is None
    none = Apart(0, min_bytes=0)
    assert none.run(_echo_size, b"x" * 5000) == (5000, False) and describe(none) == ""


def _file_seen(body: bytes) -> tuple[int, str]:
    """In the worker: the answer's bytes, and the modes of the answers' directory and its file."""
    import os
    import stat

    d = [p for p in os.scandir(os.environ["LW_TEST_TMP"]) if p.name.startswith("linewatch-answers-")]
    (held,) = d
    (f,) = list(os.scandir(held.path))
    return len(body), f"{stat.S_IMODE(os.stat(held.path).st_mode):o} {stat.S_IMODE(f.stat().st_mode):o}"


def test_a_large_answer_reaches_its_worker_through_a_private_file(tmp_path, monkeypatch):
    """The collector lets go of a large answer once it is written to a file the worker reads:
    the directory is 0700 and the file 0600 while the worker reads, the file is gone once the
    worker is done, the directory once the pool is closed; a disk with no room for it costs only
    the time (the answer is read where it arrived)."""
    import tempfile

    monkeypatch.setenv("LW_TEST_TMP", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    apart = Apart(1, min_bytes=1000)
    try:
        assert apart.run(_file_seen, b"z" * 4000) == (4000, "700 600")
        (held,) = list(tmp_path.iterdir())
        assert list(held.iterdir()) == []       # each answer's file is removed after its read
    finally:
        apart.close()
    assert list(tmp_path.iterdir()) == []

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tempfile, "mkstemp", full)
    apart = Apart(1, min_bytes=1000)
    try:
        assert apart.run(_echo_size, b"x" * 5000) == (5000, False)
        assert (apart.fell_back, apart.sent) == (1, 0)
    finally:
        apart.close()


def _arrays(body: bytes) -> dict:
    """In the worker: a result of arrays of several kinds (contiguous ones go out of band) and
    of plain objects, and the mode of the file its result is about to be written to."""
    import numpy as np

    n = len(body)
    return {"i32": np.arange(n, dtype=np.int32), "f64": np.linspace(0.0, 1.0, n),
            "strided": np.arange(2 * n, dtype=np.int64)[::2], "empty": np.zeros(0),
            "bool": np.arange(n) % 3 == 0, "tags": ("a", {"b": {1, 2}}), "n": n}


def test_a_result_comes_back_through_a_private_file_with_each_array_read_once(tmp_path,
                                                                              monkeypatch):
    """A worker's result is written to a file of its own beside the answers (0600, removed
    once read) and read back equal, arrays included, each array writeable and holding its own
    memory (read straight into it); a file that ends early is an OSError, and the answer is then
    read where it arrived."""
    import tempfile

    import numpy as np

    from collector.apart import Kept, _from_file

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    apart = Apart(1, min_bytes=1000)
    try:
        got = apart.run(_arrays, b"q" * 3000)
        want = _arrays(b"q" * 3000)
        assert got.keys() == want.keys()
        for k, v in want.items():
            if isinstance(v, np.ndarray):
                assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
                got[k][:1] = 0             # writeable, not a view of a read-only buffer
            else:
                assert got[k] == v
        (held,) = list(tmp_path.iterdir())
        assert list(held.iterdir()) == []       # the answer's and the result's files removed
    finally:
        apart.close()
    assert list(tmp_path.iterdir()) == []

    # in this process: the file's mode, and a file cut short
    folder = tmp_path / "d"
    folder.mkdir(mode=0o700)
    body = tmp_path / "answer"
    body.write_bytes(b"r" * 100)
    kept = _from_file(_arrays, str(body), str(folder))
    assert isinstance(kept, Kept) and oct(os.stat(kept.path).st_mode & 0o777) == "0o600"
    size = os.path.getsize(kept.path)
    os.truncate(kept.path, size - 10)
    with pytest.raises(OSError, match="ended early"):
        kept.load()
    assert list(folder.iterdir()) == []
    # where the result cannot be written (no such folder here), it comes back itself
    assert _from_file(_arrays, str(body), str(tmp_path / "gone"))["n"] == 100


@pytest.mark.parametrize("size", [10, 5000])
def test_an_error_from_a_job_is_redacted_wherever_it_ran(size):
    apart = Apart(1, min_bytes=1000)
    try:
        with pytest.raises(SourceError) as err:
            apart.run(partial(_refuse, token=SECRET), b"{" * size, _redact)
    finally:
        apart.close()
    assert SECRET not in str(err.value) and "***" in str(err.value)


def test_a_worker_that_dies_loses_no_answer():
    apart = Apart(1, min_bytes=10)
    try:
        assert apart.run(_die_in_worker, b"y" * 50) == 50
        assert apart.run(_die_in_worker, b"y" * 60) == 60    # the broken pool is not used again
    finally:
        apart.close()
    assert (apart.fell_back, apart.sent) == (1, 0)
    assert "1 read here when no worker could read them" in describe(apart)


def _read(server, db, fleet, processes):
    http = HTTP(server.url, timeout_s=60)
    try:
        reader = Reader(http, db, connect=lambda: HTTP(server.url, timeout_s=60), parallel=2,
                        processes=processes, apart_mb=0)
        ds, q = reader.read(fleet.start, fleet.end)
        return ds, q, reader.apart
    finally:
        http.close()


def _content(ds):
    return (sorted((o.unit, o.hour, o.observed_s) for o in ds.all_obs()),
            sorted(map(repr, list(ds.all_pings()))),
            sorted((e.unit, e.type, e.cause, e.start, e.duration_s) for e in ds.all_episodes()),
            sorted(map(repr, ds.all_speeds())))


def test_daily_answers_read_in_workers_give_the_same_records(influx):
    """Every week's packed daily answer read in a worker process (the size threshold at 0)
    gives the hours, latency days, episodes, speed tests and counts the collector's own reading
    gives, on a database with one agent that packs nothing (its rows read as rows) and a bad
    daily row (counted once, wherever it was read)."""
    fleet = Fleet(agents=5, days=9, start=START, round_s=120, seed=41)
    for i in range(fleet.n):
        h = hourlyfleet.hourly_samples(fleet, i)
        days = (hourlyfleet.daily_samples(h) if i == 1
                else hourlyfleet.daily_samples(h, hourlyfleet.emitted(fleet, i)))
        if i == 3:
            d = days[2]
            days[2] = type(d)(d.measurement, d.tags, {**d.fields, "observed_hours": "1,2"}, d.time)
        rows = h + days
        if i == 1:
            rows += [s for s in fleet.samples(i) if s.measurement in ("outage", "speedtest")]
        hourlyfleet.write_influx(influx.url, "linewatch", hourlyfleet.lines(rows))
    here, q_here, none = _read(influx, "linewatch", fleet, 0)
    apart, q_apart, used = _read(influx, "linewatch", fleet, 2)
    assert none.sent == 0 and used.sent == 2       # 9 days: two weekly daily queries
    assert _content(apart) == _content(here)
    assert _content(here)[0] and _content(here)[2] and _content(here)[3]
    assert q_apart.as_dict() == q_here.as_dict()
    assert q_here.rejected["bad_summary"] == 1


def test_where_no_worker_can_start_every_answer_is_read_here(monkeypatch):
    """A sandbox without the semaphores process pools need (or that forbids new processes):
    the pool cannot start, and the answers are read in the collector's process."""
    def refuse(method):
        raise OSError(38, "Function not implemented")
    monkeypatch.setattr(multiprocessing, "get_context", refuse)
    apart = Apart(2, min_bytes=10)
    try:
        assert apart.run(_echo_size, b"z" * 100) == (100, False)
        assert apart.run(_echo_size, b"z" * 200) == (200, False)
    finally:
        apart.close()
    assert (apart.fell_back, apart.sent) == (1, 0)
