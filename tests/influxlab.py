"""Real time-series servers for tests and benchmarks, each inside one temp dir, on 127.0.0.1 only.

Follows ../shared/TESTBED.md ("InfluxDB and friends"): no InfluxDB 2.x/3.x exists here, so

- :class:`InfluxV1` is Debian's ``influxdb`` 1.6.7 (``/usr/bin/influxd``): ``/ping``, ``/write``
  (v1 line protocol) and ``/query`` (InfluxQL), optionally with authentication. It has no
  ``/api/v2/write``.
- :class:`VictoriaMetrics` is Debian's ``victoria-metrics`` 1.79.5: an independent ingest server
  that accepts line protocol on ``/api/v2/write`` (the path influxdb-client uses) and ``/write``,
  and shows what arrived on ``/api/v1/export``.

Both run as children of this process in their own session and are stopped on ``close()``.

What influxd 1.6.7 does here (measured, and why the code below is shaped this way):

- Started with ``-config FILE`` it answers ``GET /ping`` with 204 after 0.02 to 0.06 s (header
  ``X-Influxdb-Version: 1.6.7~rc0``); SIGTERM stops it in a few ms; ``create`` with users and a
  database takes about 0.25 s. ``/api/v2/write``: 404 "404 page not found".
- ``INFLUXDB_*`` environment variables override the config file, so the child gets none.
- With ``wal-fsync-delay = "0s"`` every acknowledged write (204) is in the WAL: after SIGKILL and a
  restart the point is there.
- The same series and timestamp written twice is one point (the later write overwrites it).
- ``auth-enabled = true``: until a user exists every query is refused ("create admin user first
  or disable authentication") except ``CREATE USER ... WITH ALL PRIVILEGES``; so :meth:`InfluxV1.
  create` makes the admin first, then the database. A write without credentials: 401 and
  ``{"error":"unable to parse authentication credentials"}``; wrong password: 401
  ``{"error":"authorization failed"}``; a write-only user's SELECT: 403 ("requires READ").
  Passwords are InfluxQL string literals: ``'`` and ``\\`` are escaped with a backslash (a
  doubled ``''`` is a syntax error). Ours hold a quote, a backslash, a space and ``:`` on purpose.
- A write to a missing database: 404, ``{"error":"database not found: \\"x\\""}`` and the same
  text in an ``X-Influxdb-Error`` header. A bad query: HTTP 400 with a top-level "error"; a query
  on a missing database: HTTP 200 with the "error" inside ``results[i]`` -- :meth:`InfluxV1.query`
  raises :class:`InfluxError` for both.

What victoria-metrics 1.79.5 does here (measured):

- ``-retentionPeriod``, ``-dedup.minScrapeInterval``, ``-loggerLevel`` and
  ``/internal/force_flush`` all exist in this version (``victoria-metrics -help``); no flag had to
  be replaced. ``-version`` prints nothing. ``/health`` answers 200 "OK" and ``/ping`` 204 about
  0.05 s after the start; SIGTERM stops it in about 0.02 s.
- The default retention (1 month) silently drops older points: HTTP 204, only a WARN line in
  the log ("too small timestamp ... outside the retention"). Points more than 2 days in the future
  are dropped the same way. Hence ``-retentionPeriod=100y`` by default.
- Series are named ``measurement_field`` (``ping,target=a rtt_avg_ms=1.5`` becomes
  ``ping_rtt_avg_ms{target="a"}``); ``bucket``/``org`` add no label on ``/api/v2/write``, but
  ``/write?db=x`` adds the label ``db="x"``; no ``precision`` means nanoseconds; timestamps are
  trimmed to milliseconds.
- Booleans are stored as 1/0. String fields are NOT ignored in this version: each becomes a
  series ``measurement_field`` with the value 0.
- Lines are split on raw newlines even inside quoted string fields: such a line is cut in two,
  both halves fail to parse and are dropped (ERROR in the log) while the request still gets 204.
  A syntax error anywhere (``v=abc``) likewise drops just that line, still 204.
- Without ``/internal/force_flush`` a point on a NEW series showed in ``/api/v1/export`` only
  after 2 to 9.4 s, one on an existing series after about 0.6 s; after a force_flush it shows at
  once. And export's default ``end`` (now) hid a point stamped "now" for up to 1 s, so
  :meth:`VictoriaMetrics.export` flushes and asks up to two days ahead.
- ``-dedup.minScrapeInterval=1ms`` (``dedup=True``): the same point sent four times (values
  changed) is one sample, the last value -- like InfluxDB's overwrite. It also merges two
  different points of one series within the same millisecond.
- SIGTERM flushes: all data is back after a restart. SIGKILL loses acknowledged points for several
  seconds, even after a force_flush (seen: lost when killed 6 s after the write, kept at 8 s).

Use::

    with InfluxV1.create(tmp_path / "influx") as db:
        urlopen(Request(f"{db.url}/write?db={db.database}", data=b"m v=1", method="POST"))
        assert db.count("m", "v") == 1

    with VictoriaMetrics.create(tmp_path / "vm") as vm:
        ...  # POST line protocol to f"{vm.url}/api/v2/write"
        assert vm.count("m_v") == 1
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.nutlab import free_port

INFLUXD = Path("/usr/bin/influxd")
VICTORIA_METRICS = Path("/usr/bin/victoria-metrics")

# Fixed, so that a failing test can be replayed by hand with curl. A quote, a backslash, a space
# and ':' exercise quoting in InfluxQL and in Basic auth (split at the first ':').
ADMIN = ("admin", "adm'n \\pass:1")
WRITER = ("writer", 'wr1ter p@ss:"w"')


def influx_unavailable() -> str | None:
    """Why an InfluxDB 1.x server cannot be started here, or None when it can."""
    if not os.access(INFLUXD, os.X_OK):
        return f"InfluxDB 1.x is not installed ({INFLUXD} missing): apt-get install influxdb"
    return None


def vm_unavailable() -> str | None:
    """Why a VictoriaMetrics server cannot be started here, or None when it can."""
    if not os.access(VICTORIA_METRICS, os.X_OK):
        return (f"VictoriaMetrics is not installed ({VICTORIA_METRICS} missing): "
                "apt-get install victoria-metrics")
    return None


class InfluxError(RuntimeError):
    """An InfluxQL query failed (HTTP error or an "error" in the answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message if status is None else f"HTTP {status}: {message}")
        self.status = status


# -- helpers shared by both servers ---------------------------------------------------------------
def _http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
          timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of one request; HTTP errors are answers too, not exceptions."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _port_taken(port: int) -> bool:
    """Whether another process listens on ``port``. With SO_REUSEADDR, as both servers (Go) bind:
    without it the TIME_WAIT connections our own requests leave behind would count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _signal(proc: subprocess.Popen | None, sig: int, timeout_s: float = 15.0) -> None:
    """Send ``sig`` to one child we started (its own process group) and wait for it; SIGKILL if it
    lingers past ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class _Child:
    """A server process with a log file in ``dir``; subclasses say how to spawn and probe it."""

    name = "server"
    log_name = "server.log"

    def __init__(self, root: Path) -> None:
        self.dir = Path(root)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._owned_dir: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_text(self, last_chars: int | None = None) -> str:
        """The server's log (stdout and stderr), or its last ``last_chars`` characters."""
        try:
            text = (self.dir / self.log_name).read_text(errors="replace")
        except OSError:
            return ""
        return text if last_chars is None else text[-last_chars:]

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _ports(self) -> list[int]:
        return [self.port]

    def _new_ports(self) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the server (again) and wait until it answers. Same ports, dirs and flags as
        before, unless another process took a port meanwhile: then it moves to new ones.
        Raises RuntimeError with the log's last lines when it does not come up."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        for _attempt in range(3):
            if any(_port_taken(p) for p in self._ports()):
                self._new_ports()
            with open(self.dir / self.log_name, "ab") as out:
                # A new session: a ^C in the test runner does not reach the server before close().
                self.proc = subprocess.Popen(self._argv(), env=self._env(),
                                             stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + timeout_s
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self._ready():
                    if self.proc.poll() is None:  # not another server answering on our port
                        return
                    break
                time.sleep(0.02)
            _signal(self.proc, signal.SIGKILL)
            if not any(_port_taken(p) for p in self._ports()):
                break  # it failed for another reason than a port taken meanwhile
        raise RuntimeError(f"{self.name} did not start within {timeout_s} s "
                           f"(log {self.dir / self.log_name}):\n{self._log_tail()}")

    def stop(self) -> None:
        """SIGTERM and wait: a graceful stop (both servers flush their data)."""
        _signal(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait: a crash or power loss of the server."""
        _signal(self.proc, signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop the server (if running); remove the directory if ``create`` made it. Idempotent."""
        self.stop()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None


def _prepare_root(root: Path | None, prefix: str) -> tuple[Path, str | None]:
    if root is None:
        owned = tempfile.mkdtemp(prefix=prefix)
        return Path(owned), owned
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return root, None


# -- InfluxDB 1.x ---------------------------------------------------------------------------------
def ql_string(text: str) -> str:
    """An InfluxQL string literal ('...', with ' and \\ escaped by a backslash)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ql_ident(name: str) -> str:
    """An InfluxQL quoted identifier ("...")."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxV1(_Child):
    """InfluxDB 1.6.7 on 127.0.0.1:``port`` (HTTP) with its data in ``dir``. Build it with
    :meth:`create`; ``close()`` (or ``with``) stops it.

    With ``auth=True``: ``admin`` is :data:`ADMIN` (all privileges) and ``writer`` is
    :data:`WRITER` (WRITE on ``database`` only); both are None without auth.
    """

    name = "influxd"
    log_name = "influxd.log"

    def __init__(self, root: Path, database: str = "linewatch", auth: bool = False) -> None:
        super().__init__(root)
        self.database = database
        self.auth = auth
        self.rpc_port = 0
        self.config = self.dir / "influxdb.conf"
        self.admin: tuple[str, str] | None = ADMIN if auth else None
        self.writer: tuple[str, str] | None = WRITER if auth else None

    @classmethod
    def create(cls, root: Path | None = None, database: str = "linewatch", auth: bool = False,
               timeout_s: float = 20.0) -> InfluxV1:
        """Configure and start a server in ``root`` (a new temp dir when None), then create
        ``database`` (and, with ``auth``, the users). Raises RuntimeError with the log's last
        lines when influxd does not answer /ping within ``timeout_s``."""
        root, owned = _prepare_root(root, "influxlab-")
        server = cls(root, database=database, auth=auth)
        server._owned_dir = owned
        try:
            server._new_ports()
            server.start(timeout_s)
            if auth:
                user, password = ADMIN
                server.query(f"CREATE USER {ql_ident(user)} WITH PASSWORD {ql_string(password)} "
                             "WITH ALL PRIVILEGES", db="")
            server.query(f"CREATE DATABASE {ql_ident(database)}", db="")
            if auth:
                user, password = WRITER
                server.query(f"CREATE USER {ql_ident(user)} WITH PASSWORD {ql_string(password)}",
                             db="")
                server.query(f"GRANT WRITE ON {ql_ident(database)} TO {ql_ident(user)}", db="")
        except BaseException:
            server.close()
            raise
        return server

    def _new_ports(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()
        while self.rpc_port == self.port:
            self.rpc_port = free_port()
        self._write_config()

    def _ports(self) -> list[int]:
        return [self.port, self.rpc_port]

    def _write_config(self) -> None:
        d = self.dir
        self.config.write_text(f"""\
reporting-enabled = false
# The RPC service (backup/restore).
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d / 'meta'}"
  retention-autocreate = true
  logging-enabled = true

[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  # fsync every write before answering: an acknowledged point survives SIGKILL.
  wal-fsync-delay = "0s"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {'true' if self.auth else 'false'}
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  log-enabled = false

[logging]
  suppress-logo = true
""")

    def _argv(self) -> list[str]:
        return [str(INFLUXD), "-config", str(self.config)]

    def _env(self) -> dict[str, str]:
        # influxd lets INFLUXDB_<SECTION>_<KEY> variables override the config file.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _ready(self) -> bool:
        try:
            return _http("GET", f"{self.url}/ping", timeout=1.0)[0] == 204
        except OSError:
            return False

    # -- queries ----------------------------------------------------------------------------------
    def query(self, q: str, db: str | None = None, *, epoch: str | None = None) -> dict:
        """POST ``q`` to /query (as the admin when auth is on) and return the decoded answer.
        ``db`` defaults to :attr:`database`; ``db=""`` sends none. ``epoch`` ("ns", "ms", "s")
        returns times as integers instead of RFC 3339 strings. Raises :class:`InfluxError` on an
        HTTP error or an "error" anywhere in the answer."""
        form = {"q": q}
        db = self.database if db is None else db
        if db:
            form["db"] = db
        if epoch:
            form["epoch"] = epoch
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.admin is not None:
            headers["Authorization"] = _basic(*self.admin)
        status, body = _http("POST", f"{self.url}/query",
                             data=urllib.parse.urlencode(form).encode(), headers=headers)
        try:
            answer = json.loads(body or b"{}")
        except ValueError:
            raise InfluxError(body.decode(errors="replace")[:500], status) from None
        if "error" in answer:
            raise InfluxError(answer["error"], status)
        if status >= 300:
            raise InfluxError(body.decode(errors="replace")[:500], status)
        for result in answer.get("results", []):
            if "error" in result:
                raise InfluxError(result["error"])
        return answer

    def series(self, q: str, db: str | None = None, *, epoch: str | None = None) -> list[dict]:
        """The ``series`` of the first statement's result (``name``, ``columns``, ``values``,
        ``tags`` when grouped); an empty list when there are none."""
        results = self.query(q, db, epoch=epoch).get("results") or [{}]
        return results[0].get("series", [])

    def count(self, measurement: str, field: str, db: str | None = None) -> int:
        """How many values ``field`` of ``measurement`` has over all its series (0 when none)."""
        found = self.series(f"SELECT count({ql_ident(field)}) FROM {ql_ident(measurement)}", db)
        return sum(int(row[1]) for s in found for row in s.get("values", []) if row[1] is not None)


# -- VictoriaMetrics ------------------------------------------------------------------------------
class VictoriaMetrics(_Child):
    """victoria-metrics 1.79.5 on 127.0.0.1:``port`` with its data in ``dir``/data. Build it with
    :meth:`create`; ``close()`` (or ``with``) stops it. Write line protocol to
    ``{url}/api/v2/write`` (or ``/write``); read with :meth:`export` and :meth:`count`."""

    name = "victoria-metrics"
    log_name = "victoria-metrics.log"

    def __init__(self, root: Path, dedup: bool = True, retention: str | None = "100y") -> None:
        super().__init__(root)
        self.data = self.dir / "data"
        self.dedup = dedup
        self.retention = retention

    @classmethod
    def create(cls, root: Path | None = None, dedup: bool = True,
               retention: str | None = "100y", timeout_s: float = 20.0) -> VictoriaMetrics:
        """Start a server with its data in ``root`` (a new temp dir when None).

        ``dedup``: ``-dedup.minScrapeInterval=1ms``, so a re-sent point counts once (as with
        InfluxDB's overwrite). ``retention``: ``-retentionPeriod`` (None: VM's default of one
        month, which silently drops older points). Raises RuntimeError with the log's last lines
        when the server does not answer /health within ``timeout_s``."""
        root, owned = _prepare_root(root, "vmlab-")
        server = cls(root, dedup=dedup, retention=retention)
        server._owned_dir = owned
        try:
            server._new_ports()
            server.start(timeout_s)
        except BaseException:
            server.close()
            raise
        return server

    def _new_ports(self) -> None:
        self.port = free_port()

    def _argv(self) -> list[str]:
        argv = [str(VICTORIA_METRICS), "-storageDataPath", str(self.data),
                "-httpListenAddr", f"127.0.0.1:{self.port}",
                # Every force_flush logs an INFO line; warnings (points dropped for their
                # timestamps) and errors (lines that do not parse) are kept.
                "-loggerLevel=WARN"]
        if self.retention is not None:
            argv.append(f"-retentionPeriod={self.retention}")
        if self.dedup:
            argv.append("-dedup.minScrapeInterval=1ms")
        return argv

    def _ready(self) -> bool:
        try:
            return _http("GET", f"{self.url}/health", timeout=1.0)[0] == 200
        except OSError:
            return False

    def flush(self) -> None:
        """Make everything written so far visible to queries at once (``/internal/force_flush``;
        without it a new series showed after 2..9 s). It does not make data survive SIGKILL."""
        status, body = _http("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            raise RuntimeError(f"force_flush: HTTP {status}: {body[:200]!r}")

    def export(self, match: str = '{__name__!=""}', *, start: float | None = None,
               end: float | None = None) -> list[dict]:
        """Every series matching ``match`` with all its samples, after a :meth:`flush`: dicts with
        ``metric`` (labels, ``__name__`` included), ``values`` and ``timestamps`` (ms).
        ``start``/``end`` are Unix seconds (default: everything up to two days ahead)."""
        self.flush()
        params = {"match[]": match,
                  "end": str(int(end if end is not None else time.time() + 2 * 86400))}
        if start is not None:
            params["start"] = str(int(start))
        status, body = _http("GET", f"{self.url}/api/v1/export?{urllib.parse.urlencode(params)}")
        if status != 200:
            raise RuntimeError(f"export: HTTP {status}: {body[:500]!r}")
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def count(self, name: str) -> int:
        """How many samples all series named ``name`` (``measurement_field``) hold together."""
        return sum(len(s["values"]) for s in self.export(f"{{__name__={json.dumps(name)}}}"))

    def wait_count(self, name: str, expected: int, timeout_s: float = 15.0) -> int:
        """:meth:`count` until it reaches ``expected`` (or ``timeout_s`` passes); the last count.
        Even after a force_flush, an export right after a large write sometimes showed only
        part of it (seen once: half of 25,920 points of one series, all there a moment later)."""
        deadline = time.monotonic() + timeout_s
        while True:
            n = self.count(name)
            if n >= expected or time.monotonic() > deadline:
                return n
            time.sleep(0.2)
