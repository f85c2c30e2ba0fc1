"""A middlebox that filters TLS by the name in the ClientHello, as a censor's DPI box does: it
listens on an address of its own, reads each connection's ClientHello, resets the connection
(an RST, by closing with SO_LINGER 0) when the server name is one it blocks, and otherwise
relays both ways to the real server. A name given as ``slow:NAME`` is not reset but marked for
throttling: the relay's packets towards the client carry DSCP 10 (IP TOS 0x28), which the lab's
``tc`` filter (a u32 match on the TOS byte, tests/censorlab.py) sends to a slow htb class. Run in
the lab's gateway namespace.

usage: python sni_middlebox.py LISTEN_ADDR PORT UPSTREAM_ADDR UPSTREAM_PORT [slow:]NAME...
Prints "ready" once it listens."""

from __future__ import annotations

import socket
import struct
import sys
import threading


def server_name(hello: bytes) -> str | None:
    """The SNI host name of a TLS ClientHello record (None when it has none or is not one)."""
    try:
        if hello[0] != 22 or hello[5] != 1:       # handshake record, ClientHello
            return None
        p = 5 + 4 + 2 + 32                          # headers, version, random
        p += 1 + hello[p]                           # session id
        p += 2 + struct.unpack("!H", hello[p:p + 2])[0]   # cipher suites
        p += 1 + hello[p]                           # compression methods
        end = p + 2 + struct.unpack("!H", hello[p:p + 2])[0]
        p += 2
        while p + 4 <= end:
            kind, size = struct.unpack("!HH", hello[p:p + 4])
            if kind == 0:                           # server_name: list, type 0, name
                n = struct.unpack("!H", hello[p + 7:p + 9])[0]
                return hello[p + 9:p + 9 + n].decode("ascii", "replace")
            p += 4 + size
    except (IndexError, struct.error):
        return None
    return None


def _read_hello(conn: socket.socket) -> bytes:
    data = b""
    while len(data) < 5 or len(data) < 5 + struct.unpack("!H", data[3:5])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while chunk := a.recv(65536):
            b.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


SLOW_TOS = 0x28


def _serve(conn: socket.socket, upstream: tuple[str, int], blocked: set[str]) -> None:
    conn.settimeout(10)
    hello = _read_hello(conn)
    if f"slow:{server_name(hello)}" in blocked:
        conn.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, SLOW_TOS)
    elif server_name(hello) in blocked:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()                                # an RST right after the ClientHello
        return
    try:
        up = socket.create_connection(upstream, timeout=10)
    except OSError:
        conn.close()
        return
    up.sendall(hello)
    conn.settimeout(None)
    up.settimeout(None)
    threading.Thread(target=_pipe, args=(up, conn), daemon=True).start()
    _pipe(conn, up)


def listen(addr: str, port: int) -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(64)
    return srv


def serve(srv: socket.socket, upstream: tuple[str, int], blocked: set[str]) -> None:
    """Accept until ``srv`` is closed; ``blocked`` is read at each connection (a test may change
    it while the middlebox runs)."""
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        threading.Thread(target=_serve, args=(conn, upstream, blocked), daemon=True).start()


def main() -> None:
    addr, port, up_addr, up_port, *blocked = sys.argv[1:]
    srv = listen(addr, int(port))
    print("ready", flush=True)
    serve(srv, (up_addr, int(up_port)), set(blocked))


if __name__ == "__main__":
    main()
