"""A server that plays InfluxDB 1.x for the collector's reads: ``/ping`` and ``/query`` on 127.0.0.1,
answering the ``round`` query with whatever the test sets (a hostile answer, one cut off, one too big,
one that trickles), and the window of closed days the tests ask for."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

DAY = 86400
START = (int(time.time()) // DAY - 5) * DAY        # a closed UTC day, five days back
WINDOW = ["--since", time.strftime("%Y-%m-%d", time.gmtime(START)),
          "--until", time.strftime("%Y-%m-%d", time.gmtime(START + 2 * DAY))]
EMPTY = b'{"results":[{"statement_id":0}]}\n'
# The index's answer to SHOW TAG VALUES: every measurement holds one agent, so the collector asks
# each query (it leaves out queries that could find nothing: collector.influxql.Present).
LISTED = (b'{"results":[{"statement_id":0,"series":[{"name":"round","columns":["key","value"],'
          b'"values":[["agent","a1"]]}]}]}\n')


class FakeInflux:
    """``GET /ping``: 204 with a version header. ``POST /query``: the ``round`` query (with
    ``every_query``, every query) gets ``self.answer`` (bytes, or "cut", "huge", "trickle"),
    SHOW TAG VALUES one agent, every other query an empty answer."""

    def __init__(self, every_query: bool = False) -> None:
        self.answer: bytes | str = EMPTY
        self.every_query = every_query
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(204)
                self.send_header("X-Influxdb-Version", "1.8.10")
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                q = parse_qs(body.decode()).get("q", [""])[0]
                what = (owner.answer if owner.every_query or 'SELECT sum("interval_s")' in q
                        else LISTED if q.startswith("SHOW TAG VALUES") else EMPTY)
                try:
                    owner.send(self, what)
                except OSError:       # the collector stopped reading: that is the point
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @staticmethod
    def send(h: BaseHTTPRequestHandler, what: bytes | str) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("X-Influxdb-Version", "1.8.10")
        mb = b" " * (1 << 20)
        if what == "cut":            # promises 100 MB, sends 1 MB, hangs up
            h.send_header("Content-Length", str(100 << 20))
            h.end_headers()
            h.wfile.write(b'{"results":[' + mb)
            h.close_connection = True
        elif what == "huge":         # 100 MB of answer, no length given
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b'{"results":[{"statement_id":0,"series":[')
            for _ in range(100):
                h.wfile.write(mb)
            h.close_connection = True
        elif what == "trickle":      # a byte at a time, never silent long enough to time out
            h.send_header("Connection", "close")
            h.end_headers()
            for _ in range(600):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.1)
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(len(what)))
            h.end_headers()
            h.wfile.write(what)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
