"""The figures of a cell are declared once (collector/figures.py): what the statistics compute,
the CSV, the write-back and the metric catalog all follow the declarations."""

from __future__ import annotations

import csv
import importlib
import io
import re
from dataclasses import replace
from pathlib import Path

import pytest

from collector import figures, regional_page
from collector.output import regional_points, to_csv
from collector.stats import Settings, aggregate
from kit.definitions import INTERNET_CAUSES
from tests.fleet import Fleet

ROOT = Path(__file__).resolve().parents[1]
START = 1_793_232_000
# A published cell's keys that are not scalar figures: who the cell is, and the profiles.
IDENTITY = {"region", "region_name", "isp", "city", "access", "period_start", "period_end",
            "suppressed"}
PROFILES = {"load_shedding_by_hour", "load_shedding_by_weekday", "load_shedding_heatmap"}


@pytest.fixture(scope="module")
def result():
    fleet = Fleet(agents=30, days=3, start=START, round_s=300, seed=2)
    return aggregate(fleet.dataset(), Settings(bootstrap=100, min_agents=3), period="day",
                     now=fleet.end)


def test_names_are_unique_and_types_known():
    names = [f.name for f in figures.FIGURES]
    assert len(names) == len(set(names))
    assert all(f.type in ("float", "integer") for f in figures.FIGURES)
    assert all(f.measurement in ("", figures.COVERAGE, figures.POWER, figures.INTERNET,
                                 figures.LINE) for f in figures.FIGURES)
    assert all(f.basis in ("", *figures.BASIS_ROWS) for f in figures.FIGURES)
    assert all(f.meaning and f.how and "\n" not in f.meaning for f in figures.FIGURES)


def test_a_published_cell_holds_exactly_the_declared_figures(result):
    published = [c for c in result["cells"] if not c["suppressed"]]
    assert published
    for cell in published:
        want = set()
        for f in figures.FIGURES:
            want |= {f.name, *f.basis_columns} | ({f.name + "_ci"} if f.interval else set())
        assert set(cell) - IDENTITY - PROFILES == want


def test_a_suppressed_cell_holds_no_figure(result):
    for cell in result["cells"]:
        if cell["suppressed"]:
            assert set(cell) - IDENTITY == {"suppressed_reason"}


def test_csv_columns_follow_the_declarations(result):
    header = next(csv.reader(io.StringIO(to_csv(result))))
    i = header.index("suppressed")
    assert header[i + 1:] == figures.csv_columns()
    # Scripts read columns by position: the first generation's figures, then those added with
    # the lines, what the line figures rest on and why a cell is suppressed.
    pos = {c: k for k, c in enumerate(header)}
    first = [pos[f.name] for f in figures.FIGURES if f.csv == 0]
    later = [pos[f.name] for f in figures.FIGURES if f.csv == 1]
    basis = [pos[c] for f in figures.FIGURES for c in f.basis_columns]
    assert max(first) < min(later) and max(later) < min(basis) < max(basis) < pos["suppressed_reason"]
    assert header[i + 1:i + 3] == ["agents", "agent_hours"] and header[-1] == "suppressed_reason"


def test_a_new_figure_goes_at_the_end_of_the_row(monkeypatch):
    today = figures.csv_columns()
    new = figures.Figure("x_per_agent", "float", "x", "an x per customer served", "x / N",
                         measurement=figures.LINE, basis="speed tests", csv=2)
    monkeypatch.setattr(figures, "FIGURES", figures.FIGURES + (new,))
    assert figures.csv_columns() == today + ["x_per_agent", "x_per_agent_ci_low",
                                             "x_per_agent_ci_high", "x_per_agent_sites",
                                             "x_per_agent_agents"]


def test_every_written_figure_is_emitted_and_every_emitted_field_declared(result):
    points = regional_points(result)
    emitted: dict[str, set] = {}
    for m, _, fields, _ in points:
        emitted.setdefault(m, set()).update(fields)
    for m in (figures.COVERAGE, figures.POWER, figures.INTERNET, figures.LINE):
        declared = {"suppressed"} if m == figures.COVERAGE else set()
        for f in figures.written_to(m):
            declared.add(f.name)
            if f.interval:
                declared |= {f.name + "_ci_low", f.name + "_ci_high"}
            if f.basis:
                declared.add(f.name + "_sites")
        assert emitted[m] == declared, m
    assert emitted[figures.LOAD_SHEDDING] == {f.name for f in figures.LOAD_SHEDDING_FIELDS}
    assert emitted[figures.EVENTS] == {f.name for f in figures.EVENT_FIELDS}


def test_written_fields_have_the_declared_types(result):
    for m, _, fields, _ in regional_points(result):
        for f in figures.written_to(m):
            if f.name in fields:
                assert type(fields[f.name]) is (int if f.type == "integer" else float), f.name


def test_the_catalog_tables_are_the_declarations():
    text = figures.CATALOG.read_text(encoding="utf-8")
    assert figures.with_catalog(text) == text, (
        "docs/metrics.md's regional tables are stale: regenerate them with python -c "
        "'from collector.figures import write_catalog; write_catalog()'")


def test_the_catalog_check_is_not_vacuous(monkeypatch):
    text = figures.CATALOG.read_text(encoding="utf-8")
    changed = tuple(replace(f, meaning="something else") if f.name == "power_maifi" else f
                    for f in figures.FIGURES)
    monkeypatch.setattr(figures, "FIGURES", changed)
    out = figures.with_catalog(text)
    assert out != text and "| `power_maifi` | float | interruptions | something else |" in out
    with pytest.raises(ValueError):
        figures.with_catalog(text.replace("## regional_line\n", "## regional_lines\n"))


def test_docs_collector_defines_every_figure():
    text = (ROOT / "docs" / "collector.md").read_text(encoding="utf-8")
    for f in figures.FIGURES:
        name = f.name
        for c in INTERNET_CAUSES:
            name = re.sub(rf"_{c}$", "_<cause>", name)
        assert f"`{name}`" in text or f"`{name}`," in text, name


def test_page_columns_are_complete():
    for table in ("headline", "quality"):
        cols = figures.page_columns(table)
        assert cols and all(fmt in figures.PAGE_FORMATS and label and expl
                            for _, label, expl, fmt in cols)
    assert [c[0] for c in figures.page_columns("headline")][:3] == ["agents", "sites", "agent_hours"]


def test_how_names_functions_that_exist():
    for f in figures.FIGURES:
        names = re.findall(r"\b((?:collector|kit)\.[\w.]+)", f.how)
        assert names, f.name
        for dotted in names:
            module, _, attr = dotted.rpartition(".")
            assert callable(getattr(importlib.import_module(module), attr)), dotted


def test_the_regional_page_shows_the_declared_columns():
    assert set(regional_page.FORMATS) == set(figures.PAGE_FORMATS)
    for table, cols in (("headline", regional_page.HEADLINE),
                        ("quality", regional_page.QUALITY_COLUMNS)):
        assert [c[:3] for c in cols] == [c[:3] for c in figures.page_columns(table)]
