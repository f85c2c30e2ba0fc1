"""Throughput through speedtest-cli 2.1.3, wrapped at the edge (its 2,000-line module does network
I/O in its constructor; we neither imitate nor patch it).

Two kinds of server:

* speedtest.net, always in secure (HTTPS) mode: plain HTTP gets 403 there. The nearest server, or
  the lowest-latency one of ``server_ids``, never one of ``exclude_ids``.
* A self-hosted server with the classic endpoints (``server_url`` is its ``upload.php``;
  ``latency.txt`` and ``randomNxN.jpg`` sit beside it). speedtest-cli's constructor always
  downloads speedtest.net's configuration; for a self-hosted run a subclass supplies that
  configuration itself (the values speedtest.net's normally holds), so nothing goes to
  speedtest.net at all.

:func:`measure` returns one ``speedtest`` sample, whatever happens: a failed test is a sample with
``status`` "failed" and the reason, never an exception. speedtest.net's configuration names the
client's public IP address and location: only the ISP's name is taken from it (for
``agent.isp = "auto"``); the address is never stored or sent.

The speedtest module is injected (``module=``) so that tests can hand in a module whose replies
they control; the agent uses the real one, imported on first use. :class:`SpeedTest` is the
configured test as a probe (:mod:`agent.probes.contract`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.model import Sample

# What speedtest.net's configuration yields (speedtest-cli's get_config on a typical reply:
# threadcount 4, download threadsperurl 4, testlength 10 s, upload ratio 5, maxchunkcount 50,
# upload threads 2).
SELF_HOSTED_CONFIG = {
    "client": {},
    "ignore_servers": [],
    "sizes": {"upload": [524288, 1048576, 7340032],
              "download": [350, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000]},
    "counts": {"upload": 17, "download": 4},
    "threads": {"upload": 2, "download": 8},
    "length": {"upload": 10, "download": 10},
    "upload_max": 51,
}


def parse_server_url(url: str) -> str:
    """Validate a self-hosted server's upload URL (for the config)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL of the server's upload endpoint, "
                         "e.g. http://host:8080/speedtest/upload.php")
    if parts.username or parts.password:
        raise ValueError("must not hold credentials")
    if not parts.path or parts.path.endswith("/"):
        raise ValueError("must name the upload endpoint itself (…/upload.php), as speedtest.net "
                         "server lists do")
    return url


@dataclass(frozen=True)
class Outcome:
    """A test's sample and what else it learned (the ISP's name, never the address)."""

    sample: Sample
    isp: str | None = None


UNREACHABLE_MS = 1_000_000.0   # speedtest-cli's ping when latency.txt never answered (1.8e6)
ONE_TRY_FAILED_MS = 500_000.0  # ... and when one of its three tries failed (at least 6e5)


def measure(*, server_url: str = "", server_ids: tuple[str, ...] = (), exclude_ids: tuple[str, ...] = (),
            timeout_s: float = 10.0, clock, module=None,
            progress: Callable[[str, int, int], None] | None = None,
            shutdown_event=None) -> Outcome:
    """Run one speed test. ``progress(phase, done, total)`` is called as requests finish
    (phase "download" or "upload"). The sample's time is the test's start."""
    t0, mono0 = clock.now(), clock.monotonic()
    step = "config"
    isp = None
    st = None
    tags = {"source": source_tag(server_url)}
    try:
        st_mod = module or _speedtest()
        if server_url:
            st = _offline(st_mod)(timeout=timeout_s, secure=server_url.startswith("https"),
                                  shutdown_event=_Shutdown(shutdown_event))
            host = urlsplit(server_url).netloc
            step = "latency"
            server = {"url": server_url, "id": "self", "name": host, "sponsor": "self-hosted",
                      "d": 0.0, "latency": 0, "host": host}
            st.get_best_server([server])
        else:
            st = st_mod.Speedtest(timeout=timeout_s, secure=True, shutdown_event=_Shutdown(shutdown_event))
            isp = _isp(st.config.get("client"))
            step = "servers"
            st.get_servers([int(i) for i in server_ids] or None,
                           [int(i) for i in exclude_ids] or None)
            step = "latency"
            st.get_best_server()
        if st.results.ping >= UNREACHABLE_MS:
            # speedtest-cli scores a server whose latency.txt never answered 3600 s per try
            # and picks it anyway.
            raise _Failed("server_unreachable", "the server did not answer latency.txt")
        stop = _Shutdown(shutdown_event)
        step = "download"
        st.download(callback=_relay(progress, "download"))
        if stop.isSet():  # speedtest-cli cuts its requests short: the figures would be too low
            raise _Failed("interrupted", "the agent was stopped during the test")
        if not st.results.bytes_received:
            raise _Failed("download_failed", "no byte arrived (the download requests all failed)")
        step = "upload"
        st.upload(callback=_relay(progress, "upload"), pre_allocate=False)
        if stop.isSet():
            raise _Failed("interrupted", "the agent was stopped during the test")
        if not st.results.bytes_sent:
            raise _Failed("upload_failed", "no byte was accepted (the upload requests all failed)")
        fields = _ok_fields(st.results, self_hosted=bool(server_url))
        tags["server"] = str((st.results.server or {}).get("id", "self"))
    except Exception as exc:  # noqa: BLE001 - speedtest-cli raises many kinds; all are a failed test
        fields = {"status": "failed", "error": _kind(exc, step), "error_detail": _detail(exc)}
        r = getattr(st, "results", None)
        if r is not None:  # what a test that broke half-way had already moved still counts
            fields["bytes_received"] = int(getattr(r, "bytes_received", 0) or 0)
            fields["bytes_sent"] = int(getattr(r, "bytes_sent", 0) or 0)
    fields["duration_s"] = round(clock.monotonic() - mono0, 3)
    return Outcome(Sample("speedtest", tags, fields, t0), isp)


def _ok_fields(r, *, self_hosted: bool) -> dict:
    """The fields of a test that went through, from speedtest-cli's results ``r``."""
    srv = r.server or {}
    fields = {
        "status": "ok",
        "download_bps": float(r.download),
        "upload_bps": float(r.upload),
        "bytes_received": int(r.bytes_received),
        "bytes_sent": int(r.bytes_sent),
        "server_name": str(srv.get("name", ""))[:100],
        "server_sponsor": str(srv.get("sponsor", ""))[:100],
    }
    # speedtest-cli divides the sum of its three latency.txt times by 6: half their mean.
    # One failed try counts 3600 s in that sum; then the latency is unknown and left out.
    if r.ping < ONE_TRY_FAILED_MS:
        fields["ping_ms"] = round(2 * float(r.ping), 3)
    if srv.get("d") is not None and not self_hosted:
        fields["server_distance_km"] = float(srv["d"])
    return fields


def source_tag(server_url: str) -> str:
    """The ``source`` tag of a test's rows: ``self_hosted`` or ``speedtest.net``."""
    return "self_hosted" if server_url else "speedtest.net"


class SpeedTest:
    """One speed test as configured: :meth:`measure` runs it (arguments as for :func:`measure`)."""

    name = "speedtest"

    def __init__(self, *, server_url: str = "", server_ids: tuple[str, ...] = (),
                 exclude_ids: tuple[str, ...] = (), clock, module=None,
                 progress: Callable[[str, int, int], None] | None = None,
                 shutdown_event=None) -> None:
        self.server_url, self.server_ids, self.exclude_ids = server_url, server_ids, exclude_ids
        self.clock, self.module = clock, module
        self.progress, self.shutdown_event = progress, shutdown_event

    @property
    def source(self) -> str:
        return source_tag(self.server_url)

    def measure(self) -> Outcome:
        return measure(server_url=self.server_url, server_ids=self.server_ids,
                       exclude_ids=self.exclude_ids, clock=self.clock, module=self.module,
                       progress=self.progress, shutdown_event=self.shutdown_event)


class _Shutdown:
    """Our threading.Event as speedtest-cli asks it: it calls ``isSet()``, which the standard
    library has deprecated. A warning from each check in its download loops (over 100,000 per
    test) would cost CPU in the very loops being timed."""

    def __init__(self, event) -> None:
        self._event = event

    def isSet(self) -> bool:  # noqa: N802 - speedtest-cli's name
        return self._event is not None and self._event.is_set()

    is_set = isSet

    def set(self) -> None:
        if self._event is not None:
            self._event.set()


def skipped(reason: str, detail: str, t, source: str) -> Sample:
    """A test that was not run, as a recorded row."""
    return Sample("speedtest", {"source": source}, {"status": "skipped", "skip_reason": reason,
                                                    "error_detail": detail[:300]}, t)


def _speedtest():
    try:
        import speedtest  # deferred: speedtest-cli is a 2,000-line module, loaded for a test only
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuntimeError("speedtest-cli is not installed (pip install speedtest-cli)") from exc
    return speedtest


def _offline(st_mod):
    """speedtest-cli's Speedtest, with the configuration built in instead of downloaded."""
    class SelfHosted(st_mod.Speedtest):
        def get_config(self):
            self.config.update(copy.deepcopy(SELF_HOSTED_CONFIG))
            self.lat_lon = (0.0, 0.0)
            return self.config
    return SelfHosted


def _isp(client) -> str | None:
    if isinstance(client, dict):
        name = str(client.get("isp") or "").strip()
        return name[:64] or None
    return None


def _relay(progress, phase):
    def callback(i, total, start=False, end=False):
        if progress and end:
            progress(phase, i + 1, total)
    return callback


class _Failed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _kind(exc: BaseException, step: str) -> str:
    """A short, stable reason for the ``error`` field."""
    if isinstance(exc, _Failed):
        return exc.kind
    name = type(exc).__name__
    if name in ("ConfigRetrievalError", "ServersRetrievalError", "SpeedtestMiniConnectFailure"):
        return f"{step}_unreachable"
    if name in ("SpeedtestConfigError", "SpeedtestServersError"):
        return f"{step}_malformed"
    if name == "NoMatchedServers":
        return "no_matching_server"
    if name == "SpeedtestBestServerFailure":
        return "server_unreachable"
    if name in ("HTTPError",) or "403" in str(exc):
        return f"{step}_refused"
    if isinstance(exc, (KeyError, ValueError, AttributeError, TypeError, IndexError)):
        return f"{step}_malformed"
    if isinstance(exc, OSError):
        return f"{step}_network"
    return f"{step}_failed"


def _detail(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, _Failed) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]
