"""The InfluxDB edge: the token, the server's API version, and the two ways of writing.

* :class:`HTTPWriter` POSTs line protocol over :class:`HTTP` (the standard library alone:
  keep-alive, gzip at level 1, the TLS settings) to ``/api/v2/write`` (InfluxDB 1.8+, 2.x, 3.x,
  Cloud, VictoriaMetrics) or to the v1 ``/write`` endpoint of InfluxDB 1.x older than 1.8, which
  has no ``/api/v2/write``. It is the default (``influx.client = "builtin"``) and the only writer
  for v1.
* :class:`ClientWriter` writes to ``/api/v2/write`` through influxdb-client's *synchronous* write
  API, when ``influx.client = "influxdb-client"``. Its batching mode is never used: it keeps unsent
  points in memory and drops them on exit, on a crash and after its retries. The local store is the
  buffer (:mod:`agent.forward`), and influxdb-client is told not to retry on its own.
  influxdb-client is imported only by this writer (it costs about 24 MB of memory), never otherwise.
* :class:`Sink` picks one: ``influx.api = "auto"`` asks ``/ping`` for ``X-Influxdb-Version``.

A writer never raises for a failed write: it returns an :class:`Answer` (the HTTP status, or None
when no answer came: connection refused, timeout, TLS failure) that :mod:`agent.forward`
classifies. Both v2 writers give the same answers for the same exchange.

The token never appears on a command line, in a log line, an error or ``status``: it is sent in
an ``Authorization`` header only, and every message from the server or a library passes through
:func:`kit.secret.redact` (the token in every form it travels in) before it is cut, stored or
printed: the HTTP client and the influxdb-client writer redact each :class:`Answer` they make.

Longer than the house's 400 lines: the version probe, the HTTP client and the two writers share the
token's redaction and one answer type.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from kit.errors import ConfigError
from kit.influxconfig import InfluxSection, parse_url
from kit.secret import Secret, load as load_secret

TOKEN_ENV = "LINEWATCH_INFLUX_TOKEN"
CREDENTIAL = "influx-token"
USER_AGENT = "linewatch"


# -- the token --------------------------------------------------------------------------------

# The token and where it came from; ``repr`` never shows it, ``redact`` removes it from a text.
Token = Secret


def load_token(section: InfluxSection, env: Mapping[str, str] = os.environ,
               source: str = "config") -> Token:
    """``$LINEWATCH_INFLUX_TOKEN``, else ``influx.token_file``, else the systemd credential
    ``$CREDENTIALS_DIRECTORY/influx-token``, else no token. A token file others can read is a
    warning; a token file that cannot be read is a ConfigError naming the key."""
    return load_secret(env_name=TOKEN_ENV, file=section.token_file, file_key="influx.token_file",
                       credential=CREDENTIAL, env=env, source=source, what="token")


# -- where and how to write -------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A resolved write target: ``api`` v1 or v2, with the names that API wants."""

    api: str
    bucket: str = ""
    org: str = ""
    database: str = ""
    retention_policy: str = ""

    def describe(self) -> str:
        if self.api == "v1":
            rp = f", retention policy {self.retention_policy}" if self.retention_policy else ""
            return f"v1 /write, database {self.database}{rp}"
        org = f", org {self.org}" if self.org else ""
        return f"v2 /api/v2/write, bucket {self.bucket}{org}"


def target_for(section: InfluxSection, api: str) -> Target:
    """The names for ``api`` from the config: a v1 database from ``bucket`` "db/rp" when no
    database is set, and the v2 bucket "db/rp" from the database for InfluxDB 1.8+."""
    if api == "v1":
        db, rp = section.database, section.retention_policy
        if not db and section.bucket:
            db, _, rp2 = section.bucket.partition("/")
            rp = rp or rp2
        return Target("v1", database=db, retention_policy=rp)
    bucket = section.bucket
    if not bucket:
        bucket = f"{section.database}/{section.retention_policy}"
    return Target("v2", bucket=bucket, org=section.org)


_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)")


def api_for_version(version: str | None) -> str:
    """v1 for InfluxDB 1.x older than 1.8 (no /api/v2/write), v2 for everything else, including
    servers that do not say (VictoriaMetrics, proxies, InfluxDB 3 without the header)."""
    m = _VERSION_RE.match(version or "")
    if m and int(m.group(1)) == 1 and int(m.group(2)) < 8:
        return "v1"
    return "v2"


# Cuts of an answer's body (Answer.cut): it went past the request's size limit, it did not
# arrive in full within the request's deadline, or the server closed the connection early.
CUT_SIZE, CUT_TIME, CUT_CLOSED = "size", "time", "closed"
MAX_BODY_BYTES = 1 << 20   # writes and /ping: an answer is a status and a short message


@dataclass(frozen=True)
class Answer:
    """What came back from one request: ``status`` None means no HTTP answer at all. ``cut``
    says why ``body`` is not the whole answer (CUT_SIZE, CUT_TIME, CUT_CLOSED), "" when it is."""

    status: int | None
    message: str = ""
    retry_after: str | None = None
    body: bytes = field(default=b"", repr=False, compare=False)  # the answer's body (queries read it)
    cut: str = field(default="", compare=False)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


MESSAGE_CHARS = 500  # of a server's message kept for the log, status and check


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """A server's words made safe to print: one line (whitespace runs become one space), no
    control characters (a terminal's escape sequences among them), at most ``limit``
    characters."""
    flat = " ".join(str(text).split())
    return "".join(c if c.isprintable() else "?" for c in flat[:limit])


def server_message(body: bytes | str | None, headers: Mapping[str, str] | None = None,
                   redact: Callable[[str], str] = lambda text: text) -> str:
    """The useful part of an error answer: v2's ``message``, v1's ``error``, else the text; one
    line of at most :data:`MESSAGE_CHARS` characters, cut only after ``redact`` removed the
    token from all of it (a cut first could leave part of the token where no redaction finds it)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    return one_line(redact(_message_of(text, headers)))


def _message_of(text: str, headers: Mapping[str, str] | None) -> str:
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            for key in ("message", "error"):
                if isinstance(data.get(key), str):
                    return data[key]
    except (ValueError, RecursionError):
        pass
    if not text.strip() and headers:
        for h in ("X-Influxdb-Error", "X-Platform-Error-Code"):
            for k, v in headers.items():
                if k.lower() == h.lower():
                    return str(v)
    return text


class HTTP:
    """A small keep-alive HTTP(S) client on the standard library, for ``/ping``, the checks, the
    collector's queries and the builtin writer. Errors come back as an :class:`Answer` with status
    None, never as exceptions."""

    def __init__(self, url: str, *, timeout_s: float, verify_tls: bool = True, ca_file: str = "",
                 auth: str | None = None,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        """``redact`` removes the credential ``auth`` carries from every message an
        :class:`Answer` holds (the server's, or a network error's)."""
        parts = urlsplit(parse_url(url))
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self.auth = auth
        self.redact = redact
        self._conn = None

    def _connection(self):
        if self._conn is None:
            if self.https:
                # deferred, https only: http.client imports ssl, which loads OpenSSL (about 4 MB)
                import http.client
                import ssl

                ctx = ssl.create_default_context(cafile=self.ca_file or None)
                if not self.verify_tls:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s,
                                                         context=ctx)
            else:
                # deferred like http.client: plain HTTP loads neither OpenSSL nor email
                from kit.http1 import Connection

                self._conn = Connection(self.host, self.port, timeout=self.timeout_s)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, *, max_bytes: int = MAX_BODY_BYTES,
                deadline_s: float | None = None) -> tuple[Answer, dict[str, str]]:
        """One request. At most ``max_bytes`` of the answer's body are read (a longer one is cut:
        ``Answer.cut`` CUT_SIZE, the connection closed). ``deadline_s``: the whole exchange,
        from connecting to the body's last byte, gets that long (else CUT_TIME, status None);
        without it only each silence is bounded (``timeout_s``), so a server sending a byte now
        and then could keep the caller forever."""
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        if self.auth:
            hdrs["Authorization"] = self.auth
        expired = threading.Event()
        timer = None
        if deadline_s is not None:
            timer = threading.Timer(deadline_s, self._expire, (expired,))
            timer.daemon = True
            timer.start()
        try:
            return self._exchange(method, path, body, hdrs, max_bytes, expired, deadline_s)
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, expired: threading.Event) -> None:
        """The deadline passed: unblock whatever read is waiting by shutting the socket."""
        expired.set()
        sock = getattr(self._conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _exchange(self, method, path, body, hdrs, max_bytes, expired, deadline_s):
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=body, headers=hdrs)
                if expired.is_set():   # it passed while connecting, before there was a socket
                    raise TimeoutError("deadline")
                resp = conn.getresponse()
                data, cut = _read_body(resp, max_bytes, expired)
                if cut == CUT_TIME:
                    raise TimeoutError("deadline")
                got = {k: v for k, v in resp.getheaders()}
                if cut or resp.getheader("Connection", "").lower() == "close":
                    self.close()   # the rest of a cut answer is never read
                ans = Answer(resp.status, "" if 200 <= resp.status < 300
                             else server_message(data, got, self.redact),
                             resp.getheader("Retry-After"), data, cut)
                return ans, got
            except (ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                # A kept-alive connection the server closed meanwhile: one fresh try. A write is
                # idempotent, so sending it again is safe.
                if attempt == 0 and not expired.is_set():
                    continue
                if expired.is_set():
                    break
                return Answer(None, describe_error(exc, self.redact)), {}
            except Exception as exc:  # noqa: BLE001 - every failure becomes an Answer
                self.close()
                if expired.is_set():
                    break
                return Answer(None, describe_error(exc, self.redact)), {}
        return Answer(None, f"no complete answer within {deadline_s:g} s", cut=CUT_TIME), {}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _read_body(resp, max_bytes: int, expired: threading.Event) -> tuple[bytes, str]:
    """The body, read a piece at a time (``read1``: at most one read from the socket each, so
    a deadline stops a server that trickles), and why it is cut short ("" when whole)."""
    parts: list[bytes] = []
    n = 0
    while True:
        if expired.is_set():
            return b"".join(parts), CUT_TIME
        try:
            piece = resp.read1(min(1 << 16, max_bytes + 1 - n))
        except Exception as exc:
            # a chunked body cut short: IncompleteRead of http.client (https) or of kit.http1
            if type(exc).__name__ != "IncompleteRead":
                raise
            parts.append(exc.partial)  # type: ignore[attr-defined]
            return b"".join(parts), CUT_CLOSED
        if not piece:
            break
        parts.append(piece)
        n += len(piece)
        if n > max_bytes:
            return b"".join(parts)[:max_bytes], CUT_SIZE
    if expired.is_set():
        return b"".join(parts), CUT_TIME
    if resp.length:  # a declared length the connection ended short of (read1 returns b"")
        return b"".join(parts), CUT_CLOSED
    resp.close()     # done: the connection may carry the next request
    return b"".join(parts), ""


def describe_error(exc: BaseException,
                   redact: Callable[[str], str] = lambda text: text) -> str:
    """A short, token-free description of a network failure (``redact`` runs before the cut)."""
    name = type(exc).__name__
    text = redact(str(exc))
    if isinstance(exc, TimeoutError) or "timed out" in text.lower() or "Timeout" in name:
        return "no answer within the timeout"
    if isinstance(exc, ConnectionRefusedError) or "refused" in text.lower():
        return "connection refused"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "TLS certificate not trusted (influx.ca_file, or verify_tls = false for a test server)"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "host name does not resolve"
    if "Network is unreachable" in text or "No route to host" in text:
        return "network unreachable"
    return f"{name}: {text}"[:300]


def auth_header(token: str | None, api: str) -> str | None:
    """``Token <token>`` for v2; for v1 ``user:password`` goes as HTTP Basic (never as the u/p
    query parameters, which end up in proxies' and servers' access logs)."""
    if not token:
        return None
    if api == "v1":
        if ":" in token:
            return "Basic " + base64.b64encode(token.encode()).decode()
        return "Token " + token
    return "Token " + token


def write_path(target: Target) -> str:
    """The write request's path and query: ``/write?db=..&precision=ns[&rp=..]`` for v1,
    ``/api/v2/write?org=..&bucket=..&precision=ns`` for v2 (org ``-`` when none is set, as
    influxdb-client sends it: InfluxDB 1.8 and 3.x ignore it)."""
    if target.api == "v1":
        q = f"/write?db={quote(target.database, safe='')}&precision=ns"
        if target.retention_policy:
            q += f"&rp={quote(target.retention_policy, safe='')}"
        return q
    return (f"/api/v2/write?org={quote(target.org or '-', safe='')}"
            f"&bucket={quote(target.bucket, safe='')}&precision=ns")


class HTTPWriter:
    """``POST`` the lines to :func:`write_path` over :class:`HTTP` (the builtin client): one
    kept-alive connection, gzip at level 1 (on 5,000 of the agent's rows: a sixth of the CPU time
    of level 9, which influxdb-client uses, for 1.25x its bytes), the token in the
    ``Authorization`` header the :class:`HTTP` carries."""

    def __init__(self, http: HTTP, target: Target, gzip: bool) -> None:
        self.http = http
        self.target = target
        self.gzip = gzip
        self.path = write_path(target)

    def send(self, body: bytes) -> Answer:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            import gzip  # deferred: the agent imports this module for [influx] alone (no server)

            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        ans, _ = self.http.request("POST", self.path, body, headers)
        return ans

    def close(self) -> None:
        self.http.close()


class ClientWriter:
    """influxdb-client's synchronous write API: ``POST /api/v2/write?bucket=..&org=..``
    (``influx.client = "influxdb-client"``)."""

    def __init__(self, url: str, target: Target, token: Token, *, timeout_s: float,
                 verify_tls: bool, ca_file: str, gzip: bool) -> None:
        try:
            # deferred: influxdb-client costs about 24 MB, paid only when it is chosen
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS
        except ImportError as exc:  # the config check looks first; an installation may still break
            raise ConfigError("config", "influx.client", f'"influxdb-client" cannot be imported '
                              f'({exc}): pip install influxdb-client, or use "builtin"') from exc

        self.target = target
        self.redact = token.redact
        # retries=False: the forwarder decides about retries, from the status, with its backoff.
        self.client = InfluxDBClient(url=url, token=token.value or None, org=target.org or "-",
                                     timeout=int(timeout_s * 1000), enable_gzip=gzip,
                                     verify_ssl=verify_tls, ssl_ca_cert=ca_file or None,
                                     retries=False)
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def send(self, body: bytes) -> Answer:
        from influxdb_client.rest import ApiException  # deferred: loaded by __init__ already

        try:
            self.api.write(bucket=self.target.bucket, org=self.target.org or "-", record=body,
                           write_precision="ns")
        except ApiException as exc:
            if not exc.status:  # influxdb-client reports TLS failures as status 0
                return Answer(None, describe_error(Exception(exc.reason), self.redact))
            headers = dict(exc.headers or {})
            retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
            return Answer(exc.status, server_message(exc.body, headers, self.redact), retry)
        except Exception as exc:  # noqa: BLE001 - urllib3's network errors, OSError
            return Answer(None, describe_error(_root_cause(exc), self.redact))
        return Answer(204)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing must not fail the caller
            pass


def _root_cause(exc: BaseException) -> BaseException:
    """urllib3 wraps the socket error (MaxRetryError -> NewConnectionError -> OSError)."""
    seen = exc
    for _ in range(5):
        nxt = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if not isinstance(nxt, BaseException):
            break
        seen = nxt
    return seen


@dataclass(frozen=True)
class Server:
    """What ``/ping`` said."""

    version: str | None
    api: str


class Sink:
    """The configured server: detects the API once (``auto``), then writes lines through the
    matching writer. ``send`` takes the joined lines (UTF-8) and returns an :class:`Answer`."""

    def __init__(self, section: InfluxSection, token: Token) -> None:
        self.section = section
        self.url = parse_url(section.url)
        self._token = token
        self.server: Server | None = None
        self.target: Target | None = None
        self._writer = None

    def redact(self, text: str) -> str:
        """``text`` without the token in any form (the writers and :meth:`http`'s clients
        already apply it to every message they return)."""
        return self._token.redact(text)

    def http(self, api: str = "v2", timeout_s: float | None = None) -> HTTP:
        """A client for the server; ``timeout_s`` bounds each silence (default
        ``influx.timeout_s``, the write's: a query that aggregates for minutes says so)."""
        s = self.section
        return HTTP(self.url, timeout_s=timeout_s or s.timeout_s, verify_tls=s.verify_tls,
                    ca_file=s.ca_file, auth=auth_header(self._token.value, api),
                    redact=self._token.redact)

    def ping(self) -> tuple[Answer, str | None]:
        """``GET /ping``: the answer and the server's version header, if any."""
        h = self.http()
        try:
            ans, headers = h.request("GET", "/ping")
        finally:
            h.close()
        version = next((v for k, v in headers.items() if k.lower() == "x-influxdb-version"), None)
        return ans, version

    def resolve(self) -> Answer | None:
        """Pick the API (asking /ping when ``auto``); None when done, else the failed answer."""
        if self._writer is not None:
            return None
        api = self.section.api
        version = None
        if api == "auto":
            ans, version = self.ping()
            if ans.status is None:
                return ans
            api = api_for_version(version)
        self.server = Server(version, api)
        self.target = target_for(self.section, api)
        s = self.section
        if api == "v2" and s.client == "influxdb-client":
            self._writer = ClientWriter(self.url, self.target, self._token, timeout_s=s.timeout_s,
                                        verify_tls=s.verify_tls, ca_file=s.ca_file, gzip=s.gzip)
        else:
            self._writer = HTTPWriter(self.http(api), self.target, s.gzip)
        return None

    def send(self, body: bytes) -> Answer:
        failed = self.resolve()
        if failed is not None:
            return failed
        return self._writer.send(body)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
