"""Test hosts as network namespaces joined by veth pairs (see ../shared/TESTBED.md).

A :class:`Lab` creates namespaces with a per-run prefix, runs commands inside them and removes
everything it made on ``close()``, including processes it started. :func:`standard` builds the
three-host topology used across the suite:

    agent (10.231.1.2) --lan-- gw (10.231.1.1 | 10.231.2.1) --wan-- inet (10.231.2.2)
                                                                    + 198.51.100.1, .2 (targets)
                                                                    + 198.51.100.53 (DNS)

Addresses live only inside these namespaces. Cutting ``wan`` is an ISP outage, cutting ``lan`` (on
the gateway's side, as when the router loses power) is a LAN outage.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

RESPONDER = Path(__file__).resolve().parent / "responder.py"


def netns_unavailable() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the suite as root or in CI)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"lwprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` refused: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Lab:
    def __init__(self) -> None:
        self.prefix = "lw" + uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self._n = 0

    # -- building -------------------------------------------------------------------------
    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        _sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        self.run(full, "ip", "link", "set", "lo", "up")
        return full

    def veth(self, ns_a: str, if_a: str, addr_a: str, ns_b: str, if_b: str, addr_b: str) -> None:
        """Join two namespaces; addresses in CIDR form ("10.231.1.2/24")."""
        self._n += 1
        tmp_a, tmp_b = f"{self.prefix}a{self._n}", f"{self.prefix}b{self._n}"
        _sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        for tmp, ns, name, addr in ((tmp_a, ns_a, if_a, addr_a), (tmp_b, ns_b, if_b, addr_b)):
            _sh("ip", "link", "set", tmp, "netns", ns)
            self.run(ns, "ip", "link", "set", tmp, "name", name)
            self.run(ns, "ip", "addr", "add", addr, "dev", name)
            self.run(ns, "ip", "link", "set", name, "up")

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.run(ns, "sysctl", "-q", "-w", f"{key}={value}")

    def link(self, ns: str, ifname: str, up: bool) -> None:
        self.run(ns, "ip", "link", "set", ifname, "up" if up else "down")

    # -- running --------------------------------------------------------------------------
    def run(self, ns: str, *cmd: str, check: bool = True, timeout: float = 60,
            **kw) -> subprocess.CompletedProcess:
        r = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"{ns}: {' '.join(cmd)} -> {r.returncode}: {r.stderr.strip()}")
        return r

    def popen(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()


@dataclass
class Standard:
    lab: Lab
    agent: str
    gw: str
    inet: str
    gateway_ip: str = "10.231.1.1"
    agent_ip: str = "10.231.1.2"
    targets: tuple[str, ...] = ("198.51.100.1", "198.51.100.2")
    dns_ip: str = "198.51.100.53"

    def cut_wan(self, down: bool = True) -> None:
        self.lab.link(self.gw, "wan0", not down)
        if not down:  # the kernel drops routes through a link taken down; a router restores them
            self.lab.run(self.gw, "ip", "route", "replace", "198.51.100.0/24", "via", "10.231.2.2")

    def cut_lan(self, down: bool = True) -> None:
        self.lab.link(self.gw, "lan0", not down)


def standard(lab: Lab) -> Standard:
    agent, gw, inet = lab.ns("agent"), lab.ns("gw"), lab.ns("inet")
    lab.veth(agent, "eth0", "10.231.1.2/24", gw, "lan0", "10.231.1.1/24")
    lab.veth(gw, "wan0", "10.231.2.1/24", inet, "eth0", "10.231.2.2/24")
    lab.run(agent, "ip", "route", "add", "default", "via", "10.231.1.1")
    lab.sysctl(gw, "net.ipv4.ip_forward", "1")
    lab.run(gw, "ip", "route", "add", "198.51.100.0/24", "via", "10.231.2.2")
    for addr in ("198.51.100.1/32", "198.51.100.2/32", "198.51.100.53/32"):
        lab.run(inet, "ip", "addr", "add", addr, "dev", "lo")
    lab.run(inet, "ip", "route", "add", "10.231.1.0/24", "via", "10.231.2.1")
    return Standard(lab, agent, gw, inet)


def _sh(*cmd: str) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {r.returncode}: {r.stderr.strip()}")


DNSMASQ = "/usr/sbin/dnsmasq"


def start_dnsmasq(net: Standard, *options: str) -> subprocess.Popen:
    """A real DNS server on the internet host (198.51.100.53) with its records given as dnsmasq
    options (default: example.test -> 198.51.100.1); waits until it listens. With --no-resolv,
    dnsmasq 2.90 answers REFUSED for names it does not know."""
    args = [DNSMASQ, "-C", "/dev/null", "--keep-in-foreground", "--no-resolv", "--no-hosts",
            f"--listen-address={net.dns_ip}", "--bind-interfaces", "--pid-file=", "--port=53",
            "--log-facility=/dev/null",
            *(options or ("--address=/example.test/198.51.100.1",))]
    proc = net.lab.popen(net.inet, *args)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {proc.stderr.read().decode()}")
        if net.lab.run(net.inet, "ss", "-Hlun", "sport = :53").stdout.strip():
            return proc
        time.sleep(0.05)
    raise RuntimeError("dnsmasq did not start listening")


def start_responder(lab: Lab, ns: str, *args: str) -> subprocess.Popen:
    """Start tests/responder.py in ``ns`` and wait for its "ready" (the Lab kills it on close)."""
    p = lab.popen(ns, sys.executable, str(RESPONDER), *args, text=True)
    ready, _, _ = select.select([p.stdout], [], [], 15)
    line = p.stdout.readline() if ready else ""
    if line.strip() != "ready":
        p.kill()
        raise RuntimeError(f"responder did not start: {p.stderr.read()}")
    return p


def responder(net: Standard, *args: str) -> subprocess.Popen:
    """The internet host's kernel echo switched off and tests/responder.py answering instead."""
    net.lab.sysctl(net.inet, "net.ipv4.icmp_echo_ignore_all", "1")
    return start_responder(net.lab, net.inet, *args)
