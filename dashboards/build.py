"""Builds the Grafana dashboards (dashboards/*.json) from one description, so every panel's
InfluxQL lives here once and a test can run each of them against InfluxDB.

    python dashboards/build.py          # rewrites dashboards/my-line.json and regional.json

The queries are InfluxQL (raw query mode), which Grafana's InfluxDB data source sends to
InfluxDB 1.x, 2.x (DBRP mapping) and 3.x alike. They use Grafana's macros ``$timeFilter`` and
``$__interval`` and the dashboards' variables (``$agent``; ``$region``, ``$isp``, ``$period``).
The data source is the variable ``${DS_INFLUXDB}``: pick the InfluxDB data source on import, or
provision one named ``linewatch`` (dashboards/provisioning/).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DS = {"type": "influxdb", "uid": "${DS_INFLUXDB}"}
AGENT = '"agent" =~ /^$agent$/'
CELL = '"region" =~ /^$region$/ AND "isp" =~ /^$isp$/ AND "period" = \'$period\''


def target(query: str, ref: str = "A", fmt: str = "time_series", alias: str = "") -> dict:
    t = {"refId": ref, "datasource": DS, "rawQuery": True, "query": query, "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    return t


def panel(pid: int, title: str, kind: str, targets: list[dict], grid: tuple[int, int, int, int],
          unit: str = "", description: str = "", **options) -> dict:
    x, y, w, h = grid
    p = {"id": pid, "type": kind, "title": title, "datasource": DS, "targets": targets,
         "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
         "options": options}
    if description:
        p["description"] = description
    return p


def variable(name: str, label: str, query: str, multi: bool = True) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "query": query,
            "definition": query, "refresh": 2, "includeAll": multi, "multi": multi,
            "allValue": ".*" if multi else None, "sort": 1, "current": {}, "options": []}


def datasource_variable() -> dict:
    return {"name": "DS_INFLUXDB", "label": "InfluxDB", "type": "datasource", "query": "influxdb",
            "current": {}, "options": [], "hide": 0, "refresh": 1}


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
    q = {
        "outage_min": f'SELECT sum("duration_s") / 60 FROM "outage" WHERE {AGENT} AND "type" = '
                      "'connectivity' AND $timeFilter",
        "power_min": f'SELECT sum("duration_s") / 60 FROM "outage" WHERE {AGENT} AND "type" = '
                     "'power' AND $timeFilter",
        "rounds": f'SELECT count("interval_s") FROM "round" WHERE {AGENT} AND $timeFilter '
                  'GROUP BY time($__interval), "status" fill(0)',
        "rtt": f'SELECT mean("rtt_avg_ms") FROM "ping" WHERE {AGENT} AND $timeFilter '
               'GROUP BY time($__interval), "target" fill(null)',
        "loss": f'SELECT mean("loss_pct") FROM "ping" WHERE {AGENT} AND $timeFilter '
                'GROUP BY time($__interval), "target" fill(null)',
        "dns": f'SELECT mean("rtt_ms") FROM "dns" WHERE {AGENT} AND $timeFilter '
               'GROUP BY time($__interval), "name" fill(null)',
        "episodes": f'SELECT "duration_s" / 60 AS "minutes", "end_unix_ms" FROM "outage" WHERE {AGENT} '
                    'AND $timeFilter GROUP BY "type", "cause"',
        "speed": f'SELECT "download_bps", "upload_bps" FROM "speedtest" WHERE {AGENT} AND "status" = '
                 "'ok' AND $timeFilter",
        "on_battery": f'SELECT max("on_battery") FROM "power" WHERE {AGENT} AND $timeFilter '
                      'GROUP BY time($__interval), "source" fill(null)',
        "charge": f'SELECT mean("charge_pct") FROM "power" WHERE {AGENT} AND $timeFilter '
                  'GROUP BY time($__interval), "source" fill(null)',
        "backlog": f'SELECT last("backlog_rows") FROM "agent" WHERE {AGENT} AND $timeFilter '
                   'GROUP BY time($__interval) fill(null)',
    }
    panels = [
        panel(1, "Internet outage minutes", "stat", [target(q["outage_min"])], (0, 0, 6, 4), "m",
              "Connectivity outages that ended in the time range."),
        panel(2, "Minutes without mains power", "stat", [target(q["power_min"])], (6, 0, 6, 4), "m"),
        panel(3, "Probe rounds by verdict", "timeseries", [target(q["rounds"], alias="$tag_status")],
              (12, 0, 12, 8), "short", "up / degraded / down per interval: the line's availability."),
        panel(4, "Round-trip time per target", "timeseries", [target(q["rtt"], alias="$tag_target")],
              (0, 8, 12, 8), "ms"),
        panel(5, "Packet loss per target", "timeseries", [target(q["loss"], alias="$tag_target")],
              (12, 8, 12, 8), "percent"),
        panel(6, "Outage and power episodes", "table", [target(q["episodes"], fmt="table")],
              (0, 16, 12, 8), "", "Each finished episode: type, cause, minutes, end."),
        panel(7, "Speed tests", "timeseries", [target(q["speed"])], (12, 16, 12, 8), "bps"),
        panel(8, "On battery (mains lost)", "state-timeline",
              [target(q["on_battery"], alias="$tag_source")], (0, 24, 12, 5), "bool_on_off"),
        panel(9, "Battery / UPS charge", "timeseries", [target(q["charge"], alias="$tag_source")],
              (12, 24, 12, 5), "percent"),
        panel(10, "DNS lookup time", "timeseries", [target(q["dns"], alias="$tag_name")],
              (0, 29, 12, 6), "ms"),
        panel(11, "Rows waiting to be forwarded", "timeseries", [target(q["backlog"])],
              (12, 29, 12, 6), "short"),
    ]
    annotations = [{
        "name": "Outages", "enable": True, "iconColor": "red", "datasource": DS,
        "query": f'SELECT "duration_s", "end_unix_ms", "cause" FROM "outage" WHERE {AGENT} AND '
                 "\"type\" = 'connectivity' AND $timeFilter",
        "timeEndColumn": "end_unix_ms", "textColumn": "cause", "titleColumn": "", "tagsColumn": ""}]
    agent_var = variable("agent", "Agent", 'SHOW TAG VALUES FROM "round" WITH KEY = "agent"', multi=False)
    return dashboard("linewatch-my-line", "linewatch: my line", panels, [agent_var], annotations)


def regional() -> dict:
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
        "rtt": cell("regional_line", "rtt_p50_ms"),
        "down": cell("regional_line", "download_p50_bps"),
        "events": 'SELECT "agents_affected", "agents_observed", "share", "cause", '
                  '"median_duration_min" FROM "regional_events" WHERE "region" =~ /^$region$/ AND '
                  '$timeFilter GROUP BY "region", "type", "scope"',
        "coverage": f'SELECT last("agents") FROM "regional_coverage" WHERE {CELL} AND $timeFilter '
                    'GROUP BY "region", "isp"',
    }
    by = "$tag_region $tag_isp"
    panels = [
        panel(1, "SAIDI: minutes without power per customer", "bargauge",
              [target(q["saidi"], alias=by)], (0, 0, 12, 8), "m", "IEEE 1366, one agent one customer."),
        panel(2, "SAIFI: sustained interruptions per customer", "bargauge",
              [target(q["saifi"], alias=by)], (12, 0, 12, 8), "short"),
        panel(3, "CAIDI: minutes per interruption", "bargauge", [target(q["caidi"], alias=by)],
              (0, 8, 8, 8), "m"),
        panel(4, "MAIFI: momentary interruptions per customer", "bargauge",
              [target(q["maifi"], alias=by)], (8, 8, 8, 8), "short"),
        panel(5, "Internet availability", "bargauge", [target(q["avail"], alias=by)],
              (16, 8, 8, 8), "percentunit"),
        panel(6, "SAIDI over time", "timeseries", [target(q["saidi_t"], alias=by)], (0, 16, 24, 8), "m"),
        panel(7, "Load shedding by weekday and hour (share of agent-time without power)", "table",
              [target(q["heat"], fmt="table")], (0, 24, 12, 10), "percentunit",
              "weekday 0 = Monday; hour in the collector's time zone."),
        panel(8, "Regional events", "table", [target(q["events"], fmt="table")], (12, 24, 12, 10)),
        panel(9, "Median round-trip time", "bargauge", [target(q["rtt"], alias=by)], (0, 34, 8, 8), "ms"),
        panel(10, "Median download", "bargauge", [target(q["down"], alias=by)], (8, 34, 8, 8), "bps"),
        panel(11, "Agents per cell (published cells)", "bargauge",
              [target(q["coverage"], alias=by)], (16, 34, 8, 8), "short"),
    ]
    variables = [
        variable("region", "Region", 'SHOW TAG VALUES FROM "regional_coverage" WITH KEY = "region"'),
        variable("isp", "ISP", 'SHOW TAG VALUES FROM "regional_coverage" WITH KEY = "isp" '
                               'WHERE "region" =~ /^$region$/'),
        {"name": "period", "label": "Period", "type": "custom", "query": "day,week,month,all",
         "current": {"text": "day", "value": "day"}, "multi": False, "includeAll": False,
         "options": [{"text": v, "value": v, "selected": v == "day"} for v in ("day", "week", "month", "all")]},
    ]
    return dashboard("linewatch-regional", "linewatch: regional reliability", panels, variables)


DASHBOARDS = {"my-line.json": my_line, "regional.json": regional}


def render(make) -> str:
    return json.dumps(make(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    for name, make in DASHBOARDS.items():
        (HERE / name).write_text(render(make), encoding="utf-8")
        print(f"wrote dashboards/{name}")
