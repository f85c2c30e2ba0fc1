"""The real agent process and its power sensors, end to end.

* Battery: a prepared sysfs tree whose AC `online` file flips 1 -> 0 -> 1.
* Host down: a prepared procfs tree (boot id, boot time). The agent is killed (SIGKILL: the power
  went), the boot id and boot time change (the machine booted again), the agent starts again.
  The same with a clean stop, with an unchanged boot id (the agent alone crashed) and with a
  clock that is not synchronised yet.

The probes only reach 127.0.0.1 (TCP to a closed port: the refusal is the answer), so these tests
need no namespaces and send nothing off the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.hosttree import power_supply

ROOT = Path(__file__).resolve().parents[1]


class Host:
    """Prepared /proc, /sys and /run trees and a config that points the agent at them."""

    def __init__(self, tmp: Path, synced: bool | None = None, power: str = "") -> None:
        self.tmp = tmp
        self.procfs, self.sysfs, self.rundir = tmp / "proc", tmp / "sys", tmp / "run"
        (self.procfs / "sys/kernel/random").mkdir(parents=True)
        (self.procfs / "net").mkdir()
        (self.procfs / "net/dev").write_text(Path("/proc/net/dev").read_text())
        self.rundir.mkdir()
        if synced is not None:  # a time-sync service exists; None: there is none at all
            (self.rundir / "systemd/timesync").mkdir(parents=True)
            if synced:
                (self.rundir / "systemd/timesync/synchronized").write_text("")
        self.boot("boot-1", datetime.now(UTC) - timedelta(hours=3))
        self.config = tmp / "config.toml"
        self.config.write_text(
            f'[agent]\nstate_dir = "{tmp / "state"}"\nprocfs = "{self.procfs}"\nsysfs = "{self.sysfs}"\n'
            f'rundir = "{self.rundir}"\n'
            '[probe]\ninterval_s = 1\ntimeout_s = 0.3\ncount = 1\ngateway = "off"\n'
            'targets = ["127.0.0.1:9"]\ndns_names = []\nnetio_interval_s = 5\n'
            f'[power]\npoll_s = 1\n{power}[outage]\nmomentary_max_s = 5\n'
            '[speedtest]\nenabled = false\n[services]\nurls = []\n')
        self.proc: subprocess.Popen | None = None

    def boot(self, boot_id: str, when: datetime) -> None:
        (self.procfs / "sys/kernel/random/boot_id").write_text(boot_id + "\n")
        (self.procfs / "stat").write_text(f"cpu  1 2 3 4\nbtime {int(when.timestamp())}\nprocesses 9\n")

    def battery(self, online: str, capacity: int) -> None:
        power_supply(self.sysfs, online=online, capacity=capacity,
                     status="Discharging" if online == "0" else "Charging")

    def start(self) -> None:
        """Start the agent and return once it says it started: the sleeps after this are its
        running time, not the interpreter's start, which a loaded machine stretches to seconds."""
        self.starts = getattr(self, "starts", 0) + 1
        self.log = self.tmp / f"agent-{self.starts}.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config",
                                          str(self.config)], cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)},
                                         stdout=subprocess.DEVNULL, stderr=err)
        self.wait_log(" started: ")

    def wait_log(self, text: str, timeout_s: float = 60.0) -> None:
        """Wait until the running agent's log holds ``text``."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"no {text!r} in the log: {self.log.read_text()}"
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM) -> str:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)
        return self.log.read_text()

    def cli(self, *args) -> str:
        r = subprocess.run([sys.executable, "-m", "agent", *args, "--config", str(self.config)], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def episodes(self, kind="all") -> list[dict]:
        return json.loads(self.cli("outages", "--type", kind, "--json"))

    def heartbeat(self) -> datetime:
        import sqlite3

        c = sqlite3.connect(self.tmp / "state/linewatch.db")
        hb = json.loads(c.execute("SELECT value FROM state WHERE key = 'heartbeat'").fetchone()[0])
        c.close()
        return datetime.fromisoformat(hb["time"])

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    yield h
    h.close()


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_ac_adapter_flips_make_one_power_episode(host):
    host.battery("1", 90)
    host.start()
    time.sleep(3)
    st = json.loads(host.cli("status", "--json"))
    assert st["power"]["state"] == "mains" and st["power"]["sensors"][0]["charge_pct"] == 90
    t_lost = datetime.now(UTC)
    host.battery("0", 88)
    time.sleep(4)
    st = json.loads(host.cli("status", "--json"))
    assert st["power"]["state"] == "battery"
    assert [(e["type"], e["cause"]) for e in st["episodes_in_progress"]] == [("power", "ac_lost")]
    assert "power: ON BATTERY (battery 88 %)" in host.cli("status")
    t_back = datetime.now(UTC)
    host.battery("1", 85)
    time.sleep(3)
    host.stop()
    (ep,) = host.episodes("power")
    start, end = parse(ep["start"]), parse(ep["end"])
    # recorded at the first poll after each flip; 1 s of slack for a poll delayed by a busy disk
    # (latency itself is measured by bench/power_latency.py)
    poll = 1.0
    assert 0 <= (start - t_lost).total_seconds() <= poll + 1.0, (ep, t_lost)
    assert 0 <= (end - t_back).total_seconds() <= poll + 1.0, (ep, t_back)
    assert (ep["cause"], ep["source"], ep["charge_start_pct"], ep["charge_end_pct"]) == ("ac_lost", "battery",
                                                                                        88.0, 85.0)
    assert ep["duration_s"] == pytest.approx((end - start).total_seconds(), abs=0.01)
    assert ep["sustained"] is (ep["duration_s"] > 5)   # momentary_max_s = 5 in this config


def test_power_cut_takes_the_host_down(host):
    host.start()
    time.sleep(3)
    host.stop(signal.SIGKILL)                       # the power went: no clean exit
    last_hb = host.heartbeat()
    boot = last_hb + timedelta(minutes=40)         # it came back 40 minutes later
    host.boot("boot-2", boot)
    host.start()
    time.sleep(2.5)
    log = host.stop()
    assert "the host went down without a clean exit" in log
    eps = host.episodes()
    assert [(e["type"], e["cause"], e["source"]) for e in eps] == [("power", "host_down", "host")], eps
    ep = eps[0]
    assert parse(ep["start"]) == last_hb and parse(ep["end"]) == boot.replace(microsecond=0)
    assert ep["duration_s"] == pytest.approx((boot.replace(microsecond=0) - last_hb).total_seconds(),
                                             abs=0.001)
    assert ep["sustained"] is True


def test_clean_shutdown_is_not_a_cut(host):
    host.start()
    time.sleep(2.5)
    host.stop(signal.SIGTERM)
    host.boot("boot-2", datetime.now(UTC) + timedelta(minutes=5))
    host.start()
    host.wait_log("the host was shut down cleanly")
    time.sleep(1.5)
    host.stop()
    assert host.episodes() == []


def test_agent_crash_is_an_agent_gap_not_a_cut(host):
    host.start()
    time.sleep(2.5)
    host.stop(signal.SIGKILL)
    time.sleep(3)                                  # same boot id: only the agent was gone
    host.start()
    time.sleep(2.5)
    host.stop()
    assert host.episodes("power") == []
    (gap,) = host.episodes()
    assert (gap["type"], gap["cause"]) == ("agent_gap", "agent_stopped")
    assert 3.0 <= gap["duration_s"] <= 6.0


def test_host_down_waits_for_time_sync(tmp_path):
    host = Host(tmp_path, synced=False)            # timesyncd runs but has not synced
    try:
        host.start()
        time.sleep(2.5)
        host.stop(signal.SIGKILL)
        last_hb = host.heartbeat()
        stale = datetime(2026, 1, 1, tzinfo=UTC)   # a Pi booting with a stale clock
        host.boot("boot-2", stale)
        host.start()
        time.sleep(2.5)
        assert host.episodes() == []               # not from an unsynced clock
        st = json.loads(host.cli("status", "--json"))
        assert st["power"]["host_down_pending_time_sync"] is True
        assert "[WARN] clock: a time-sync service runs but the clock is not synchronised" in \
            subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(host.config)], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True).stdout
        host.stop()                                # a restart before sync must not lose it
        host.start()
        time.sleep(2)
        assert host.episodes() == []
        real_boot = last_hb + timedelta(minutes=12)
        host.boot("boot-2", real_boot)             # NTP synced: the kernel's btime is corrected
        (host.rundir / "systemd/timesync/synchronized").write_text("")
        time.sleep(2.5)
        host.stop()
        (ep,) = host.episodes()
        assert (ep["cause"], parse(ep["start"]), parse(ep["end"])) == \
            ("host_down", last_hb, real_boot.replace(microsecond=0))
    finally:
        host.close()


def test_no_time_sync_service_trusts_the_rtc(tmp_path):
    host = Host(tmp_path, synced=None)
    try:
        out = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(host.config)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                             text=True).stdout
        assert "[ok  ] clock: no time-sync service runs: the clock comes from the hardware clock (RTC)" in out
        assert "[ok  ] host: booted" in out
        assert "[ok  ] battery: no battery or AC adapter found" in out
    finally:
        host.close()


# -- UPS through a real NUT server (upsd + dummy-ups) ---------------------------------------------

@pytest.fixture
def nut(tmp_path):
    from tests.nutlab import NutServer, nut_unavailable

    reason = nut_unavailable()
    if reason:
        pytest.skip(reason)
    (tmp_path / "nut").mkdir()
    with NutServer.create(tmp_path / "nut", status="OL", charge=100, runtime=3600, voltage=231.0) as server:
        yield server


def test_ups_on_battery_episode_with_charges(tmp_path, nut):
    host = Host(tmp_path, power=f'battery = "off"\nups = "{nut.url()}"\n')
    try:
        host.start()
        time.sleep(3)
        assert json.loads(host.cli("status", "--json"))["power"]["state"] == "mains"
        t_lost = datetime.now(UTC)
        nut.set(status="OB DISCHRG", charge=80, runtime=1500, voltage=0)
        time.sleep(5)
        st = json.loads(host.cli("status", "--json"))
        assert st["power"]["state"] == "ups", st["power"]
        assert [(e["cause"], e["source"]) for e in st["episodes_in_progress"]] == [("ac_lost", "ups")]
        t_back = datetime.now(UTC)
        nut.set(status="OL CHRG LB", charge=75, runtime=1400, voltage=229.5)   # back, battery still low
        time.sleep(5)
        host.stop()
        (ep,) = host.episodes("power")
        start, end = parse(ep["start"]), parse(ep["end"])
        # the driver re-reads its file within ~1 s (nutlab), the agent polls every 1 s
        assert 0 <= (start - t_lost).total_seconds() <= 2.5, (ep, t_lost)
        assert 0 <= (end - t_back).total_seconds() <= 2.5, (ep, t_back)
        assert (ep["source"], ep["charge_start_pct"], ep["charge_end_pct"]) == ("ups", 80.0, 75.0)
        import sqlite3

        c = sqlite3.connect(tmp_path / "state/linewatch.db")
        rows = [json.loads(f) for (f,) in c.execute(
            "SELECT s.fields FROM samples s JOIN series r ON r.id = s.series_id"
            " WHERE r.measurement = 'power'")]
        c.close()
        on_batt = [r for r in rows if r["on_battery"]]
        assert on_batt and on_batt[0]["runtime_s"] == 1500 and on_batt[0]["input_voltage_v"] == 0
        assert {r["status"] for r in rows} >= {"OL", "OB DISCHRG", "OL CHRG LB"}
    finally:
        host.close()


@pytest.mark.parametrize("problem", ["server-down", "wrong-ups-name"])
def test_ups_trouble_is_a_warning_and_the_agent_keeps_measuring(tmp_path, nut, problem):
    url = nut.url(ups="nosuchups") if problem == "wrong-ups-name" else nut.url()
    if problem == "server-down":
        nut.stop()
    host = Host(tmp_path, power=f'battery = "off"\nups = "{url}"\n')
    try:
        host.start()
        time.sleep(3.5)
        out = host.cli("status")
        assert "WARNING: ups sensor:" in out
        st = json.loads(host.cli("status", "--json"))
        assert st["last_round"]["status"] == "up" and st["rounds_24h"] >= 2   # still measuring
        chk = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(host.config)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                             text=True).stdout
        assert "[WARN] ups:" in chk
        fix = "start the NUT server" if problem == "server-down" else "upsc -l"
        assert fix in chk
        log = host.stop()
        assert log.count("ups sensor:") == 1          # warned once, not every poll
    finally:
        host.close()


# -- the UPS password: where it is kept, what reaches upsd, what is said about it ------------------

def check_rows(host: Host, env: dict | None = None) -> tuple[dict, str]:
    """`check --json` as rows by name, and everything it printed."""
    r = subprocess.run([sys.executable, "-m", "agent", "check", "--json", "--config", str(host.config)],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                       capture_output=True, text=True, timeout=60)
    rows = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    return rows, r.stdout + r.stderr


@pytest.mark.parametrize("source", ["file", "env", "credential"])
def test_ups_password_from_each_source_reaches_upsd(tmp_path, nut, source):
    """The real upsd takes any password on a read, so a relay records what the agent sent and
    LOGIN asks upsd whether it is the user's password."""
    from agent.probes.nut_protocol import split_words
    from tests.nutlab import PASSWORD, USER, Relay

    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "ups-password").write_text(PASSWORD + "\n")
    (keep / "ups-password").chmod(0o600)
    env = {"file": {}, "env": {"LINEWATCH_UPS_PASSWORD": PASSWORD},
           "credential": {"CREDENTIALS_DIRECTORY": str(keep)}}[source]
    with Relay(nut.port) as relay:
        line = f'battery = "off"\nups = "nut://{USER}@127.0.0.1:{relay.port}/dummy"\n'
        if source == "file":
            line += f'ups_password_file = "{keep / "ups-password"}"\n'
        host = Host(tmp_path, power=line)
        rows, out = check_rows(host, env)
        sent = relay.sent()
    assert rows["ups"]["result"] == "ok" and "status OL" in rows["ups"]["detail"], rows["ups"]
    assert "ups password" not in rows                                  # nothing to warn about
    assert f"USERNAME \"{USER}\"" in sent
    (password_line,) = [s for s in sent if s.startswith("PASSWORD ")]
    assert split_words(password_line)[1] == PASSWORD
    assert nut.login(PASSWORD) == "OK" and nut.login(PASSWORD + "x").startswith("ERR ACCESS-DENIED")
    assert PASSWORD not in out and "p@ss w:rd" not in out


def test_ups_password_where_others_can_read_it_is_warned_once(tmp_path, nut):
    from tests.nutlab import PASSWORD, USER

    inline = f"{USER}:{quote(PASSWORD, safe='')}"
    host = Host(tmp_path, power=f'battery = "off"\nups = "nut://{inline}@127.0.0.1:{nut.port}/dummy"\n')
    host.config.chmod(0o644)
    try:
        rows, out = check_rows(host)
        assert rows["ups password"]["result"] == "warn" and rows["ups"]["result"] == "ok"
        assert f"{host.config} holds the UPS password (in power.ups) and is readable by other users " \
               "(mode 644)" in rows["ups password"]["detail"]
        host.start()
        time.sleep(3)
        assert json.loads(host.cli("status", "--json"))["power"]["state"] == "mains"   # it reads the UPS
        log = host.stop()
        assert log.count("ups password:") == 1 and "readable by other users (mode 644)" in log
        for text in (out, log):
            assert PASSWORD not in text and quote(PASSWORD, safe="") not in text and "p%40ss" not in text
        host.config.chmod(0o600)   # private: nothing to say
        rows, _ = check_rows(host)
        assert "ups password" not in rows and rows["ups"]["result"] == "ok"
        # a password file others can read is a warning too
        pw = tmp_path / "ups-password"
        pw.write_text(PASSWORD)
        pw.chmod(0o644)
        host.config.write_text(host.config.read_text().replace(
            f"nut://{inline}@", f"nut://{USER}@").replace('battery = "off"\n', f'battery = "off"\n'
                                                           f'ups_password_file = "{pw}"\n'))
        rows, out = check_rows(host)
        assert rows["ups password"]["detail"] == f"{pw} is readable by other users (mode 644): chmod 600 {pw}"
        assert rows["ups"]["result"] == "ok" and PASSWORD not in out
    finally:
        host.close()


def test_ups_without_its_password_stops_run_and_fails_check(tmp_path, nut):
    from tests.nutlab import USER

    host = Host(tmp_path, power=f'battery = "off"\nups = "nut://{USER}@127.0.0.1:{nut.port}/dummy"\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ("LINEWATCH_UPS_PASSWORD", "CREDENTIALS_DIRECTORY")}
    rows, _ = check_rows(host)
    assert rows["ups password"]["result"] == "fail"
    assert "power.ups: names a user but no password" in rows["ups password"]["detail"]
    r = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(host.config)], cwd=ROOT,
                       env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith(f"linewatch: {host.config}: power.ups: names a user but no password: "
                               "keep the password in the file power.ups_password_file names"), r.stderr


def test_a_cut_that_can_never_be_dated_is_reported_not_guessed(tmp_path):
    """Two power cuts in a row on a Pi whose clock never synced in between: the first cannot be
    dated (its boot's start is unknowable) and is reported; the second is recorded after sync."""
    host = Host(tmp_path, synced=False)
    try:
        host.start()
        time.sleep(2.5)
        host.stop(signal.SIGKILL)
        host.boot("boot-2", datetime(2026, 1, 1, tzinfo=UTC))     # stale clock
        host.start()
        time.sleep(2.5)
        host.stop(signal.SIGKILL)                                          # cut again, still unsynced
        hb2 = host.heartbeat()
        host.boot("boot-3", datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
        host.start()
        time.sleep(2.5)
        real_boot3 = hb2 + timedelta(minutes=9)
        host.boot("boot-3", real_boot3)
        (host.rundir / "systemd/timesync/synchronized").write_text("")
        time.sleep(2.5)
        log = host.stop()
        assert "could not be dated: the clock never synchronised in that boot" in log
        (ep,) = host.episodes()
        assert (ep["cause"], parse(ep["start"]), parse(ep["end"])) == \
            ("host_down", hb2, real_boot3.replace(microsecond=0))
    finally:
        host.close()
