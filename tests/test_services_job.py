"""The service-check job (agent/jobs/services.py) with the checks replaced by a table of
results (the checks against real servers are tests/test_services_netns.py and the catalog's
services path): when targets are due, what happens while the line is down, and that episodes,
rows and the tracker are written together."""

from __future__ import annotations

import json
from datetime import timedelta

from agent.clock import FakeClock
from agent.config import parse
from agent.jobs.services import ServiceChecks
from agent.model import Sample
from agent.runner import Agent
from tests.fakenet import FakeNet, written


class Table:
    """A checker whose results are set by the test: target -> step ("ok" or a failed step)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.steps, self.checked = clock, {}, []

    def check(self, service) -> Sample:
        self.checked.append(service.target)
        step = self.steps.get(service.target, "ok")
        fields = {"ok": step == "ok", "addresses": 1, **({} if step == "ok" else {"how": "reset"})}
        return Sample("service", {"target": service.target, "kind": service.kind, "step": step},
                      fields, self.clock.now())


def _job(tmp_path, up: list[bool]):
    clock = FakeClock()
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}/state"\n[services]\n'
                'urls = ["https://a.test/", "https://b.test/"]\nvpn = ["tcp://vpn.test:443"]\n'
                "interval_s = 900\nretry_s = 60\nopen_after = 2\n")
    agent = Agent(cfg, clock=clock, probes=FakeNet().probes())
    table = Table(clock)
    job = ServiceChecks(agent.ctx, line_up=lambda: up[0], checker=table)
    return agent, job, table, clock


def test_a_passing_target_waits_the_interval_and_a_failing_one_the_retry(tmp_path):
    """interval 900 s, retry 60 s, open_after 2: the failing b.test is checked again after a
    minute until its episode opens (the second check), then every 150 s (a sixth of the
    interval); the others every 15 minutes."""
    agent, job, table, clock = _job(tmp_path, [True])
    table.steps["b.test"] = "tls"
    job.run()
    assert table.checked == ["a.test", "b.test", "vpn.test:443"]
    when = []
    for minute in range(1, 15):              # 14 minutes: only the failing one is checked again
        clock.advance(60)
        n = len(table.checked)
        job.run()
        when += [minute] * (len(table.checked) - n)
    assert set(table.checked[3:]) == {"b.test"}
    assert when == [1, 4, 7, 10, 13]         # confirmed at minute 1; then due 150 s later
    clock.advance(120)                       # 16 minutes: every one is due
    job.run()
    assert sorted(table.checked[-3:]) == ["a.test", "b.test", "vpn.test:443"]
    eps = agent.store.episodes(type="interference")
    assert [(e.cause, e.details["target"], e.end) for e in eps] == [("tls", "b.test", None)]


def test_a_run_a_little_early_in_its_period_still_checks_what_is_due(tmp_path):
    _, job, table, clock = _job(tmp_path, [True])
    table.steps["b.test"] = "tls"
    job.run()
    clock.advance(59.5)                      # half a second early: b.test (due at 60 s) is checked
    job.run()
    assert table.checked[3:] == ["b.test"]


def test_nothing_is_checked_while_the_line_is_down_and_late_failures_do_not_count(tmp_path):
    up = [False]
    agent, job, table, clock = _job(tmp_path, up)
    table.steps["a.test"] = "dns"
    assert job.run() == [] and table.checked == []
    up[0] = True
    job.run()
    assert job.tracker.get("a.test").count == 1

    def down_after(service):                 # the line goes down while the checks run
        up[0] = False
        return Table.check(table, service)
    table.check = down_after
    clock.advance(60)
    rows = job.run()
    assert [r.tags["target"] for r in rows] == ["a.test"]
    assert job.tracker.get("a.test").count == 1             # not stepped: no evidence
    stored = [(s.tags["target"], s.tags["step"]) for s in written(agent.store)
              if s.measurement == "service"]
    assert sorted(stored) == [("a.test", "dns"), ("a.test", "dns"), ("b.test", "ok"),
                              ("vpn.test:443", "ok")]           # the late check's row is kept
    assert agent.store.episodes(type="interference") == []


def test_an_episode_closes_with_its_row_and_the_tracker_survives_a_restart(tmp_path):
    agent, job, table, clock = _job(tmp_path, [True])
    table.steps["vpn.test:443"] = "tcp"
    job.run()
    clock.advance(60)
    job.run()
    (ep,) = agent.store.episodes(type="interference")
    assert (ep.cause, ep.details["target"], ep.end) == ("vpn", "vpn.test:443", None)
    again = ServiceChecks(agent.ctx, line_up=lambda: True, checker=table)   # a restart
    assert again.tracker == job.tracker
    table.steps.clear()
    clock.advance(60)
    again.run()
    (ep,) = agent.store.episodes(type="interference")
    assert ep.end is not None and ep.end - ep.start == timedelta(seconds=120)
    rows = [s for s in written(agent.store) if s.measurement == "outage"]
    assert [(r.tags["type"], r.tags["cause"], r.tags["target"], r.fields["how"],
             r.fields["failed_checks"]) for r in rows] == [("interference", "vpn", "vpn.test:443",
                                                            "reset", 2)]


def test_the_checks_run_in_a_child_process_and_its_failures_are_the_job_s(tmp_path):
    """Without a checker given, the job runs the real checks in `python -m
    agent.probes.services` (OpenSSL never loads into the agent): here a closed port on
    loopback, refused; a CA file that is not one fails the run with the child's words."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    from kit.errors import ProbeError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                          # nothing listens there now
    cfg_text = (f'[agent]\nstate_dir = "{tmp_path}/state"\n[probe]\ndns_servers = ["127.0.0.1"]\n'
                f'[services]\nurls = []\nvpn = ["tcp://127.0.0.1:{port}"]\n')
    cfg = parse(cfg_text, "c.toml")
    agent = Agent(cfg, clock=FakeClock(), probes=FakeNet().probes())
    job = ServiceChecks(agent.ctx, line_up=lambda: True)
    ROOT = Path(__file__).resolve().parents[1]
    (row,) = job.run()
    assert (row.tags["target"], row.tags["step"], row.fields["how"]) == (
        f"127.0.0.1:{port}", "tcp", "refused")
    assert row.tags["agent"] == agent.id
    # and the agent's own process never loads OpenSSL for them
    code = ("import sys; from agent.clock import FakeClock; from agent.config import parse; "
            "from agent.runner import Agent; from agent.jobs.services import ServiceChecks; "
            "from tests.fakenet import FakeNet; "
            f"cfg = parse({cfg_text!r}, 'c.toml'); "
            "a = Agent(cfg, clock=FakeClock(), probes=FakeNet().probes()); "
            "rows = ServiceChecks(a.ctx, line_up=lambda: True).run(); "
            "print(len(rows), 'ssl' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["1", "False"], out.stderr
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}/state2"\n[services]\nurls = []\n'
                f'vpn = ["tcp://127.0.0.1:{port}"]\nca_file = "{bad}"\n', "c.toml")
    agent = Agent(cfg, clock=FakeClock(), probes=FakeNet().probes())
    with pytest.raises(ProbeError, match=r"services: the checks failed: c\.toml: services\.ca_file: "
                                         r".*not a PEM certificate file"):
        ServiceChecks(agent.ctx, line_up=lambda: True).run()


def test_an_answer_from_the_child_that_is_not_rows_is_refused():
    import pytest

    from agent.probes.services import rows_of_child
    for bad in (b"", b"{}", b'[{"tags": {}}]', b"[1]"):
        with pytest.raises((ValueError, KeyError, TypeError)):
            rows_of_child(bad)


def test_a_wireguard_endpoint_without_readable_keys_is_named_never_blocked(tmp_path, caplog):
    """The real checker: a wireguard:// endpoint whose config cannot be read is not checked at
    all (its keys are read before any packet): a row that says so, a warning naming the key,
    and no interference episode however often it recurs."""
    from agent.probes.services import Checker

    clock = FakeClock()
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}/state"\n[services]\nurls = []\n'
                f'vpn = ["wireguard://wg.test?config={tmp_path}/none.conf"]\nopen_after = 1\n'
                'interval_s = 1800\n')
    agent = Agent(cfg, clock=clock, probes=FakeNet().probes())
    checker = Checker(system_servers=lambda: ["192.0.2.1"], resolver="", clock=clock)
    job = ServiceChecks(agent.ctx, line_up=lambda: True, checker=checker)
    rows = job.run()
    assert [(r.tags["target"], r.tags["step"], r.fields["how"]) for r in rows] == [
        ("wg.test:51820/udp", "skipped", "keys")]
    for _ in range(3):                      # no finding: checked again after its interval
        clock.advance(1800)
        assert len(job.run()) == 1
    assert agent.store.episodes(type="interference") == []
    assert caplog.text.count("services.vpn: the keys for wg.test:51820/udp could not be read") == 1


def test_throttling_checks_keep_their_own_schedule_and_need_three(tmp_path):
    """throttle_url on: a throttling check per site host (throttle_names empty), due
    throttle_interval_s after one that passed, retry_s after a slow one until its episode
    opens (after three slow checks even with open_after = 1), then a sixth of
    throttle_interval_s; the site checks of the same names keep their own schedule and
    verdicts."""
    clock = FakeClock()
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}/state"\n[services]\n'
                'urls = ["https://a.test/", "https://b.test/"]\nopen_after = 1\n'
                'interval_s = 1800\nretry_s = 60\nthrottle_interval_s = 21600\n'
                'throttle_url = "https://probe.test/1mb"\n')
    agent = Agent(cfg, clock=clock, probes=FakeNet().probes())
    table = Table(clock)
    job = ServiceChecks(agent.ctx, line_up=lambda: True, checker=table)

    def check(service):
        table.checked.append((service.kind, service.target))
        step = table.steps.get((service.kind, service.target), "ok")
        fields = {"ok": step == "ok", **({} if step == "ok" else {"how": "slow"})}
        return Sample("service", {"target": service.target, "kind": service.kind,
                                  "step": step}, fields, clock.now())
    table.check = check
    table.steps[("throttle", "b.test")] = "throttled"
    job.run()
    assert table.checked == [("site", "a.test"), ("site", "b.test"), ("throttle", "a.test"),
                             ("throttle", "b.test")]
    for n in (1, 2):
        clock.advance(60)
        job.run()
        assert table.checked[-1:] == [("throttle", "b.test")]
        assert agent.store.episodes(type="interference") == [] or n == 2
    eps = agent.store.episodes(type="interference")
    assert [(e.cause, e.details["target"], e.details["kind"]) for e in eps] == [
        ("throttled", "b.test", "throttle")]
    clock.advance(1800)                      # the sites are due; neither name's throttling:
    job.run()                                # b.test's episode is open (every 3600 s now)
    assert sorted(table.checked[6:]) == [("site", "a.test"), ("site", "b.test")]
    clock.advance(1800)                      # an hour after: b.test's throttling with the sites
    job.run()
    assert sorted(table.checked[8:]) == [("site", "a.test"), ("site", "b.test"),
                                         ("throttle", "b.test")]


def test_linewatch_check_says_what_the_checks_need(tmp_path):
    """`linewatch check`'s services line: nothing sent, only what the checks need read: the CA
    file, each WireGuard endpoint's keys (a private key readable by others is a warning)."""
    import base64
    import os

    from agent.checks import check_services

    def check(services: str) -> dict:
        return check_services(parse(f'[agent]\nstate_dir = "{tmp_path}/state"\n[services]\n'
                                    + services))

    assert check("urls = []\n")["result"] == "ok"
    got = check('urls = ["https://a.test/"]\nvpn = ["tcp://v.test:443"]\n'
                'throttle_url = "https://s.test/f"\n')
    assert got["result"] == "ok"
    assert "1 site and 1 VPN endpoint checked" in got["detail"]
    assert "1 name for throttling every 21600 s, through https://s.test/f" in got["detail"]
    assert check(f'ca_file = "{tmp_path}/none.pem"\n')["result"] == "fail"
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    bad_ca = check(f'ca_file = "{tmp_path}/ca.pem"\n')
    assert (bad_ca["result"], bad_ca["detail"]) == (
        "fail", f"services.ca_file: {tmp_path}/ca.pem is not a PEM certificate file")
    wg = f'urls = []\nvpn = ["wireguard://w.test?config={tmp_path}/wg.conf"]\n'
    missing = check(wg)
    assert missing["result"] == "fail"
    assert missing["detail"].startswith(f"services.vpn: the keys for w.test:51820/udp: "
                                        f"{tmp_path}/wg.conf: No such file")
    from agent.probes.wireguard import public_key

    key = base64.b64encode(bytes(range(32))).decode()
    server = base64.b64encode(public_key(bytes(range(1, 33)))).decode()
    conf = tmp_path / "wg.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {key}\n[Peer]\nPublicKey = {server}\n")
    os.chmod(conf, 0o644)
    loose = check(wg)
    assert loose["result"] == "warn" and loose["fix"] == f"chmod 600 {conf}"
    assert key not in json.dumps(loose)
    os.chmod(conf, 0o600)
    assert check(wg)["result"] == "ok"
