"""A DNS server on loopback that answers what the test says, and an encoder for its replies
written apart from the probe's own parser (so a test of one does not lean on the other).

:class:`FakeServer` listens on UDP (and optionally TCP) on 127.0.0.x; its ``handler(query)``
returns the datagrams to send back, a number in the list being a pause in seconds.
"""

from __future__ import annotations

import socket
import struct
import threading
import time


def wire_name(name: str) -> bytes:
    labels = [x for x in name.split(".") if x]
    return b"".join(bytes([len(x)]) + x.encode("ascii") for x in labels) + b"\x00"


def rr_a(addr: str, owner: bytes = b"\xc0\x0c", ttl: int = 60) -> bytes:
    rdata = socket.inet_pton(socket.AF_INET, addr)
    return owner + struct.pack("!HHIH", 1, 1, ttl, len(rdata)) + rdata


def rr_aaaa(addr: str, owner: bytes = b"\xc0\x0c", ttl: int = 60) -> bytes:
    rdata = socket.inet_pton(socket.AF_INET6, addr)
    return owner + struct.pack("!HHIH", 28, 1, ttl, len(rdata)) + rdata


def rr_cname(target: str, owner: bytes = b"\xc0\x0c") -> bytes:
    rdata = wire_name(target)
    return owner + struct.pack("!HHIH", 5, 1, 60, len(rdata)) + rdata


def reply(qid: int, name: str, qtype: int = 1, records: list[bytes] = (), rcode: int = 0,
          tc: bool = False, qr: bool = True, question: bool = True) -> bytes:
    flags = (0x8000 if qr else 0) | 0x0100 | 0x0080 | (0x0200 if tc else 0) | rcode
    head = struct.pack("!HHHHHH", qid, flags, 1 if question else 0, len(records), 0, 0)
    q = wire_name(name) + struct.pack("!HH", qtype, 1) if question else b""
    return head + q + b"".join(records)


def answer_to_query(query: bytes, records: list[bytes] = (), rcode: int = 0, tc: bool = False,
                    qid: int | None = None) -> bytes:
    """A reply built from the raw query (header rewritten, question echoed byte for byte)."""
    (rid,) = struct.unpack_from("!H", query)
    flags = 0x8000 | 0x0100 | 0x0080 | (0x0200 if tc else 0) | rcode
    head = struct.pack("!HHHHHH", rid if qid is None else qid, flags, 1, len(records), 0, 0)
    return head + query[12:] + b"".join(records)


class FakeServer:
    """UDP (and optionally TCP) DNS server on 127.0.0.x; ``handler(query) -> [reply bytes]``."""

    def __init__(self, handler, host: str = "127.0.0.1", port: int = 0, tcp_handler=None):
        self.handler = handler
        self.queries: list[tuple[bytes, tuple]] = []
        self.tcp = None
        # A free UDP port may be taken for TCP (another socket's local port): try again then.
        for attempt in range(50):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((host, port))
            self.port = self.udp.getsockname()[1]
            if tcp_handler is None:
                break
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.tcp.close()
                self.udp.close()
                if port or attempt == 49:
                    raise
        self.udp.settimeout(0.1)
        if self.tcp is not None:
            self.tcp.listen()
            self.tcp.settimeout(0.1)
        self.tcp_handler = tcp_handler
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True)]
        if self.tcp:
            self._threads.append(threading.Thread(target=self._serve_tcp, daemon=True))
        for t in self._threads:
            t.start()

    def _serve_udp(self):
        while not self._stop.is_set():
            try:
                query, peer = self.udp.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries.append((query, peer))
            for item in self.handler(query):
                if isinstance(item, (int, float)):
                    time.sleep(item)  # a number in the list is a pause
                else:
                    self.udp.sendto(item, peer)

    def _serve_tcp(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                (n,) = struct.unpack("!H", conn.recv(2))
                query = conn.recv(n)
                out = self.tcp_handler(query)
                conn.sendall(struct.pack("!H", len(out)) + out)

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.udp.close()
        if self.tcp:
            self.tcp.close()
