"""The result's renderings: JSON contract, CSV columns, the table, and the regional_* points,
every one of which must be in docs/metrics.md with its type (and every one catalogued emitted)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from agent.model import Sample, from_ns
from collector.output import regional_points, to_csv, to_json, to_table
from collector.stats import Settings, aggregate
from tests.catalog import assert_listed, catalogued
from tests.fleet import Fleet

START = 1_793_232_000


@pytest.fixture(scope="module")
def result():
    fleet = Fleet(agents=30, days=3, start=START, round_s=300, seed=2)
    return aggregate(fleet.dataset(), Settings(bootstrap=100, min_agents=3), period="day",
                     now=fleet.end)


def test_json_is_the_list_of_cells(result):
    cells = json.loads(to_json(result))
    assert cells == json.loads(json.dumps(result["cells"]))


def test_csv_has_a_row_per_cell_and_interval_columns(result):
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert len(rows) == len(result["cells"])
    shown = next(r for r in rows if r["suppressed"] == "false")
    assert float(shown["power_saidi_min_ci_low"]) <= float(shown["power_saidi_min"]) \
        <= float(shown["power_saidi_min_ci_high"])
    hidden = [r for r in rows if r["suppressed"] == "true"]
    assert hidden and all(r["power_saifi"] == "" and r["agents"] == "" for r in hidden)


def test_table_shows_suppression_events_and_quality(result):
    text = to_table(result)
    assert "suppressed (fewer than 3 lines)" in text
    assert "Regional events" in text and "Data quality" in text and "accepted:" in text


def test_every_regional_point_is_in_the_catalog(result):
    points = regional_points(result)
    kinds = {m for m, _, _, _ in points}
    assert kinds == {"regional_coverage", "regional_power", "regional_internet", "regional_line",
                     "regional_load_shedding", "regional_events"}
    seen = assert_listed(Sample(m, t, f, from_ns(ns)) for m, t, f, ns in points)
    rows, tags = catalogued("collector")                  # and the other way: none left unemitted
    assert sorted(rows - seen) == [] and sorted(tags - {(m, k) for m, t, _, _ in points for k in t}) == []
    for m, _tags, fields, _ in points:
        if m == "regional_coverage" and fields["suppressed"]:
            assert fields == {"suppressed": True}     # no figure of a small cell leaves
