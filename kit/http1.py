"""Plain-HTTP/1.1 connections on a socket alone, for ``http://`` servers.

The standard library's ``http.client`` imports ``ssl`` whenever it can (to define
``HTTPSConnection``), which loads OpenSSL, and ``email`` to parse headers: about 5 MB of an
agent that forwards to a server on its own LAN or loopback over plain HTTP, and so needs neither.
:class:`Connection` speaks the part of HTTP/1.1 the agent's requests use (one request at a time
on a kept-alive connection; bodies by ``Content-Length``, chunked, or until the server closes)
with the interface of ``http.client.HTTPConnection`` that :class:`kit.influx.HTTP` calls:
``request``, ``getresponse``, ``close``, ``sock``; its :class:`Response` has ``status``,
``length``, ``read1``, ``getheader``, ``getheaders`` and ``close``. ``https://`` goes through
``http.client`` as before.

What a server may send wrong is an error, never a hang or unbounded memory: a status line or
header line over :data:`MAX_LINE` bytes, more than :data:`MAX_HEADERS` headers, a malformed status
line, chunk size or chunk (data longer than its size) raise :class:`ProtocolError`; a server that
closes before its first byte raises :class:`ClosedError` (a ``ConnectionResetError``, so a caller
retries a kept-alive connection the server closed meanwhile once, as with ``http.client``); a
chunked body that ends early raises :class:`IncompleteRead`; a ``Content-Length`` body that ends
early leaves ``length`` above zero.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Mapping

MAX_LINE = 65_536
MAX_HEADERS = 100


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as it should be."""


class ClosedError(ConnectionResetError):
    """The server closed the connection without answering."""


class IncompleteRead(Exception):
    """A chunked body ended before its last chunk; ``partial`` holds what did arrive."""

    def __init__(self, partial: bytes) -> None:
        super().__init__(f"{len(partial)} bytes read, more expected")
        self.partial = partial


class Response:
    """One answer: the status and headers read, the body read by :meth:`read1`."""

    def __init__(self, conn: Connection, method: str) -> None:
        self._conn = conn
        fp = conn.fp
        if fp is None:
            raise ClosedError("the connection is closed")
        while True:
            status, will_close = self._status_line(fp)
            headers = self._headers(fp)
            if status >= 200 or status == 101:
                break  # 100 Continue and other interim answers: their headers are skipped
        self.status = status
        self.headers = headers
        self._lower = {k.lower(): v for k, v in headers}
        conn_opts = self._lower.get("connection", "").lower()
        self.will_close = will_close or "close" in conn_opts
        self.chunked = "chunked" in self._lower.get("transfer-encoding", "").lower()
        self._chunk_left: int | None = None  # chunked: bytes left in this chunk (None: read a size)
        self._done = False
        self.length: int | None = None
        if method == "HEAD" or status in (204, 304) or status < 200:
            self.length = 0
        elif not self.chunked:
            cl = self._lower.get("content-length")
            if cl is not None:
                try:
                    self.length = int(cl.split(",")[0].strip())
                except ValueError:
                    raise ProtocolError(f"Content-Length {cl[:40]!r} is not a number") from None
                if self.length < 0:
                    raise ProtocolError(f"Content-Length {cl[:40]!r} is negative")
            else:
                self.will_close = True  # the body runs until the server closes
        if self.length == 0:
            self._done = True

    @staticmethod
    def _line(fp: io.BufferedReader) -> bytes:
        line: bytes = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError(f"a line of the answer is longer than {MAX_LINE} bytes")
        return line

    def _status_line(self, fp: io.BufferedReader) -> tuple[int, bool]:
        line = self._line(fp)
        if not line:
            raise ClosedError("the server closed the connection without answering")
        parts = line.decode("iso-8859-1").rstrip("\r\n").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() \
                or len(parts[1]) != 3:
            raise ProtocolError(f"not an HTTP/1.x status line: {line[:60]!r}")
        return int(parts[1]), parts[0] == "HTTP/1.0"

    def _headers(self, fp: io.BufferedReader) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while True:
            line = self._line(fp)
            if line in (b"\r\n", b"\n", b""):
                return out
            if len(out) >= MAX_HEADERS:
                raise ProtocolError(f"more than {MAX_HEADERS} headers")
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and out:  # an obsolete folded line continues the last
                k, v = out[-1]
                out[-1] = (k, f"{v} {text.strip()}")
                continue
            name, sep, value = text.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolError(f"not a header line: {line[:60]!r}")
            out.append((name, value.strip()))

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self._lower.get(name.lower(), default)

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self.headers)

    def read1(self, n: int = 65_536) -> bytes:
        """Up to ``n`` bytes of the body from at most one read of the socket; b"" at its end."""
        fp = self._conn.fp
        if self._done or n <= 0 or fp is None:
            return b""
        if self.chunked:
            return self._read1_chunked(fp, n)
        if self.length is None:  # until the server closes
            data: bytes = fp.read1(n)
            if not data:
                self._finish()
            return data
        data = fp.read1(min(n, self.length))
        if not data:  # closed before the declared length: ``length`` stays above zero
            self._done = True
            self._conn.close()
            return b""
        self.length -= len(data)
        if self.length == 0:
            self._finish()
        return data

    def _read1_chunked(self, fp: io.BufferedReader, n: int) -> bytes:
        if not self._chunk_left:
            if self._chunk_left == 0 and self._line(fp) not in (b"\r\n", b"\n"):
                raise ProtocolError("a chunk's data is longer than its size said")
            line = self._line(fp)
            if not line:
                self._done = True
                self._conn.close()
                raise IncompleteRead(b"")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"not a chunk size: {line[:40]!r}") from None
            if size < 0:
                raise ProtocolError(f"not a chunk size: {line[:40]!r}")
            if size == 0:
                self._headers(fp)  # trailers, up to the blank line
                self._finish()
                return b""
            self._chunk_left = size
        data: bytes = fp.read1(min(n, self._chunk_left))
        if not data:
            self._done = True
            self._conn.close()
            raise IncompleteRead(b"")
        self._chunk_left -= len(data)
        return data

    def _finish(self) -> None:
        self._done = True
        if self.will_close:
            self._conn.close()

    def close(self) -> None:
        """Done with this answer: a connection with body left unread cannot carry another."""
        if not self._done:
            self._done = True
            self._conn.close()


class Connection:
    """One kept-alive plain-HTTP connection to ``host``:``port`` (opened at the first request,
    again after the server or a cut answer closed it). ``timeout`` bounds connecting and each
    silence of the server."""

    def __init__(self, host: str, port: int, timeout: float | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.fp: io.BufferedReader | None = None
        self._method = "GET"
        self._response: Response | None = None

    def _host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> None:
        if self._response is not None and not self._response._done:
            self.close()  # the previous answer was not read to its end
        self._response = None
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.fp = self.sock.makefile("rb")
        given = {k.lower() for k in (headers or {})}
        lines = [f"{method} {url} HTTP/1.1"]
        if "host" not in given:
            lines.append(f"Host: {self._host_header()}")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")
        for k, v in (headers or {}).items():
            if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
                raise ValueError(f"header {k!r}: line breaks are not allowed")
            lines.append(f"{k}: {v}")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if body and len(body) <= 65_536:
            self.sock.sendall(head + body)  # one segment for a small request
        else:
            self.sock.sendall(head)
            if body:
                self.sock.sendall(body)  # a large body is not copied
        self._method = method

    def getresponse(self) -> Response:
        if self.sock is None:
            raise ClosedError("no request was sent on this connection")
        self._response = Response(self, self._method)
        return self._response

    def close(self) -> None:
        fp, sock = self.fp, self.sock
        self.fp = self.sock = None
        if fp is not None:
            fp.close()
        if sock is not None:
            sock.close()
