"""The ``[influx]`` section, shared by the agent (forwarding) and the collector (reading), and the
check of its URL. Apart from the InfluxDB edge (kit/influx.py) so that an agent without a server
loads the section and not the client."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from kit.configkit import all_of, between, max_len, one_of, opt, parses

CLIENTS = ("builtin", "influxdb-client")


# influx.send = "summaries": the measurements still sent (the hourly and daily summaries, the episodes,
# the speed tests and the service checks, a row each); the agent keeps every other row in its local
# store only.
SENT_WITH_SUMMARIES = frozenset({"hourly", "daily", "outage", "speedtest", "service"})


def parse_url(url: str) -> str:
    """Validate an InfluxDB base URL and return it without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username or parts.password:
        raise ValueError("must not hold credentials: put them in influx.token_file")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        _ = parts.port  # reading it checks it
    except ValueError:
        raise ValueError("has an invalid port") from None
    return url.rstrip("/")


def check_client(client: str) -> None:
    """``influxdb-client`` must be importable; looked up without importing it (about 24 MB)."""
    import importlib.util  # deferred: read only when influxdb-client is chosen

    if client == "influxdb-client" and importlib.util.find_spec("influxdb_client") is None:
        raise ValueError("influxdb-client is not installed (pip install '.[influxdb-client]' "
                         'in linewatch\'s source, or pip install influxdb-client), or use "builtin"')


@dataclass(frozen=True)
class InfluxSection:
    url: str = opt("", "InfluxDB to forward to: http(s)://host:port, e.g. http://localhost:8086 "
                    "or an InfluxDB Cloud URL. Empty: nothing is forwarded and the local store "
                    "keeps everything (it is the outbox either way: rows recorded while the server "
                    "was unreachable go out later, oldest first).",
                    parses("kit.influxconfig", "parse_url", allow_empty=True), "http://localhost:8086")
    api: str = opt("auto", '"auto" asks the server\'s /ping for its version: InfluxDB 1.x older '
                    'than 1.8 gets the v1 /write endpoint, everything else (1.8+, 2.x, 3.x, Cloud) '
                    '/api/v2/write. "v2" or "v1" forces one.', one_of("auto", "v2", "v1"))
    client: str = opt("builtin", 'What writes to /api/v2/write: "builtin", a small client on '
                       "Python's standard library (keep-alive, gzip, the TLS settings below), or "
                       '"influxdb-client", InfluxData\'s library (install it with linewatch\'s '
                       "influxdb-client extra: pip install '.[influxdb-client]'; the agent takes "
                       "about 19 MB more memory with it). Both give the forwarder the same "
                       "answers; the v1 /write endpoint is always written by the builtin client.",
                       all_of(one_of(*CLIENTS), parses("kit.influxconfig", "check_client")))
    org: str = opt("", "Organisation (InfluxDB 2.x and Cloud; ignored by 1.8 and 3.x).",
                    max_len(256), "my-org")
    bucket: str = opt("", "Bucket for /api/v2/write (InfluxDB 2.x, Cloud; the database on 3.x). "
                       "Empty with a database set: database/retention_policy, as InfluxDB 1.8+ "
                       "expects.", max_len(256), "linewatch")
    database: str = opt("", "Database for InfluxDB 1.x (the v1 /write endpoint).", max_len(256),
                         "linewatch")
    retention_policy: str = opt("", "Retention policy for InfluxDB 1.x; empty: the database's "
                                 "default.", max_len(256))
    token_file: str = opt("", "File holding the token (InfluxDB 2.x/3.x/Cloud) or user:password "
                           "(InfluxDB 1.x). The token is read from $LINEWATCH_INFLUX_TOKEN first, "
                           "then this file, then the systemd credential influx-token "
                           "($CREDENTIALS_DIRECTORY). It is never taken from the command line and "
                           "never printed; keep the file private (chmod 600).",
                           example="/etc/linewatch/influx-token")
    verify_tls: bool = opt(True, "Verify the server's TLS certificate. Set false only for a "
                            "server you trust on a network you trust: the token crosses it.")
    ca_file: str = opt("", "PEM file with the CA that signed the server's certificate (a private "
                        "CA): better than turning verify_tls off.")
    timeout_s: float = opt(10.0, "Seconds to wait for the server's answer to one write.",
                            between(1, 300))
    batch_size: int = opt(2000, "Lines per write request (the backlog after an outage goes out "
                           "in batches of this size). 2,000 flushes as fast as 5,000 and keeps "
                           "the agent's memory under 30 MB while it does (bench/README.md).",
                           between(1, 100_000))
    gzip: bool = opt(True, "Compress write requests (about 10x less data on the line).")
    push_interval_s: float = opt(10.0, "Seconds between forwarding attempts while the server "
                                  "answers (after errors the agent backs off).", between(1, 3600))
    send: str = opt("all", 'What is forwarded. "all": every raw row (rounds, echoes, DNS, power, '
                     'counters) with the hourly summaries, episodes and speed tests, for an '
                     'operator\'s Grafana. "summaries": only the hourly summaries, episodes, speed '
                     'tests and service checks (about 3.3 MB a month instead of about 260 at the '
                     'defaults, bench/README.md: for a volunteer on a metered line); the raw rows '
                     'stay in the local store.', one_of("all", "summaries"))
