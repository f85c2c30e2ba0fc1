"""Every panel query of the Grafana dashboards, with Grafana's macros and variables substituted,
runs against a real InfluxDB 1.6.7 holding data written by the real agent (its own rows and
hourly summaries, power from a prepared sysfs battery, DNS against a real dnsmasq), by the
synthetic fleet (outage and speed-test history under the same agent id, and the hourly rows the
agent's summaries job makes of each fleet agent's rows), by an agent that sends summaries only
(influx.send = "summaries": hourly, outage and speedtest rows) and by the real collector
(`run --once`), and returns series. The availability panels' one query is checked to give
exactly kit.definitions.availability on known hourly rows. Grafana itself is not installable
here: tests/test_grafana_schema.py checks the files against Grafana's own models, and this file
checks what those types cannot (unique ids, a grid without overlaps, every variable used being
defined, the columns panels name)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from agent.jobs import summaries
from agent.jobs.context import episode_sample
from agent.model import Sample, from_ns, to_ns
from kit import hourly, lineproto
from kit.definitions import INTERNET_CAUSES, availability, nearest_rank, quantile
from kit.influxconfig import SENT_WITH_SUMMARIES
from tests.fleet import Fleet, utc_midnight
from tests.hosttree import power_supply
from tests.influxlab import InfluxV1, influx_unavailable

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "dashboards"))
import build  # noqa: E402  (dashboards/build.py)

AGENT_ID = "a0001"          # the real agent takes the id of the fleet's first agent
SUMMARIES_ID = "s0001"      # sends summaries only: a fleet agent's hourly, outage, speedtest rows
NS = 1_000_000_000
DNS_IP = "127.0.0.77"   # not .53/.54: systemd-resolved listens there where it runs
DNSMASQ = "/usr/sbin/dnsmasq"


def wait_for(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.5)
    return False


def write(url: str, samples, db: str = "linewatch") -> None:
    body = "\n".join(lineproto.line(m.measurement, m.tags, m.fields, to_ns(m.time)) for m in samples)
    urllib.request.urlopen(urllib.request.Request(f"{url}/write?db={db}&precision=ns", data=body.encode(),
                                                  method="POST"), timeout=60).close()


def fleet_hourly(fleet: Fleet, i: int) -> list[Sample]:
    """The hourly rows fleet agent ``i``'s summaries job would write from its rows and episodes
    (agent.jobs.summaries.hour_rows, over kit.hourly.summarise), for the fleet's hours."""
    rows = defaultdict(list)
    for s in fleet.samples(i):
        if s.measurement in summaries.RAW:
            ns = to_ns(s.time)
            rows[ns // NS // hourly.HOUR_S * hourly.HOUR_S].append((s.measurement, dict(s.tags),
                                                                    dict(s.fields), ns))
    spans = summaries.spans_of(fleet.episodes(i))
    hours = range(fleet.start, fleet.end, hourly.HOUR_S)
    out = []
    for h in hours:
        out += summaries.hour_rows(h, rows.get(h, []), spans, fleet.end, fleet.specs[i].tags)
    return out


def blocked_rows(agent: str) -> list[Sample]:
    """What an agent's service-check job writes when zoom.us is reset at TLS for three checks
    a minute apart, then passes: the checks' rows and the closed interference episode (the
    tracker and the episode row are the agent's own code)."""
    from agent import interference

    tags = {"agent": agent, "region": "PK-PB", "isp": "PTCL"}
    t0 = datetime.fromtimestamp(time.time() - 7200, UTC)
    state, out = interference.State(), []
    for k, step in enumerate(("tls", "tls", "tls", "ok")):
        at = t0 + timedelta(minutes=k)
        out.append(Sample("service", {**tags, "target": "zoom.us", "kind": "site", "step": step},
                          {"ok": step == "ok", "addresses": 1,
                           **({"how": "reset"} if step != "ok" else {})}, at))
        state, changes = interference.step(state, interference.Check(
            "zoom.us", "site", step, "reset" if step != "ok" else "", at), 3)
        out += [episode_sample(c.episode, tags) for c in changes if c.kind == "closed"]
    assert out[-1].measurement == "outage"
    return out


def summaries_only(fleet: Fleet) -> list[Sample]:
    """What an agent with influx.send = "summaries" sends, as SUMMARIES_ID: the hourly, outage and
    speedtest rows of the first fleet agent that had an internet outage, a power cut and a speed
    test."""
    for i in range(fleet.n):
        sent = [s for s in fleet.samples(i) if s.measurement in SENT_WITH_SUMMARIES]
        kinds = {s.tags.get("type") for s in sent if s.measurement == "outage"}
        if {"connectivity", "power"} <= kinds and any(s.fields.get("status") == "ok" for s in sent
                                                      if s.measurement == "speedtest"):
            return [Sample(s.measurement, {**s.tags, "agent": SUMMARIES_ID}, s.fields, s.time)
                    for s in sent + fleet_hourly(fleet, i)]
    raise AssertionError("no fleet agent had an outage, a power cut and a speed test")


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
        # A "VPN server" on loopback, closed at first: the agent's service check is refused, an
        # interference episode opens (open_after = 1); opened, the next check passes and ends it.
        vpn = socket.socket()
        vpn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        vpn.bind(("127.0.0.1", 0))
        vpn_port = vpn.getsockname()[1]
        cfg = tmp / "agent.toml"
        cfg.write_text(f'[agent]\nid = "{AGENT_ID}"\nregion = "PK-PB"\nisp = "PTCL"\n'
                       f'state_dir = "{tmp / "state"}"\nsysfs = "{sysfs}"\n'
                       '[probe]\ninterval_s = 1\ntimeout_s = 0.5\ncount = 1\ngateway = "off"\n'
                       f'targets = ["127.0.0.1:9"]\ndns_names = ["example.test"]\n'
                       f'dns_servers = ["{DNS_IP}"]\nnetio_interval_s = 5\n'
                       '[power]\npoll_s = 1\n[speedtest]\nenabled = false\n[services]\nurls = []\n'
                       f'vpn = ["tcp://127.0.0.1:{vpn_port}"]\nretry_s = 10\ninterval_s = 10\n'
                       'open_after = 1\n'
                       f'[influx]\nurl = "{srv.url}"\ndatabase = "linewatch"\npush_interval_s = 1\n')
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)], cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda: agent.poll() is not None or srv.count("agent", "backlog_rows") > 0, 60)
            assert agent.poll() is None, agent.stderr.read().decode()[-2000:]
            assert wait_for(lambda: srv.count("service", "ok") > 0, 60)   # refused: blocked
            vpn.listen(16)                                                  # the block lifted
            assert wait_for(lambda: srv.series('SELECT count("duration_s") FROM "outage" WHERE '
                                               "\"type\" = 'interference'"), 60)
            power_supply(sysfs, online="0", capacity=85, status="Discharging")   # mains lost
            assert wait_for(lambda: srv.series('SELECT count("on_battery") FROM "power" '
                                               'WHERE "on_battery" = true'), 30)
            assert wait_for(lambda: srv.count("dns", "rtt_ms") > 0, 30)
            assert wait_for(lambda: srv.count("hourly", "observed_s") > 0, 30)   # its own summaries
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
            dns.terminate()
            dns.wait(timeout=10)
            vpn.close()
        for i in range(fleet.n):
            write(srv.url, fleet_hourly(fleet, i))
        write(srv.url, summaries_only(fleet))
        write(srv.url, blocked_rows(SUMMARIES_ID))
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
    if p["type"] == "table" and not need:   # a table's columns, unless a matrix makes new ones
        need |= {o["matcher"]["options"] for o in p["fieldConfig"]["overrides"]
                 if o["matcher"]["id"] == "byName"} - {"Time"}
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
    # (in the query and its subquery) must be a tag key of the measurement.
    names = {g.strip('"') for clause in re.findall(rf"GROUP BY ({GROUPING}(?:, {GROUPING})*)", q)
             for g in clause.split(", ") if not g.startswith("time(")}
    for m in set(re.findall(r'FROM "(\w+)"', q)) if names else ():
        keys = {v[0] for s in run_query(loaded, f'SHOW TAG KEYS FROM "{m}"')["results"][0]["series"]
                for v in s["values"]}
        assert names <= keys, (names - keys, q)


GROUPING = r'(?:time\([^)]*\)|"\w+")'


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
    assert used - {"timeFilter", "__interval", "col", "tag_status", "tag_target", "tag_name", "tag_source",
                   "tag_agent", "tag_region", "tag_isp", "DS_INFLUXDB"} <= set(names)


def test_influxql_keeps_outage_and_round_apart(loaded):
    """Why the availability panels read the hourly rows, not the raw ones: InfluxQL gives one
    series per measurement even through a subquery, so the outage rows' duration_s never meets
    the rounds' interval_s in one figure; and a range with no outage gives no series at all. An
    hourly row holds both (build.availability)."""
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


# -- the availability panels' one query ------------------------------------------------------------

def hour_row(agent: str, region: str, isp: str, hour: int, observed_s: float,
             outage_s: dict[str, float]) -> Sample:
    fields = {**dict.fromkeys(hourly.SECONDS_FIELDS, 0.0), "rounds": int(observed_s // 60),
              "observed_s": observed_s, "online_s": observed_s}
    fields.update({f"outage_{c}_s": v for c, v in outage_s.items()})
    return Sample(hourly.MEASUREMENT, {"agent": agent, "region": region, "isp": isp}, fields,
                  from_ns(hour * NS))


def test_the_availability_query_is_one_minus_outage_over_observed(tmp_path):
    """On known hourly rows, every availability panel (my-line's, over the range and per hour;
    all-lines' per agent and, live, per region and ISP) gives exactly
    kit.definitions.availability(outage seconds of every cause, seconds watched) over the hours in
    the range; a group that watched nothing gives no figure (not the 100 % InfluxQL's x / 0 = 0
    would make of it); an hour outside the range does not count."""
    if influx_unavailable():
        pytest.skip(influx_unavailable())
    h0 = int(time.time()) // hourly.HOUR_S * hourly.HOUR_S - 48 * hourly.HOUR_S
    rows = [  # (agent, region, isp, hours after h0, observed_s, outage seconds by cause)
        ("x1", "PK-SD", "NetA", 0, 3600.0, {"isp": 120.0}),
        ("x1", "PK-SD", "NetA", 1, 1800.0, {"lan": 60.0, "dns": 30.5}),
        ("x1", "PK-SD", "NetA", 2, 0.0, {"unknown": 50.0}),   # an episode while nothing watched
        ("x1", "PK-SD", "NetA", 3, 3600.0, {}),
        ("x1", "PK-SD", "NetA", -24 * 9, 3600.0, {"isp": 3600.0}),   # nine days ago: outside
        ("x2", "PK-SD", "NetA", 1, 3600.0, {"power": 600.0, "isp": 1.25}),
        ("x2", "PK-SD", "NetA", 2, 2400.0, {}),
        ("x3", "PK-SD", "NetB", 0, 0.0, {"lan": 100.0}),      # nothing watched at all
    ]
    in_range = [r for r in rows if r[3] >= 0]

    def expect(keep) -> float | None:
        chosen = [r for r in in_range if keep(r)]
        return availability(sum(sum(r[5].values()) for r in chosen), sum(r[4] for r in chosen))

    def figures(query: str, values: dict, key) -> dict:
        (res,) = run_query(srv, substitute(query, {**VALUES, **values}))["results"]
        assert "error" not in res, res
        return {key(s.get("tags") or {}, row[0]): row[1] for s in res.get("series") or []
                for row in s["values"]}

    with InfluxV1.create(tmp_path / "influx") as srv:
        write(srv.url, [hour_row(a, r, i, h0 + k * hourly.HOUR_S, w, o) for a, r, i, k, w, o in rows])
        mine, _ = (p["targets"][0]["query"] for p in build.my_line()["panels"]
                   if p["title"].startswith("Internet availability"))
        mine_t = next(p["targets"][0]["query"] for p in build.my_line()["panels"]
                      if p["title"] == "Internet availability over time")
        all_lines = {p["title"]: p["targets"][0]["query"] for p in build.all_lines()["panels"]}
        per_agent = all_lines["Internet availability per agent"]
        per_cell = all_lines["Live: internet availability per region and ISP"]
        for agent in ("x1", "x2", "x3"):
            want = expect(lambda r, a=agent: r[0] == a)
            got = figures(mine, {"agent": agent}, lambda tags, t: "range")
            assert got == ({"range": want} if want is not None else {}), agent
            per_hour = figures(mine_t, {"agent": agent}, lambda tags, t: t // 1000)
            assert per_hour == {h0 + r[3] * hourly.HOUR_S: expect(lambda x, r=r: x is r)
                                for r in in_range if r[0] == agent and r[4] > 0}, agent
        assert figures(per_agent, {"region": "PK-SD", "isp": ".*"}, lambda tags, t: tags["agent"]) == {
            a: expect(lambda r, a=a: r[0] == a) for a in ("x1", "x2")}
        assert figures(per_cell, {"region": "PK-SD", "isp": ".*"},
                       lambda tags, t: (tags["region"], tags["isp"])) == {
            ("PK-SD", "NetA"): expect(lambda r: r[2] == "NetA")}
    assert 0 < expect(lambda r: r[2] == "NetA") < 1
    assert set(INTERNET_CAUSES) == {"lan", "isp", "dns", "power", "unknown"}   # every cause above


def test_an_agent_sending_summaries_only_fills_the_panels_that_say_so(loaded):
    """An agent with influx.send = "summaries" sends hourly, outage and speedtest rows only. Each
    my-line panel, annotation and the agent variable either fills from those, or says in its
    description that it needs the raw rows (build.NEEDS_ALL) and then is indeed empty."""
    d = build.my_line()
    values = {**VALUES, "agent": SUMMARIES_ID}

    def filled(query: str) -> bool:
        (res,) = run_query(loaded, substitute(query, values))["results"]
        assert "error" not in res, res
        return any(s.get("values") for s in res.get("series") or [])

    seen = {}
    for p in d["panels"]:
        needs_all = build.NEEDS_ALL in p.get("description", "")
        for t in p["targets"]:
            seen[f"{p['title']} {t['refId']}"] = (filled(t["query"]), needs_all)
    for a in d["annotations"]["list"][1:]:
        seen[a["name"]] = (filled(a["target"]["query"]), False)
    wrong = {k: v for k, v in seen.items() if v[0] == v[1]}
    assert not wrong, wrong     # (filled, needs_all): filled and claimed empty, or the reverse
    assert sum(not n for _, n in seen.values()) >= 12   # most of the page works on summaries
    (agents,) = (v for v in d["templating"]["list"] if v["name"] == "agent")
    (res,) = run_query(loaded, agents["query"])["results"]
    assert [SUMMARIES_ID] in [row[1:] for s in res["series"] for row in s["values"]]
