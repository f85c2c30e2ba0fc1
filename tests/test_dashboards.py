"""Every panel query of the Grafana dashboards, with Grafana's macros and variables substituted,
runs against a real InfluxDB 1.6.7 holding data written by the real agent (its own rows, power
from a prepared sysfs battery, DNS against a real dnsmasq), by the synthetic fleet (outage and
speed-test history under the same agent id) and by the real collector (`run --once`), and
returns series. Grafana itself is not installable here: tests/test_grafana_schema.py checks the
files against Grafana's own models, and this file checks what those types cannot (unique ids, a
grid without overlaps, every variable used being defined, the columns panels name)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from kit.definitions import nearest_rank, quantile
from tests.fleet import Fleet, utc_midnight
from tests.hosttree import power_supply
from tests.influxlab import InfluxV1, influx_unavailable

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "dashboards"))
import build  # noqa: E402  (dashboards/build.py)

AGENT_ID = "a0001"          # the real agent takes the id of the fleet's first agent
DNS_IP = "127.0.0.77"   # not .53/.54: systemd-resolved listens there where it runs
DNSMASQ = "/usr/sbin/dnsmasq"


def wait_for(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    if influx_unavailable():
        pytest.skip(influx_unavailable())
    if not os.access(DNSMASQ, os.X_OK) or os.geteuid() != 0:
        pytest.skip("needs dnsmasq and root (a DNS server on 127.0.0.77:53)")
    tmp = tmp_path_factory.mktemp("dash")
    with InfluxV1.create(tmp / "influx") as srv:
        fleet = Fleet(agents=40, days=3, start=utc_midnight(time.time()) - 3 * 86400, round_s=120, seed=4)
        fleet.write_influx(srv.url, "linewatch")
        # Rounds in which no probe could run (status error) cannot be provoked in the real agent
        # here without stopping its other rounds: three are written as the agent writes them.
        t = int(time.time()) - 3600
        body = "\n".join(f'round,agent={AGENT_ID},region=PK-PB,isp=PTCL status="error",duration_s=0.01,'
                         f"interval_s=1,probe_errors=3i {t + k}" for k in range(3))
        urllib.request.urlopen(urllib.request.Request(f"{srv.url}/write?db=linewatch&precision=s",
                                                      data=body.encode(), method="POST"), timeout=30).close()
        dns = subprocess.Popen([DNSMASQ, "-C", "/dev/null", "--keep-in-foreground", "--no-resolv",
                                "--no-hosts", f"--listen-address={DNS_IP}", "--bind-interfaces",
                                "--pid-file=", "--port=53", "--log-facility=/dev/null",
                                "--address=/example.test/127.0.0.2"])
        sysfs = tmp / "sys"
        power_supply(sysfs, online="1", capacity=90, status="Charging")
        cfg = tmp / "agent.toml"
        cfg.write_text(f'[agent]\nid = "{AGENT_ID}"\nregion = "PK-PB"\nisp = "PTCL"\n'
                       f'state_dir = "{tmp / "state"}"\nsysfs = "{sysfs}"\n'
                       '[probe]\ninterval_s = 1\ntimeout_s = 0.5\ncount = 1\ngateway = "off"\n'
                       f'targets = ["127.0.0.1:9"]\ndns_names = ["example.test"]\n'
                       f'dns_servers = ["{DNS_IP}"]\nnetio_interval_s = 5\n'
                       '[power]\npoll_s = 1\n[speedtest]\nenabled = false\n'
                       f'[influx]\nurl = "{srv.url}"\ndatabase = "linewatch"\npush_interval_s = 1\n')
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)], cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda: agent.poll() is not None or srv.count("agent", "backlog_rows") > 0, 60)
            assert agent.poll() is None, agent.stderr.read().decode()[-2000:]
            power_supply(sysfs, online="0", capacity=85, status="Discharging")   # mains lost
            assert wait_for(lambda: srv.series('SELECT count("on_battery") FROM "power" '
                                               'WHERE "on_battery" = true'), 30)
            assert wait_for(lambda: srv.count("dns", "rtt_ms") > 0, 30)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
            dns.terminate()
            dns.wait(timeout=10)
        col = tmp / "collector.toml"
        col.write_text(f'[influx]\nurl = "{srv.url}"\ndatabase = "linewatch"\n'
                       f'[collector]\nmin_agents = 2\nbootstrap = 100\nrun_since = "7d"\n'
                       f'cache_dir = "off"\n')
        r = subprocess.run([str(BIN / "linewatch-collector"), "run", "--once", "--config", str(col)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        yield srv


def substitute(query: str, values: dict[str, str]) -> str:
    """What Grafana sends: $timeFilter as epoch-millisecond bounds, $__interval, variables."""
    now_ms = int(time.time() * 1000)
    q = query.replace("$timeFilter", f"time >= {now_ms - 7 * 86400_000}ms and time <= {now_ms + 3600_000}ms")
    q = q.replace("$__interval", "1h")
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        q = q.replace(f"${name}", value)
    assert not re.search(r"\$(?!tag_)\w", q), q   # every macro and variable replaced
    return q


VALUES = {"agent": re.escape(AGENT_ID), "region": ".*", "isp": ".*", "period": "day"}


def needed_columns(p: dict) -> set[str]:
    """Columns a panel names in its display settings, which its table-format query must return:
    the transformations' fields and the bar chart's x field."""
    need = set()
    for t in p.get("transformations", ()):
        o = t["options"]
        if t["id"] == "groupingToMatrix":
            need |= {o["columnField"], o["rowField"], o["valueField"]}
    if p["type"] == "barchart":
        need.add(p["options"]["xField"])
    return need


def queries():
    for name, make in build.DASHBOARDS.items():
        d = make()
        for p in d["panels"]:
            for t in p["targets"]:
                need = needed_columns(p) if t["resultFormat"] == "table" else set()
                yield pytest.param(t["query"], need, id=f"{name}:{p['id']}:{p['title'][:30]}")
        for a in d["annotations"]["list"]:
            if a["datasource"]["type"] == "influxdb":
                t = a["target"]
                need = {c for c in (t["timeEndColumn"], t["textColumn"]) if c}
                yield pytest.param(t["query"], need, id=f"{name}:annotation:{a['name']}")
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                yield pytest.param(v["query"], set(), id=f"{name}:variable:{v['name']}")


def run_query(srv: InfluxV1, q: str) -> dict:
    url = srv.url + "/query?" + urllib.parse.urlencode({"db": "linewatch", "epoch": "ms"})
    req = urllib.request.Request(url, data=urllib.parse.urlencode({"q": q}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.mark.parametrize("query, columns", list(queries()))
def test_every_panel_query_returns_series(loaded, query, columns):
    q = substitute(query, VALUES)
    doc = run_query(loaded, q)
    (res,) = doc["results"]
    assert "error" not in res, (q, res)
    series = res.get("series") or []
    assert series and any(s.get("values") for s in series), f"no series for: {q}"
    for s in series:      # Grafana's table frames: the result's columns plus one per tag key
        assert columns <= set(s["columns"]) | set(s.get("tags") or {}), (columns, s["columns"], q)
    # GROUP BY on a field instead of a tag is no error in InfluxQL: it returns one series with an
    # empty tag, and a per-tag legend or override silently never matches. Every name grouped by
    # must be a tag key of the measurement.
    m = re.search(r'FROM "(\w+)"', q)
    grouped = re.search(r"GROUP BY (.*?)(?: fill\(|$)", q)
    if m and grouped:
        names = {g.strip().strip('"') for g in grouped.group(1).split(",")
                 if not g.strip().startswith("time(")}
        keys = {v[0] for s in run_query(loaded, f'SHOW TAG KEYS FROM "{m.group(1)}"')["results"][0]["series"]
                for v in s["values"]}
        assert names <= keys, (names - keys, q)


def test_dashboard_files_are_the_build_output():
    for name, make in build.DASHBOARDS.items():
        assert (ROOT / "dashboards" / name).read_text(encoding="utf-8") == build.render(make), \
            f"dashboards/{name} is stale: run python dashboards/build.py"


@pytest.mark.parametrize("name", list(build.DASHBOARDS))
def test_dashboard_structure(name):
    d = json.loads((ROOT / "dashboards" / name).read_text(encoding="utf-8"))
    for key in ("uid", "title", "panels", "templating", "schemaVersion", "time", "annotations"):
        assert key in d, key
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['id']} overlaps another"
                cells.add((x, y))
        assert p["targets"] and all(t["rawQuery"] and t["refId"] and t["query"] for t in p["targets"])
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"panel {p['id']}: refIds repeat"
        assert p["datasource"]["type"] == "influxdb"
    names = [v["name"] for v in d["templating"]["list"]]
    assert "DS_INFLUXDB" in names
    used = set(re.findall(r"\$(\w+)", json.dumps(d["panels"] + d["annotations"]["list"])))
    assert used - {"timeFilter", "__interval", "tag_status", "tag_target", "tag_name", "tag_source",
                   "tag_agent", "tag_region", "tag_isp", "DS_INFLUXDB"} <= set(names)


def test_influxql_keeps_outage_and_round_apart(loaded):
    """Why the raw-data dashboards show rounds answered, not the availability (build.py,
    NOT_AVAILABILITY): InfluxQL gives one series per measurement even through a subquery, so the
    outage rows' duration_s never meets the rounds' interval_s in one figure; and a range with
    no outage gives no series at all."""
    q = substitute('SELECT 1 - sum("o") / sum("w") FROM (SELECT "duration_s" AS "o" FROM "outage" '
                   'WHERE "type" = \'connectivity\' AND $timeFilter), (SELECT "interval_s" AS "w" '
                   'FROM "round" WHERE $timeFilter)', VALUES)
    (res,) = run_query(loaded, q)["results"]
    assert sorted(s["name"] for s in res["series"]) == ["outage", "round"]
    assert all(v is None for s in res["series"] for _, v in s["values"])
    none = run_query(loaded, 'SELECT sum("duration_s") FROM "outage" WHERE "agent" = \'nobody\'')
    assert "series" not in none["results"][0]


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_the_median_panels_percentile_is_the_definitions_median(values):
    """all-lines' median RTT is InfluxQL's percentile(50) (nearest rank), which is the lower
    median of kit.definitions.quantile; InfluxQL's median() would average the middle two."""
    assert nearest_rank(values, 50) == quantile(values, 0.5)
