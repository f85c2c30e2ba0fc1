"""The line report over long windows reads the hourly summaries (agent/report/line.py): the same
figures as from the raw rows (observed time and availability exact, daily latency within 2 %),
gaps to the hour, and a window older than the raw rows still reported from the summaries."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from agent.clock import FakeClock
from agent.config import parse
from agent.model import Episode, Sample
from agent.report import line
from agent.runner import Agent
from tests.fakenet import FakeNet

DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 34
STEP = 60.0   # a round a minute keeps the file small; the figures do not depend on the cadence


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """34 days of rounds and internet pings (two targets, log-normal RTTs), a day not watched,
    two outages; then the agent's summaries job catching up, as an upgraded agent does."""
    tmp = tmp_path_factory.mktemp("long")
    clock = FakeClock(DAY0)
    cfg = parse(f'[agent]\nstate_dir = "{tmp}"\nregion = "PK-SD"\n[probe]\ninterval_s = 60\n')
    agent = Agent(cfg, clock=clock, probes=FakeNet().probes())
    rng = random.Random(7)
    tags = agent.tags
    rows = []
    outages = [(DAY0 + timedelta(days=3, hours=10), 1800),
               (DAY0 + timedelta(days=20, hours=23, minutes=30), 5400)]
    for i in range(int(DAYS * 86400 / STEP)):
        t = DAY0 + timedelta(seconds=i * STEP)
        if timedelta(days=12) <= t - DAY0 < timedelta(days=13):
            continue                                      # the machine was off that day
        down = any(a <= t < a + timedelta(seconds=n) for a, n in outages)
        rows.append(Sample("round", tags, {"status": "down" if down else "up", "interval_s": STEP,
                                           "online": 0 if down else 1}, t))
        for target in ("1.1.1.1", "8.8.8.8"):
            f = {"sent": 3, "received": 0 if down else 3, "loss_pct": 100.0 if down else 0.0}
            if not down:
                f["rtt_avg_ms"] = 40 * rng.lognormvariate(0, 0.4)
            rows.append(Sample("ping", {**tags, "target": target, "role": "internet",
                                        "method": "icmp_dgram"}, f, t))
    agent.store.write(rows)
    agent.store.write(episodes=[Episode(f"connectivity:{i}", "connectivity", "isp", a,
                                        a + timedelta(seconds=n), n, n > 300)
                                for i, (a, n) in enumerate(outages)])
    clock.advance(DAYS * 86400 + 60)
    for _ in range(DAYS + 2):                             # a day's hours per run
        agent.summaries.run()
    agent.store.close()
    return tmp / "linewatch.db"


def report(path, start, end, monkeypatch=None, long_s=None):
    if monkeypatch is not None:
        monkeypatch.setattr(line, "LONG_WINDOW_S", long_s)
    return line.summarise(path, start, end, end, tz="Asia/Karachi")


def test_long_window_figures_equal_the_raw_ones(store_path, monkeypatch):
    start, end = DAY0.timestamp(), DAY0.timestamp() + DAYS * 86400
    summary = report(store_path, start, end)
    assert summary["read_from"] == "hourly"
    raw = report(store_path, start, end, monkeypatch, long_s=10**9)
    assert "read_from" not in raw
    assert summary["observed_h"] == pytest.approx(raw["observed_h"], rel=1e-12)
    assert summary["internet_availability"] == pytest.approx(raw["internet_availability"], rel=1e-12)
    assert summary["outage_min"] == raw["outage_min"] and summary["outages"] == raw["outages"]
    assert len(summary["daily"]) == len(raw["daily"])
    for s, r in zip(summary["daily"], raw["daily"]):
        assert s["day"] == r["day"] and s["observed_h"] == pytest.approx(r["observed_h"])
        assert s["availability"] == pytest.approx(r["availability"])
        assert (s["loss_pct"] is None) == (r["loss_pct"] is None)
        if r["rtt_p50_ms"] is not None:
            assert abs(s["rtt_p50_ms"] - r["rtt_p50_ms"]) <= 0.02 * r["rtt_p50_ms"]
            assert abs(s["rtt_p95_ms"] - r["rtt_p95_ms"]) <= 0.02 * r["rtt_p95_ms"]
            assert s["loss_pct"] == pytest.approx(r["loss_pct"])
    # the day off is one gap, to the hour, on both paths
    off = [g for g in summary["gaps"] if g["start"].startswith("2026-01-13T05:00")]
    assert off and off[0]["end"].startswith("2026-01-14T05:00")
    assert len(summary["gaps"]) == len(raw["gaps"])
    # the page says where its figures came from
    from agent.report.page import line_report
    assert "hourly summaries" in line_report(summary)
    assert "hourly summaries" not in line_report(raw)


def test_a_window_older_than_the_raw_rows_is_read_from_the_summaries(store_path, tmp_path):
    # retention took the first 30 days of raw rows; the summaries stay
    import shutil
    import sqlite3

    copy = tmp_path / "linewatch.db"
    shutil.copy(store_path, copy)
    cut = int((DAY0 + timedelta(days=30)).timestamp() * 1e9)
    c = sqlite3.connect(copy)
    c.execute("DELETE FROM samples WHERE time_ns < ? AND series_id IN (SELECT id FROM series"
              " WHERE measurement IN ('round', 'ping'))", (cut,))
    c.commit()
    c.close()
    start = (DAY0 + timedelta(days=2)).timestamp()
    got = line.summarise(copy, start, start + 7 * 86400, start + 7 * 86400)
    assert got["read_from"] == "hourly"
    assert got["observed_h"] == pytest.approx(7 * 24)
    assert math.isclose(got["outage_min"], 30.0)
    assert all(d["rtt_p50_ms"] for d in got["daily"])


def test_hostile_summary_rows_are_left_out(store_path, tmp_path):
    import shutil
    import sqlite3

    copy = tmp_path / "linewatch.db"
    shutil.copy(store_path, copy)
    c = sqlite3.connect(copy)
    sid = c.execute("SELECT id FROM series WHERE measurement = 'hourly'").fetchone()[0]
    t0 = int(DAY0.timestamp() * 1e9)
    c.execute("UPDATE samples SET fields = '[1, 2' WHERE series_id = ? AND time_ns = ?", (sid, t0))
    c.execute("UPDATE samples SET fields = '{\"observed_s\": 1e300, \"rtt_h050\": -4}'"
              " WHERE series_id = ? AND time_ns = ?", (sid, t0 + 3600 * 10**9))
    c.execute("UPDATE samples SET fields = ? WHERE series_id = ? AND time_ns = ?",
              ('{"observed_s": 3600, ' + '"x": [' * 5000 + ']' * 5000 + "}", sid, t0 + 7200 * 10**9))
    c.commit()
    c.close()
    got = line.summarise(copy, DAY0.timestamp(), DAY0.timestamp() + DAYS * 86400,
                         DAY0.timestamp() + DAYS * 86400)
    assert got["read_from"] == "hourly"
    assert got["observed_h"] < (DAYS - 1) * 24
