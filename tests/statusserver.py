"""A real, scriptable HTTP server that imitates an InfluxDB write endpoint, for error handling tests.

Real servers cannot be made to answer 429, 503 or nothing at all on demand; this one can, over a
real socket on 127.0.0.1 (stdlib ``ThreadingHTTPServer`` in a daemon thread, HTTP/1.1 with
keep-alive, as influxdb-client's urllib3 pool expects).

- ``GET``/``HEAD /ping``: 204 with ``X-Influxdb-Version`` (like InfluxDB 1.x and 2.x; no such
  header when ``version`` is None). Every answer carries that header, as real servers do.
- ``POST /write`` and ``POST /api/v2/write``: recorded in :attr:`StatusServer.requests` (body
  gunzipped when ``Content-Encoding: gzip``, chunked bodies joined), then answered from the script:
  queued :class:`Reply` objects one per write in order, else :attr:`StatusServer.responder`
  (a callable) when set, else :attr:`StatusServer.default` (204).
- Any other POST is recorded too but answered 404 without using the script (a client that posts
  to the wrong path shows up in the test instead of being answered 204); ``paths`` widens the
  scripted set (``/query`` for the collector's reader).
- ``Reply(hang=True)``: the request is read and recorded, then nothing is sent until the server
  closes, so the client must time out. ``close()`` does not wait for such handlers: they run in
  daemon threads, are woken, and every open connection is shut down.

Error bodies look like the real ones: InfluxDB 2.x sends ``{"code": "too many requests",
"message": "..."}``; 1.x sends ``{"error": "..."}`` and the same text in ``X-Influxdb-Error``
(measured on 1.6.7, see tests/influxlab.py). :meth:`Reply.json_error` builds either.

Use::

    with StatusServer() as srv:
        srv.script(Reply.json_error(429, "slow down", headers={"Retry-After": "2"}))
        ...  # client writes to f"{srv.url}/api/v2/write?org=o&bucket=b"
        [req] = srv.wait_requests(1)
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WRITE_PATHS = ("/write", "/api/v2/write")

# InfluxDB 2.x error codes (the "code" member of its JSON error bodies).
_V2_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not found",
             405: "method not allowed", 413: "request too large", 422: "unprocessable entity",
             429: "too many requests", 500: "internal error", 503: "unavailable"}


@dataclass
class Reply:
    """How to answer one write. ``body`` (str or bytes) is sent as is, with ``headers``."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes = ""
    hang: bool = False

    @classmethod
    def json_error(cls, status: int, message: str, *, v1: bool = False,
                   headers: dict[str, str] | None = None) -> Reply:
        """An InfluxDB error answer: ``{"code": ..., "message": message}`` (2.x) or, with
        ``v1``, ``{"error": message}`` plus an ``X-Influxdb-Error`` header (1.x)."""
        hdrs = {"Content-Type": "application/json; charset=utf-8"}
        if v1:
            hdrs["X-Influxdb-Error"] = message
            body = json.dumps({"error": message})
        else:
            body = json.dumps({"code": _V2_CODES.get(status, "internal error"), "message": message})
        hdrs.update(headers or {})
        return cls(status=status, headers=hdrs, body=body)


@dataclass
class Request:
    """One recorded POST: ``path`` without the query string, ``query`` (last value of each
    argument), ``headers`` with lower-cased names, ``lines`` (the decoded body split on "\\n",
    empty lines dropped) and ``body`` (the decoded body as bytes)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    lines: list[str]
    body: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._connections.discard(self.connection)

    # -- GET / HEAD ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._answer_ping(body=True)

    def do_HEAD(self) -> None:
        self._answer_ping(body=False)

    def _answer_ping(self, body: bool) -> None:
        if urllib.parse.urlsplit(self.path).path == "/ping":
            self._send(Reply(204), body=body)
        else:
            self._send(Reply.json_error(404, "path not found"), body=body)

    # -- POST ---------------------------------------------------------------------------------
    def do_POST(self) -> None:
        owner = self.server.owner
        raw = self._read_body()
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        parts = urllib.parse.urlsplit(self.path)
        req = Request(path=parts.path,
                      query={k: v for k, v in urllib.parse.parse_qsl(parts.query,
                                                                     keep_blank_values=True)},
                      headers={k.lower(): v for k, v in self.headers.items()},
                      lines=[ln for ln in raw.decode("utf-8", errors="replace").split("\n") if ln],
                      body=raw)
        reply = owner._record(req)
        if reply.hang:
            owner._closing.wait()
            self.close_connection = True
            return
        self._send(reply)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, reply: Reply, body: bool = True) -> None:
        data = reply.body.encode() if isinstance(reply.body, str) else reply.body
        self.send_response(reply.status)
        version = self.server.owner.version
        sent = {k.lower() for k in reply.headers}
        if version is not None and "x-influxdb-version" not in sent:
            self.send_header("X-Influxdb-Version", version)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        no_body = reply.status in (204, 304) or 100 <= reply.status < 200
        if not no_body and "content-length" not in sent:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body and not no_body:
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: StatusServer

    def handle_error(self, request, client_address) -> None:
        # A client that timed out or a connection shut by close(): nothing a test needs to see.
        pass


class StatusServer:
    """A scriptable InfluxDB look-alike on 127.0.0.1:``port`` (chosen by the kernel); it starts
    serving at once. ``close()`` (or ``with``) stops it without waiting for hanging answers."""

    def __init__(self, version: str | None = "2.7.1", tls=None,
                 paths: tuple[str, ...] = WRITE_PATHS) -> None:
        """``tls``: an ``ssl.SSLContext`` (server side) to serve HTTPS on ``https://localhost``.
        ``paths``: the POST paths answered from the script (``/query`` too, for a reader)."""
        self.version = version
        self.tls = tls
        self.paths = paths
        self.requests: list[Request] = []
        self.default = Reply(204)
        self.responder: Callable[[Request], Reply] | None = None
        self._queue: deque[Reply] = deque()
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"StatusServer:{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def script(self, *responses: Reply) -> None:
        """Queue answers for the next writes, one each, in order (after any already queued)."""
        with self._cond:
            self._queue.extend(responses)

    @property
    def pending(self) -> int:
        """How many scripted answers are not used yet."""
        with self._cond:
            return len(self._queue)

    def _record(self, req: Request) -> Reply:
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()
            if req.path not in self.paths:
                return Reply.json_error(404, "path not found")
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        if responder is not None:
            return responder(req)
        return self.default

    def wait_requests(self, n: int, timeout: float = 5.0) -> list[Request]:
        """Wait until at least ``n`` POSTs arrived; return (a copy of) all recorded so far.
        Raises TimeoutError saying how many did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.requests)} of {n} requests within {timeout} s")
                self._cond.wait(left)
            return list(self.requests)

    def close(self) -> None:
        """Stop serving, wake hanging handlers and shut every open connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=1)
