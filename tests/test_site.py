"""The agent's site tag with the fake line of tests/fakenet.py and a prepared neighbour table
(``<procfs>/net/arp``): derived from the gateway's hardware address, kept when the table empties
and across restarts, changed by another router, overridden by ``agent.site``."""

from __future__ import annotations

import hashlib

from agent.clock import FakeClock
from agent.config import parse
from agent.runner import Agent
from tests.fakenet import FakeNet, tick, written

HEAD = "IP address       HW type     Flags       HW address            Mask     Device\n"
ROUTER_A, ROUTER_B = "02:11:22:33:44:55", "02:66:77:88:99:aa"


def site_of(mac: str) -> str:
    return hashlib.sha256(b"linewatch-site:" + bytes.fromhex(mac.replace(":", ""))).hexdigest()[:12]


def neighbours(procfs, mac: str | None) -> None:
    (procfs / "net").mkdir(parents=True, exist_ok=True)
    line = f"192.168.1.1      0x1         0x2         {mac}     *        wlan0\n" if mac else ""
    (procfs / "net" / "arp").write_text(HEAD + line)


def agent(tmp_path, procfs, extra: str = "") -> Agent:
    cfg = parse(f'[agent]\nid = "desk-3"\nstate_dir = "{tmp_path / "state"}"\nprocfs = "{procfs}"\n'
                f'{extra}[probe]\ninterval_s = 10\n')
    return Agent(cfg, clock=FakeClock(), probes=FakeNet().probes())


def sites(a: Agent) -> list[str]:
    return [s.tags["site"] for s in written(a.store, "round")]


def test_site_follows_the_router_and_survives_an_empty_table_and_a_restart(tmp_path):
    procfs = tmp_path / "proc"
    neighbours(procfs, None)               # no gateway hardware address seen yet
    a = agent(tmp_path, procfs)
    tick(a, a.clock, 1)
    neighbours(procfs, ROUTER_A)
    tick(a, a.clock, 2)
    neighbours(procfs, None)               # a LAN outage empties the table: the site stays
    tick(a, a.clock, 2)
    assert sites(a) == ["desk-3"] + [site_of(ROUTER_A)] * 4
    a.store.close()
    b = agent(tmp_path, procfs)            # restarted with the table still empty
    assert b.tags["site"] == site_of(ROUTER_A)
    neighbours(procfs, ROUTER_B)           # the laptop is on another line now
    tick(b, b.clock, 1)
    assert sites(b)[-1] == site_of(ROUTER_B)
    # Every row the agent writes carries the site it had then, the address never.
    rows = written(b.store)
    assert all("site" in s.tags for s in rows)
    blob = repr([(s.tags, s.fields) for s in rows]).lower()
    for mac in (ROUTER_A, ROUTER_B):
        assert mac not in blob and mac.replace(":", "") not in blob


def test_agent_site_overrides_the_router(tmp_path):
    procfs = tmp_path / "proc"
    neighbours(procfs, ROUTER_A)
    a = agent(tmp_path, procfs, 'site = "office-7"\n')
    tick(a, a.clock, 2)
    assert sites(a) == ["office-7", "office-7"]


def test_a_config_reload_keeps_the_derived_site(tmp_path):
    """SIGHUP's reload rebuilds the tags from the new config: the site learnt from the router
    stays (only agent.site in the file would change it)."""
    procfs = tmp_path / "proc"
    neighbours(procfs, ROUTER_A)
    a = agent(tmp_path, procfs)
    tick(a, a.clock, 1)
    new = parse(f'[agent]\nid = "desk-3"\nstate_dir = "{tmp_path / "state"}"\nprocfs = "{procfs}"\n'
                'region = "PK-SD"\n[probe]\ninterval_s = 10\n')
    neighbours(procfs, None)               # and the table is empty when the reload comes
    a.reload_config(lambda: new)
    tick(a, a.clock, 1)
    last = written(a.store, "round")[-1]
    assert last.tags["site"] == site_of(ROUTER_A) and last.tags["region"] == "PK-SD"
