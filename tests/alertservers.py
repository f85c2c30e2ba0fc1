"""Real HTTP servers on 127.0.0.1 that play the services alerts go to, for tests/test_alerts_web.py.

Each double checks a request the way its service documents it and answers as the service does,
over a real socket (``ThreadingHTTPServer`` in a daemon thread, port 0, TLS when given a context):

* :class:`NtfyDouble`: ``POST /<topic>``; the X-Title (decoded as ntfy decodes RFC 2047 encoded
  words), X-Priority and X-Tags headers; an access token (``Bearer``) or user and password
  (``Basic``) when it has them: none is 403 ``{"code":40301,...}``, a wrong one 401
  ``{"code":40101,"http":401,"error":"unauthorized"}``. A published message is answered with
  ntfy's JSON (``id``, ``time``, ``event: "message"``, ``topic``, ...). A body over 4096 bytes
  becomes an attachment, as on ntfy, and is recorded as one.
* :class:`TelegramDouble`: ``POST /bot<token>/sendMessage`` with a JSON body: an unknown token is
  401 ``Unauthorized``, an unknown chat 400 ``Bad Request: chat not found``, text over 4096
  characters 400 ``Bad Request: message is too long``; else ``{"ok":true,"result":{...}}``.
* :class:`WebhookDouble`: any POST of a JSON object, a Bearer token checked when it has one.
* :class:`UptimeKumaDouble` (``GET /api/push/<token>?status=up&msg=OK`` answers ``{"ok":true}``,
  an unknown token 404 ``{"ok":false,"msg":"Monitor not found or not active."}``) and
  :class:`HealthchecksDouble` (``GET /ping/<uuid>`` answers ``OK``, an unknown one 404
  ``not found``).

Every request is recorded (:attr:`Server.requests`), and a test scripts other answers with
:meth:`Server.script` (one :class:`Reply` per request, in order): a 429 with Retry-After, a 500,
a redirect, a body that is not the service's, or ``hang=True`` (nothing until the server stops).
Problems with a request's form are recorded in :attr:`Server.problems` as well as answered as
the service would, so a test can assert there were none.

:func:`certificates` makes a test CA and a certificate it signed for 127.0.0.1 and localhost, with
openssl (as tests/censorlab.py does for its names).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from email.header import decode_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def certificates(d: Path) -> tuple[Path, Path, Path]:
    """A test CA, and a certificate it signed for IP 127.0.0.1 and localhost: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr",
                                                   "srv.pem"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=linewatch alerts test CA", "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key),
            "-out", str(csr))
    ext = d / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


@dataclass
class Request:
    """One request as the server read it; header names in lower case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """One answer: ``body`` bytes or text as it is, a dict or list as JSON. ``hang``: answer
    nothing until the server stops."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, (dict, list)):
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.body).encode(), headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode(), headers
        return self.body, headers


class Server:
    """A real HTTP(S) server on 127.0.0.1 (or ``host``/``port`` when a lab sets them);
    subclasses answer in :meth:`respond`; ``on_request`` (when set) hears each request with
    the status it was answered."""

    host, port = "127.0.0.1", 0

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.on_request: Any = None
        self.requests: list[Request] = []
        self.problems: list[str] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    # -- what a subclass does --
    def respond(self, req: Request) -> Reply:
        return Reply(204)

    def problem(self, text: str, reply: Reply) -> Reply:
        self.problems.append(text)
        return reply

    # -- what a test does --
    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    @property
    def url(self) -> str:
        assert self._httpd is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self._httpd.server_address[1]}"

    def __enter__(self) -> Server:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                if owner.tls is not None:
                    self.request.settimeout(10)
                    self.request = owner.tls.wrap_socket(self.request, server_side=True)
                super().setup()

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    if owner.tls is not None:
                        self.request.close()   # the server closes the socket it gave, not this one

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                u = urlsplit(self.path)
                req = Request(self.command, u.path, parse_qs(u.query, keep_blank_values=True),
                              {k.lower(): v for k, v in self.headers.items()}, body)
                with owner._lock:
                    owner.requests.append(req)
                    scripted = owner._script.popleft() if owner._script else None
                reply = scripted or owner.respond(req)
                if reply.hang:
                    owner._stop.wait(30)
                    self.close_connection = True
                    return
                data, headers = reply.encoded()
                if owner.on_request is not None:
                    owner.on_request(owner, req, reply.status)
                self.send_response(reply.status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _any

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that refuses the certificate, or hangs up: nothing to print

        self._httpd = Quiet((self.host, self.port), Handler)
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()


def _basic(header: str) -> tuple[str, str] | None:
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


def ntfy_error(http: int, code: int, error: str) -> Reply:
    return Reply(http, {"code": code, "http": http, "error": error,
                        "link": "https://ntfy.sh/docs/publish/"})


class NtfyDouble(Server):
    """An ntfy server with one topic; ``token``, or ``user`` and ``password``, protect it."""

    PRIORITIES = frozenset({"1", "2", "3", "4", "5", "min", "low", "default", "high", "max", "urgent"})

    def __init__(self, topic: str = "linewatch-k7Q2xw", *, token: str | None = None,
                 user: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.topic, self.token, self.user, self.password = topic, token, user, password
        self.published: list[dict[str, Any]] = []

    @staticmethod
    def decode(value: str) -> str:
        """A header as ntfy reads it: RFC 2047 encoded words decoded, else as it is."""
        return "".join(part.decode(cs or "utf-8") if isinstance(part, bytes) else part
                       for part, cs in decode_header(value))

    def respond(self, req: Request) -> Reply:
        if req.method not in ("POST", "PUT"):
            return self.problem(f"method {req.method}", ntfy_error(405, 40501, "method not allowed"))
        if req.path != f"/{self.topic}":
            return self.problem(f"path {req.path}", ntfy_error(404, 40401, "page not found"))
        auth = req.headers.get("authorization", "")
        if self.token or self.user:
            if not auth:
                return ntfy_error(403, 40301, "forbidden")
            good = (auth == f"Bearer {self.token}" if self.token
                    else _basic(auth) == (self.user, self.password))
            if not good:
                return ntfy_error(401, 40101, "unauthorized")
        priority = req.headers.get("x-priority", "3")
        if priority not in self.PRIORITIES:
            return self.problem(f"priority {priority}", ntfy_error(400, 40007, "invalid priority"))
        for h in ("x-title", "x-priority", "x-tags"):
            if h not in req.headers:
                self.problems.append(f"no {h}")
        attachment = len(req.body) > 4096
        if attachment:
            self.problems.append(f"a body of {len(req.body)} bytes became an attachment")
        message = {
            "id": f"hD{len(self.published):04d}xYz", "time": 1709647200, "expires": 1709690400,
            "event": "message", "topic": self.topic,
            "title": self.decode(req.headers.get("x-title", "")),
            "message": "" if attachment else req.body.decode("utf-8"),
            "priority": int(priority) if priority.isdigit() else 3,
            "tags": [t for t in req.headers.get("x-tags", "").split(",") if t],
        }
        self.published.append(message)
        return Reply(200, message)


def telegram_error(code: int, description: str, **parameters: Any) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(code, body)


class TelegramDouble(Server):
    """The Bot API's sendMessage for one bot (``token``) and the chats it is in."""

    def __init__(self, token: str, chats: tuple[int | str, ...] = (123456789,), *,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.token, self.chats = token, {str(c) for c in chats}
        self.sent: list[dict[str, Any]] = []

    def respond(self, req: Request) -> Reply:
        parts = req.path.split("/")
        if len(parts) != 3 or not parts[1].startswith("bot") or parts[2] != "sendMessage":
            return self.problem(f"path {req.path}", telegram_error(404, "Not Found"))
        if parts[1][3:] != self.token:
            return telegram_error(401, "Unauthorized")
        if req.method != "POST":
            self.problems.append(f"method {req.method}")
        if not req.headers.get("content-type", "").startswith("application/json"):
            return self.problem("not JSON", telegram_error(400, "Bad Request: message text is empty"))
        msg = req.json()
        if str(msg.get("chat_id")) not in self.chats:
            return telegram_error(400, "Bad Request: chat not found")
        text = msg.get("text") or ""
        if not text:
            return self.problem("no text", telegram_error(400, "Bad Request: message text is empty"))
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self.problem("text too long", telegram_error(400, "Bad Request: message is too long"))
        self.sent.append(msg)
        return Reply(200, {"ok": True, "result": {
            "message_id": 100 + len(self.sent), "date": 1709647200, "text": text,
            "from": {"id": 1, "is_bot": True, "first_name": "linewatch", "username": "lw_bot"},
            "chat": {"id": msg["chat_id"], "type": "private"}}})


class WebhookDouble(Server):
    """A receiver of JSON objects, with a Bearer token when ``token`` is set."""

    def __init__(self, token: str | None = None, *, status: int = 204,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.token, self.status = token, status

    def respond(self, req: Request) -> Reply:
        if req.method != "POST":
            return self.problem(f"method {req.method}", Reply(405))
        if self.token and req.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"error": "invalid token"})
        try:
            obj = req.json()
        except ValueError:
            return self.problem("not JSON", Reply(400, {"error": "not JSON"}))
        if not isinstance(obj, dict):
            return self.problem("not an object", Reply(400, {"error": "not an object"}))
        return Reply(self.status, b"" if self.status == 204 else {"received": obj["id"]})


class UptimeKumaDouble(Server):
    """Uptime Kuma's push monitors: ``GET /api/push/<token>``."""

    def __init__(self, token: str, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.token = token

    def respond(self, req: Request) -> Reply:
        prefix = "/api/push/"
        if req.method != "GET":
            self.problems.append(f"method {req.method}")
        if req.path.startswith(prefix) and req.path[len(prefix):] == self.token:
            return Reply(200, {"ok": True})
        return Reply(404, {"ok": False, "msg": "Monitor not found or not active."})


class HealthchecksDouble(Server):
    """healthchecks.io-style checks: ``GET /ping/<uuid>`` (and ``/start``, ``/fail``)."""

    def __init__(self, uuid: str, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.uuid = uuid

    def respond(self, req: Request) -> Reply:
        parts = req.path.strip("/").split("/")
        if parts[:2] == ["ping", self.uuid] and len(parts) <= 3:
            return Reply(200, "OK")
        return Reply(404, "not found")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

