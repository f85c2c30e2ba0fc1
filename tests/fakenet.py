"""The agent on a fake line: probes passed by constructor whose answers the test sets, a fake clock,
and what the agent's jobs stored (read back through the outbox, the forwarder's own path).

The real probes are tested against namespaces in test_icmp/test_dns and end to end in
test_agent_netns; these fakes are for the wiring: verdicts, episodes, rows in the store.
"""

from __future__ import annotations

import json

from agent.config import parse
from agent.model import Sample, from_ns
from agent.probes.contract import Network
from agent.runner import Agent
from agent.store import Store
from kit.errors import ProbeError


class FakeNet:
    """A line whose state the test sets: 'up', 'isp', 'lan' or 'dns' ('no_probe': echo can't run)."""

    def __init__(self):
        self.state = "up"
        self.fail_cost_s = 0.0  # how long a failing DNS lookup takes (a timeout) on the fake clock

    def echo(self, target, *, count, timeout_s, clock):
        if self.state == "no_probe":
            raise ProbeError("no socket")
        gateway = str(target) == "192.168.1.1"
        ok = self.state in ("up", "dns") or (self.state == "isp" and gateway)
        f = {"sent": count, "received": count if ok else 0, "loss_pct": 0.0 if ok else 100.0}
        if ok:
            f["rtt_avg_ms"] = 5.0
        return Sample("ping", {"target": str(target), "method": "icmp_dgram"}, f, clock.now())

    def dns(self, name, *, servers, timeout_s, clock):
        if self.state != "up":
            clock.advance(self.fail_cost_s)
        return Sample("dns", {"name": name, "server": servers[0]}, {"success": self.state == "up"},
                      clock.now())

    def probes(self):
        return Network(echo=self.echo, dns=self.dns, gateway=lambda: "192.168.1.1",
                      dns_servers=lambda: ["192.168.1.1"])


def make_agent(tmp_path, net, clock):
    cfg = parse(f'[agent]\nstate_dir = "{tmp_path}"\nregion = "PK-PB"\n[probe]\ninterval_s = 10\n')
    return Agent(cfg, clock=clock, probes=net.probes())


def tick(agent, clock, n):
    for _ in range(n):
        agent.rounds.run()
        clock.advance(10)


def outage(agent, clock, net, down: int = 5, up: int = 3) -> None:
    """An ISP outage through the agent's own rounds (``down`` failed rounds, then ``up`` good
    ones, 10 s apart), then one run of each alert job: the end's alerts made and sent."""
    net.state = "isp"
    tick(agent, clock, down)
    net.state = "up"
    tick(agent, clock, up)
    agent.alerts.run()
    agent.remote_alerts.run()


def outbox(store: Store, limit: int = 10**9) -> list[tuple[int, Sample]]:
    """The unsent rows as ``(id, Sample)`` in the order the forwarder reads them
    (:meth:`Store.outbox`: by time, then by id)."""
    return [(i, Sample(m, json.loads(tags), json.loads(fields), from_ns(ns)))
            for i, _, m, tags, fields, ns in store.outbox(limit)]


def written(store: Store, measurement: str | None = None) -> list[Sample]:
    """The unsent samples (of ``measurement``, or all) in the order they were written (by row
    id): two agents on fake clocks that start at the same instant write rows of equal times."""
    return [s for _, s in sorted(outbox(store), key=lambda row: row[0])
            if measurement is None or s.measurement == measurement]
