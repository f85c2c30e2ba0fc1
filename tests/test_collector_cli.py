"""linewatch-collector and linewatch report as a user runs them: real processes, a real InfluxDB
1.6.7 loaded by the synthetic fleet, real store files, and both pages opened in Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector import config as cconfig
from tests.fleet import Fleet

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _recent_thursday(now: float) -> int:
    """The UTC midnight of a Thursday 6 to 12 days before ``now``: the fleet always lies inside
    the commands' relative windows (``run_since = "30d"``), its three days are always settled
    (over for at least ``cache_settle_days``, 3), and it starts on the weekday the assertions
    were written for, whatever today's date."""
    day = int(now) // 86400 - 6
    while (day + 4) % 7 != 3:      # 1970-01-01 was a Thursday (weekday 3)
        day -= 1
    return day * 86400


START = _recent_thursday(time.time())
FLEET = dict(agents=16, days=3, start=START, round_s=60, seed=5)
DAYS = [datetime.fromtimestamp(START + k * 86400, UTC).strftime("%Y-%m-%d") for k in range(4)]
# The window as the CLI takes it: the fleet's three days, given as dates.
WINDOW = ["--since", DAYS[0], "--until", DAYS[3]]


def run(*args, env=None, check=True):
    p = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test's collector keeps its cache under the test's own directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def fleet():
    return Fleet(**FLEET)


@pytest.fixture
def server(influx, fleet, tmp_path):
    fleet.write_influx(influx.url, "linewatch")
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f'[influx]\nurl = "{influx.url}"\ndatabase = "linewatch"\n\n'
                   '[collector]\nmin_agents = 3\nbootstrap = 200\n')
    return influx, cfg


def test_aggregate_json_is_a_list_of_cells_with_the_contract_keys(server):
    _, cfg = server
    p = run("linewatch-collector", "aggregate", "--config", str(cfg), *WINDOW, "--format", "json")
    cells = json.loads(p.stdout)
    assert isinstance(cells, list) and cells
    shown = [c for c in cells if not c["suppressed"]]
    hidden = [c for c in cells if c["suppressed"]]
    assert shown and hidden
    for c in shown:
        for key in ("region", "isp", "period_start", "period_end", "suppressed", "agents",
                    "agent_hours", "power_saifi", "power_saidi_min", "power_caidi_min",
                    "power_maifi", "power_asai", "internet_availability",
                    "internet_outages_per_agent", "internet_outage_min_per_agent",
                    "internet_outages_per_agent_isp", "internet_outage_min_per_agent_power",
                    "load_shedding_by_hour", "load_shedding_by_weekday",
                    "work_hours_power_min_per_agent", "rtt_p50_ms", "rtt_p95_ms", "loss_pct",
                    "download_p50_bps", "download_p10_bps", "upload_p50_bps",
                    "speed_under_threshold_share", "power_saifi_ci", "internet_availability_ci"):
            assert key in c, key
        assert c["agents"] >= 3 and c["sites"] == c["agents"]   # no site tags: each agent a line
        assert c["sites_watched_min_h"] >= 3
        assert 0 <= c["internet_availability"] <= 1
    for c in hidden:   # the floor: identity keys only, no figure at all
        assert set(c) <= {"region", "region_name", "isp", "period_start", "period_end", "suppressed",
                          "suppressed_reason"}
        assert c["suppressed_reason"] in ("min_agents", "min_watch_h")
    assert "data quality: accepted:" in p.stderr


def test_config_may_come_before_the_command_and_csv_and_table(server):
    _, cfg = server
    p = run("linewatch-collector", "--config", str(cfg), "aggregate", *WINDOW, "--by", "region",
            "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert {r["region"] for r in rows} and "power_saidi_min_ci_low" in rows[0]
    t = run("linewatch-collector", "--config", str(cfg), "aggregate", *WINDOW, "--period", "day")
    assert "SAIDI_MIN" in t.stdout and "Data quality" in t.stdout and "Regional events" in t.stdout
    assert sum(t.stdout.count(d) for d in DAYS[:3]) >= 2    # daily cells


def test_bad_arguments_and_config_name_the_key(server, tmp_path):
    _, cfg = server
    p = run("linewatch-collector", "aggregate", "--config", str(cfg), "--by", "region,colour", check=False)
    assert p.returncode == 2 and "--by" in p.stderr
    p = run("linewatch-collector", "aggregate", "--config", str(cfg), "--since", "yesterday-ish", check=False)
    assert p.returncode == 2 and "duration" in p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[collector]\nmin_agents = 0\n')
    p = run("linewatch-collector", "aggregate", "--config", str(bad), check=False)
    # A bad config is a usage error, as for the agent: exit 2, one line naming file and key.
    assert p.returncode == 2
    assert p.stderr == f"linewatch-collector: {bad}: collector.min_agents: must be >= 1, got 0\n"
    assert p.stdout == ""
    none = tmp_path / "none.toml"
    none.write_text("")
    p = run("linewatch-collector", "aggregate", "--config", str(none), check=False)
    assert p.returncode == 1 and "no source" in p.stderr


def test_example_config_parses_and_documents_every_key():
    text = cconfig.example_toml()
    uncommented = "\n".join(line[2:] if line.startswith("# ") and " = " in line else line
                            for line in text.splitlines())
    cfg = cconfig.parse(uncommented.replace('url = "http://localhost:8086"', 'url = ""'))
    for f in cconfig.CollectorSection.__dataclass_fields__:
        assert f"# {f} = " in text
    assert cfg.collector.min_agents == 5
    doc = (REPO / "docs" / "collector-example.toml").read_text()
    assert doc == text, ("docs/collector-example.toml is stale: regenerate it with python -c "
                         "'from collector.config import example_toml; print(example_toml(), end=\"\")' "
                         "> docs/collector-example.toml")


def test_check_reports_each_source(server, fleet, tmp_path):
    influx, cfg = server
    fleet.write_store(0, tmp_path / "vol")
    p = run("linewatch-collector", "check", "--config", str(cfg), "--store", str(tmp_path / "vol"))
    assert "OK    influx url" in p.stdout and "1.6.7" in p.stdout
    assert "OK    influx query" in p.stdout
    assert f"{tmp_path / 'vol' / 'linewatch.db'}: agent a0001" in p.stdout
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(f'[influx]\nurl = "{influx.url}"\ndatabase = "nothere"\n')
    p = run("linewatch-collector", "check", "--config", str(wrong), check=False)
    assert p.returncode == 1 and "FAIL  influx" in p.stdout and "nothere" in p.stdout


def test_credentials_are_used_and_never_shown(tmp_path, fleet):
    from tests.influxlab import InfluxV1, influx_unavailable

    if influx_unavailable():
        pytest.skip(influx_unavailable())
    with InfluxV1.create(tmp_path / "auth", auth=True) as srv:
        fleet.write_influx(srv.url, "linewatch", auth=srv.admin)
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[influx]\nurl = "{srv.url}"\ndatabase = "linewatch"\n[collector]\nmin_agents = 3\n')
        secret = f"{srv.admin[0]}:{srv.admin[1]}"
        ok = run("linewatch-collector", "aggregate", "--config", str(cfg), *WINDOW, "--format", "json",
                 env={"LINEWATCH_INFLUX_TOKEN": secret})
        assert json.loads(ok.stdout)
        bad = run("linewatch-collector", "check", "--config", str(cfg),
                  env={"LINEWATCH_INFLUX_TOKEN": "admin:wrong-password-123"}, check=False)
        assert bad.returncode == 1 and "credentials" in bad.stdout
        for out in (ok.stdout, ok.stderr, bad.stdout, bad.stderr):
            assert srv.admin[1] not in out and "wrong-password-123" not in out


def test_run_once_writes_regional_measurements_idempotently(server):
    influx, cfg = server
    cfg.write_text(cfg.read_text() + 'run_since = "30d"\nrun_period = "day"\n')
    first = run("linewatch-collector", "run", "--once", "--config", str(cfg))
    assert "wrote" in first.stdout
    names = {s["values"][i][0] for s in influx.series("SHOW MEASUREMENTS") for i in range(len(s["values"]))}
    assert {"regional_power", "regional_internet", "regional_line", "regional_load_shedding",
            "regional_coverage", "regional_events"} <= names
    before = influx.count("regional_power", "power_saifi")
    run("linewatch-collector", "run", "--once", "--config", str(cfg))
    assert influx.count("regional_power", "power_saifi") == before > 0

    def points(q: str) -> list[dict]:
        return [dict(zip(s["columns"], v)) for s in influx.series(q) for v in s["values"]]

    hidden = points('SELECT * FROM "regional_coverage" WHERE "suppressed" = true')
    shown = points('SELECT * FROM "regional_coverage" WHERE "suppressed" = false')
    assert hidden and shown
    # Small cells are written as suppressed, without figures; each published cell has its figures.
    assert all(p["agents"] is None and p["agent_hours"] is None for p in hidden)
    cell = lambda p: (p["time"], p["region"], p["isp"], p["period"])  # noqa: E731
    assert {cell(p) for p in points('SELECT * FROM "regional_power"')} == {cell(p) for p in shown}


def test_run_without_a_server_is_refused(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[collector]\nstores = []\n")
    p = run("linewatch-collector", "run", "--once", "--config", str(cfg), check=False)
    assert p.returncode == 1 and "influx.url" in p.stderr


def test_report_page_from_real_data_renders_cleanly(server, tmp_path, chromium):
    _, cfg = server
    out = tmp_path / "report.html"
    p = run("linewatch-collector", "report", "--config", str(cfg), *WINDOW, "--out", str(out))
    assert "wrote" in p.stdout
    r = chromium.render(out, "collector-report")
    assert r.problems() == []
    assert "Regional events" in r.text and "Data quality" in r.text and "Punjab" in r.text
    assert r.screenshot.stat().st_size > 20_000


def test_agent_line_report_from_its_store(fleet, tmp_path, chromium):
    fleet.write_store(3, tmp_path / "state")
    truth = fleet.truth()["agents"]["a0004"]
    u = truth["unit"]
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\nid = "{u.agent}"\n'
                   f'region = "{u.region}"\ncity = "{u.city}"\nisp = "{u.isp}"\naccess = "{u.access}"\n')
    out = tmp_path / "line.html"
    p = run("linewatch", "report", "--config", str(cfg), *WINDOW, "--out", str(out))
    assert "h watched" in p.stdout and "tags changed" not in p.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600      # one person's line: private
    r = chromium.render(out, "line-report")
    assert r.problems() == []
    assert "Outage timeline" in r.text and f"Internet line report: {u.isp}, {u.city}" in r.text
    assert "tags changed" not in r.text
    assert str(len(truth["connectivity"])) in r.text


def test_agent_line_report_shows_an_agent_crash_as_not_watching(tmp_path, chromium):
    """An agent_gap (the agent died, the host stayed up) is time not watched: grey on the
    timeline and listed, never an outage and never silently left out."""
    from datetime import datetime, timedelta

    from agent.model import Episode, Sample
    from agent.report.line import summarise
    from agent.store import Store

    t0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    crash, back = t0 + timedelta(minutes=20), t0 + timedelta(minutes=50)
    rounds = [Sample("round", {"agent": "c0ffee", "region": "PK-SD"},
                     {"status": "up", "online": 1, "interval_s": 10.0}, t)
              for t in (t0 + timedelta(seconds=10 * k) for k in range(360)) if not crash <= t < back]
    gap = Episode("agent_gap:1", "agent_gap", "agent_stopped", crash, back,
                  (back - crash).total_seconds(), True)
    store = Store.open(tmp_path / "state")
    try:
        store.write(rounds, episodes=[gap])
    finally:
        store.close()
    line = summarise(tmp_path / "state" / "linewatch.db", t0.timestamp(),
                     (t0 + timedelta(hours=1)).timestamp(),
                     now=(t0 + timedelta(hours=2)).timestamp())
    assert [(e["type"], round(e["duration_min"])) for e in line["episodes"]] == [("agent_gap", 30)]
    assert line["outages"] == 0 and line["internet_availability"] == 1.0
    assert line["observed_h"] == pytest.approx(0.5)
    from agent.report.page import line_report

    out = tmp_path / "line.html"
    out.write_text(line_report(line), encoding="utf-8")
    r = chromium.render(out, "line-report-agent-gap")
    assert r.problems() == [] and "Not watching" in r.text


def test_agent_line_report_counts_one_cut_seen_twice_once(tmp_path):
    """A laptop charged from a UPS sees one cut twice (battery and UPS), and a battery that runs
    flat turns it into host_down: one cut, its minutes counted once."""
    from datetime import datetime, timedelta

    from agent.model import Episode, Sample
    from agent.report.line import summarise
    from agent.store import Store

    t0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)

    def ep(n, cause, a, b):
        return Episode(f"power:{n}", "power", cause, t0 + timedelta(minutes=a), t0 + timedelta(minutes=b),
                       (b - a) * 60.0, True)

    eps = [ep(1, "ac_lost", 10, 40), ep(2, "ac_lost", 11, 39), ep(3, "host_down", 40.5, 50),
           ep(4, "ac_lost", 70, 75), ep(5, "ac_lost", 75.25, 76)]       # 4 and 5: two cuts, 15 s apart
    rounds = [Sample("round", {"agent": "c0ffee"}, {"status": "up", "online": 1, "interval_s": 10.0},
                     t0 + timedelta(seconds=10 * k)) for k in range(720)]
    store = Store.open(tmp_path / "state")
    try:
        store.write(rounds, episodes=eps)
    finally:
        store.close()
    line = summarise(tmp_path / "state" / "linewatch.db", t0.timestamp(),
                     (t0 + timedelta(hours=2)).timestamp(),
                     now=(t0 + timedelta(hours=3)).timestamp())
    assert (line["power_cuts"], round(line["power_cut_min"], 6)) == (3, 45.75)
    assert len([e for e in line["episodes"] if e["type"] == "power"]) == 5     # each still listed
    assert round(sum(d["power_min"] for d in line["daily"]), 6) == 45.75


def test_agent_report_never_imports_numpy(fleet, tmp_path):
    """The agent stays light: linewatch report uses the collector's stdlib-only modules."""
    fleet.write_store(1, tmp_path / "s")
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "s"}"\n')
    code = ("import sys\nfrom agent.cli import main\ntry:\n"
            f"    main(['report', '--config', {str(cfg)!r}, '--since', {DAYS[0]!r}, '--until', "
            f"{DAYS[3]!r}, '--out', {str(tmp_path / 'l.html')!r}])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'numpy' not in sys.modules, 'numpy was imported'\nprint('light')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "light" in p.stdout, p.stderr
    assert "Internet line report" in (tmp_path / "l.html").read_text(encoding="utf-8")  # it ran whole


def test_agent_report_without_a_store_says_so(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "empty"}"\n')
    p = run("linewatch", "report", "--config", str(cfg), "--out", str(tmp_path / "x.html"), check=False)
    assert p.returncode == 1 and "no such file" in p.stderr


def test_run_on_its_schedule_writes_at_start_and_stops_on_interrupt(server):
    import signal

    influx, cfg = server
    cfg.write_text(cfg.read_text() + 'run_since = "30d"\nrun_every_min = 60\n')
    proc = subprocess.Popen([str(BIN / "linewatch-collector"), "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not influx.count("regional_power", "power_saifi"):
            time.sleep(0.5)
        assert influx.count("regional_power", "power_saifi") > 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "every 60 min" in out and "wrote" in out


def test_cache_keeps_closed_days_and_gives_the_same_cells(server, tmp_path):
    _influx, cfg = server
    args = ("linewatch-collector", "aggregate", "--config", str(cfg), *WINDOW, "--format", "json")
    cold = run(*args, "--cache", "off")
    first = run(*args)
    warm = run(*args)
    assert json.loads(cold.stdout) == json.loads(first.stdout) == json.loads(warm.stdout)
    kept = list((tmp_path / "cache" / "linewatch-collector").glob("*.db"))
    assert len(kept) == 1 and stat.S_IMODE(kept[0].stat().st_mode) == 0o600
    # Every day of the window is long over: the warm run asked the server for raw rows only.
    from collector.cache import Cache

    c = Cache(kept[0])
    assert len(c.days()) == 3
    c.close()
    refreshed = run(*args, "--cache", "refresh")
    assert json.loads(refreshed.stdout) == json.loads(cold.stdout)


def test_rows_forwarded_late_for_kept_days_are_not_missed(server, tmp_path):
    """A volunteer's line dies mid-morning and their backlog is forwarded days later, after the
    collector kept that day (holding only the morning's watching time): the next warm run sees a
    late outage at hours with no watching time kept, asks the server again for that day, and gives
    the cells a cold run gives. An outage whose rounds the server never got (pruned on the agent)
    is asked about once, not on every run."""
    import urllib.request

    influx, cfg = server
    args = ("linewatch-collector", "aggregate", "--config", str(cfg), *WINDOW, "--format", "json")
    t0 = START + 2 * 86400 + 6 * 3600                       # a day the first run keeps
    tags = "agent=late01,region=PK-PB,isp=PTCL"

    def write(lines):
        req = urllib.request.Request(f"{influx.url}/write?db=linewatch&precision=s",
                                     data="\n".join(lines).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 204

    def rounds(a, b):
        return [f"round,{tags} status=\"up\",online=1i,interval_s=10 {t}" for t in range(a, b, 10)]

    write(rounds(t0, t0 + 3600))                             # the morning, forwarded in time
    run(*args)                                              # keeps the three (closed) days
    write(rounds(t0 + 3600, t0 + 3 * 3600) + [             # the rest, days later
        f"outage,{tags},type=connectivity,cause=isp duration_s=900,sustained=true {t0 + 5400}"])
    warm = run(*args)
    assert "1 kept days asked again" in warm.stderr
    cold = run(*args, "--cache", "off")
    assert json.loads(warm.stdout) == json.loads(cold.stdout)
    assert "asked again" not in run(*args).stderr            # the cache holds them now
    write([f"outage,agent=pruned01,region=PK-PB,isp=PTCL,type=connectivity,cause=isp "
           f"duration_s=600,sustained=true {t0 + 7200}"])    # its rounds never reached the server
    assert "1 kept days asked again" in run(*args).stderr
    assert "asked again" not in run(*args).stderr            # asked once, not on every run


def test_kept_days_rows_come_from_the_cache_until_the_server_holds_more(server, fleet, tmp_path):
    """A warm run asks the server how many episode and speed-test rows each kept day holds, not
    for the rows: a speed test forwarded late for a kept day (at an hour whose watching time is
    kept, so no hour is asked again) changes the count, that day's rows are read again, and the
    cells are what a cold run gives."""
    import urllib.request

    influx, cfg = server
    args = ("linewatch-collector", "aggregate", "--config", str(cfg), *WINDOW, "--format", "json")
    fill = run(*args)
    warm = run(*args)
    assert json.loads(warm.stdout) == json.loads(fill.stdout)

    def answered(p) -> int:   # bytes of the server's answers, from the run's line about them
        return int(p.stderr.split(" queries, ")[1].split(" bytes")[0])

    # what the kept days' episodes and speed tests weigh when read: the warm run does not read them
    rows = run(*args, "--cache", "off")
    assert answered(warm) < answered(rows) / 10
    cells = Counter((sp.region, sp.isp) for sp in fleet.specs)
    spec = next(sp for sp in fleet.specs if cells[(sp.region, sp.isp)] >= 3)  # a published cell
    t = START + 86400 + 12 * 3600                            # noon of a kept day
    tags = ",".join(f"{k}={v}" for k, v in sorted(spec.tags.items()))
    req = urllib.request.Request(   # slow tests, enough of them to move the agent's median
        f"{influx.url}/write?db=linewatch&precision=s", method="POST",
        data="\n".join(f"speedtest,{tags},source=speedtest.net status=\"ok\",download_bps=1234.0,"
                       f"upload_bps=234.0 {t + k}" for k in range(20)).encode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 204
    cold = run(*args, "--cache", "off")
    assert json.loads(cold.stdout) != json.loads(rows.stdout)   # the late test counts
    warm = run(*args)
    assert "asked again" not in warm.stderr
    assert json.loads(warm.stdout) == json.loads(cold.stdout)


def test_recent_days_come_from_the_cache_while_the_server_holds_the_same(server, fleet, tmp_path):
    """Days too recent to keep (cache_settle_days) are held with a mark of what the server held
    for them (rows and sums per measurement and day): a warm run reads them from the cache while
    the marks are the same, and reads a day again when rows came for it (a round forwarded late,
    which no outage or speed test points at). The cells are what a cold run gives each time."""
    import urllib.request

    influx, cfg = server
    cfg.write_text(cfg.read_text() + "cache_settle_days = 60\n")   # every day of the window is recent
    args = ("linewatch-collector", "aggregate", "--config", str(cfg), *WINDOW, "--format", "json")
    fill = run(*args)
    assert "0 days from the cache" in fill.stderr
    warm = run(*args)
    assert "3 days from the cache" in warm.stderr
    assert json.loads(warm.stdout) == json.loads(fill.stdout)
    spec = fleet.specs[0]
    tags = ",".join(f"{k}={v}" for k, v in sorted(spec.tags.items()))
    t = START + 86400 + 3 * 3600 + 5                        # a round the server did not have
    req = urllib.request.Request(f"{influx.url}/write?db=linewatch&precision=s", method="POST",
                                 data=f'round,{tags} status="up",online=1i,interval_s=60 {t}'.encode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 204
    warm = run(*args)
    assert "2 days from the cache" in warm.stderr          # the day with the late round is read
    assert json.loads(warm.stdout) == json.loads(run(*args, "--cache", "off").stdout)
    assert "3 days from the cache" in run(*args).stderr     # and held again with its new mark


def test_a_dead_server_is_named_not_a_traceback(tmp_path):
    from tests.nutlab import free_port

    cfg = tmp_path / "dead.toml"
    cfg.write_text(f'[influx]\nurl = "http://127.0.0.1:{free_port()}"\ndatabase = "linewatch"\n')
    p = run("linewatch-collector", "aggregate", "--config", str(cfg), "--cache", "off", check=False)
    assert p.returncode == 1 and "no answer from InfluxDB" in p.stderr and "Traceback" not in p.stderr
    c = run("linewatch-collector", "check", "--config", str(cfg), check=False)
    assert c.returncode == 1 and "FAIL  influx url" in c.stdout


# A sitecustomize that makes `import numpy` fail as it does where numpy is not installed (the
# agent's own install): the real linewatch-collector then runs in that interpreter.
NO_NUMPY = '''
import sys

class _NoNumpy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoNumpy())
'''


@pytest.fixture
def without_numpy(tmp_path):
    site = tmp_path / "no-numpy"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NUMPY)
    env = {"PYTHONPATH": str(site)}
    probe = run("python", "-c", "import numpy", env=env, check=False)
    assert probe.returncode == 1 and "No module named 'numpy'" in probe.stderr
    return env


def test_without_numpy_the_commands_say_how_to_install_it(without_numpy, fleet, tmp_path):
    fleet.write_store(0, tmp_path / "vol")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[collector]\nstores = ["{tmp_path / "vol"}"]\n')
    want = ("linewatch-collector: the regional statistics need numpy, which is not installed; "
            f"install it with: {BIN / 'python'} -m pip install numpy\n")
    for args in (["aggregate", *WINDOW], ["report", *WINDOW, "--out", str(tmp_path / "r.html")]):
        p = run("linewatch-collector", *args, "--config", str(cfg), env=without_numpy, check=False)
        assert (p.returncode, p.stdout, p.stderr) == (1, "", want), args
    assert not (tmp_path / "r.html").exists()
    # `check` needs no statistics: it still works, and says what the file holds.
    p = run("linewatch-collector", "check", "--config", str(cfg), env=without_numpy)
    assert "agent a0001" in p.stdout and "Traceback" not in p.stderr


def test_a_small_floor_warns_at_start(fleet, tmp_path):
    fleet.write_store(0, tmp_path / "vol")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[collector]\nmin_agents = 3\nstores = ["{tmp_path / "vol"}"]\n')
    p = run("linewatch-collector", "aggregate", "--config", str(cfg), *WINDOW, "--format", "json")
    assert p.stderr.splitlines()[0] == (
        f"warning: {cfg}: collector.min_agents = 3 is below 5: a published cell may rest on so "
        "few lines that it points at a person, and its figures have little statistical power")
    assert json.loads(p.stdout)[0]["suppressed"]      # one agent: nothing published
    cfg.write_text(f'[collector]\nstores = ["{tmp_path / "vol"}"]\n')
    p = run("linewatch-collector", "aggregate", "--config", str(cfg), *WINDOW, "--format", "json")
    assert "warning" not in p.stderr


def test_rows_written_before_the_region_was_set_are_retagged_not_lost(tmp_path):
    """A volunteer ran the agent for 10 hours before `linewatch init` set the region, then typed
    PK-XX for 2 hours, then corrected it to PK-PB: all 24 hours count in Punjab. Real store
    files, the real command."""
    from agent.model import Sample
    from agent.store import Store

    t0 = datetime.fromtimestamp(START, UTC)
    for name in ("v1", "v2"):
        st = Store.open(tmp_path / name)
        rows = []
        for k in range(24 * 60):
            region = "PK-PB" if name == "v2" or k >= 12 * 60 else "" if k < 10 * 60 else "PK-XX"
            tags = {"agent": name, "site": name, "isp": "PTCL", **({"region": region} if region else {})}
            rows.append(Sample("round", tags, {"status": "up", "online": 1, "interval_s": 60.0,
                                               "duration_s": 0.1, "probe_errors": 0},
                               t0 + timedelta(minutes=k)))
        st.write(rows)
        st.close()
    cfg = tmp_path / "c.toml"
    cfg.write_text("[collector]\nmin_agents = 2\nbootstrap = 100\n")
    p = run("linewatch-collector", "aggregate", "--config", str(cfg), "--store", str(tmp_path / "v1"),
            "--store", str(tmp_path / "v2"), "--since", DAYS[0], "--until", DAYS[1], "--by", "region",
            "--format", "json")
    (cell,) = json.loads(p.stdout)
    assert (cell["region"], cell["agents"], cell["suppressed"]) == ("PK-PB", 2, False)
    assert cell["agent_hours"] == pytest.approx(48.0)
    quality = next(line for line in p.stderr.splitlines() if line.startswith("data quality:"))
    assert "clipped: retagged 12" in quality          # 12 hours of v1's rows (hourly records)
    assert "rejected: none" in quality


def test_a_token_across_the_cut_never_shows_in_part(tmp_path):
    """A server that echoes the credential where a message is cut (InfluxDB's error, 500
    characters; an answer that is not JSON, 200): nothing of it is shown."""
    import base64

    from tests.statusserver import Reply, StatusServer

    token = "q7Rv2+Lm9/Xe4Tk8Wd3Hz6Pb1Nc5Yf0Ga-Ju8Ks4Ow2Ei7Uo9Ar3St6Ql1Mx5Vy0Bh=="
    basic = base64.b64encode(f"reader:{token}".encode()).decode()
    head = ("the query was refused by the gateway in front of the database; " * 10)

    def refused(req):
        return Reply.json_error(401, head[:480] + basic + " (request id 7f3a)", v1=True)

    def not_json(req):
        return Reply(200, {"Content-Type": "application/json"},
                     json.dumps(head[:180] + basic + " (request id 7f3a)"))

    shown = []
    with StatusServer(version="1.8.10", paths=("/query",)) as srv:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[influx]\nurl = "{srv.url}"\ndatabase = "linewatch"\n'
                       '[collector]\ncache_dir = "off"\n')
        env = {"LINEWATCH_INFLUX_TOKEN": f"reader:{token}"}
        for responder, expected in ((refused, "refused the credentials"), (not_json, "is not InfluxDB's")):
            srv.responder = responder
            for args in (("check",), ("aggregate", "--since", "2d")):
                p = run("linewatch-collector", *args, "--config", str(cfg), env=env, check=False)
                assert p.returncode == 1 and expected in p.stdout + p.stderr, p.stdout + p.stderr
                shown += [p.stdout, p.stderr]
        assert srv.requests and all(r.headers["authorization"] == f"Basic {basic}" for r in srv.requests)
    every = "\n".join(shown)
    assert "***" in every
    for secret in (basic, token):
        found = sorted({secret[i:i + 8] for i in range(len(secret) - 7)}
                       & {every[i:i + 8] for i in range(len(every) - 7)})
        assert not found, f"fragments of the credential shown: {found[:5]}"
