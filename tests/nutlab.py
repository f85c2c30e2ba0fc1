"""A real Network UPS Tools server for tests and benchmarks, all inside one temp dir.

Follows ../shared/TESTBED.md ("Power"): the ``dummy-ups`` driver serves a UPS whose variables come
from a file, ``upsd`` serves them on 127.0.0.1. :class:`NutServer` writes the configuration,
starts both as children of this process (foreground, ``-F``), and stops them on ``close()``.

What nut 2.8.0 does here (measured, and why the code below is shaped this way):

- A ``*.dev`` file puts dummy-ups in "dummy-once" mode: it parses the file once, then re-parses it
  only when its modification time changes, checked every ``pollinterval`` (1 s here). A flip
  written with :meth:`NutServer.set` shows up in upsd after about 0.6 s (median; 0.2 .. 0.9 s).
- The driver compares modification times in whole seconds: a second rewrite within the same
  second is never seen. :meth:`NutServer.set` therefore gives every write a modification time at
  least one whole second after the previous one, and replaces the file atomically so the driver
  never parses a half-written file.
- A variable left out of the file keeps its old value in the driver; a quoted empty value
  (``battery.charge: ""``) removes it. An unquoted empty value is a trap: the driver stores
  leftover memory instead (seen: the previous line's value), so every value is written quoted.
- Until upsd has the driver's first dump, ``ups.status`` reads ``WAIT``; upsd only looks for the
  driver socket at start and then every few seconds, so the driver is started (and its socket
  awaited) before upsd.
- upsd checks passwords only for privileged commands (LOGIN, SET, INSTCMD); reads work for anyone.
- Driver gone: ``ERR DRIVER-NOT-CONNECTED``; driver silent (stopped) for ``MAXAGE`` seconds:
  ``ERR DATA-STALE``.

Use::

    with NutServer.create(tmp_path) as nut:
        nut.set(status="OB", charge=80, runtime=1200, voltage=0)
        nut.wait_status("OB")
        read_vars(nut.url())
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from agent.probes.nut_protocol import NutError, quote_arg
from agent.probes.nut_url import NutURL
from agent.probes.ups import read_vars

NUT_BIN = Path("/lib/nut")
DUMMY_UPS = NUT_BIN / "dummy-ups"
UPSD = NUT_BIN / "upsd"

UPS_NAME = "dummy"
USER = "monitor"
# Quotes, a backslash, a space, '@', ':' and '/' exercise quoting on the wire and in URLs.
PASSWORD = 'p@ss w:rd/"q"\\x'

DEFAULTS = {"status": "OL", "charge": 100, "runtime": 3600, "voltage": 230.0}
_VARS = {"status": "ups.status", "charge": "battery.charge", "runtime": "battery.runtime",
         "voltage": "input.voltage", "load": "ups.load"}


def nut_unavailable() -> str | None:
    """Why a NUT server cannot be started here, or None when it can."""
    missing = [str(p) for p in (DUMMY_UPS, UPSD) if not os.access(p, os.X_OK)]
    if missing:
        return (f"NUT is not installed ({', '.join(missing)} missing): "
                "apt-get install nut-server nut-client")
    if os.geteuid() != 0:
        return "the NUT test server needs root (dummy-ups and upsd are started with -u root)"
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf_quote(text: str) -> str:
    # NUT's config parser takes the same quoting as its network protocol.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class NutServer:
    """``dummy-ups`` + ``upsd`` on 127.0.0.1:``port``, UPS :data:`UPS_NAME`, one user
    (:data:`USER` / :data:`PASSWORD`, role "upsmon secondary" so tests can check a password with
    LOGIN). Build it with :meth:`create`; ``close()`` (or ``with``) stops everything it started.
    """

    def __init__(self, root: Path, *, maxage_s: int = 15) -> None:
        self.dir = Path(root)
        self.state = self.dir / "state"
        self.dev = self.dir / "dummy.dev"
        self.maxage_s = maxage_s
        self.port = 0
        self.driver: subprocess.Popen | None = None
        self.upsd: subprocess.Popen | None = None
        self._last_mtime_s = 0
        self._expected: dict[str, str] = {}
        self._removed: set[str] = set()
        self._owned_dir: str | None = None
        self.paused = False

    # -- life cycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | None = None, *, maxage_s: int = 15,
               **initial: object) -> NutServer:
        """Configure and start a server in ``root`` (a new temp dir when None) and wait until upsd
        reports the initial state (:data:`DEFAULTS` updated with ``initial``). Raises
        RuntimeError with the daemons' logs when something does not start."""
        owned = None
        if root is None:
            owned = tempfile.mkdtemp(prefix="nutlab-")
            root = Path(owned)
        server = cls(root, maxage_s=maxage_s)
        server._owned_dir = owned
        try:
            server._configure()
            server.set(**{**DEFAULTS, **initial})
            server.start_driver()
            server.start()
            server.wait_status(server._expected["ups.status"])
        except BaseException:
            server.close()
            raise
        return server

    def __enter__(self) -> NutServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "NUT_CONFPATH": str(self.dir), "NUT_STATEPATH": str(self.state)}

    def _configure(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o770)
        (self.dir / "ups.conf").write_text(
            f"[{UPS_NAME}]\n"
            "    driver = dummy-ups\n"
            f"    port = {self.dev}\n"
            # How often the driver checks the file's modification time (default 2 s).
            "    pollinterval = 1\n"
            '    desc = "linewatch test UPS"\n')
        self._write_upsd_conf()
        users = self.dir / "upsd.users"
        users.write_text(f"[{USER}]\n    password = {_conf_quote(PASSWORD)}\n"
                         "    upsmon secondary\n")
        users.chmod(0o600)

    def _write_upsd_conf(self) -> None:
        self.port = free_port()
        conf = self.dir / "upsd.conf"
        conf.write_text(f"LISTEN 127.0.0.1 {self.port}\nSTATEPATH {self.state}\n"
                        f"MAXAGE {self.maxage_s}\n")
        conf.chmod(0o600)

    def _spawn(self, exe: Path, *args: str, log: str) -> subprocess.Popen:
        with open(self.dir / log, "ab") as out:
            # A new session: killing the group at close() takes any helper with it, and a ^C in
            # the test runner does not reach the daemons before close() does.
            return subprocess.Popen([str(exe), *args], env=self._env(), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _log(self, name: str) -> str:
        try:
            return (self.dir / name).read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def start_driver(self, timeout_s: float = 10.0) -> None:
        """Start dummy-ups and wait for its socket (upsd connects to it when it starts)."""
        sock = self.state / f"dummy-ups-{UPS_NAME}"
        self.driver = self._spawn(DUMMY_UPS, "-a", UPS_NAME, "-u", "root", "-F", log="driver.log")
        deadline = time.monotonic() + timeout_s
        while not sock.exists():
            if self.driver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dummy-ups did not start:\n{self._log('driver.log')}")
            time.sleep(0.05)

    def stop_driver(self) -> None:
        """Stop dummy-ups (upsd then answers ERR DRIVER-NOT-CONNECTED)."""
        _stop(self.driver)
        self.driver = None
        self.paused = False

    def pause_driver(self, paused: bool = True) -> None:
        """Freeze (SIGSTOP) or thaw the driver: after ``maxage_s`` of silence upsd answers
        ERR DATA-STALE, as with a driver that lost its UPS."""
        if self.driver is None:
            raise RuntimeError("the driver is not running")
        os.kill(self.driver.pid, signal.SIGCONT if not paused else signal.SIGSTOP)
        self.paused = paused

    def start(self, timeout_s: float = 10.0) -> None:
        """Start upsd (again) on ``self.port`` and wait until it accepts connections (should
        another process have taken the port meanwhile, upsd moves to a new ``port``).

        ``ups.status`` reads ``WAIT`` until the driver's first dump arrives (about 1 s; upsd
        retries a driver it cannot reach every few seconds): :meth:`wait_status` for the state.
        """
        for _attempt in range(3):
            self.upsd = self._spawn(UPSD, "-u", "root", "-F", log="upsd.log")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.upsd.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return
                except OSError:
                    time.sleep(0.05)
            _stop(self.upsd)
            if not _port_taken(self.port):
                break
            self._write_upsd_conf()  # someone took the port meanwhile: take another
        raise RuntimeError(f"upsd did not start:\n{self._log('upsd.log')}")

    def stop(self) -> None:
        """Stop upsd: connections to ``port`` are then refused (a UPS server that is down)."""
        _stop(self.upsd)
        self.upsd = None

    def reset(self, timeout_s: float = 15.0) -> dict[str, str]:
        """Back to the start: driver thawed or restarted, upsd running, :data:`DEFAULTS` set and
        reported (returns the variables). Quick when nothing changed."""
        if self.driver is not None and self.paused:
            self.pause_driver(False)
        if self.driver is None or self.driver.poll() is not None:
            self.start_driver()
        if self.upsd is None or self.upsd.poll() is not None:
            self.start()
        self.set(**DEFAULTS)
        return self.wait_status(DEFAULTS["status"], timeout_s)

    def close(self) -> None:
        """Stop both daemons (if running) and remove the directory if :meth:`create` made it."""
        _stop(self.upsd)
        _stop(self.driver)
        self.upsd = self.driver = None
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def login(self, password: str, user: str = USER) -> str:
        """upsd's reply to LOGIN after USERNAME and PASSWORD (quoted by our client's helper):
        "OK" only for the user's password in upsd.users, the one command upsd compares it for."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            reader = sock.makefile("rb")
            replies = []
            for command in (f"USERNAME {quote_arg(user)}", f"PASSWORD {quote_arg(password)}",
                            f"LOGIN {UPS_NAME}", "LOGOUT"):
                sock.sendall(command.encode() + b"\n")
                replies.append(reader.readline().decode().rstrip("\n"))
            return replies[2]

    # -- state ------------------------------------------------------------------------------
    def url(self, *, user: str | None = None, password: str | None = None,
            ups: str = UPS_NAME) -> NutURL:
        """The server's NutURL, optionally with credentials or another UPS name."""
        return NutURL("127.0.0.1", self.port, ups, user, password)

    def set(self, status: str | None = "OL", charge: float | None = 100,
            runtime: float | None = 3600, voltage: float | None = 230.0,
            load: float | None = None, **extra: str | None) -> None:
        """Rewrite the UPS's variables. A None value removes the variable (written as ``""``);
        ``extra`` takes NUT names with ``_`` for ``.`` (``battery_voltage=13.2``).

        Returns at once; use :meth:`wait_status` to wait until upsd reports the new state.
        """
        values = {"status": status, "charge": charge, "runtime": runtime, "voltage": voltage,
                  "load": load}
        named = {_VARS[k]: v for k, v in values.items()}
        named.update({k.replace("_", "."): v for k, v in extra.items()})
        # Quoted: an unquoted empty value makes dummy-ups 2.8.0 store leftover memory (often the
        # previous line's value) instead of removing the variable; "" removes it.
        lines = [f"{name}: {_conf_quote('' if v is None else str(v))}" for name, v in named.items()]
        tmp = self.dev.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        # dummy-ups sees a change only if the mtime's whole seconds change: step it past the
        # last write's second, into the future if writes come faster than once a second.
        mtime_s = max(int(time.time()) + 1, self._last_mtime_s + 1)
        os.utime(tmp, (mtime_s, mtime_s))
        os.replace(tmp, self.dev)
        self._last_mtime_s = mtime_s
        self._expected = {name: str(v) for name, v in named.items() if v is not None}
        self._removed = {name for name, v in named.items() if v is None}

    def wait_status(self, expected: str, timeout_s: float = 10.0,
                    url: NutURL | None = None) -> dict[str, str]:
        """Poll upsd (with our own :func:`read_vars`) until ``ups.status`` is ``expected`` and,
        when the last :meth:`set` wrote that status, all its variables show (the driver sends
        them one by one, so a read can fall between two). Returns the variables; raises
        TimeoutError naming what was last seen."""
        deadline = time.monotonic() + timeout_s
        full = self._expected.get("ups.status") == expected
        want = dict(self._expected) if full else {"ups.status": expected}
        gone = self._removed if full else set()
        last: object = None
        while True:
            try:
                found = read_vars(url or self.url(), timeout_s=1.0)
                last = found.get("ups.status")
                if all(found.get(k) == v for k, v in want.items()) \
                        and not gone.intersection(found):
                    return found
            except NutError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"upsd did not report {want} within {timeout_s} s; "
                                   f"last seen: {last!r}")
            time.sleep(0.05)


class Relay:
    """A TCP relay on 127.0.0.1 in front of a NUT server that keeps every line the clients sent.

    upsd 2.8.0 takes any password on a read (it compares one only for LOGIN, SET and INSTCMD) and
    logs none, so a test that must know which password a client sent reads it here, then asks
    upsd with LOGIN whether it is the right one. ``with Relay(port) as relay``; ``relay.port``
    is where clients connect; :meth:`sent` is what they sent, line by line."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sent = bytearray()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, name=f"nut-relay:{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while chunk := src.recv(4096):
                if record:
                    with self._lock:
                        self._sent += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def sent(self) -> list[str]:
        """Every line the clients sent so far, in order."""
        with self._lock:
            return self._sent.decode("utf-8", "replace").splitlines()

    def close(self) -> None:
        self._listener.close()
        for sock in self._socks:
            sock.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _stop(proc: subprocess.Popen | None) -> None:
    """Terminate one child we started (its own process group), then kill it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)  # a SIGSTOPped driver acts on SIGTERM only once thawed
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
