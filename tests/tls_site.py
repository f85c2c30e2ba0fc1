"""An HTTPS site for the lab: answers every request with 200 and a short body, with the
certificate given (made by tests/censorlab.py's test CA), whatever TLS name the client sends;
``GET /bytes/N`` answers N bytes (a download for throttling checks, at most 50 MB). Run in the
lab's internet namespace.

usage: python tls_site.py ADDR PORT CERT KEY
Prints "ready" once it listens."""

from __future__ import annotations

import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Site(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, body: bool) -> None:
        text = b"a lab site\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if body:
            self.wfile.write(text)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        size = self.path.removeprefix("/bytes/")
        if size == self.path or not size.isdigit() or int(size) > 50_000_000:
            self._answer(True)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", size)
        self.end_headers()
        left, block = int(size), b"\0" * 65536
        try:
            while left > 0:
                self.wfile.write(block[:left])
                left -= min(left, len(block))
        except OSError:
            pass                      # the client had enough


def site(addr: str, port: int, cert: str, key: str) -> ThreadingHTTPServer:
    """The site's server, listening (``serve_forever`` serves it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = ThreadingHTTPServer((addr, port), Site)
    srv.daemon_threads = True
    # the handshake in the handler's thread: one stalled client never holds up the others
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    return srv


def main() -> None:
    addr, port, cert, key = sys.argv[1:]
    srv = site(addr, int(port), cert, key)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
