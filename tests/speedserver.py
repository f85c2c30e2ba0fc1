"""A real speedtest.net "classic" HTTP server (as speedtest-cli 2.1.3 speaks it), stdlib only.

The classic speedtest.net servers (and Ookla's "Speedtest Mini") serve static files beside an upload
script; a server list names a server by its upload URL, ``http://HOST/speedtest/upload.php``, and
clients find the rest with ``os.path.dirname`` of it. What speedtest-cli does with each (read in its
``get_best_server``, ``download``, ``upload``, ``set_mini_server``) and what this server answers:

- ``GET /speedtest/latency.txt?x=...``: three fresh connections, reads 9 bytes and compares them
  with ``test=test`` (anything else counts as 3600 s). Answer: exactly ``test=test``.
- ``GET /speedtest/randomNxN.jpg?x=...``: 4 requests per size (350 .. 4000), 8 at a time, each on
  a new connection (urllib sends ``Connection: close``), read in 10 KiB pieces until the test
  length (10 s) is up, then the socket is closed with data still in flight. Answer: the real files'
  sizes (:data:`SIZES`, the 10 sizes speedtest-cli asks for; other N get ``2*N*N`` bytes), body
  from a pre-generated block of random bytes (incompressible, like the JPEG noise of the real
  files), sent in ``send`` calls of up to 1 MiB so one Python thread keeps up with several
  hundred Mbit/s (14 Gbit/s on loopback to a client reading 10 KiB at a time). A client that
  goes away mid-body ends the handler quietly.
- ``POST /speedtest/upload.php``: bodies of 0.5, 1 and 7 MiB (``content1=`` + text), up to 8 at a
  time; at the end of the test length the client stops sending in mid-body and lets the
  connection go (what its send buffer holds still arrives, then FIN). Answer: the body is read
  in 1 MiB pieces and discarded, then ``size=<bytes read>`` (the first 11 bytes are all the
  client reads). A truncated body gets no answer.
- ``GET /``, ``/speedtest``, ``/speedtest/``: a tiny page containing ``uploadExtension: "php"``,
  which is what ``set_mini_server`` looks for; ``GET /speedtest/upload.php``: ``size=0``. Give
  ``set_mini_server`` the root (``http://HOST:PORT/``): it appends ``/speedtest/upload.php`` to
  the directory of what it gets, so the upload URL itself leads it to ``/speedtest/speedtest/``.

Every byte is counted per endpoint as it moves (``latency``, ``download``, ``upload``,
``other``: requests, bytes, completed and cut-off bodies, and ``first_at``/``last_at``, the
wall-clock times of the first and last byte, so a rate can be taken at the server):
:attr:`SpeedServer.stats` in-process, ``GET /stats`` (JSON) over HTTP, ``POST /stats/reset`` to
zero them. Download bytes are counted when the kernel took them, so they exceed what the client
read by what sat in the socket buffers of transfers cut off (1 .. 4 MB per test, measured).

Use in-process::

    with SpeedServer() as srv:          # 127.0.0.1, a free port
        srv.url                         # http://127.0.0.1:PORT/speedtest/upload.php
        srv.stats["download"]["bytes"]

or as a program (in a network namespace, see tests/speedlab.py); it prints ``ready URL`` once it
listens and serves until killed::

    python -m tests.speedserver --host 0.0.0.0 --port 8080
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Sizes of speedtest.net's classic random*.jpg files (the ones speedtest-cli asks for).
SIZES = {
    350: 245_388,
    500: 505_544,
    750: 1_118_012,
    1000: 1_986_284,
    1500: 4_468_241,
    2000: 7_907_740,
    2500: 12_407_926,
    3000: 17_816_816,
    3500: 24_262_167,
    4000: 31_625_365,
}

LATENCY_BODY = b"test=test"
MINI_PAGE = (b'<html><head><title>speedtest lab</title></head><body><script>\n'
             b'var config = { uploadExtension: "php" };\n</script></body></html>\n')
CHUNK = 1 << 20  # bytes per send / read: large, so Python's per-call cost stays small
_POOL_SIZE = 8 << 20

_RANDOM = re.compile(r"^/speedtest/random(\d+)x(\d+)\.jpg$")
_pool: bytes | None = None
_pool_lock = threading.Lock()


def file_size(n: int) -> int:
    """Content-Length of ``randomNxN.jpg``: the real size for speedtest-cli's ten, else 2*N*N."""
    return SIZES.get(n, 2 * n * n)


def _random_pool() -> memoryview:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = os.urandom(_POOL_SIZE)
        return memoryview(_pool)


def _new_stats() -> dict:
    ep = {"requests": 0, "bytes": 0, "completed": 0, "aborted": 0, "first_at": 0.0, "last_at": 0.0}
    return {"latency": dict(ep), "download": dict(ep), "upload": dict(ep), "other": dict(ep)}


_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    # -- helpers -------------------------------------------------------------------------------
    def _count(self, endpoint: str, **delta: int) -> None:
        self.server.owner._count(endpoint, **delta)

    def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- GET -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/speedtest/latency.txt":
                self._count("latency", requests=1)
                self._reply(200, LATENCY_BODY)
                self._count("latency", bytes=len(LATENCY_BODY), completed=1)
            elif m := _RANDOM.match(path):
                self._download(int(m.group(1)))
            elif path == "/stats":
                body = json.dumps(self.server.owner.stats).encode()
                self._reply(200, body, "application/json")
            elif path in ("/", "/speedtest", "/speedtest/"):
                self._count("other", requests=1)
                self._reply(200, MINI_PAGE, "text/html")
            elif path == "/speedtest/upload.php":
                self._count("other", requests=1)
                self._reply(200, b"size=0")
            else:
                self._count("other", requests=1)
                self._reply(404, b"not found")
        except _GONE:
            self.close_connection = True

    do_HEAD = do_GET

    def _download(self, n: int) -> None:
        size = file_size(n)
        self._count("download", requests=1)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if self.command == "HEAD":
            return
        pool = _random_pool()
        sock = self.connection
        left, off = size, 0
        try:
            while left:
                # send(), not sendall(): a client that leaves mid-chunk still gets every byte
                # the kernel took counted
                n_bytes = sock.send(pool[off:off + min(CHUNK, left, _POOL_SIZE - off)])
                self._count("download", bytes=n_bytes)
                left -= n_bytes
                off = (off + n_bytes) % _POOL_SIZE
        except _GONE:
            self._count("download", aborted=1)
            self.close_connection = True
            return
        self._count("download", completed=1)

    # -- POST ----------------------------------------------------------------------------------
    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/stats/reset":
            self.server.owner.reset_stats()
            self._reply(200, b"ok")
            return
        length = int(self.headers.get("Content-Length") or 0)
        got = self._drain(length, "upload" if path == "/speedtest/upload.php" else "other")
        if got < length:
            self.close_connection = True
            return
        try:
            if path == "/speedtest/upload.php":
                self._reply(200, b"size=%d" % got)
            else:
                self._reply(404, b"not found")
        except _GONE:
            self.close_connection = True

    def _drain(self, length: int, endpoint: str) -> int:
        """Read and discard ``length`` body bytes; return how many arrived."""
        self._count(endpoint, requests=1)
        buf = bytearray(min(CHUNK, max(length, 1)))
        view = memoryview(buf)
        got = 0
        try:
            while got < length:
                n = self.rfile.readinto1(view[:min(len(buf), length - got)])
                if not n:
                    break
                got += n
                self._count(endpoint, bytes=n)
        except (*_GONE, OSError):
            pass
        self._count(endpoint, **({"completed": 1} if got >= length else {"aborted": 1}))
        return got


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    owner: SpeedServer

    def handle_error(self, request, client_address) -> None:
        # Clients of a speed test drop connections mid-transfer by design: nothing to report.
        pass


class SpeedServer:
    """The classic speedtest.net endpoints on ``host``:``port`` (0: chosen by the kernel); it
    serves at once from a daemon thread. ``close()`` (or ``with``) stops it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        _random_pool()  # generate the random block before the first client waits for it
        self._lock = threading.Lock()
        self._stats = _new_stats()
        self._server = _Server((host, port), _Handler)
        self._server.owner = self
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"SpeedServer:{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def base(self) -> str:
        """``http://HOST:PORT`` (the wildcard address shown as 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The server's URL as speedtest.net server lists give it: the upload endpoint."""
        return f"{self.base}/speedtest/upload.php"

    @property
    def stats(self) -> dict:
        """A copy of the counters: ``{endpoint: {requests, bytes, completed, aborted, first_at,
        last_at}}`` for ``latency``, ``download``, ``upload`` and ``other`` (``*_at``: time.time()
        of the first and last byte moved, 0.0 before any)."""
        with self._lock:
            return copy.deepcopy(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = _new_stats()

    def _count(self, endpoint: str, **delta: int) -> None:
        with self._lock:
            ep = self._stats[endpoint]
            for k, v in delta.items():
                ep[k] += v
            if delta.get("bytes"):
                ep["last_at"] = time.time()
                if not ep["first_at"]:
                    ep["first_at"] = ep["last_at"]

    def serve_forever(self) -> None:
        """Block until the process ends (the program mode)."""
        self._thread.join()

    def __enter__(self) -> SpeedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and close the listening socket. Idempotent; handlers still running
        are daemon threads and end with their connections."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            # shutdown() waits for the serving loop to notice; bounded, so a loop that died or
            # stalls on a starved machine cannot hold the caller (a test's teardown) forever
            stopper = threading.Thread(target=self._server.shutdown, daemon=True)
            stopper.start()
            stopper.join(timeout=10)
        self._server.server_close()
        self._thread.join(timeout=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args(argv)
    srv = SpeedServer(args.host, args.port)
    print(f"ready {srv.url}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
