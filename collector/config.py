"""The collector's configuration: TOML with an ``[influx]`` table (the agent's keys, same meaning)
and a ``[collector]`` table, validated once into frozen dataclasses; errors name file and key."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from collector.settings import PERIODS, Settings
from kit.configkit import (
    at_least,
    between,
    check_zone,
    checked,
    default_of,
    each,
    one_of,
    opt,
    parse_duration,
    parse_work_hours,
    sections_of,
    toml_value,
    wrap,
)
from kit.definitions import PK_REGIONS, REGION_RE, WEEKDAYS, WORK_DAYS
from kit.errors import ConfigError
from kit.influxconfig import InfluxSection


def _region_code(v: str) -> None:
    if not REGION_RE.match(v):
        raise ValueError("must be an ISO 3166-2 code such as PK-PB")


@dataclass(frozen=True)
class CollectorSection:
    min_agents: int = opt(5, "Publication floor: a cell (region x ISP x period) with fewer "
                           "agents is suppressed in every output, with no figures. It protects "
                           "volunteers (a small cell points at a person) and keeps figures with "
                           "no statistical power out of print. Counts lines (sites: agents "
                           "behind one router count once) that watched at least min_watch_h. "
                           "Below 5 the collector warns at start.", at_least(1))
    min_watch_h: float = opt(24.0, "Publication floor, watching: a line counts towards "
                              "min_agents only when it watched at least this many hours in the "
                              "cell's period (at most half the period: 12 h for a day cell), so "
                              "no figure is extrapolated from minutes of watching.",
                              between(0, 8760))
    momentary_max_s: float = opt(300.0, "Interruptions up to this long are momentary (MAIFI "
                                  "only); longer ones are sustained (IEEE 1366: 5 minutes).",
                                  between(1, 86400))
    work_hours: str = opt("09:00-18:00", "Working hours in the local time zone, for the minutes "
                           "lost within working hours.", checked(parse_work_hours))
    work_days: tuple = opt(WORK_DAYS, "Working days.",
                            each(one_of(*WEEKDAYS)))
    timezone: str = opt("Asia/Karachi", "Time zone of the hour-of-day profiles, working hours "
                         "and day/week/month periods (Pakistan: Asia/Karachi, UTC+5).", checked(check_zone))
    stores: tuple = opt((), "Agents' local store files (linewatch.db) to read as a second "
                         "source, or directories holding them, or glob patterns: a volunteer's "
                         "file handed over, or a line with no server.",
                         example=("/srv/volunteers/*.db",))
    regions: tuple = opt((), "Region codes a cell may have; data from any other code is "
                          "rejected and counted. Empty: Pakistan's (PK-PB, PK-SD, PK-KP, "
                          "PK-BA, PK-IS, PK-GB, PK-JK).", each(checked(_region_code)))
    speed_threshold_mbps: float = opt(10.0, "Speed tests below this download speed count in "
                                       "speed_under_threshold_share.", between(0.001, 100_000))
    event_window_s: float = opt(300.0, "Outages beginning within this many seconds of each "
                                 "other may form one regional event.", between(10, 86400))
    event_min_share: float = opt(0.5, "A regional event needs at least this share of the "
                                  "region's agents watching at the time (and at least 3).",
                                  between(0.01, 1))
    bootstrap: int = opt(1000, "Bootstrap resamples for the 95 % intervals.",
                          between(100, 100_000))
    cache_dir: str = opt("", "Where the closed days of InfluxDB's aggregated answers are kept, "
                          "so a repeated aggregation asks the server only for recent days. "
                          "Empty: $XDG_CACHE_HOME/linewatch-collector (~/.cache/...); \"off\": "
                          "no cache.")
    cache_settle_days: float = opt(3.0, "A day is kept in the cache once it is this many days "
                                    "old; rows agents forward later than that (a long-offline "
                                    "backlog) are read only with --refresh.", between(0.5, 365))
    parallel_queries: int = opt(2, "Queries sent to InfluxDB at once (InfluxDB 1.x works each "
                                 "on one core).", between(1, 16))
    parse_processes: int = opt(2, "Worker processes that read the largest answers (a week of "
                                "a large fleet's daily rows, 8 MB or more) beside each other; "
                                "0: every answer is read in the collector's own process.",
                                between(0, 64))
    max_answer_mb: int = opt(256, "Largest answer one InfluxDB query may send, in MB (2^20 "
                              "bytes): a larger one is refused, naming the query. A week of "
                              "1,000 agents' hourly rows is a few MB.", between(1, 4096))
    query_timeout_s: float = opt(900.0, "Longest time one InfluxDB query may take, from sending "
                                  "it to the last byte of its answer (the server may think "
                                  "that long before its first byte: influx.timeout_s bounds "
                                  "the checks' and writes' answers only).", between(1, 86400))
    run_every_min: int = opt(60, "linewatch-collector run: minutes between aggregations.",
                              between(1, 10_080))
    run_since: str = opt("35d", "linewatch-collector run: how far back each run looks (daily "
                          "cells of the last days are rewritten as late data arrives).",
                          checked(parse_duration))
    run_period: str = opt("day", "linewatch-collector run: the period of the cells it writes.",
                           one_of(*(p for p in PERIODS if p != "all")))


@dataclass(frozen=True)
class CollectorConfig:
    influx: InfluxSection = field(default_factory=InfluxSection)
    collector: CollectorSection = field(default_factory=CollectorSection)
    source: str = "(defaults)"


SECTIONS: dict[str, type] = {"influx": InfluxSection, "collector": CollectorSection}


def default_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("LINEWATCH_COLLECTOR_CONFIG"):
        return Path(env["LINEWATCH_COLLECTOR_CONFIG"])
    home = Path(env.get("HOME") or Path.home())
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "linewatch" / "collector.toml"


def load(cli_path: str | None, env: Mapping[str, str] = os.environ) -> CollectorConfig:
    path = Path(cli_path) if cli_path else default_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if cli_path or env.get("LINEWATCH_COLLECTOR_CONFIG"):
            raise ConfigError(str(path), "", "file not found") from None
        return CollectorConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc}") from exc
    return parse(text, str(path))


def parse(text: str, source: str = "collector.toml") -> CollectorConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from exc
    cfg = CollectorConfig(**sections_of(data, SECTIONS, source), source=source)
    i = cfg.influx
    if i.url and not (i.bucket or i.database):
        raise ConfigError(source, "influx.database", "required when influx.url is set (the "
                          "database, or for InfluxDB 2.x/3.x the bucket mapped to one)")
    return cfg


MIN_AGENTS_SAFE = 5


def warnings(cfg: CollectorConfig) -> list[str]:
    """What a valid config still gets warned about at start (one line each)."""
    c = cfg.collector
    out = []
    if c.min_agents < MIN_AGENTS_SAFE:
        out.append(f"{cfg.source}: collector.min_agents = {c.min_agents} is below "
                   f"{MIN_AGENTS_SAFE}: a published cell may rest on so few lines that it points "
                   "at a person, and its figures have little statistical power")
    return out


def settings(cfg: CollectorConfig) -> Settings:
    """The statistics' Settings for this config."""
    c = cfg.collector
    start, end = parse_work_hours(c.work_hours)
    regions = c.regions or tuple(PK_REGIONS)
    return Settings(min_agents=c.min_agents, min_watch_h=c.min_watch_h, momentary_max_s=c.momentary_max_s,
                    work_start_min=start, work_end_min=end, work_days=tuple(c.work_days),
                    timezone=c.timezone, speed_threshold_bps=c.speed_threshold_mbps * 1e6,
                    regions=tuple(regions), region_names=dict(PK_REGIONS),
                    event_window_s=c.event_window_s, event_min_share=c.event_min_share,
                    bootstrap=c.bootstrap)


def example_toml() -> str:
    """The commented collector config: every key with its doc, at its default or example."""
    out = ["# linewatch-collector configuration (--config PATH). Every key is optional.",
           "# [influx] has the agent's keys and meaning; the collector reads through InfluxQL",
           "# (/query): set database (and retention_policy) for InfluxDB 1.x, 2.x (a DBRP",
           "# mapping) and 3.x."]
    for name, cls in SECTIONS.items():
        out += ["", f"[{name}]"]
        for i, f in enumerate(fields(cls)):
            if i:
                out.append("")
            out += [f"# {line}" for line in wrap(f.metadata["doc"])]
            shown = f.metadata.get("example")
            value = shown if shown is not None else default_of(f)
            out.append(f"# {f.name} = {toml_value(value)}")
    return "\n".join(out) + "\n"

