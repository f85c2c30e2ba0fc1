#!/usr/bin/env python3
"""What a WireGuard endpoint's check costs the child process that runs it: the handshake
initiation made with the user's keys (two X25519 products for the keys, two for the shared
secrets, two ChaCha20-Poly1305 seals, BLAKE2s) and the server's response authenticated (two
X25519 products, one open), in pure Python (agent/probes/wireguard.py). The response is one
recorded from Debian's wireguard-go (tests/test_wireguard.py), so the answer is judged as a
real one. Reference in the same run: the OpenVPN check's packet and its judging, which involve
no cryptography. CPU time (process_time), median of --runs batches of --n checks.

    python3 bench/wireguard.py --runs 5 --n 200
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.probes import services, wireguard
from tests.test_wireguard import REC


def _wireguard(n: int) -> float:
    keys = wireguard.Keys(*(base64.b64decode(REC[k]) for k in ("client_private",
                                                               "server_public", "psk")))
    reply = bytes.fromhex(REC["response"])
    t0 = time.process_time()
    for _ in range(n):
        _, pending = wireguard.initiation(keys, sender=0x01020304,
                                          ephemeral_private=bytes(range(32)),
                                          unix_ns=REC["unix_ns"])
        assert wireguard.answer(pending, reply) == "response"
    return (time.process_time() - t0) / n


def _openvpn(n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        session = os.urandom(8)
        packet = services.openvpn_reset(session)
        services.openvpn_answers(packet, session)
    return (time.process_time() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    wg, ovpn = [], []
    for _ in range(args.runs):
        wg.append(_wireguard(args.n))
        ovpn.append(_openvpn(args.n))
    print(f"WireGuard check's cryptography: {statistics.median(wg) * 1e3:.2f} ms CPU per check "
          f"(runs: {' / '.join(f'{x * 1e3:.2f}' for x in wg)}); OpenVPN's packet, the "
          f"reference: {statistics.median(ovpn) * 1e6:.1f} us "
          f"(runs: {' / '.join(f'{x * 1e6:.1f}' for x in ovpn)})")


if __name__ == "__main__":
    main()
