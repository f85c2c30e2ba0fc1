"""linewatch report as evidence for an ISP, end to end: the agent's own round job (agent.runner)
writes a real store through agent.store with injected probes and a fake clock, the real
`linewatch report` command reads it as a subprocess, and the page is opened in Chromium.

What is checked: the page names the line as configured now (and says when the rows were tagged
otherwise), warns beside a figure made from less than a day, lists what every outage's rounds
recorded, names the real probe settings, sets speeds against the paid plan, and counts work hours
across midnight for night shifts.
"""

from __future__ import annotations

import html as htmllib
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.config import parse
from agent.report.line import Setup, identity, setup_of, work_overlap
from agent.report.sections import evidence_text, speed_against_plan
from kit import configkit
from kit.definitions import Unit
from tests.linestore import KARACHI, MONDAY, Watch, config_text

BIN = Path(sys.executable).parent


def report(cfg: Path, out: Path, since: datetime, until: datetime, *extra: str, check=True):
    p = subprocess.run([str(BIN / "linewatch"), "report", "--config", str(cfg),
                        "--since", since.isoformat(), "--until", until.isoformat(),
                        "--out", str(out), *extra],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    if check:
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stderr
    return p


def rows_of(html: str, sid: str) -> list[list[str]]:
    """The text of each row of the first table in section ``sid``."""
    sec = html.split(f'<section id="{sid}"', 1)[1].split("</section>", 1)[0]
    out = []
    for tr in re.findall(r"<tr>(.*?)</tr>", sec, re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, re.S)
        out.append([re.sub(r"<[^>]+>", "", c).replace("&#x27;", "'").strip() for c in cells])
    return out


# --- per-outage evidence, method, identity, plan: one week of a real store ---------------------

@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """Monday: one hour up under an old config (Sindh, Nayatel); then, configured as now, an ISP
    cut of 20 rounds in which the router lost 2 of its 60 echoes, a LAN cut of 5 rounds, a DNS
    failure of 4 rounds, five speed tests, and a night-shift ISP cut of 24 rounds at 23:00.
    Then 11 hours of good rounds: the window rests on more than a day of watching."""
    tmp = tmp_path_factory.mktemp("week")
    w = Watch(tmp, MONDAY + timedelta(hours=9), region="PK-SD", city="Karachi", isp="Nayatel",
              access="dsl")
    w.rounds(360)
    changed = w.clock.now()
    cfg = w.configure(report='account = "PTCL-ACC-0042"\nplan_download_mbps = 20\n'
                             'plan_upload_mbps = 5\n')
    w.rounds(30)
    times = {"isp": w.clock.now()}
    w.line.gateway_loses = 2
    w.rounds(20, "isp")
    w.rounds(30)
    times["lan"] = w.clock.now()
    w.rounds(5, "lan")
    w.rounds(30)
    times["dns"] = w.clock.now()
    w.rounds(4, "dns")
    w.rounds(30)
    for down, up in ((8, 2), (12, 3), (15, 4), (18, 5.5), (21, 6)):
        w.speedtest(down, up)
        w.rounds(6)
    # To 23:00 local, then a 4-minute cut inside the night shift.
    w.rounds(int((MONDAY + timedelta(hours=23) - w.clock.now()).total_seconds() // 10))
    times["night"] = w.clock.now()
    w.rounds(24, "isp")
    w.rounds(11 * 360)
    end = w.clock.now()
    w.close()
    out = tmp / "line.html"
    p = report(cfg, out, MONDAY, end + timedelta(minutes=1))
    return {"cfg": cfg, "out": out, "stdout": p.stdout, "html": out.read_text(encoding="utf-8"),
            "text": htmllib.unescape(out.read_text(encoding="utf-8")),
            "times": times, "changed": changed, "end": end, "state": w.state, "tmp": tmp}


def test_every_outage_lists_what_its_rounds_recorded(week):
    eps = [r for r in rows_of(week["html"], "episodes")[1:] if r[1] == "Internet outage"]
    by_cause = {r[2]: r for r in eps}
    assert [r[2] for r in eps] == ["ISP", "local network", "DNS", "ISP"]
    isp = eps[0]
    assert isp[3] == week["times"]["isp"].astimezone(KARACHI).strftime("%Y-%m-%d %H:%M")
    assert isp[6] == ("20 rounds down; router 192.168.1.1 answered 58/60 echoes; "
                      "192.0.2.1 answered 0/60, 198.51.100.1 0/60; "
                      "DNS example.com failed 20/20 (timeout)")
    assert by_cause["local network"][6] == (
        "5 rounds down; router 192.168.1.1 answered 0/15 echoes; 192.0.2.1 answered 0/15, "
        "198.51.100.1 0/15; DNS example.com failed 5/5 (timeout)")
    assert by_cause["DNS"][6] == (
        "4 rounds down; router 192.168.1.1 answered 12/12 echoes; 192.0.2.1 answered 12/12, "
        "198.51.100.1 12/12; DNS example.com failed 4/4 (timeout)")
    assert eps[3][6].startswith("24 rounds down; router 192.168.1.1 answered 72/72 echoes; "
                                "192.0.2.1 answered 0/72")


def test_method_names_the_real_targets_interval_and_echo_count(week):
    method = week["text"].split('<section id="method"', 1)[1]
    assert ("Every 10 s the agent ran one test round: 3 echoes to the subscriber's router (the "
            "default gateway, found automatically; in this window 192.168.1.1) and each internet "
            "host (192.0.2.1, 198.51.100.1), each echo waiting up to 2.0 s for its reply, and a "
            "name lookup (DNS) of example.com through 192.0.2.53.") in method
    assert "Echoes in this window were sent as ICMP echo (ping)." in method
    assert "An outage opens after 3 down rounds in a row" in method
    assert "1.1.1.1" not in week["html"] and "8.8.8.8" not in week["html"]


def test_identity_comes_from_the_config_and_a_tag_change_is_listed(week):
    html = week["html"]
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    assert title.startswith("Internet line report: PTCL, Lahore \u2013 ")
    assert "<h1>Internet line report: <bdi>PTCL</bdi>, <bdi>Lahore</bdi></h1>" in html
    lede = re.search(r'<p class="lede">(.*?)</p>', html).group(1)
    assert re.sub(r"<[^>]+>", "", lede) == "PTCL in Lahore, Punjab (PK-PB)"
    note = htmllib.unescape(html).split("The agent's tags changed inside this window.", 1)[1]
    note = note.split("</div>", 1)[0]
    items = [re.sub(r"<[^>]+>", "", li) for li in re.findall(r"<li>(.*?)</li>", note)]
    assert len(items) == 2
    assert items[0].endswith(": region PK-SD, city Karachi, ISP Nayatel, access dsl")
    assert "(as now)" not in items[0]
    assert items[1].endswith(": region PK-PB, city Lahore, ISP PTCL, access fibre (as now)")
    assert items[1].startswith(week["changed"].astimezone(KARACHI).strftime("%Y-%m-%d %H:%M"))
    assert "tags changed inside the window" in week["stdout"]


def test_speeds_are_set_against_the_paid_plan(week):
    speed = week["html"].split('<section id="speed"', 1)[1].split("</section>", 1)[0]
    assert "5 speed tests." in speed
    assert ("Download: median 15.0 Mbit/s, 75 % of the paid 20.0 Mbit/s; 4 of 5 tests below the "
            "paid speed, 1 below half of it") in speed
    assert ("Upload: median 4.0 Mbit/s, 80 % of the paid 5.0 Mbit/s; 3 of 5 tests below the paid "
            "speed, 1 below half of it") in speed
    assert ">paid download<" in speed and ">paid upload<" in speed    # the dashed lines' legend
    facts = week["html"].split('<dl class="facts">', 1)[1].split("</dl>", 1)[0]
    assert "20.0 Mbit/s download, 5.0 Mbit/s upload" in facts
    assert "<code>PTCL-ACC-0042</code>" in facts


def test_the_account_reference_stays_on_the_page(week):
    """The account is in the config and on the private page, never in a row the agent stores
    (the store is the outbox: nothing else is ever forwarded)."""
    for name in os.listdir(week["state"]):
        assert b"PTCL-ACC-0042" not in (week["state"] / name).read_bytes(), name
    assert oct(week["out"].stat().st_mode & 0o777) == "0o600"


def test_no_thin_data_warning_after_a_day(week):
    assert "less than a day" not in week["html"]
    assert "less than a day" not in week["stdout"]


def test_night_shift_counts_the_outage_across_midnight(week):
    """--work-hours 20:00-05:00: the 23:00 cut (24 rounds, 4 min) is inside the shift and the
    daytime cuts are not; the default day shift counts the daytime ones (3.3 + 0.8 + 0.7 min)."""
    assert week["times"]["night"].astimezone(KARACHI).hour == 23
    out = week["tmp"] / "night.html"
    report(week["cfg"], out, MONDAY, week["end"], "--work-hours", "20:00-05:00")
    night = out.read_text(encoding="utf-8")
    assert 'Within work hours (20:00-05:00)</div><div class="v">4.0 min</div>' in night
    assert 'Within work hours (09:00-18:00)</div><div class="v">4.8 min</div>' in week["html"]


def test_the_page_renders_cleanly(week, chromium):
    r = chromium.render(week["out"], "line-report-evidence")
    assert r.problems() == []
    for text in ("What the tests saw", "router 192.168.1.1 answered 58/60 echoes",
                 "The agent's tags changed inside this window", "download against plan",
                 "PTCL-ACC-0042"):
        assert text.lower() in r.text.lower(), text


def test_isp_auto_names_the_isp_the_agent_learnt(tmp_path):
    """isp = "auto": the name speedtest.net reported (kept in the store's state) titles the page;
    the rows from before it was known carry no ISP, and that is not a tag change."""
    w = Watch(tmp_path, MONDAY + timedelta(hours=10), isp="auto")
    w.rounds(30)
    w.agent.store.write(state={"isp_auto": "Nayatel"})      # as the agent's speed test leaves it
    cfg = w.configure(isp="auto")
    w.rounds(30)
    end = w.clock.now()
    w.close()
    out = tmp_path / "auto.html"
    p = report(cfg, out, MONDAY, end)
    html = out.read_text(encoding="utf-8")
    assert "<h1>Internet line report: <bdi>Nayatel</bdi>, <bdi>Lahore</bdi></h1>" in html
    assert "tags changed" not in html and "tags changed" not in p.stdout


# --- thin data: a report from six minutes of watching -------------------------------------------

def test_a_report_from_minutes_says_so_beside_the_figure(tmp_path, chromium):
    w = Watch(tmp_path, MONDAY + timedelta(hours=10))
    w.rounds(20)
    w.rounds(17, "isp")
    w.rounds(3)
    cfg = tmp_path / "config.toml"
    end = w.clock.now()
    w.close()
    out = tmp_path / "thin.html"
    p = report(cfg, out, MONDAY, end + timedelta(seconds=1))
    line = p.stdout.strip()
    assert re.fullmatch(r"wrote \S+: 0\.1 h watched, internet available \d+\.\d{3} % \(only 7 min "
                        r"of watching, less than a day: too little to judge the line by\), 1 outage, "
                        r"0 power cuts", line), line
    html = out.read_text(encoding="utf-8")
    thin = "Only 7 min of watching, less than a day: too little to judge the line by"
    summary = html.split('<section id="summary"', 1)[1]
    banner = summary.split('<div class="warn" role="note">', 1)[1].split("</div>", 1)[0]
    assert banner.startswith(f"<p><strong>{thin}.</strong>")
    assert summary.index(banner) < summary.index("Internet availability")
    card = summary.split("Internet availability", 1)[1].split("</div></div>", 1)[0]
    assert thin in card and re.search(r'<div class="v">\d+\.\d{3} %</div>', card)
    r = chromium.render(out, "line-report-thin")
    assert r.problems() == [] and r.text.count(thin) == 2


# --- the pure parts ---------------------------------------------------------------------------

def _t(day: int, hour: int, minute: int = 0) -> float:
    return (MONDAY + timedelta(days=day, hours=hour, minutes=minute)).timestamp()


WEEKDAYS5 = ("mon", "tue", "wed", "thu", "fri")


@pytest.mark.parametrize("start, end, work, expected_min", [
    (_t(0, 23), _t(1, 1), (1200, 300), 120),          # Mon 23:00-Tue 01:00 in Monday's shift
    (_t(1, 4), _t(1, 6), (1200, 300), 60),            # Tue 04:00-06:00: the shift ends at 05:00
    (_t(0, 12), _t(0, 21), (1200, 300), 60),          # Mon 20:00-21:00 only
    (_t(4, 22), _t(5, 3), (1200, 300), 300),          # Fri night runs into Saturday: Friday's shift
    (_t(5, 22), _t(6, 3), (1200, 300), 0),            # Saturday's night is not a working shift
    (_t(6, 22), _t(0 + 7, 3), (1200, 300), 0),        # nor Sunday's, though it ends on a Monday
    (_t(0, 0), _t(0, 6), (1200, 300), 0),             # Monday 00-06 belongs to Sunday's shift
    (_t(1, 0), _t(1, 6), (1200, 300), 300),           # Tuesday 00-05 is Monday's shift
    (_t(0, 8), _t(0, 19), (540, 1080), 540),          # the day shift is unchanged
    (_t(0, 20), _t(1, 0), (1200, 1440), 240),         # 20:00-24:00
], ids=["across-midnight", "shift-end", "shift-start", "friday-night", "saturday-night",
        "sunday-night", "monday-early", "tuesday-early", "day-shift", "to-midnight"])
def test_work_overlap_with_night_shifts(start, end, work, expected_min):
    assert work_overlap(start, end, KARACHI, work, WEEKDAYS5) == pytest.approx(expected_min * 60)


@pytest.mark.parametrize("text, expected", [
    ("09:00-18:00", (540, 1080)), ("20:00-05:00", (1200, 300)), ("22:30-06:15", (1350, 375)),
    ("00:00-24:00", (0, 1440)),
], ids=["day", "night", "minutes", "whole-day"])
def test_work_hours_parse_overnight(text, expected):
    assert configkit.parse_work_hours(text, overnight=True) == expected


@pytest.mark.parametrize("text, overnight, message", [
    ("20:00-05:00", False, "the end must be after the start, on the same day"),
    ("09:00-09:00", True, "the start and the end must differ"),
    ("09:00-24:30", True, "the end must be 24:00 at the latest"),
    ("9-5", True, 'must be "HH:MM-HH:MM", such as "09:00-18:00" or "20:00-05:00"'),
], ids=["collector-day-only", "empty", "past-midnight", "shape"])
def test_work_hours_refused(text, overnight, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        configkit.parse_work_hours(text, overnight=overnight)


def test_cli_refuses_a_bad_work_hours_in_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(config_text(tmp_path / "state"), encoding="utf-8")
    p = subprocess.run([str(BIN / "linewatch"), "report", "--config", str(cfg), "--work-hours",
                        "09:00-09:00", "--out", str(tmp_path / "x.html")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr == "linewatch: --work-hours 09:00-09:00: the start and the end must differ\n"


@pytest.mark.parametrize("measured, paid, expected", [
    ([8, 12, 15, 18, 21], 20, dict(tests=5, median_mbps=15, median_share=0.75, below_paid=4, below_half=1)),
    ([20, 25], 20, dict(tests=2, median_mbps=22.5, median_share=1.125, below_paid=0, below_half=0)),
    ([], 20, dict(tests=0, median_mbps=None, median_share=None, below_paid=0, below_half=0)),
], ids=["odd", "even-above", "none"])
def test_speed_against_plan(measured, paid, expected):
    got = speed_against_plan(measured, paid)
    assert {k: got[k] for k in expected} == expected


@pytest.mark.parametrize("ev, text", [
    ({"rounds": {"down": 29, "up": 2}, "gateway": [], "internet": [
        {"target": "192.0.2.1", "sent": 93, "received": 6}],
      "dns": [{"name": "a.pk", "queries": 31, "ok": 2, "errors": {"timeout": 25, "servfail": 4}}]},
     "31 rounds (29 down, 2 up); router not tested; 192.0.2.1 answered 6/93; "
     "DNS a.pk failed 29/31 (timeout 25, servfail 4)"),
    ({"rounds": {"down": 1}, "gateway": [{"target": "10.0.0.1", "sent": 1, "received": 1}],
      "internet": [], "dns": [{"name": "a.pk", "queries": 1, "ok": 1, "errors": {}}]},
     "1 round down; router 10.0.0.1 answered 1/1 echoes; DNS a.pk resolved 1/1"),
    ({}, "no test round was recorded in this span"),
], ids=["mixed", "single", "empty"])
def test_evidence_text(ev, text):
    assert evidence_text(ev) == text


# --- identity from the config -----------------------------------------------------------------

OLD = Unit("a1", "PK-SD", "Nayatel", "Karachi", "dsl")
NEW = Unit("a1", "PK-PB", "PTCL", "Lahore", "fibre")


@pytest.mark.parametrize("spans, setup, isp_auto, unit, changed", [
    ([(1, 5, NEW)], None, "", NEW, []),
    ([(1, 5, OLD), (6, 9, NEW)], None, "", NEW, [(1, 5, OLD), (6, 9, NEW)]),
    ([(1, 5, NEW)], Setup(agent="a1", region="PK-PB", isp="PTCL", city="Lahore", access="fibre"),
     "", NEW, []),
    ([(1, 5, OLD)], Setup(agent="a1", region="PK-PB", isp="PTCL", city="Lahore", access="fibre"),
     "", NEW, [(1, 5, OLD)]),
    ([(1, 5, NEW)], Setup(region="PK-PB", isp="auto", city="Lahore", access="fibre"), "PTCL",
     NEW, []),
    ([(1, 3, NEW), (4, 5, OLD), (6, 9, NEW)], None, "", NEW, [(1, 9, NEW), (4, 5, OLD)]),
    ([], Setup(agent="a1", region="PK-PB"), "", Unit("a1", "PK-PB"), []),
    ([(1, 5, Unit("a1", "PK-PB", "", "Lahore", "fibre")), (6, 9, NEW)],
     Setup(region="PK-PB", isp="auto", city="Lahore", access="fibre"), "PTCL", NEW, []),
    ([(1, 5, Unit("a1", "PK-SD", "", "Lahore", "fibre")), (6, 9, NEW)],
     Setup(region="PK-PB", isp="auto", city="Lahore", access="fibre"), "PTCL", NEW,
     [(1, 5, Unit("a1", "PK-SD", "", "Lahore", "fibre")), (6, 9, NEW)]),
], ids=["rows-only", "rows-changed", "config-matches", "config-differs", "isp-auto",
        "back-and-forth", "no-rows", "isp-auto-learnt-later", "isp-auto-region-changed"])
def test_identity(spans, setup, isp_auto, unit, changed):
    assert identity(spans, setup, isp_auto) == (unit, changed)


def test_setup_reads_the_agent_id_and_never_creates_it(tmp_path):
    state = tmp_path / "state"
    cfg = parse(f'[agent]\nstate_dir = "{state}"\n')
    assert setup_of(cfg).agent == "" and not state.exists()
    state.mkdir()
    (state / "agent_id").write_text("c0ffee\n", encoding="ascii")
    assert setup_of(cfg).agent == "c0ffee"


# --- blocked while the line was up ------------------------------------------------------------

class _Checks:
    """The service checks' results as the test sets them (target -> failed step, or ok): the
    real job (agent/jobs/services.py) and store, with the network's answers chosen here."""

    def __init__(self, clock) -> None:
        self.clock, self.steps = clock, {}

    def check(self, service):
        from agent.model import Sample
        step = self.steps.get(service.target, "ok")
        return Sample("service", {"target": service.target, "kind": service.kind, "step": step},
                      {"ok": step == "ok", "addresses": 1,
                       **({} if step == "ok" else {"how": "reset"})}, self.clock.now())


def test_a_site_blocked_while_the_line_was_up_is_listed_with_its_work_hours(tmp_path, chromium):
    """A week's Monday: sni.test reset by name from 10:00 to 10:40 local (three checks to open,
    a passing one to close), vpn.example.org:443 refused from 19:00 and still blocked; an
    episode row whose details are not the agent's is left out. The page lists both, in the
    words of the step that failed, with the minutes inside work hours (09:00-18:00)."""
    import sqlite3

    from agent.jobs.services import ServiceChecks

    w = Watch(tmp_path, MONDAY + timedelta(hours=9),
              services='urls = ["https://sni.test/"]\nvpn = ["tcp://vpn.example.org:443"]\n')
    cfg = tmp_path / "config.toml"
    checks = _Checks(w.clock)
    job = ServiceChecks(w.agent.ctx, line_up=lambda: True, checker=checks)

    def at(hour: int, minute: int = 0) -> None:
        w.rounds(int((MONDAY + timedelta(hours=hour, minutes=minute) - w.clock.now())
                     .total_seconds() // 10))
        job._next.clear()                          # every target due at each check here
        job.run()
    at(9, 30)
    checks.steps["sni.test"] = "tls"
    for m in (0, 1, 2):
        at(10, m)
    checks.steps.pop("sni.test")
    at(10, 40)
    checks.steps["vpn.example.org:443"] = "tcp"
    for m in (0, 1, 2):
        at(19, m)
    w.rounds(360)
    end = w.clock.now()
    w.close()
    db = sqlite3.connect(w.state / "linewatch.db")
    db.execute("INSERT INTO episodes (id, type, cause, start_ns, end_ns, duration_s, sustained, "
               "details) VALUES ('interference:x:1', 'interference', 'tls', ?, ?, 60, 0, "
               "'not json')", (int((MONDAY + timedelta(hours=11)).timestamp() * 1e9),
                               int((MONDAY + timedelta(hours=11, minutes=1)).timestamp() * 1e9)))
    db.commit()
    db.close()
    out = tmp_path / "line.html"
    report(cfg, out, MONDAY, end + timedelta(minutes=1))
    page = out.read_text(encoding="utf-8")
    rows = rows_of(page, "blocked")[1:]
    assert [r[1:3] for r in rows] == [
        ["sni.test", "the secure connection was reset once it named the site"],
        ["vpn.example.org:443", "the connection to the VPN server was reset"]]
    assert rows[0][3].endswith("10:00") and rows[0][4].endswith("10:40") and rows[0][5] == "40.0"
    assert rows[0][6] == "40.0" and rows[1][4] == "still blocked" and rows[1][6] == "0.0"
    r = chromium.render(out, "line-report-blocked")
    assert r.problems() == []
    assert "Blocked while the line was up" in r.text
