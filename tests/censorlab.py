"""A censor in the lab: the standard agent / gateway / internet namespaces (tests/netlab.py) with
the ways a network blocks a site while the line is up, each on names of its own:

    system resolver 198.51.100.53 (dnsmasq)     second resolver 198.51.100.54 (dnsmasq, honest)
      ok.test, fine.test    -> the real site     ok.test, fine.test     -> the real site
      poison.test           -> 198.51.100.12     poison.test            -> 198.51.100.10
      zero.test             -> 0.0.0.0           sni.test               -> 198.51.100.20
      gone.test             -> NXDOMAIN
      hole.test             -> 198.51.100.11 (the gateway drops it: a blackhole route)
      sni.test, fine.test   -> 198.51.100.20 (a middlebox on the gateway: it resets a
                                              ClientHello naming sni.test, relays the rest)
      wrong.test            -> 198.51.100.10 (the site's certificate does not name it)

    the site: 198.51.100.10 and .11, port 443 (tests/tls_site.py), a certificate of the test CA
    for ok.test, fine.test, poison.test, hole.test, sni.test and a.test to d.test (more sites
    that work, on 198.51.100.10 through both resolvers); nothing listens on .12 or port 8443.
    vpn.test -> 198.51.100.30: real OpenVPN servers there when a test starts them
    (:func:`start_openvpn`), and a real WireGuard server (:func:`start_wireguard`).
    198.51.100.55: a real DNS-over-HTTPS server when a test starts it (:func:`start_doh`).

Every address lives in the namespaces only. ``ca`` is the test CA's certificate (services.ca_file).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests import netlab

HERE = Path(__file__).resolve().parent
SITE, HOLE, NOWHERE, MIDDLEBOX = "198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.20"
VPN = "198.51.100.30"      # OpenVPN servers (start_openvpn): UDP 1194, TCP 1195; WireGuard 51820
SYSTEM_DNS, SECOND_DNS = "198.51.100.53", "198.51.100.54"
DOH = "198.51.100.55"      # DNS over HTTPS (start_doh): dnsdist in front of the honest resolver
SITE_NAMES = ("ok.test", "fine.test", "poison.test", "hole.test", "sni.test")
CLEAN = ("a.test", "b.test", "c.test", "d.test")    # more sites that work, on the site's address


@dataclass
class Censor:
    net: netlab.Standard
    ca: Path
    middlebox: subprocess.Popen | None = None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def certificates(d: Path) -> tuple[Path, Path, Path]:
    """A test CA, and a certificate it signed for the site's names: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "site.key", "site.csr",
                                                   "site.pem"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=linewatch lab CA", "-keyout", str(ca_key), "-out", str(ca))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=ok.test", "-keyout", str(key),
             "-out", str(csr))
    ext = d / "san.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{n}" for n in SITE_NAMES + CLEAN)
                   + f",IP:{DOH}\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


def _dnsmasq(net: netlab.Standard, listen: str, *records: str) -> None:
    args = [netlab.DNSMASQ, "-C", "/dev/null", "--keep-in-foreground", "--no-resolv",
            "--no-hosts", f"--listen-address={listen}", "--bind-interfaces", "--pid-file=",
            "--port=53", "--log-facility=/dev/null", *records]
    proc = net.lab.popen(net.inet, *args)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {proc.stderr.read().decode()}")
        if net.lab.run(net.inet, "ss", "-Hlun", f"src {listen}:53").stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError("dnsmasq did not start listening")


def build(lab: netlab.Lab, tmp: Path) -> Censor:
    net = netlab.standard(lab)
    for addr in (SITE, HOLE, NOWHERE, SECOND_DNS):
        lab.run(net.inet, "ip", "addr", "add", f"{addr}/32", "dev", "lo")
    ca, cert, key = certificates(tmp)
    _dnsmasq(net, SYSTEM_DNS,
             f"--address=/ok.test/{SITE}", f"--address=/poison.test/{NOWHERE}",
             "--address=/zero.test/0.0.0.0", "--address=/gone.test/",
             f"--address=/hole.test/{HOLE}", f"--address=/sni.test/{MIDDLEBOX}",
             f"--address=/fine.test/{MIDDLEBOX}", f"--address=/wrong.test/{SITE}",
             f"--address=/vpn.test/{VPN}", *(f"--address=/{n}/{SITE}" for n in CLEAN))
    _dnsmasq(net, SECOND_DNS,
             f"--address=/ok.test/{SITE}", f"--address=/poison.test/{SITE}",
             f"--address=/sni.test/{MIDDLEBOX}", f"--address=/fine.test/{MIDDLEBOX}",
             f"--address=/hole.test/{HOLE}", f"--address=/wrong.test/{SITE}",
             *(f"--address=/{n}/{SITE}" for n in CLEAN))
    for addr in (SITE, HOLE):
        _ready(lab.popen(net.inet, sys.executable, str(HERE / "tls_site.py"), addr, "443",
                         str(cert), str(key), text=True))
    lab.run(net.gw, "ip", "addr", "add", f"{MIDDLEBOX}/32", "dev", "lo")
    censor = Censor(net, ca)
    censor.middlebox = _middlebox(net, "sni.test")
    lab.run(net.gw, "ip", "route", "add", "blackhole", f"{HOLE}/32")
    return censor


def _middlebox(net: netlab.Standard, *blocked: str) -> subprocess.Popen:
    p = net.lab.popen(net.gw, sys.executable, str(HERE / "sni_middlebox.py"), MIDDLEBOX, "443",
                      SITE, "443", *blocked, text=True)
    _ready(p)
    return p


def _vpn_address(net: netlab.Standard) -> None:
    have = net.lab.run(net.inet, "ip", "-4", "addr", "show", "dev", "lo").stdout
    if f"{VPN}/32" not in have:
        net.lab.run(net.inet, "ip", "addr", "add", f"{VPN}/32", "dev", "lo")


def start_openvpn(censor: Censor, tmp: Path) -> None:
    """Two real OpenVPN servers on the internet host's VPN address (vpn.test): UDP 1194 and
    TCP 1195, each on a tun device of its own, with the site's certificate (a check goes as far
    as the server's answer to the client's hard reset)."""
    net = censor.net
    _vpn_address(net)
    base = ["openvpn", "--server", "10.8.0.0", "255.255.255.0", "--local", VPN, "--ca",
            str(censor.ca), "--cert", str(tmp / "site.pem"), "--key", str(tmp / "site.key"),
            "--dh", "none", "--verb", "3"]
    for proto, port, dev in (("udp", "1194", "tun1"), ("tcp-server", "1195", "tun2")):
        p = net.lab.popen(net.inet, *base, "--proto", proto, "--port", port, "--dev-type", "tun",
                          "--dev", dev, text=True)
        deadline = time.monotonic() + 15
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"openvpn exited: {p.stdout.read()[-1500:]}")
            listening = net.lab.run(net.inet, "ss", "-Hln", f"src {VPN}:{port}").stdout.strip()
            if listening:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("openvpn did not start listening")
            time.sleep(0.1)


@dataclass
class WireGuard:
    """A running WireGuard server (Debian's wireguard-go, userspace, on a tun device) and the
    client config (wg-quick format, mode 0600) of the one peer it knows."""

    process: subprocess.Popen
    interface: str
    client_conf: Path

    def stop(self) -> None:
        """Stopped with SIGTERM, so it removes its control socket (in /var/run/wireguard,
        shared by every namespace: hence an interface name of its own per test)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        Path(f"/var/run/wireguard/{self.interface}.sock").unlink(missing_ok=True)


def start_wireguard(censor: Censor, tmp: Path, *, psk: bool = True) -> WireGuard:
    """A real WireGuard server on vpn.test, UDP 51820, whose one peer is the client config
    written to ``tmp / "wg-client.conf"``; keys made by Debian's ``wg`` (not by the code
    under test). Call ``stop()`` when done."""
    net = censor.net
    _vpn_address(net)

    def wg(*args: str, stdin: str = "") -> str:
        return subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True,
                              check=True).stdout.strip()

    server, client = wg("genkey"), wg("genkey")
    shared = wg("genpsk") if psk else ""
    old = os.umask(0o077)
    try:
        for name, value in (("wg-server.key", server), ("wg-psk", shared)):
            (tmp / name).write_text(value + "\n")
        conf = tmp / "wg-client.conf"
        conf.write_text("[Interface]\n"
                        f"PrivateKey = {client}\nAddress = 10.9.0.2/32\n\n[Peer]\n"
                        f"PublicKey = {wg('pubkey', stdin=server)}\n"
                        + (f"PresharedKey = {shared}\n" if psk else "")
                        + "Endpoint = vpn.test:51820\nAllowedIPs = 10.9.0.0/24\n")
    finally:
        os.umask(old)
    interface = f"lwwg{os.getpid() % 100000}{len(net.lab.procs)}"[:15]
    p = net.lab.popen(net.inet, "wireguard-go", "-f", interface, text=True,
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server_ = WireGuard(p, interface, conf)
    sock = Path(f"/var/run/wireguard/{interface}.sock")
    deadline = time.monotonic() + 15
    while not sock.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            server_.stop()
            raise RuntimeError(f"wireguard-go did not start: {p.stderr.read()[-1500:]}")
        time.sleep(0.05)
    peer = ["peer", wg("pubkey", stdin=client), "allowed-ips", "10.9.0.2/32"]
    if psk:
        peer += ["preshared-key", str(tmp / "wg-psk")]
    net.lab.run(net.inet, "wg", "set", interface, "private-key", str(tmp / "wg-server.key"),
                "listen-port", "51820", *peer)
    net.lab.run(net.inet, "ip", "link", "set", interface, "up")
    return server_


def shape_marked(censor: Censor, kbit: int, match: tuple[str, ...] = ("tos", "0x28", "0xfc")
                 ) -> None:
    """A throttler on the gateway's side towards the agent: an htb qdisc whose slow class
    (``kbit`` kbit/s) gets the packets a u32 filter matches: by default their TOS byte, the mark
    the middlebox sets on connections naming a ``slow:`` name; ``("src", "ADDR/32")`` throttles
    everything from one address instead. Everything else at full speed."""
    net, dev = censor.net, "lan0"
    run = net.lab.run
    run(net.gw, "tc", "qdisc", "del", "dev", dev, "root", check=False)     # a shaper before
    run(net.gw, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10")
    run(net.gw, "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
        "rate", "1gbit")
    run(net.gw, "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb",
        "rate", f"{kbit}kbit", "ceil", f"{kbit}kbit")
    run(net.gw, "tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio",
        "1", "u32", "match", "ip", *match, "flowid", "1:20")


def start_doh(censor: Censor, tmp: Path) -> str:
    """A real DNS-over-HTTPS server (Debian's dnsdist) on 198.51.100.55:443, with the site's
    certificate (the test CA's, naming that address), answering from the honest second resolver;
    its URL."""
    net = censor.net
    net.lab.run(net.inet, "ip", "addr", "add", f"{DOH}/32", "dev", "lo")
    conf = tmp / "dnsdist.conf"
    conf.write_text(f'addDOHLocal("{DOH}:443", "{tmp / "site.pem"}", "{tmp / "site.key"}", '
                    f'"/dns-query")\nnewServer({{address="{SECOND_DNS}:53"}})\n'
                    'setSecurityPollSuffix("")\n')
    p = net.lab.popen(net.inet, "dnsdist", "-C", str(conf), "--supervised", "--disable-syslog",
                      text=True)
    deadline = time.monotonic() + 15
    while not net.lab.run(net.inet, "ss", "-Hltn", f"src {DOH}:443").stdout.strip():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise RuntimeError(f"dnsdist did not start: {p.stderr.read()[-1500:]}")
        time.sleep(0.1)
    return f"https://{DOH}/dns-query"


def unblock(censor: Censor) -> None:
    """The middlebox replaced by one that blocks no name (the censor lifted the block)."""
    block(censor)


def block(censor: Censor, *names: str) -> None:
    """The middlebox replaced by one that resets the ClientHellos naming ``names`` (only);
    ``slow:NAME`` marks that name's connections for :func:`shape_marked` instead."""
    if censor.middlebox is not None:
        censor.middlebox.kill()
        censor.middlebox.wait(timeout=10)
    censor.middlebox = _middlebox(censor.net, *names)


def _ready(p: subprocess.Popen) -> None:
    ready, _, _ = select.select([p.stdout], [], [], 15)
    line = p.stdout.readline() if ready else ""
    if line.strip() != "ready":
        p.kill()
        raise RuntimeError(f"a lab server did not start: {p.stderr.read()}")
