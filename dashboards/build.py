"""Builds the Grafana dashboards (dashboards/*.json) from one description, so every panel's
InfluxQL lives here once and a test can run each of them against InfluxDB.

    python dashboards/build.py          # rewrites dashboards/my-line.json, regional.json, all-lines.json

The queries are InfluxQL (raw query mode), which Grafana's InfluxDB data source sends to
InfluxDB 1.x, 2.x (DBRP mapping) and 3.x alike. They use Grafana's macros ``$timeFilter`` and
``$__interval`` and the dashboards' variables (``$agent``; ``$region``, ``$isp``, ``$period``).
The data source is the variable ``${DS_INFLUXDB}``: pick the InfluxDB data source on import, or
provision one named ``linewatch`` (dashboards/provisioning/).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:     # run as `python dashboards/build.py` from a checkout
    sys.path.insert(0, str(HERE.parent))

from kit import hourly  # noqa: E402  (once the checkout is on the path)
from kit.definitions import INTERNET_CAUSES, WEEKDAY_LABELS  # noqa: E402

DS = {"type": "influxdb", "uid": "${DS_INFLUXDB}"}
AGENT = '"agent" =~ /^$agent$/'
CELL = '"region" =~ /^$region$/ AND "isp" =~ /^$isp$/ AND "period" = \'$period\''
VERDICTS = ("up", "degraded", "down", "error")     # the round's status field


def target(query: str, ref: str = "A", fmt: str = "time_series", alias: str = "") -> dict:
    t = {"refId": ref, "datasource": DS, "rawQuery": True, "query": query, "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    return t


# Display options per panel type. Key names and values are those of Grafana's panel models
# (@grafana/schema); tests/test_grafana_schema.py type-checks every file against them.
LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
TOOLTIP = {"mode": "multi", "sort": "none"}
REDUCE_LAST = {"calcs": ["lastNotNull"], "fields": "", "values": False}
OPTIONS = {
    "timeseries": {"legend": LEGEND, "tooltip": TOOLTIP},
    "stat": {"reduceOptions": REDUCE_LAST, "colorMode": "value", "graphMode": "none",
             "justifyMode": "auto", "textMode": "value", "orientation": "auto", "wideLayout": True,
             "showPercentChange": False},
    "bargauge": {"reduceOptions": REDUCE_LAST, "displayMode": "gradient", "orientation": "horizontal",
                 "showUnfilled": True, "valueMode": "color", "namePlacement": "auto", "sizing": "auto",
                 "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300},
    "table": {"showHeader": True, "cellHeight": "sm", "frameIndex": 0},
    "state-timeline": {"legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"},
                       "showValue": "never", "mergeValues": True, "rowHeight": 0.9, "alignValue": "left"},
    "barchart": {"legend": {**LEGEND, "showLegend": False}, "tooltip": {"mode": "single", "sort": "none"},
                 "orientation": "vertical", "showValue": "never", "stacking": "none", "barWidth": 0.9,
                 "groupWidth": 0.7, "fullHighlight": False, "xTickLabelRotation": 0,
                 "xTickLabelMaxLength": 0},
}
# A legend that totals each series over the range (the per-interval minutes panels).
SUM_LEGEND = {**LEGEND, "displayMode": "table", "calcs": ["sum"]}
STACKED_BARS = {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal", "group": "A"}}
CUSTOM = {
    "timeseries": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                   "spanNulls": False, "axisPlacement": "auto"},
    "state-timeline": {"fillOpacity": 80, "lineWidth": 0},
    "barchart": {"fillOpacity": 80, "lineWidth": 1, "gradientMode": "none"},
}
# What an agent with influx.send = "summaries" (a metered line) sends: hourly rows, outage rows
# and speed tests. Every panel that can be drawn from those reads them; a panel that needs the raw
# rows (round, ping, dns, power, agent) says so in its description, ending with NEEDS_ALL.
NEEDS_ALL = ('Needs the raw rows: empty for an agent with influx.send = "summaries", which sends '
             "only hourly summaries, outages and speed tests.")


def _sums(fields, unit_s: float, names) -> str:
    return ", ".join(f'sum("{f}") / {unit_s:g} AS "{n}"' for f, n in zip(fields, names))


# The hourly rows' seconds fields (kit.hourly), summed in minutes under short names.
OUTAGE_MIN = _sums(hourly.OUTAGE_FIELDS, 60, INTERNET_CAUSES)
POWER_MIN = _sums(hourly.POWER_FIELDS, 60, hourly.POWER_SOURCES)
OUTAGE_MIN_COLS = _sums(hourly.OUTAGE_FIELDS, 60, [f"outage_{c}_min" for c in INTERNET_CAUSES])
POWER_MIN_COLS = _sums(hourly.POWER_FIELDS, 60, [f"power_{s}_min" for s in hourly.POWER_SOURCES])
OUTAGE_S = " + ".join(f'sum("{f}")' for f in hourly.OUTAGE_FIELDS)


def _names(sums: str) -> list[str]:
    """The column names of a list of ``... AS "name"`` expressions."""
    return re.findall(r'AS "(\w+)"', sums)


# The live per-region panels of the all-lines dashboard. They are not in regional.json: that one
# shows only what the collector publishes (a cell under min_agents never appears), and these
# cells can be one volunteer's line; all-lines' viewers see every agent's line anyway.
LIVE = ("Live, from the agents' hourly rows, for the operator: unweighted by site (agents behind "
        "one router count each), without the collector's publication floor (min_agents: a cell "
        "may be a single volunteer's line) and without its cleaning (no rejected rows, repairs or "
        "duplicate sites taken out). The published figures are the collector's: "
        "dashboards/regional.json and linewatch-collector report.")


def availability(where: str, by: tuple[str, ...] = (), per_interval: bool = False) -> str:
    """kit.definitions.availability over the hourly rows, in one InfluxQL query: 1 - the outage
    seconds of every cause / the seconds watched (observed_s), per group of tags ``by``.
    InfluxQL divides by zero as 0 (a figure of 100 % for a range in which nothing was watched),
    so the sums come from a subquery and a group that watched nothing gives no figure, as the
    definition says. It cannot clamp at 0 as the definition does; that matters only where the
    outage seconds exceed the seconds watched, which takes episodes that ran while nothing was
    watched."""
    group = [*(["time($__interval)"] if per_interval else []), *(f'"{t}"' for t in by)]
    inner = (f'SELECT {OUTAGE_S} AS "outage_s", sum("observed_s") AS "observed_s" FROM "hourly" '
             f"WHERE {where}" + (f" GROUP BY {', '.join(group)}" if group else ""))
    outer_by = ", ".join(f'"{t}"' for t in by)
    return (f'SELECT 1 - "outage_s" / "observed_s" AS "availability" FROM ({inner}) '
            'WHERE "observed_s" > 0' + (f" GROUP BY {outer_by}" if by else ""))


AVAILABILITY_MEANS = ("linewatch's internet availability (docs/methodology.md, Availability): 1 - "
                      "connectivity outage seconds (every cause) / seconds watched, from the "
                      "agents' hourly rows (the hours that begin in the range; the hour in "
                      "progress as of its last minute). No figure where nothing was watched.")
# Availability: red below 95 %, amber below 99 %, green from 99 %.
AVAILABILITY = {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                              {"color": "orange", "value": 0.95},
                                              {"color": "green", "value": 0.99}]}


def panel(pid: int, title: str, kind: str, targets: list[dict], grid: tuple[int, int, int, int],
          unit: str = "", description: str = "", *, options: dict | None = None,
          defaults: dict | None = None, overrides: list[dict] = (), transformations: list[dict] = (),
          interval: str = "") -> dict:
    x, y, w, h = grid
    fd: dict = {}
    if unit:
        fd["unit"] = unit
    if kind in CUSTOM:
        fd["custom"] = dict(CUSTOM[kind])
    for key, value in (defaults or {}).items():
        fd[key] = {**fd.get(key, {}), **value} if key == "custom" else value
    p = {"id": pid, "type": kind, "title": title, "datasource": DS, "targets": targets,
         "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "fieldConfig": {"defaults": fd, "overrides": list(overrides)},
         "options": {**OPTIONS[kind], **(options or {})}}
    if description:
        p["description"] = description
    if transformations:
        p["transformations"] = list(transformations)
    if interval:
        p["interval"] = interval
    return p


def by_name(name: str, **properties) -> dict:
    """A field override for the column or series called `name` (properties by Grafana's ids, such
    as `unit`, `mappings`, `custom.align`)."""
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k, "value": v} for k, v in properties.items()]}


def value_text(pairs: dict[str, tuple[str, str]]) -> list[dict]:
    """Value mappings: raw value -> (text, colour; "" keeps the field's colour)."""
    return [{"type": "value", "options": {k: {"text": t, **({"color": c} if c else {}), "index": i}
                                          for i, (k, (t, c)) in enumerate(pairs.items())}}]


def annotation(name: str, colour: str, query: str, *, end: str, text: str) -> dict:
    """An InfluxQL annotation drawn from each row's time to its `end` column (a time range)."""
    return {"name": name, "enable": True, "iconColor": colour, "datasource": DS,
            "target": {"refId": "Anno", "query": query, "rawQuery": True, "fromAnnotations": True,
                       "textEditor": True, "queryType": "tags", "timeEndColumn": end,
                       "textColumn": text, "titleColumn": "", "tagsColumn": ""}}


def variable(name: str, label: str, query: str, multi: bool = True) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "query": query,
            "refresh": 2, "includeAll": multi, "multi": multi,
            **({"allValue": ".*"} if multi else {}), "sort": 1, "options": []}


def datasource_variable() -> dict:
    return {"name": "DS_INFLUXDB", "label": "InfluxDB", "type": "datasource", "query": "influxdb",
            "options": [], "hide": 0, "refresh": 1}


def dashboard(uid: str, title: str, panels: list[dict], variables: list[dict],
              annotations: list[dict] = ()) -> dict:
    return {
        "uid": uid, "title": title, "tags": ["linewatch"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1,
        "time": {"from": "now-7d", "to": "now"}, "refresh": "1m",
        "templating": {"list": [datasource_variable(), *variables]},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}, *annotations]},
        "panels": panels,
    }


def my_line() -> dict:
    # Long on purpose: the dashboard's queries, then its panels in the order Grafana lays them
    # out, read best as one list (as do regional() and all_lines()).
    where = f"{AGENT} AND $timeFilter"
    q = {
        # From the hourly rows (every agent sends them, send = "summaries" included).
        "availability": availability(where),
        "watched_h": f'SELECT sum("observed_s") / 3600 AS "hours" FROM "hourly" WHERE {where}',
        "outage_min": f'SELECT ({OUTAGE_S}) / 60 AS "minutes" FROM "hourly" WHERE {where}',
        "power_min": f'SELECT {POWER_MIN} FROM "hourly" WHERE {where}',
        "availability_t": availability(where, per_interval=True),
        "outage_t": f'SELECT {OUTAGE_MIN} FROM "hourly" WHERE {where} GROUP BY time($__interval) fill(null)',
        "power_t": f'SELECT {POWER_MIN} FROM "hourly" WHERE {where} GROUP BY time($__interval) fill(null)',
        "rtt_hour": f'SELECT "rtt_p50_ms" AS "p50", "rtt_p95_ms" AS "p95" FROM "hourly" WHERE {where}',
        # From the outage and speedtest rows (sent with send = "summaries" too).
        "outages": f'SELECT count("duration_s") FROM "outage" WHERE {AGENT} AND "type" = '
                   "'connectivity' AND $timeFilter",
        "episodes": f'SELECT "duration_s" / 60 AS "minutes", "end_unix_ms", "end_observed" FROM "outage" '
                    f'WHERE {where} GROUP BY "type", "cause"',
        "speed": f'SELECT "download_bps", "upload_bps" FROM "speedtest" WHERE {AGENT} AND "status" = '
                 "'ok' AND $timeFilter",
        # From the service checks and interference episodes (sent with send = "summaries" too).
        "blocked": f'SELECT "duration_s" / 60 AS "minutes", "end_unix_ms", "how", "failed_checks" '
                   f'FROM "outage" WHERE {AGENT} AND "type" = \'interference\' AND $timeFilter '
                   'GROUP BY "target", "cause"',
        "checks_failed": f'SELECT count("ok") FROM "service" WHERE {AGENT} AND "step" != \'ok\' AND '
                         '$timeFilter GROUP BY time($__interval), "target" fill(0)',
        # From the raw rows (send = "all" only).
        "online": f'SELECT min("online") FROM "round" WHERE {where} GROUP BY time($__interval) fill(null)',
        "on_battery": f'SELECT max("on_battery") FROM "power" WHERE {where} '
                      'GROUP BY time($__interval), "source" fill(null)',
        # status is a field, not a tag: one query per verdict.
        **{f"rounds_{v}": f'SELECT count("interval_s") FROM "round" WHERE {AGENT} AND "status" = \'{v}\' '
                          'AND $timeFilter GROUP BY time($__interval) fill(0)' for v in VERDICTS},
        "rtt": f'SELECT mean("rtt_avg_ms") FROM "ping" WHERE {where} '
               'GROUP BY time($__interval), "target" fill(null)',
        "loss": f'SELECT mean("loss_pct") FROM "ping" WHERE {where} '
                'GROUP BY time($__interval), "target" fill(null)',
        "dns": f'SELECT mean("rtt_ms") FROM "dns" WHERE {where} '
               'GROUP BY time($__interval), "name" fill(null)',
        "charge": f'SELECT mean("charge_pct") FROM "power" WHERE {where} '
                  'GROUP BY time($__interval), "source" fill(null)',
        "backlog": f'SELECT last("backlog_rows") FROM "agent" WHERE {where} '
                   'GROUP BY time($__interval) fill(null)',
    }
    online = value_text({"0": ("down", "red"), "1": ("online", "green")})
    # max() of a boolean
    battery = value_text({"false": ("mains", "green"), "true": ("on battery", "orange")})
    panels = [
        panel(1, "Internet availability", "stat", [target(q["availability"])], (0, 0, 6, 4),
              "percentunit", AVAILABILITY_MEANS,
              defaults={"decimals": 2, "thresholds": AVAILABILITY, "min": 0, "max": 1}),
        panel(2, "Hours watched", "stat", [target(q["watched_h"])], (6, 0, 4, 4), "h",
              "Time the agent's probe rounds covered (the hourly rows' observed_s): what the "
              "availability is a share of.", defaults={"decimals": 1}),
        panel(3, "Internet outages", "stat", [target(q["outages"])], (10, 0, 4, 4), "short",
              "Connectivity outages that began in the time range and have ended.",
              defaults={"noValue": "0"}),
        panel(4, "Internet outage minutes", "stat", [target(q["outage_min"])], (14, 0, 4, 4), "m",
              "Connectivity outage time in the hours of the range, every cause, an outage in "
              "progress included (the hourly rows). By cause: the bars below.",
              defaults={"decimals": 1}),
        panel(5, "Minutes without mains power", "stat", [target(q["power_min"], alias="$col")],
              (18, 0, 6, 4), "m", "Power-cut time per sensor (the hourly rows): the laptop "
              "battery, the UPS, the host going down; 0 also where there is no such sensor. One "
              "cut seen by two sensors shows in both (the line report and the collector count it "
              "once).", defaults={"decimals": 0}),
        panel(6, "Line and power", "state-timeline",
              [target(q["online"], alias="internet"),
               target(q["on_battery"], "B", alias="power ($tag_source)")],
              (0, 4, 24, 5), "", "Internet: down in an interval if any round in it was down. "
              "Power: on battery if the battery or UPS reported it in the interval. " + NEEDS_ALL,
              interval="1m",
              overrides=[by_name("internet", mappings=online),
                         {"matcher": {"id": "byRegexp", "options": "^power"},
                          "properties": [{"id": "mappings", "value": battery}]}]),
        panel(7, "Internet availability over time", "timeseries",
              [target(q["availability_t"], alias="availability")], (0, 9, 8, 8), "percentunit",
              "The availability per interval (an hour, or longer on long ranges); no point where "
              "nothing was watched.", interval="1h",
              defaults={"decimals": 2, "max": 1, "thresholds": AVAILABILITY,
                        "custom": {"showPoints": "auto"}}),
        panel(8, "Internet outage minutes by cause", "timeseries",
              [target(q["outage_t"], alias="$col")], (8, 9, 8, 8), "m",
              "Per interval (an hour, or longer on long ranges); the legend's total is the range's. "
              "Causes: lan (the router did not answer), isp, dns, power (on battery or UPS when it "
              "began), unknown.", interval="1h", options={"legend": SUM_LEGEND},
              defaults={"custom": STACKED_BARS}),
        panel(9, "Minutes without mains power by sensor", "timeseries",
              [target(q["power_t"], alias="$col")], (16, 9, 8, 8), "m",
              "Per interval (an hour, or longer on long ranges); the legend's total is the range's.",
              interval="1h", options={"legend": SUM_LEGEND}, defaults={"custom": STACKED_BARS}),
        panel(10, "Round-trip time per hour: median and 95th percentile", "timeseries",
              [target(q["rtt_hour"], alias="$col")], (0, 17, 12, 8), "ms",
              "Each hour's exact median and 95th percentile of the internet targets' round-trip "
              "times (the hourly rows' rtt_p50_ms and rtt_p95_ms).",
              defaults={"custom": {"showPoints": "auto"}}),
        panel(11, "Probe rounds by verdict", "timeseries",
              [target(q[f"rounds_{v}"], "ABCD"[i], alias=v) for i, v in enumerate(VERDICTS)],
              (12, 17, 12, 8), "short", "up / degraded / down / error per interval. " + NEEDS_ALL,
              defaults={"custom": STACKED_BARS},
              overrides=[by_name(k, color={"mode": "fixed", "fixedColor": c})
                         for k, c in (("up", "green"), ("degraded", "orange"), ("down", "red"),
                                      ("error", "gray"))]),
        panel(12, "Round-trip time per target", "timeseries", [target(q["rtt"], alias="$tag_target")],
              (0, 25, 12, 8), "ms", NEEDS_ALL),
        panel(13, "Packet loss per target", "timeseries", [target(q["loss"], alias="$tag_target")],
              (12, 25, 12, 8), "percent", NEEDS_ALL, defaults={"min": 0, "max": 100}),
        panel(14, "DNS lookup time", "timeseries", [target(q["dns"], alias="$tag_name")],
              (0, 33, 12, 8), "ms", NEEDS_ALL),
        panel(15, "Speed tests", "timeseries", [target(q["speed"])], (12, 33, 12, 8), "bps",
              defaults={"custom": {"drawStyle": "points", "showPoints": "always", "pointSize": 6}}),
        panel(16, "Outage and power episodes", "table", [target(q["episodes"], fmt="table")],
              (0, 41, 12, 9), "", "Each finished episode: type, cause, minutes, end. end_observed "
              "false: the agent stopped watching before it ended.",
              overrides=[by_name("end_unix_ms", unit="dateTimeAsIso", displayName="end"),
                         by_name("minutes", decimals=1)]),
        panel(17, "Battery / UPS charge", "timeseries", [target(q["charge"], alias="$tag_source")],
              (12, 41, 12, 9), "percent", NEEDS_ALL, defaults={"min": 0, "max": 100}),
        panel(18, "Rows waiting to be forwarded", "timeseries", [target(q["backlog"])],
              (0, 50, 24, 7), "short", "The agent's backlog: rows stored locally and not yet in "
              "InfluxDB. It grows while offline and drains when the line is back. " + NEEDS_ALL),
        panel(19, "Blocked while the line was up", "table", [target(q["blocked"], fmt="table")],
              (0, 57, 12, 9), "", "Sites and VPN servers the agent could not reach while the "
              "internet answered ([services] checks): each finished episode, its target, the step "
              "that failed (cause: dns, tcp, tls, http, vpn, throttled) and how, minutes, end. An "
              "episode opens after services.open_after failed checks in a row, never during an "
              "outage or a power cut.",
              overrides=[by_name("end_unix_ms", unit="dateTimeAsIso", displayName="end"),
                         by_name("minutes", decimals=1)]),
        panel(20, "Failed service checks by target", "timeseries",
              [target(q["checks_failed"], alias="$tag_target")], (12, 57, 12, 9), "short",
              "Checks of each site or VPN server that failed, per interval (checks run only while "
              "the line is up; a failing target is checked every services.retry_s).",
              interval="1h", options={"legend": SUM_LEGEND}, defaults={"custom": STACKED_BARS}),
    ]
    annotations = [
        annotation("Internet outages", "red",
                   f'SELECT "end_unix_ms", "cause" FROM "outage" WHERE {AGENT} AND '
                   "\"type\" = 'connectivity' AND $timeFilter", end="end_unix_ms", text="cause"),
        annotation("Power cuts", "orange",
                   f'SELECT "end_unix_ms", "cause" FROM "outage" WHERE {AGENT} AND '
                   "\"type\" = 'power' AND $timeFilter", end="end_unix_ms", text="cause"),
        annotation("Blocked while the line was up", "purple",
                   f'SELECT "end_unix_ms", "how" FROM "outage" WHERE {AGENT} AND '
                   "\"type\" = 'interference' AND $timeFilter", end="end_unix_ms", text="how"),
    ]
    agent_var = variable("agent", "Agent", 'SHOW TAG VALUES FROM "hourly", "round" WITH KEY = "agent"',
                         multi=False)
    return dashboard("linewatch-my-line", "linewatch: my line", panels, [agent_var], annotations)


def regional() -> dict:
    # Long on purpose, as my_line().
    def cell(meas: str, field: str) -> str:
        return (f'SELECT last("{field}") FROM "{meas}" WHERE {CELL} AND $timeFilter '
                'GROUP BY "region", "isp"')

    q = {
        "saidi": cell("regional_power", "power_saidi_min"),
        "saifi": cell("regional_power", "power_saifi"),
        "caidi": cell("regional_power", "power_caidi_min"),
        "maifi": cell("regional_power", "power_maifi"),
        "avail": cell("regional_internet", "internet_availability"),
        "saidi_t": f'SELECT mean("power_saidi_min") FROM "regional_power" WHERE {CELL} AND '
                   '$timeFilter GROUP BY time($__interval), "region", "isp" fill(null)',
        "heat": f'SELECT mean("share") FROM "regional_load_shedding" WHERE {CELL} AND $timeFilter '
                'GROUP BY "weekday", "hour"',
        "hours": f'SELECT mean("share") FROM "regional_load_shedding" WHERE {CELL} AND $timeFilter '
                 'GROUP BY "hour"',
        "rtt": cell("regional_line", "rtt_p50_ms"),
        "down": cell("regional_line", "download_p50_bps"),
        "events": 'SELECT "agents_affected", "agents_observed", "share", "cause", '
                  '"median_duration_min" FROM "regional_events" WHERE "region" =~ /^$region$/ AND '
                  '$timeFilter GROUP BY "region", "type", "scope"',
        "coverage": f'SELECT last("agents") FROM "regional_coverage" WHERE {CELL} AND $timeFilter '
                    'GROUP BY "region", "isp"',
    }
    by = "$tag_region $tag_isp"
    share = {"color": {"mode": "continuous-YlRd"}, "min": 0, "max": 1, "decimals": 0}
    panels = [
        panel(1, "SAIDI: minutes without power per customer", "bargauge",
              [target(q["saidi"], alias=by)], (0, 0, 12, 8), "m",
              "IEEE 1366 SAIDI, one agent one customer, over the chosen period.",
              defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0}),
        panel(2, "SAIFI: sustained interruptions per customer", "bargauge",
              [target(q["saifi"], alias=by)], (12, 0, 12, 8), "short",
              "Interruptions longer than 5 minutes (IEEE 1366).",
              defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0, "decimals": 1}),
        panel(3, "CAIDI: minutes per interruption", "bargauge", [target(q["caidi"], alias=by)],
              (0, 8, 8, 8), "m", defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0}),
        panel(4, "MAIFI: momentary interruptions per customer", "bargauge",
              [target(q["maifi"], alias=by)], (8, 8, 8, 8), "short",
              "Interruptions of 5 minutes or less.",
              defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0, "decimals": 1}),
        panel(5, "Internet availability", "bargauge", [target(q["avail"], alias=by)],
              (16, 8, 8, 8), "percentunit", "The collector's internet_availability: 1 - "
              "connectivity outage seconds / seconds watched, over the cell's lines "
              "(docs/methodology.md, Availability).",
              defaults={"thresholds": AVAILABILITY, "color": {"mode": "thresholds"}, "min": 0.9,
                        "max": 1, "decimals": 2}),
        panel(6, "SAIDI over time", "timeseries", [target(q["saidi_t"], alias=by)], (0, 16, 24, 8), "m",
              "Each period's SAIDI as the collector wrote it (choose period = day or week)."),
        panel(7, "Load shedding heat map: share of agent-time without power", "table",
              [target(q["heat"], fmt="table")], (0, 24, 16, 10), "percentunit",
              "Rows: weekday; columns: hour of day in the collector's time zone (Asia/Karachi by "
              "default). Darker means more of the watched agents were without mains power.",
              defaults={**share, "custom": {"cellOptions": {"type": "color-background", "mode": "gradient"},
                                            "align": "center"}},
              overrides=[by_name("weekday\\hour", **{
                  "mappings": value_text({str(i): (d, "") for i, d in enumerate(WEEKDAY_LABELS)}),
                  "custom.cellOptions": {"type": "auto"}, "custom.align": "left", "displayName": "day"})],
              transformations=[{"id": "groupingToMatrix",
                                "options": {"columnField": "hour", "rowField": "weekday",
                                            "valueField": "mean", "emptyValue": "null"}}]),
        panel(8, "Load shedding by hour of day", "barchart", [target(q["hours"], fmt="table")],
              (16, 24, 8, 10), "percentunit", "Mean over weekdays of the share without power.",
              options={"xField": "hour"}, defaults={**share, "color": {"mode": "continuous-YlRd"}},
              transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}]),
        panel(9, "Regional events", "table", [target(q["events"], fmt="table")], (0, 34, 24, 8), "",
              "Cuts or outages that began within minutes of each other for many agents of a region.",
              overrides=[by_name("share", unit="percentunit"),
                         by_name("median_duration_min", unit="m", decimals=0)]),
        panel(10, "Median round-trip time", "bargauge", [target(q["rtt"], alias=by)], (0, 42, 8, 8), "ms",
              defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0}),
        panel(11, "Median download", "bargauge", [target(q["down"], alias=by)], (8, 42, 8, 8), "bps",
              defaults={"color": {"mode": "continuous-RdYlGr"}, "min": 0}),
        panel(12, "Agents per cell (published cells)", "bargauge",
              [target(q["coverage"], alias=by)], (16, 42, 8, 8), "short",
              "Cells with fewer agents than the collector's min_agents are not published.",
              defaults={"color": {"mode": "fixed", "fixedColor": "blue"}, "min": 0, "decimals": 0}),
    ]
    variables = [
        variable("region", "Region", 'SHOW TAG VALUES FROM "regional_coverage" WITH KEY = "region"'),
        variable("isp", "ISP", 'SHOW TAG VALUES FROM "regional_coverage" WITH KEY = "isp" '
                               'WHERE "region" =~ /^$region$/'),
        {"name": "period", "label": "Period", "type": "custom", "query": "day,week,month,all",
         "current": {"text": "day", "value": "day", "selected": True}, "multi": False,
         "includeAll": False,
         "options": [{"text": v, "value": v, "selected": v == "day"}
                     for v in ("day", "week", "month", "all")]},
    ]
    return dashboard("linewatch-regional", "linewatch: regional reliability", panels, variables)


def all_lines() -> dict:
    """Every agent at once, for an operator with several machines (or an NGO watching its
    volunteers' agents report in): which line is down, which one stopped reporting; and, live,
    per region and ISP."""
    where = '"region" =~ /^$region$/ AND "isp" =~ /^$isp$/ AND $timeFilter'
    per_agent = f'{_sums(["observed_s"], 3600, ["watched_h"])}, {OUTAGE_MIN_COLS}, {POWER_MIN_COLS}'
    q = {
        # From the hourly rows (every agent sends them, send = "summaries" included).
        "availability": availability(where, ("agent",)),
        "outage_min": f'SELECT ({OUTAGE_S}) / 60 AS "minutes" FROM "hourly" WHERE {where} GROUP BY "agent"',
        "per_agent": f'SELECT {per_agent} FROM "hourly" WHERE {where} GROUP BY "agent"',
        "newest_hour": f'SELECT last("observed_s") / 60 AS "watched_min" FROM "hourly" WHERE {where} '
                       'GROUP BY "agent"',
        "rtt_p50": f'SELECT "rtt_p50_ms" FROM "hourly" WHERE {where} GROUP BY "agent"',
        "rtt_p95": f'SELECT "rtt_p95_ms" FROM "hourly" WHERE {where} GROUP BY "agent"',
        # The same, live per region and ISP.
        "cell_availability": availability(where, ("region", "isp")),
        "cell_minutes": f'SELECT {OUTAGE_MIN_COLS}, {POWER_MIN_COLS} FROM "hourly" WHERE {where} '
                        'GROUP BY "region", "isp"',
        # count(distinct()) takes a field: the subquery makes the agent tag one.
        "cell_agents": 'SELECT count(distinct("agent")) AS "agents" FROM (SELECT "observed_s", "agent" '
                       f'FROM "hourly" WHERE {where} GROUP BY "region", "isp") GROUP BY "region", "isp"',
        "cell_hours": f'SELECT sum("observed_s") / 3600 AS "agent_hours" FROM "hourly" WHERE {where} '
                      'GROUP BY "region", "isp"',
        # From the raw rows (send = "all" only).
        "state": f'SELECT min("online") FROM "round" WHERE {where} GROUP BY time($__interval), "agent" '
                 'fill(null)',
        "last_round": f'SELECT last("interval_s") AS "interval_s" FROM "round" WHERE {where} '
                      'GROUP BY "agent"',
        "backlog": f'SELECT last("backlog_rows") FROM "agent" WHERE {where} GROUP BY "agent"',
    }
    online = value_text({"0": ("down", "red"), "1": ("online", "green")})
    by = "$tag_region $tag_isp"
    # A sum over the range is stamped with the range's start: not worth a column.
    no_time = {"id": "organize", "options": {"excludeByName": {"Time": True}}}
    minutes = [by_name(n, unit="m", decimals=0) for n in _names(OUTAGE_MIN_COLS + ", " + POWER_MIN_COLS)]
    panels = [
        panel(1, "Line state per agent", "state-timeline", [target(q["state"], alias="$tag_agent")],
              (0, 0, 24, 10), "", "Down in an interval if any round in it was down; blank: the agent "
              "was not watching (stopped, machine off, or not yet forwarded). " + NEEDS_ALL,
              interval="1m", defaults={"mappings": online}),
        panel(2, "Internet availability per agent", "bargauge",
              [target(q["availability"], alias="$tag_agent")], (0, 10, 12, 10), "percentunit",
              AVAILABILITY_MEANS,
              defaults={"thresholds": AVAILABILITY, "color": {"mode": "thresholds"}, "min": 0.9, "max": 1,
                        "decimals": 2}),
        panel(3, "Internet outage minutes per agent", "bargauge",
              [target(q["outage_min"], alias="$tag_agent")], (12, 10, 12, 10), "m",
              "Connectivity outage time in the hours of the range, every cause, an outage in "
              "progress included (the hourly rows).",
              defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0, "decimals": 0}),
        panel(4, "Per agent: hours watched, outage minutes by cause, power-cut minutes by sensor",
              "table", [target(q["per_agent"], fmt="table")], (0, 20, 24, 8), "",
              "From the hourly rows over the range. A power cut seen by two sensors (battery and "
              "UPS) shows under both.",
              overrides=[by_name("watched_h", unit="h", decimals=1), *minutes],
              transformations=[no_time]),
        panel(5, "Last round received per agent", "table", [target(q["last_round"], fmt="table")],
              (0, 28, 8, 9), "", "When each agent's newest round reached InfluxDB. An old time with the "
              "machine on: the agent stopped, or cannot reach the server (run linewatch status on "
              "it). " + NEEDS_ALL,
              overrides=[by_name("Time", unit="dateTimeFromNow", displayName="last round"),
                         by_name("interval_s", unit="s", displayName="round interval")]),
        panel(6, "Newest hour reported per agent", "table", [target(q["newest_hour"], fmt="table")],
              (8, 28, 8, 9), "", "The newest hourly row of each agent and the minutes watched in it "
              "so far (the hour in progress is rewritten every minute; an agent with send = "
              "\"summaries\" forwards it about every 15 minutes).",
              overrides=[by_name("Time", unit="dateTimeFromNow", displayName="newest hour"),
                         by_name("watched_min", unit="m", decimals=0, displayName="watched in it")]),
        panel(7, "Rows waiting to be forwarded per agent", "bargauge",
              [target(q["backlog"], alias="$tag_agent")], (16, 28, 8, 9), "short",
              "As each agent last reported it. A backlog that stays high means it cannot forward. "
              + NEEDS_ALL, defaults={"color": {"mode": "continuous-GrYlRd"}, "min": 0, "decimals": 0}),
        panel(8, "Median round-trip time per agent, per hour", "timeseries",
              [target(q["rtt_p50"], alias="$tag_agent")], (0, 37, 12, 8), "ms",
              "Each hour's exact median of the agent's internet round-trip times (hourly rtt_p50_ms).",
              defaults={"custom": {"showPoints": "auto"}}),
        panel(9, "95th percentile round-trip time per agent, per hour", "timeseries",
              [target(q["rtt_p95"], alias="$tag_agent")], (12, 37, 12, 8), "ms",
              "Each hour's exact 95th percentile (hourly rtt_p95_ms).",
              defaults={"custom": {"showPoints": "auto"}}),
        panel(10, "Live: internet availability per region and ISP", "bargauge",
              [target(q["cell_availability"], alias=by)], (0, 45, 8, 8), "percentunit",
              LIVE + " " + AVAILABILITY_MEANS,
              defaults={"thresholds": AVAILABILITY, "color": {"mode": "thresholds"}, "min": 0.9, "max": 1,
                        "decimals": 2}),
        panel(11, "Live: agents reporting per region and ISP", "bargauge",
              [target(q["cell_agents"], alias=by)], (8, 45, 8, 8), "short",
              LIVE + " Agents with an hourly row in the range.",
              defaults={"color": {"mode": "fixed", "fixedColor": "blue"}, "min": 0, "decimals": 0}),
        panel(12, "Live: agent-hours watched per region and ISP", "bargauge",
              [target(q["cell_hours"], alias=by)], (16, 45, 8, 8), "h", LIVE,
              defaults={"color": {"mode": "fixed", "fixedColor": "blue"}, "min": 0, "decimals": 0}),
        panel(13, "Live: outage minutes by cause and power-cut minutes by sensor, per region and ISP",
              "table", [target(q["cell_minutes"], fmt="table")], (0, 53, 24, 8), "",
              LIVE + " Sums over the agents: a power cut seen by two sensors shows under both.",
              overrides=minutes, transformations=[no_time]),
    ]
    region = variable("region", "Region", 'SHOW TAG VALUES FROM "hourly", "round" WITH KEY = "region"')
    isp = variable("isp", "ISP", 'SHOW TAG VALUES FROM "hourly", "round" WITH KEY = "isp" '
                                 'WHERE "region" =~ /^$region$/')
    return dashboard("linewatch-all-lines", "linewatch: all lines", panels, [region, isp])


DASHBOARDS = {"my-line.json": my_line, "regional.json": regional, "all-lines.json": all_lines}


def render(make) -> str:
    return json.dumps(make(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    for name, make in DASHBOARDS.items():
        (HERE / name).write_text(render(make), encoding="utf-8")
        print(f"wrote dashboards/{name}")
