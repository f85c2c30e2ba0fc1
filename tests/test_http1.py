"""kit.http1, the plain-HTTP/1.1 client the agent uses for http:// servers (no OpenSSL loaded).

The real servers (InfluxDB 1.6.7, VictoriaMetrics) are what test_influx_servers, test_forward and
test_influx_statuses write to through it. Here a scripted server on a loopback socket sends what no
well-behaved server sends on demand: chunked and close-delimited bodies, interim answers, bodies cut
short, oversized and malformed lines; each test reads the raw request it got, too."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from kit import http1
from kit.influx import CUT_CLOSED, CUT_SIZE, HTTP


class Scripted:
    """Accepts connections on 127.0.0.1; for each request (read up to the end of its body)
    sends the next scripted answer: bytes, then the connection stays open for the next request
    (unless the answer says Connection: close or has no length); ``(bytes,)``: sent, then the
    connection closes; None: closed without an answer. Records each request as raw bytes and
    how many connections were accepted."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _read_request(self, c: socket.socket) -> bytes | None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            piece = c.recv(65536)
            if not piece:
                return None
            buf += piece
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            piece = c.recv(65536)
            if not piece:
                break
            rest += piece
        return head + b"\r\n\r\n" + rest

    def _serve(self) -> None:
        while self.answers:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with c:
                while self.answers:
                    req = self._read_request(c)
                    if req is None:
                        break
                    self.requests.append(req)
                    answer = self.answers.pop(0)
                    if answer is None:
                        break  # close without answering
                    if isinstance(answer, tuple):
                        c.sendall(answer[0])
                        break
                    c.sendall(answer)
                    if b"Connection: close" in answer or (b"Content-Length" not in answer
                                                          and b"chunked" not in answer):
                        break

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted():
    made = []

    def make(*answers):
        s = Scripted(list(answers))
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def ok(body: bytes = b"", status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def read_all(resp: http1.Response) -> bytes:
    out = b""
    while piece := resp.read1(7):  # small pieces: a chunk boundary falls inside reads
        out += piece
    return out


def test_post_request_is_what_the_server_gets_and_the_connection_is_kept(scripted):
    srv = scripted(ok(b"first"), ok(b"second", "204 No Content"))
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("POST", "/api/v2/write?bucket=b", b"m f=1i 1\n", {"Authorization": "Token x"})
    r = c.getresponse()
    assert (r.status, read_all(r)) == (200, b"first")
    head, _, body = srv.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/v2/write?bucket=b HTTP/1.1"
    assert f"Host: 127.0.0.1:{srv.port}" in lines and "Authorization: Token x" in lines
    assert "Content-Length: 9" in lines and body == b"m f=1i 1\n"
    c.request("GET", "/ping")
    r = c.getresponse()
    assert r.status == 204 and r.length == 0 and read_all(r) == b""  # 204 has no body
    assert srv.connections == 1
    c.close()


def test_chunked_body_with_extensions_and_trailers(scripted):
    body = (b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n"
            b"5;ext=1\r\n{\"err\r\n11\r\nor\":\"bad line 1\"}\r\n0\r\nX-Trailer: t\r\n\r\n")
    srv = scripted(body, ok(b"next"))
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("POST", "/write", b"x")
    r = c.getresponse()
    assert r.status == 400 and r.length is None
    assert read_all(r) == b'{"error":"bad line 1"}'
    assert r.getheader("content-type") == "application/json"
    c.request("GET", "/again")  # the same connection carries the next request
    assert read_all(c.getresponse()) == b"next" and srv.connections == 1


def test_body_until_close_and_interim_answers(scripted):
    srv = scripted(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nX-A: 1\r\n  folded\r\n\r\nto the end")
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("X-A") == "1 folded"
    assert read_all(r) == b"to the end"
    assert c.sock is None  # closed: the body ended with the connection


@pytest.mark.parametrize("answer, error", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "is not a number"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "is negative"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "longer than 65536 bytes"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n", "more than 100 headers"),
])
def test_a_malformed_answer_is_a_protocol_error(scripted, answer, error):
    srv = scripted(answer)
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/")
    with pytest.raises(http1.ProtocolError, match=error):
        c.getresponse()
    c.close()


def test_bad_chunk_size_and_chunked_body_cut_short(scripted):
    srv = scripted((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",))
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/")
    with pytest.raises(http1.ProtocolError, match="not a chunk size"):
        read_all(c.getresponse())
    # a chunk longer than its size said: what follows its data is not the line end
    srv = scripted((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",))
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/")
    with pytest.raises(http1.ProtocolError, match="chunk's data"):
        read_all(c.getresponse())
    srv = scripted((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly",))
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.read1(100) == b"only"
    with pytest.raises(http1.IncompleteRead):
        r.read1(100)


def test_declared_length_cut_short_leaves_length_and_closes(scripted):
    srv = scripted((b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\nshort",))
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    assert read_all(r) == b"short" and r.length == 95 and c.sock is None


def test_server_closing_a_kept_connection_is_a_connection_reset(scripted):
    srv = scripted(None)
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/")
    with pytest.raises(ConnectionResetError):
        c.getresponse()


def test_header_values_cannot_inject_lines(scripted):
    srv = scripted(ok())
    c = http1.Connection("127.0.0.1", srv.port, timeout=5)
    with pytest.raises(ValueError, match="line breaks"):
        c.request("GET", "/", None, {"X": "a\r\nInjected: yes"})
    srv.close()


# -- through kit.influx.HTTP, as the agent and the collector use it ----------------------------

def test_http_client_answers_retries_a_stale_connection_and_cuts(scripted):
    srv = scripted(ok(b"one"), None, ok(b'{"error":"partial write"}', "400 Bad Request"),
                   ok(b"x" * 5000))
    h = HTTP(f"http://127.0.0.1:{srv.port}", timeout_s=5)
    ans, headers = h.request("GET", "/ping")
    assert ans.status == 200 and ans.body == b"one" and headers["Content-Length"] == "3"
    # the server closes the kept connection without answering: one fresh try on a new one
    ans, _ = h.request("POST", "/write", b"m f=1 1")
    assert (ans.status, ans.message) == (400, "partial write") and srv.connections == 2
    ans, _ = h.request("GET", "/big", max_bytes=1000)
    assert ans.cut == CUT_SIZE and len(ans.body) == 1000
    h.close()


def test_http_client_names_a_body_cut_short(scripted):
    srv = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhalf",))
    ans, _ = HTTP(f"http://127.0.0.1:{srv.port}", timeout_s=5).request("GET", "/q")
    assert ans.status == 200 and ans.cut == CUT_CLOSED and ans.body == b"half"


def test_http_client_times_out_on_a_silent_server(scripted):
    srv = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does) and never answers
    try:
        ans, _ = HTTP(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout_s=0.5).request("GET", "/")
        assert ans.status is None and ans.message == "no answer within the timeout"
    finally:
        srv.close()


def test_plain_http_loads_neither_ssl_nor_email(scripted):
    # What the agent forwarding to http:// imports: not OpenSSL (about 4 MB) nor email.
    srv = scripted(ok(b"", "204 No Content"))
    code = ("import sys; from kit.influx import HTTP; "
            f"a, _ = HTTP('http://127.0.0.1:{srv.port}', timeout_s=5).request('POST', '/w', b'x'); "
            "print(a.status, 'ssl' in sys.modules, 'email' in sys.modules, 'http.client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.split() == ["204", "False", "False", "False"], out.stderr
