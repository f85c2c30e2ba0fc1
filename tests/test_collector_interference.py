"""Blocking across agents (collector/interference.py, `linewatch-collector interference`): the
figures and regional events of a fleet whose rows are made as agents make them, from a real
InfluxDB 1.6.7 and from real store files; the OONI-style export; and bad rows counted, never
taken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.jobs.context import episode_sample
from agent.model import Sample
from collector import interference as itf
from collector.settings import Settings
from kit.definitions import Quality
from kit.lineproto import line

BIN = Path(sys.executable).parent
DAY = (int(time.time()) // 86400 - 3) * 86400          # a whole UTC day, three days back
T0 = DAY + 9 * 3600                                      # the block begins at 09:00 UTC
S = Settings(min_agents=5)


def _tags(agent: str, region: str, isp: str) -> dict[str, str]:
    return {"agent": agent, "site": agent, "region": region, "isp": isp, "access": "fiber"}


def _fleet() -> tuple[list[Sample], list[Sample]]:
    """One day of checks of zoom.us every 30 min (60 s while failing), as the agent's job
    writes them, and the episodes it closes:

    * PK-PB / PTCL: 8 lines; 6 of them find zoom.us reset at TLS from 09:00 (+ up to 2 min)
      for an hour: a regional event;
    * PK-PB / Jazz: 6 lines, every check passes (the site was up: the event's evidence);
    * PK-PB / Tiny: 2 lines, one blocked (a cell under the floor of 5: suppressed);
    * PK-SD / PTCL: 5 lines checking slack.com as throttling checks, 3 of them slow for 2 h
      (its own lane, apart from blocking).
    """
    from agent import interference
    from agent.interference import Check, State

    rows, episodes = [], []

    def line_of(agent, region, isp, target, kind, blocked_from=None, blocked_s=0, step="tls",
                how="reset"):
        tags = _tags(agent, region, isp)
        state, t = State(), DAY
        while t < DAY + 86400:
            bad = blocked_from is not None and blocked_from <= t < blocked_from + blocked_s
            st = step if bad else "ok"
            fields = {"ok": not bad, "addresses": 1, **({"how": how} if bad else {}),
                      **({"kbps": 900.0, "control_kbps": 9000.0, "ratio": 0.1} if bad and
                         kind == "throttle" else {})}
            at = datetime.fromtimestamp(t, UTC)
            rows.append(Sample("service", {**tags, "target": target, "kind": kind, "step": st},
                               fields, at))
            state, changes = interference.step(state, Check(target, kind, st, how if bad else "",
                                                            at), 3)
            episodes.extend(episode_sample(c.episode, tags) for c in changes
                            if c.kind == "closed")
            if blocked_from is not None and not bad and t < blocked_from < t + 1800:
                t = blocked_from                  # the block begins between two checks
            else:
                t += 60 if bad else 1800
    for i in range(8):
        line_of(f"pt{i}", "PK-PB", "PTCL", "zoom.us", "site",
                T0 + 20 * i if i < 6 else None, 3600)
    for i in range(6):
        line_of(f"jz{i}", "PK-PB", "Jazz", "zoom.us", "site")
    line_of("tn0", "PK-PB", "Tiny", "zoom.us", "site", T0, 3600)
    line_of("tn1", "PK-PB", "Tiny", "zoom.us", "site")
    for i in range(5):
        line_of(f"sd{i}", "PK-SD", "PTCL", "slack.com", "throttle",
                T0 + 3600 if i < 3 else None, 7200, step="throttled", how="slow")
    return rows, episodes


@pytest.fixture(scope="module")
def fleet():
    return _fleet()


def _records(fleet):
    """The fleet as the InfluxDB readers would give it, through the same answer shape."""
    rows, episodes = fleet
    series: dict[tuple, list] = {}
    for r in rows:
        key = tuple(sorted({k: r.tags[k] for k in ("agent", "region", "isp", "target", "kind",
                                                   "step")}.items()))
        day_ms = int(r.time.timestamp()) // 86400 * 86400 * 1000
        series.setdefault(key, {}).setdefault(day_ms, 0)
        series[key][day_ms] += 1
    q = Quality()
    days = itf.days_from([{"tags": dict(k), "columns": ["time", "n"],
                           "values": [[t, n] for t, n in v.items()]} for k, v in series.items()],
                         set(S.regions), q)
    blocked = itf.blocked_from([{"tags": {**e.tags}, "columns": ["time", "duration_s", "how",
                                                                  "failed_checks"],
                                 "values": [[int(e.time.timestamp() * 1000),
                                             e.fields["duration_s"], e.fields["how"],
                                             e.fields["failed_checks"]]]} for e in episodes],
                               set(S.regions), q)
    return days, blocked, q


def _cells(result):
    return {(c["region"], c["isp"], c["target"], c.get("throttling")): c for c in result["cells"]}


def test_figures_one_line_one_vote_with_intervals_and_the_floor(fleet):
    days, blocked, q = _records(fleet)
    assert q.rejected == {}
    result = itf.aggregate(days, blocked, S, DAY, DAY + 86400, q)
    cells = _cells(result)
    ptcl = cells[("PK-PB", "PTCL", "zoom.us", False)]
    assert (ptcl["lines_checking"], ptcl["lines_blocked"], ptcl["episodes"]) == (8, 6, 6)
    assert ptcl["share_blocked"] == 0.75
    assert (ptcl["share_blocked_low"], ptcl["share_blocked_high"]) == (0.4093, 0.9285)  # Wilson
    assert (ptcl["main_cause"], ptcl["main_how"], ptcl["episodes_by_cause"]) == \
        ("tls", "reset", {"tls": 6})
    # each episode runs from its first failed check to its first good one: the hour blocked
    assert ptcl["median_episode_min"] == 60.0 and ptcl["blocked_h"] == 6.0
    assert ptcl["failed_checks_by_step"] == {"tls": 6 * 60}
    jazz = cells[("PK-PB", "Jazz", "zoom.us", False)]
    assert (jazz["lines_blocked"], jazz["share_blocked"], jazz["share_blocked_low"]) == (0, 0, 0)
    assert jazz["share_blocked_high"] == 0.3903
    assert cells[("PK-PB", "Tiny", "zoom.us", False)] == {
        "region": "PK-PB", "isp": "Tiny", "target": "zoom.us", "throttling": False,
        "suppressed": True}
    slow = cells[("PK-SD", "PTCL", "slack.com", True)]
    assert (slow["lines_checking"], slow["lines_blocked"], slow["main_cause"]) == (5, 3, "throttled")


def test_regional_event_names_the_isp_and_where_the_target_worked(fleet):
    days, blocked, _ = _records(fleet)
    evs, unlisted = itf.events(days, blocked, S)
    assert unlisted == 0          # Tiny's one line is no event at all (under event_min_agents)
    assert [(e["region"], e["isp"], e["target"], e["cause"], e["how"], e["lines"],
             e["lines_checking"], e["elsewhere_clean_lines"], e["elsewhere_isps"],
             e["throttling"]) for e in evs] == [
        ("PK-PB", "PTCL", "zoom.us", "tls", "reset", 6, 8, 6, ["Jazz"], False),
        ("PK-SD", "PTCL", "slack.com", "throttled", "slow", 3, 5, 0, [], True)]
    start = datetime.fromtimestamp(T0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert evs[0]["start"] == start
    # half the ISP's lines are needed: with 4 of 8 blocked it is still one, with 3 not
    few = [b for b in blocked if b.agent not in ("pt4", "pt5")]
    assert len(itf.events(days, few, S)[0]) == 2
    fewer = [b for b in few if b.agent != "pt3"]
    assert [e["target"] for e in itf.events(days, fewer, S)[0]] == ["slack.com"]
    # the same episodes spread over more than event_window_s: no event
    apart = [itf.Blocked(**{**vars(b), "start": b.start + 400 * i})
             for i, b in enumerate(blocked) if b.region == "PK-PB"]
    assert itf.events(days, apart, S)[0] == []
    # an ISP under the floor: counted, not listed
    small = Settings(min_agents=9)
    assert itf.events(days, blocked, small) == ([], 2)


def test_bad_rows_are_counted_never_taken():
    q = Quality()
    good = {"agent": "a", "region": "PK-PB", "isp": "X", "target": "t", "kind": "site",
            "step": "ok"}
    series = [
        {"tags": good, "columns": ["time", "n"],
         "values": [[DAY * 1000, 3], [DAY * 1000, -1], [DAY * 1000, 1.5], [DAY * 1000, "7"],
                    [None, 2], [DAY * 1000, float("nan")], [DAY * 1000]]},
        {"tags": {**good, "region": "XX"}, "columns": ["time", "n"], "values": [[0, 1]]},
        {"tags": {**good, "agent": ""}, "columns": ["time", "n"], "values": [[0, 1]]},
        {"tags": {**good, "step": "boom"}, "columns": ["time", "n"], "values": [[0, 1]]},
        {"tags": good, "columns": ["when"], "values": [[0]]},
    ]
    days = itf.days_from(series, set(S.regions), q)
    assert [(d.agent, d.steps) for d in days] == [("a", (("ok", 3),))]
    assert q.rejected == {"bad_row": 7, "unknown_region": 1, "interference_untagged": 1,
                          "unknown_step": 1}
    assert q.unknown_regions == {"XX": 1}
    q = Quality()
    eps = itf.blocked_from([{"tags": {**good, "cause": "tls"},
                             "columns": ["time", "duration_s", "how", "failed_checks"],
                             "values": [[DAY * 1000, 60.0, "reset", 3], [DAY * 1000, -5, "x", 3],
                                        [DAY * 1000, "long", "x", 3], [DAY * 1000, 9, "x" * 99, -2]]},
                            {"tags": {**good, "cause": "weird"}, "columns": ["time"],
                             "values": [[0]]}], set(S.regions), q)
    assert [(e.duration_s, e.how, e.failed_checks) for e in eps] == [(60.0, "reset", 3),
                                                                      (9.0, "x" * 32, 0)]
    assert q.rejected == {"bad_row": 2, "unknown_cause": 1}


def test_ooni_measurement_keys():
    row = itf.CheckRow("pt0", "PK-PB", "PTCL", "zoom.us", "site", "tls", T0,
                       {"ok": False, "how": "reset", "dns_ms": 4.0, "connect_ms": 30.0,
                        "dns_agree": True, "control_tls": True})
    m = itf.ooni_measurement(row, software_version="0.1.0", secret=b"k")
    assert m["test_name"] == "web_connectivity" and m["input"] == "https://zoom.us/"
    assert (m["probe_cc"], m["probe_asn"], m["probe_ip"]) == ("PK", "AS0", "127.0.0.1")
    assert m["measurement_start_time"] == datetime.fromtimestamp(T0, UTC).strftime(
        "%Y-%m-%d %H:%M:%S")
    k = m["test_keys"]
    assert (k["accessible"], k["blocking"], k["http_experiment_failure"],
            k["dns_consistency"]) == (False, "http-failure", "connection_reset", "consistent")
    assert k["tcp_connect"] == [{"ip": None, "port": 443, "t": 0.03,
                                 "status": {"failure": None, "success": True}}]
    assert k["tls_handshakes"][0]["failure"] == "connection_reset"
    assert "pt0" not in json.dumps(m)                  # no agent name, no address
    dns = itf.ooni_measurement(itf.CheckRow("a", "PK-PB", "X", "x.org:8443", "site", "dns", T0,
                                            {"how": "nxdomain"}), software_version="0",
                               secret=b"k")
    assert (dns["test_keys"]["blocking"], dns["test_keys"]["dns_experiment_failure"],
            dns["test_keys"]["tcp_connect"], dns["input"]) == \
        ("dns", "dns_nxdomain_error", [], "https://x.org:8443/")
    ok = itf.ooni_measurement(itf.CheckRow("a", "PK-PB", "X", "x.org", "site", "ok", T0, {}),
                              software_version="0", secret=b"k")["test_keys"]
    assert (ok["accessible"], ok["blocking"]) == (True, False)
    # the report id: keyed by a secret of the export, not the agent's name alone
    other = itf.ooni_measurement(row, software_version="0.1.0", secret=b"other")
    assert other["report_id"] != m["report_id"] and other["report_id"][:40] == m["report_id"][:40]
    # only cells (region x ISP x target) at or over the floor, only sites
    rare = itf.CheckRow("pt0", "PK-PB", "PTCL", "rare.org", "site", "ok", T0, {})
    lines = list(itf.ooni_lines([row, rare, itf.CheckRow("b", "PK-PB", "Tiny", "zoom.us", "site",
                                                         "ok", T0, {})],
                                {("PK-PB", "PTCL", "zoom.us"): 8, ("PK-PB", "PTCL", "rare.org"): 1,
                                 ("PK-PB", "Tiny", "zoom.us"): 2}, S, software_version="0"))
    assert [json.loads(t)["input"] for t in lines] == ["https://zoom.us/"]


def _run(*args, check=True):
    p = subprocess.run([str(BIN / "linewatch-collector"), *args], capture_output=True, text=True,
                       timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


WINDOW = ["--since", datetime.fromtimestamp(DAY, UTC).strftime("%Y-%m-%d"),
          "--until", datetime.fromtimestamp(DAY + 86400, UTC).strftime("%Y-%m-%d")]


def test_from_a_real_influxdb_as_a_user_runs_it(influx, fleet, tmp_path):
    """The rows POSTed to InfluxDB 1.6.7 as the agents' forwarder sends them (line protocol);
    the command's JSON is the same as the records' figures, its table readable, and the export
    one OONI-style line per site check of the cells over the floor, not world-readable."""
    rows, episodes = fleet
    body = "\n".join(line(s.measurement, s.tags, s.fields, int(s.time.timestamp() * 1e9))
                     for s in (*rows, *episodes)).encode()
    _post(influx.url, body)
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f'[influx]\nurl = "{influx.url}"\ndatabase = "linewatch"\n'
                   "[collector]\nmin_agents = 5\n")
    out = tmp_path / "ooni.jsonl"
    p = _run("interference", "--config", str(cfg), *WINDOW, "--format", "json", "--ooni",
             str(out))
    got = json.loads(p.stdout)
    days, blocked, q = _records(fleet)
    want = itf.aggregate(days, blocked, S, DAY, DAY + 86400, q)
    assert got["cells"] == want["cells"] and got["events"] == want["events"]
    assert got["data_quality"]["rejected"] == {}
    measurements = [json.loads(t) for t in out.read_text().splitlines()]
    site_rows = [r for r in rows if r.tags["kind"] == "site" and r.tags["isp"] != "Tiny"]
    assert len(measurements) == len(site_rows) == got["ooni_measurements"]
    assert {m["test_keys"]["blocking"] for m in measurements} == {False, "http-failure"}
    assert os.stat(out).st_mode & 0o007 == 0
    table = _run("interference", "--config", str(cfg), *WINDOW).stdout
    assert "zoom.us" in table and "75.0" in table and "40.9-92.8" in table
    assert "PK-PB / PTCL: zoom.us tls: reset on 6 of 8 lines; passed on 6 line(s) of Jazz" in table
    assert "slack.com (throttling)" in table


def _post(url: str, body: bytes) -> None:
    import urllib.request

    req = urllib.request.Request(f"{url}/write?db=linewatch&precision=ns", data=body,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 204


def test_from_store_files_written_by_the_agents_job(tmp_path):
    """Store files written by the agent's own service-check job (checks given by a table, as
    tests/test_services_job.py does): the same figures as from InfluxDB's rows; a damaged file
    is named and counted, the others read on."""
    from agent.clock import FakeClock
    from agent.config import parse
    from agent.jobs.services import ServiceChecks
    from agent.runner import Agent
    from tests.fakenet import FakeNet

    stores = []
    for i in range(6):
        clock = FakeClock(datetime.fromtimestamp(T0 - 1800, UTC))
        d = tmp_path / f"a{i}"
        cfg = parse(f'[agent]\nstate_dir = "{d}"\nid = "st{i}"\nregion = "PK-PB"\n'
                    'isp = "PTCL"\n[services]\nurls = ["https://zoom.us/"]\ninterval_s = 1800\n'
                    'retry_s = 60\n')
        agent = Agent(cfg, clock=clock, probes=FakeNet().probes())
        blocked = i < 4

        class Checker:
            def __init__(self, clock, blocked):
                self.clock, self.blocked = clock, blocked

            def check(self, service):
                now = self.clock.now()
                bad = self.blocked and T0 <= now.timestamp() < T0 + 1800
                return Sample("service", {"target": service.target, "kind": service.kind,
                                          "step": "tls" if bad else "ok"},
                              {"ok": not bad, "addresses": 1, **({"how": "reset"} if bad else {})},
                              now)
        job = ServiceChecks(agent.ctx, line_up=lambda: True, checker=Checker(clock, blocked))
        for _ in range(70):
            job.run()
            clock.advance(60)
        agent.store.close()
        stores.append(str(d / "linewatch.db"))
    # a volunteer's file with values of the wrong types in a check's fields
    import sqlite3

    c = sqlite3.connect(stores[0])
    (sid,), = c.execute("SELECT id FROM series WHERE measurement = 'service' AND "
                        "json_extract(tags, '$.step') = 'tls'").fetchall()
    c.execute("INSERT INTO samples (series_id, time_ns, fields) VALUES (?, ?, ?)",
              (sid, int((T0 + 600) * 1e9), json.dumps({"ok": "no", "connect_ms": "x",
                                                        "tls_ms": [1], "how": {"a": 1}})))
    c.commit()
    c.close()
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"not a store")
    cfg = tmp_path / "collector.toml"
    cfg.write_text("[collector]\nmin_agents = 5\n")
    out = tmp_path / "ooni.jsonl"
    p = _run("interference", "--config", str(cfg), *WINDOW, "--format", "json", "--ooni", str(out),
             *[a for s in stores for a in ("--store", s)], "--store", str(damaged))
    got = json.loads(p.stdout)
    assert got["cells"], (got, p.stderr)
    cell, = got["cells"]
    assert (cell["lines_checking"], cell["lines_blocked"], cell["main_cause"],
            cell["episodes"]) == (6, 4, "tls", 4)
    assert got["data_quality"]["rejected"] == {"unreadable_store": 1}
    assert "damaged.db" in p.stderr
    ev, = got["events"]
    assert (ev["lines"], ev["lines_checking"]) == (4, 6)
    exported = [json.loads(t) for t in out.read_text().splitlines()]
    assert len(exported) == got["ooni_measurements"] > 0
    odd = [m for m in exported if m["measurement_start_time"].endswith(
        datetime.fromtimestamp(T0 + 600, UTC).strftime("%H:%M:%S"))]
    assert odd and [m["test_keys"]["tcp_connect"][0]["t"] for m in odd] \
        == [None] * len(odd)                  # the wrong types left out, not exported
