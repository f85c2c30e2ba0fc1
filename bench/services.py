"""Data used by the service checks: bytes on the agent's link per check of one site, in the
censor lab of the tests (tests/censorlab.py: real dnsmasq resolvers, a real HTTPS site), and
what the checks at the defaults cost a month from that.

Each run builds a lab and, inside the agent's namespace, checks ok.test ``--checks`` times in a
row with one Checker (as the agent's job does), reading the interface's byte counters (both
directions) around each check. The site sends a chain of two certificates (its own and an
intermediate's, RSA 2048), as most public sites do. Every check is a full TLS handshake (the
checker resumes no session: see agent/probes/services.py). Reported: medians over runs of the
first check's bytes and of the later checks' median, with and without the second resolver.

    python3 bench/services.py --runs 3 --checks 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import censorlab, netlab  # noqa: E402

SITES = 6          # the default [services] urls
INTERVAL_S = 1800  # the default services.interval_s
MONTH_S = 30 * 86400

PROBE = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from agent.clock import SystemClock
from agent.probes.services import Checker, parse_service
ca, resolver, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
def counters():
    base = "/sys/class/net/eth0/statistics/"
    return sum(int(open(base + k).read()) for k in ("rx_bytes", "tx_bytes"))
c = Checker(system_servers=lambda: ["198.51.100.53"], resolver=resolver, ca_file=ca,
            control_sni="control.test", timeout_s=3, clock=SystemClock())
site = parse_service("https://ok.test/")
out = []
for _ in range(n):
    time.sleep(0.3)                  # the previous check's last packets (FIN, ACK) counted
    before = counters()
    s = c.check(site)
    time.sleep(0.3)
    assert s.fields["ok"], s.fields
    out.append(counters() - before)
print(json.dumps(out))
'''


def chain(d: Path) -> tuple[Path, Path, Path]:
    """A root CA, an intermediate it signed, and the site's certificate the intermediate
    signed: (root, chain file of site + intermediate, key)."""
    def ossl(*a: str) -> None:
        subprocess.run(["openssl", *a], check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench root",
         "-keyout", str(d / "root.key"), "-out", str(d / "root.pem"))
    (d / "ca.cnf").write_text("basicConstraints=critical,CA:true\nkeyUsage=keyCertSign\n")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=bench intermediate", "-keyout",
         str(d / "mid.key"), "-out", str(d / "mid.csr"))
    ossl("x509", "-req", "-in", str(d / "mid.csr"), "-CA", str(d / "root.pem"), "-CAkey",
         str(d / "root.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "ca.cnf"),
         "-out", str(d / "mid.pem"))
    (d / "san.cnf").write_text("subjectAltName=DNS:ok.test\n")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=ok.test", "-keyout",
         str(d / "site.key"), "-out", str(d / "site.csr"))
    ossl("x509", "-req", "-in", str(d / "site.csr"), "-CA", str(d / "mid.pem"), "-CAkey",
         str(d / "mid.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.cnf"),
         "-out", str(d / "leaf.pem"))
    (d / "chain.pem").write_text((d / "leaf.pem").read_text() + (d / "mid.pem").read_text())
    return d / "root.pem", d / "chain.pem", d / "site.key"


def one_run(checks: int, resolver: str) -> list[int]:
    lab = netlab.Lab()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            censor = censorlab.build(lab, d)
            root, full, key = chain(d)
            # a second site on ok.test's address with the chained certificate, replacing the first
            net = censor.net
            lab.run(net.inet, "pkill", "-f", f"tls_site.py {censorlab.SITE}", check=False)
            p = lab.popen(net.inet, sys.executable, str(ROOT / "tests" / "tls_site.py"),
                          censorlab.SITE, "443", str(full), str(key), text=True)
            censorlab._ready(p)
            r = lab.run(net.agent, sys.executable, "-c", PROBE, str(ROOT), str(root), resolver,
                        str(checks))
            return json.loads(r.stdout)
    finally:
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--checks", type=int, default=12)
    args = ap.parse_args()
    for resolver, label in ((censorlab.SECOND_DNS, "with the second resolver"),
                            ("", "without it")):
        firsts, laters = [], []
        for _ in range(args.runs):
            b = one_run(args.checks, resolver)
            firsts.append(b[0])
            laters.append(statistics.median(b[1:]))
            print(f"  {label}: {b}", flush=True)
        first, later = statistics.median(firsts), statistics.median(laters)
        month = SITES * MONTH_S / INTERVAL_S * later + SITES * first
        print(f"{label}: first check {first:.0f} B (runs {firsts}), later checks {later:.0f} B "
              f"(runs {laters}); {SITES} sites every {INTERVAL_S} s for 30 days: "
              f"{month / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
