"""Every figure of a collector cell, declared once: its name, type, unit, meaning, how it is
computed, whether it has a 95 % interval, where it is written back and how the regional page
shows it.

From :data:`FIGURES` come the CSV columns and their order (:func:`csv_columns`, used by
:mod:`collector.output`), the ``regional_*`` points that ``linewatch-collector run`` writes
back (:func:`written_to`), which figures carry an interval (:attr:`Figure.interval`), the
regional page's figure columns (:func:`page_columns`, shown by :mod:`collector.regional_page`)
and the collector part of the metric catalog, docs/metrics.md (:func:`catalog_table`;
tests/test_collector_figures.py holds the file to it, and :func:`write_catalog` rewrites its
tables). The figures are computed by :mod:`collector.stats` (the function each ``how`` names,
from per-line sums); a test checks that a published cell holds exactly the figures declared
here, with intervals exactly where declared.

The order of :data:`FIGURES` is the order of the fields of each ``regional_*`` point and of the
page's columns, and of the CSV columns within each generation of the CSV (``csv``): scripts read
CSV columns by position, so a new figure takes the next generation and its columns go at the end
of the row (:func:`csv_columns`).

Pure and stdlib-only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kit.definitions import INTERNET_CAUSES

COVERAGE, POWER, INTERNET, LINE = ("regional_coverage", "regional_power", "regional_internet",
                                   "regional_line")
LOAD_SHEDDING, EVENTS = "regional_load_shedding", "regional_events"
# What a line figure rests on, by the rows it comes from: the agents counted in stats.
BASIS_ROWS = {"latency rows": "ping_agents", "speed tests": "speed_agents"}
# How the regional page writes a figure (collector.regional_page.FORMATS): a whole number, one or
# two decimals, a share as a percentage with three or one decimals, bit/s as Mbit/s.
PAGE_FORMATS = ("int", "num1", "num2", "pct", "pct1", "mbit")


@dataclass(frozen=True)
class Field:
    """One field of a ``regional_*`` point that is not a cell's figure (a flag, an event's
    description): as docs/metrics.md lists it."""

    name: str
    type: str       # line-protocol type: float, integer, boolean, string
    unit: str       # "" for none
    meaning: str


@dataclass(frozen=True)
class Figure:
    """One scalar figure of a published cell (``cell[name]``; None when it cannot be computed)."""

    name: str
    type: str                   # as written back: "float" or "integer"
    unit: str                   # as docs/metrics.md gives it: "min", "0..1", "interruptions"...
    meaning: str                # one sentence: docs/metrics.md's meaning
    how: str                    # the source sums and the function that computes it
    interval: bool = True       # a 95 % bootstrap interval over lines: cell[name + "_ci"]
    measurement: str = ""       # the regional_* point it is written to; "": CSV and JSON only
    basis: str = ""             # line figures: the rows a line's value comes from (BASIS_ROWS);
    #                             cell[name + "_sites"] and [name + "_agents"] say how many
    #                             lines and agents the figure rests on
    csv: int = 0                # the CSV generation that added its column: 0 the first; 1 the
    #                             lines (sites), with what each line figure rests on and why a
    #                             cell is suppressed; a new figure takes the next
    page: tuple[str, str, str, str] | None = None   # (table, heading, its expansion, format)

    @property
    def basis_columns(self) -> tuple[str, ...]:
        return (self.name + "_sites", self.name + "_agents") if self.basis else ()


_Page = tuple[str, str, str, str]


def _power(name: str, unit: str, meaning: str, how: str, page: _Page | None = None) -> Figure:
    return Figure(name, "float", unit, meaning, how, measurement=POWER, page=page)


def _internet(name: str, unit: str, meaning: str, how: str, page: _Page | None = None) -> Figure:
    return Figure(name, "float", unit, meaning, how, measurement=INTERNET, page=page)


def _line(name: str, unit: str, meaning: str, how: str, basis: str, page: _Page) -> Figure:
    return Figure(name, "float", unit, meaning, how, measurement=LINE, basis=basis, page=page)


FIGURES: tuple[Figure, ...] = (
    Figure("agents", "integer", "agents", "distinct agents observed in the cell (published cells "
           "only)", "distinct agents with records of the cell's lines in the period "
           "(collector.stats.summarise)", interval=False, measurement=COVERAGE,
           page=("headline", "Agents", "agents reporting in the cell", "int")),
    Figure("sites", "integer", "sites", "distinct lines (sites) among them: agents behind one "
           "router count once; the customers of the indices", "distinct sites of the cell with "
           "watched time in the period (collector.stats.summarise)", interval=False,
           measurement=COVERAGE, csv=1,
           page=("headline", "Lines", "distinct lines (sites) in the cell: agents behind one "
                 "router count once", "int")),
    Figure("agent_hours", "float", "h", "observed hours of the cell's lines (a site's hours "
           "counted once)", "power-watched seconds of the cell's lines / 3,600 "
           "(collector.stats.summarise)", interval=False, measurement=COVERAGE,
           page=("headline", "Agent-hours", "hours of observation summed over lines (a line's "
                 "agents counted once)", "num1")),
    Figure("sites_watched_min_h", "integer", "sites", "lines that watched `collector.min_watch_h` "
           "hours or more (at most half the period): what the publication floor counts",
           "lines whose power-watched time reaches min_watch_h, at most half the period "
           "(collector.stats.summarise)", interval=False, csv=1),
    _power("power_saifi", "interruptions", "sustained power interruptions per customer served "
           "(IEEE 1366 SAIFI)", "sustained interruptions / N (collector.indices.from_sums)",
           ("headline", "SAIFI", "sustained power cuts per customer", "num2")),
    _power("power_saidi_min", "min", "sustained interruption minutes per customer served (SAIDI)",
           "sustained interruption minutes / N (collector.indices.from_sums)",
           ("headline", "SAIDI min", "minutes without power per customer", "num1")),
    _power("power_caidi_min", "min", "minutes per sustained interruption (CAIDI = SAIDI / SAIFI)",
           "SAIDI / SAIFI, none without a sustained interruption (collector.indices.from_sums)",
           ("headline", "CAIDI min", "average minutes per sustained power cut", "num1")),
    _power("power_maifi", "interruptions", "momentary interruptions per customer served (MAIFI)",
           "momentary interruptions / N (collector.indices.from_sums)",
           ("headline", "MAIFI", "momentary power cuts per customer", "num2")),
    _power("power_asai", "0..1", "share of observed agent-time with power (ASAI)",
           "1 - sustained interruption seconds / power-watched seconds, at least 0 "
           "(collector.indices.from_sums)",
           ("headline", "ASAI", "share of observed time with power", "pct")),
    _power("work_hours_power_min_per_agent", "min", "power-cut minutes inside working hours per "
           "customer served", "minutes of every power interruption inside the working hours / N "
           "(collector.localtime.work_seconds_before)",
           ("quality", "Work-hours power min / agent", "minutes without power inside work hours, "
            "per agent", "num1")),
    _internet("internet_availability", "0..1", "share of observed time the internet answered",
              "1 - connectivity outage seconds / round seconds (kit.definitions.availability)",
              ("headline", "Internet avail.", "share of observed time with internet", "pct")),
    _internet("internet_outages_per_agent", "outages", "connectivity outages per customer served",
              "outages / N, N over round time (collector.stats._fill_internet)",
              ("headline", "Outages / agent", "internet outages per agent", "num2")),
    _internet("internet_outage_min_per_agent", "min", "connectivity outage minutes per customer "
              "served", "outage minutes / N, N over round time (collector.stats._fill_internet)",
              ("headline", "Outage min / agent", "internet outage minutes per agent", "num1")),
    *(_internet(f"internet_outages_per_agent_{c}", "outages", f"outages with cause {c} per "
                "customer served", f"outages with cause {c} / N (collector.stats._fill_internet)")
      for c in INTERNET_CAUSES),
    *(_internet(f"internet_outage_min_per_agent_{c}", "min", f"outage minutes with cause {c} per "
                "customer served", f"minutes of outages with cause {c} / N "
                "(collector.stats._fill_internet)") for c in INTERNET_CAUSES),
    _internet("work_hours_internet_min_per_agent", "min", "outage minutes inside working hours "
              "per customer served", "minutes of every connectivity outage inside the working "
              "hours / N (collector.localtime.work_seconds_before)",
              ("quality", "Work-hours internet min / agent", "internet outage minutes inside work "
               "hours, per agent", "num1")),
    _line("rtt_p50_ms", "ms", "median over agents of each agent's median of daily median "
          "round-trip times to internet targets", "median over lines of each line's median daily "
          "median (kit.definitions.quantile; collector.linequality.fill)", "latency rows",
          ("headline", "RTT p50 ms", "median round-trip time to internet targets", "num1")),
    _line("rtt_p95_ms", "ms", "median over agents of each agent's median of daily 95th "
          "percentile round-trip times", "median over lines of each line's median daily 95th "
          "percentile (kit.definitions.quantile; collector.linequality.fill)", "latency rows",
          ("quality", "RTT p95 ms", "95th percentile round-trip time", "num1")),
    _line("loss_pct", "percent", "mean over agents of their loss while the target answered",
          "mean over lines of their loss over rounds in which the target answered "
          "(collector.linequality.fill)", "latency rows",
          ("quality", "Loss %", "mean packet loss", "num2")),
    _line("download_p50_bps", "bit/s", "median over agents of each agent's median download",
          "median over lines of each line's median speed test (kit.definitions.quantile; "
          "collector.linequality.fill)", "speed tests",
          ("headline", "Download p50 Mbit/s", "median download speed", "mbit")),
    _line("download_p10_bps", "bit/s", "10th percentile over agents of each agent's median "
          "download", "10th percentile over lines of each line's median download "
          "(kit.definitions.quantile; collector.linequality.fill)", "speed tests",
          ("quality", "Download p10 Mbit/s", "10th percentile download speed", "mbit")),
    _line("upload_p50_bps", "bit/s", "median over agents of each agent's median upload",
          "median over lines of each line's median upload (kit.definitions.quantile; "
          "collector.linequality.fill)", "speed tests",
          ("quality", "Upload p50 Mbit/s", "median upload speed", "mbit")),
    _line("speed_under_threshold_share", "0..1", "mean over agents of the share of their speed "
          "tests below the threshold", "mean over lines of the share of their tests below "
          "speed_threshold_mbps (collector.linequality.fill)", "speed tests",
          ("quality", "Tests under threshold", "share of speed tests below the speed threshold",
           "pct1")),
    Figure("regional_events", "integer", "events", "regional events that touched the cell's "
           "agents", "regional events with an episode of the cell's lines that began in the "
           "period (collector.events.regional_events)", interval=False, measurement=COVERAGE,
           page=("quality", "Regional events", "region-wide events the cell took part in",
                 "int")),
    Figure("power_regional_share", "float", "0..1", "share of the cell's power interruptions that "
           "were part of a regional event", "interruptions in a regional event / interruptions "
           "(collector.events.regional_events)", interval=False, measurement=POWER),
    Figure("internet_regional_share", "float", "0..1", "share of the cell's outages that were "
           "part of a regional event", "outages in a regional event / outages "
           "(collector.events.regional_events)", interval=False, measurement=INTERNET),
)
BY_NAME: dict[str, Figure] = {f.name: f for f in FIGURES}

# The fields of the other points (docs/metrics.md).
SUPPRESSED = Field("suppressed", "boolean", "", "below the publication floor (fewer than "
                   "`collector.min_agents` lines that each watched `collector.min_watch_h` "
                   "hours): no figures follow")
LOAD_SHEDDING_FIELDS: tuple[Field, ...] = (
    Field("share", "float", "0..1", "share of observed agent-time without mains power in that "
          "hour"),
)
EVENT_FIELDS: tuple[Field, ...] = (
    Field("agents_affected", "integer", "agents", "agents whose episode began within the event "
          "window"),
    Field("agents_observed", "integer", "agents", "agents of the sites watching in the region in "
          "that hour"),
    Field("sites_affected", "integer", "sites", "lines (sites) whose episode began within the "
          "event window: what the event's rule counts"),
    Field("sites_observed", "integer", "sites", "lines watching in the region in that hour (round "
          "time for a connectivity event, power-watched time for a power event)"),
    Field("share", "float", "0..1", "sites affected / sites observed"),
    Field("cause", "string", "", "the most common cause among the episodes"),
    Field("median_duration_min", "float", "min", "median length of the episodes"),
    Field("end_unix_ms", "integer", "ms", "the last episode's end, for a Grafana annotation's "
          "time end"),
)


def csv_columns() -> list[str]:
    """The columns of a CSV row after the cell's identity, generation by generation (so a column
    never moves): each figure of the generation, with its ``_ci_low`` and ``_ci_high`` when it
    has an interval; in generation 1, then what each line figure rests on (``_sites``,
    ``_agents``) and ``suppressed_reason``; in a later one, each new line figure's own."""
    out: list[str] = []
    for gen in range(max(f.csv for f in FIGURES) + 1):
        for f in FIGURES:
            if f.csv == gen:
                out += [f.name] + ([f.name + "_ci_low", f.name + "_ci_high"] if f.interval else [])
                if gen > 1:
                    out += f.basis_columns
        if gen == 1:
            out += [c for f in FIGURES if f.csv <= 1 for c in f.basis_columns]
            out.append("suppressed_reason")
    return out


def written_to(measurement: str) -> tuple[Figure, ...]:
    """The figures of a ``regional_*`` point, in the order of its fields."""
    return tuple(f for f in FIGURES if f.measurement == measurement)


def page_columns(table: str) -> tuple[tuple[str, str, str, str], ...]:
    """The regional page's ``table`` ("headline" or "quality"), left to right: (figure, column
    heading, its expansion for ``<abbr>``, format name from PAGE_FORMATS)."""
    return tuple((f.name, *f.page[1:]) for f in FIGURES if f.page and f.page[0] == table)


# -- the metric catalog --------------------------------------------------------------------------

CATALOG = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
_HEAD = "| field | type | unit | meaning |\n|---|---|---|---|\n"


def _row(name: str, type_: str, unit: str, meaning: str) -> str:
    cells = (f"`{name}`", type_, unit, meaning)
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|\n"


def catalog_table(measurement: str) -> str:
    """docs/metrics.md's table of ``measurement``'s fields: each figure with its interval's ends,
    then the lines each line figure rests on."""
    if measurement in (LOAD_SHEDDING, EVENTS):
        fields = LOAD_SHEDDING_FIELDS if measurement == LOAD_SHEDDING else EVENT_FIELDS
        return _HEAD + "".join(_row(f.name, f.type, f.unit, f.meaning) for f in fields)
    rows = []
    if measurement == COVERAGE:
        rows.append(_row(SUPPRESSED.name, SUPPRESSED.type, SUPPRESSED.unit, SUPPRESSED.meaning))
    figures = written_to(measurement)
    for f in figures:
        rows.append(_row(f.name, f.type, f.unit, f.meaning))
        if f.interval:
            rows.append(_row(f.name + "_ci_low", "float", f.unit,
                             "low end of its 95 % interval (bootstrap over agents)"))
            rows.append(_row(f.name + "_ci_high", "float", f.unit, "high end of its 95 % interval"))
    for f in figures:
        if f.basis:
            rows.append(_row(f.name + "_sites", "integer", "sites",
                             f"lines `{f.name}` rests on (those with {f.basis}), at most the "
                             "cell's `sites`"))
    return _HEAD + "".join(rows)


MEASUREMENTS = (COVERAGE, POWER, INTERNET, LINE, LOAD_SHEDDING, EVENTS)


def with_catalog(text: str) -> str:
    """docs/metrics.md's ``text`` with the table of each ``regional_*`` section made from the
    declarations here (the prose around them stays as written)."""
    for m in MEASUREMENTS:
        pattern = re.compile(rf"(^## {m}\n(?:(?!## |\| field ).*\n)*)(\| field \|.*\n(?:\|.*\n)*)",
                             re.MULTILINE)
        table = catalog_table(m)

        def with_table(mo: re.Match[str], table: str = table) -> str:
            return mo.group(1) + table

        text, n = pattern.subn(with_table, text, count=1)
        if n != 1:
            raise ValueError(f"docs/metrics.md: no table under ## {m}")
    return text


def write_catalog(path: Path = CATALOG) -> None:
    """Rewrite the regional tables of docs/metrics.md from the declarations."""
    path.write_text(with_catalog(path.read_text(encoding="utf-8")), encoding="utf-8")
