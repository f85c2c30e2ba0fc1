"""A line watched by the agent's own round job on a fake clock, writing a real store: the store a
`linewatch report` reads in the tests (tests/test_line_report.py, tests/test_files.py).

The probes are fakes passed by constructor (:class:`Line`): the test sets the line's state
(up, isp, lan, dns) and the echoes the router loses; speed tests are written as the agent
writes them. :data:`MONDAY` is a recent Monday (Karachi midnight, 7 to 13 days back), so the
scenarios are in the past and on known weekdays whatever today's date.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.clock import FakeClock
from agent.config import parse
from agent.model import Sample
from agent.probes.contract import Network
from agent.runner import Agent

KARACHI = ZoneInfo("Asia/Karachi")
GATEWAY = "192.168.1.1"
TARGETS = ("192.0.2.1", "198.51.100.1")          # documentation addresses: the probes are fakes
DNS_SERVER = "192.0.2.53"


def _recent_monday(now: float) -> datetime:
    """Local (Karachi) midnight of a Monday 7 to 13 days before ``now``, so the whole scenario is
    in the past and on the weekdays the assertions expect, whatever today's date."""
    d = datetime.fromtimestamp(now, KARACHI).date() - timedelta(days=7)
    d -= timedelta(days=d.weekday())
    return datetime(d.year, d.month, d.day, tzinfo=KARACHI)


MONDAY = _recent_monday(time.time())


class Line:
    """The line as the injected probes see it: ``state`` up, isp (router answers, internet does
    not), lan (nothing answers) or dns (names do not resolve); ``gateway_loses`` echoes lost by the
    router in the next rounds (one per round, while it lasts)."""

    def __init__(self) -> None:
        self.state = "up"
        self.gateway_loses = 0

    def echo(self, target, *, count, timeout_s, clock):
        addr = str(target)
        if addr == GATEWAY:
            got = count if self.state != "lan" else 0
            if got and self.gateway_loses:
                self.gateway_loses -= 1
                got -= 1
        else:
            got = count if self.state in ("up", "dns") else 0
        f = {"sent": count, "received": got, "loss_pct": 100.0 * (count - got) / count}
        if got:
            f["rtt_avg_ms"] = 4.0 if addr == GATEWAY else 38.0
        return Sample("ping", {"target": addr, "method": "icmp_dgram"}, f, clock.now())

    def dns(self, name, *, servers, timeout_s, clock):
        ok = self.state == "up"
        f = {"success": ok, "answers": 1 if ok else 0}
        if not ok:
            f["error"] = "timeout"
        return Sample("dns", {"name": name, "server": servers[0]}, f, clock.now())

    def probes(self) -> Network:
        return Network(echo=self.echo, dns=self.dns, gateway=lambda: GATEWAY)


def config_text(state: Path, *, region="PK-PB", city="Lahore", isp="PTCL", access="fibre",
                report: str = "", services: str = "") -> str:
    return (f'[agent]\nid = "lw-test-1"\nstate_dir = "{state}"\nregion = "{region}"\ncity = "{city}"\n'
            f'isp = "{isp}"\naccess = "{access}"\n\n'
            f'[probe]\ninterval_s = 10\ncount = 3\ntargets = {list(TARGETS)!r}\n'
            f'dns_names = ["example.com"]\ndns_servers = ["{DNS_SERVER}"]\n'.replace("'", '"')
            + (f"\n[report]\n{report}" if report else "")
            + (f"\n[services]\n{services}" if services else ""))


class Watch:
    """The agent's round job on a fake clock, writing the store in ``state``."""

    def __init__(self, tmp_path: Path, start: datetime, **cfg) -> None:
        self.tmp_path, self.state = tmp_path, tmp_path / "state"
        self.clock = FakeClock(start.astimezone(UTC))
        self.line = Line()
        self.agent: Agent | None = None
        self.configure(**cfg)

    def configure(self, **cfg) -> Path:
        """(Re)start the agent with a new config, as after `linewatch init`; returns its path."""
        if self.agent is not None:
            self.agent.store.close()
        path = self.tmp_path / "config.toml"
        path.write_text(config_text(self.state, **cfg), encoding="utf-8")
        self.agent = Agent(parse(path.read_text(encoding="utf-8"), str(path)), clock=self.clock,
                           probes=self.line.probes())
        return path

    def rounds(self, n: int, state: str = "up") -> None:
        self.line.state = state
        for _ in range(n):
            self.agent.rounds.run()
            self.clock.advance(10)

    def speedtest(self, down_mbps: float, up_mbps: float) -> None:
        self.agent.store.write([Sample("speedtest", {**self.agent.tags, "source": "speedtest.net",
                                                     "server": "1234"},
                                       {"status": "ok", "download_bps": down_mbps * 1e6,
                                        "upload_bps": up_mbps * 1e6}, self.clock.now())])
        self.clock.advance(60)

    def close(self) -> None:
        self.agent.store.close()
