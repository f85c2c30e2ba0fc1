"""Configuration: one TOML file, loaded into a frozen dataclass tree and validated once.

Where the file comes from: ``--config PATH`` on every command, else ``$LINEWATCH_CONFIG``, else
``config.toml`` in the platform's config dir (see :func:`default_config_path`). Every key is
optional and a missing file means all defaults. Each key is documented once, in the ``doc`` of its
field below; the example config (docs/example-config.toml, and what ``linewatch init`` writes) is
rendered from these same definitions, so code and documentation cannot drift apart.

Errors are one line naming the file, the key and what was expected::

    config.toml: probe.interval_s: must be >= 1, got 0

Longer than the house's 400 lines: every key's documentation lives with its definition (the example
config is written from it).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agent.alerts.settings import AlertsSection, ChannelSection, alerts_of
from kit.configkit import (
    all_of,
    at_least,
    between,
    default_of,
    each,
    max_len,
    one_of,
    opt,
    parses,
    problem_of,
    sections_of,
    toml_value,
    wrap,
)
from kit.definitions import ACCESS_TYPES, PK_REGIONS, REGION_RE, access_type, pk_codes_named, region_code
from kit.errors import ConfigError
from kit.influxconfig import InfluxSection

ECHO_METHODS: tuple[str, ...] = ("auto", "icmp_dgram", "icmp_raw", "tcp")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")



# -- value checks: each returns None when fine, else what was expected -----------------------

def _check_id(v: str) -> str | None:
    if v == "" or _ID_RE.match(v):
        return None
    return "must be 1-64 letters, digits, '.', '_' or '-' (or empty for a random id)"


def _check_site(v: str) -> str | None:
    if v == "" or _ID_RE.match(v):
        return None
    return "must be 1-64 letters, digits, '.', '_' or '-' (or empty: derived from the gateway)"


def _check_region(v: str) -> str | None:
    """Pakistan's codes against ISO 3166-2:PK (a typo such as PK-XX would be thrown away later as
    an unknown region); other countries' codes by their shape."""
    if v == "" or v in PK_REGIONS:
        return None
    if v.startswith("PK-"):
        return "must be one of Pakistan's ISO 3166-2 codes (" + pk_codes_named() + ")"
    if REGION_RE.match(v):
        return None
    try:
        code, _ = region_code(v)
    except ValueError:
        return ("must be an ISO 3166-2 code such as PK-PB (Punjab); Pakistan's are "
                + ", ".join(sorted(PK_REGIONS)))
    return f'must be an ISO 3166-2 code: "{code}" for {PK_REGIONS.get(code, code)}'


def _check_access(v: str) -> str | None:
    if v == "" or v in ACCESS_TYPES:
        return None
    try:
        hint = f' ("{access_type(v)}"?)'
    except ValueError:
        hint = ""
    return "must be one of " + ", ".join(ACCESS_TYPES) + hint


def _check_ip(v: str) -> str | None:
    try:
        ipaddress.ip_address(v.split("%", 1)[0])
    except ValueError:
        return "must be an IP address"
    return None


def _check_gateway(v: str) -> str | None:
    if v in ("auto", "off"):
        return None
    return None if _check_ip(v) is None else 'must be "auto", "off" or an IP address'


_check_target = parses("agent.probes.target", "parse_target")
_check_dns_name = parses("agent.probes.dns_wire", "validate_name")
_check_ups = parses("agent.probes.nut_url", "check_nut_url", allow_empty=True)
_check_tag = parses("kit.lineproto", "check_tag_value", allow_empty=True)


# -- the tree ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgentSection:
    id: str = opt("", "This agent's id, sent as the `agent` tag. Empty: a random id, made once "
                   "and kept in the state dir. Never the hostname.", _check_id)
    region: str = opt("", "ISO 3166-2 region code: PK-PB Punjab, PK-SD Sindh, PK-KP Khyber "
                       "Pakhtunkhwa, PK-BA Balochistan, PK-IS Islamabad, PK-GB Gilgit-Baltistan, "
                       "PK-JK Azad Jammu and Kashmir (another country's code is taken by its "
                       "shape). `linewatch init` also takes names: Punjab, KPK, Islamabad.",
                       _check_region, "PK-PB")
    city: str = opt("", "City or town, free text (any script).", all_of(max_len(64), _check_tag),
                     "Lahore")
    isp: str = opt("", "Internet provider's name, free text; \"auto\": the name speedtest.net "
                    "reports for this line (after the first speed test).",
                    all_of(max_len(64), _check_tag), "PTCL")
    access: str = opt("", "Access type: " + ", ".join(ACCESS_TYPES) + ".", _check_access, "fibre")
    site: str = opt("", "The line this agent watches, sent as the `site` tag: agents with one "
                     "site count once in regional figures. Empty: a one-way hash of the "
                     "gateway's hardware address (the address itself is never stored or sent), "
                     "or the agent's id when that address cannot be seen (no gateway, a VPN, "
                     "not Linux). Letters, digits, '.', '_', '-'.", _check_site)
    state_dir: str = opt("", "Where the local store lives. Empty: $STATE_DIRECTORY when systemd "
                          "sets it, else the platform's user data dir.")
    procfs: str = opt("/proc", "Root of the proc filesystem the agent reads the host from.")
    sysfs: str = opt("/sys", "Root of the sys filesystem the agent reads the host from.")
    rundir: str = opt("/run", "Root of the runtime dir where time-sync services leave their flags "
                       "(systemd-timesyncd's timesync/synchronized).")


@dataclass(frozen=True)
class ProbeSection:
    interval_s: float = opt(10.0, "Seconds between probe rounds.", at_least(1))
    timeout_s: float = opt(2.0, "Seconds to wait for each echo reply and each DNS answer. "
                            "Unset: 2, or half of interval_s when that is shorter. A value set "
                            "here must be shorter than interval_s.", between(0.05, 60))
    count: int = opt(3, "Echoes per target per round (loss and jitter need several). Each echo "
                      "is under 100 bytes; at the defaults the internet targets cost about 150 MB "
                      "a month, so lower this on a metered line.", between(1, 100))
    gateway: str = opt("auto", '"auto" (the default route\'s gateway), "off", or an address.',
                        _check_gateway)
    targets: tuple[str, ...] = opt(("1.1.1.1", "8.8.8.8"), "Internet targets: IP addresses "
                                    "(echo) or address:port (always TCP connect). IPv6 as "
                                    "[addr]:port.", each(_check_target))
    dns_names: tuple[str, ...] = opt(("google.com",), "Names resolved every round.",
                                      each(_check_dns_name))
    dns_servers: tuple[str, ...] = opt((), "DNS servers to ask. Empty: the system's (from "
                                        "/etc/resolv.conf).", each(_check_ip))
    method: str = opt("auto", 'Echo method: "auto" picks unprivileged ICMP, then raw ICMP, then '
                       "TCP connect; or force icmp_dgram, icmp_raw or tcp.", one_of(*ECHO_METHODS))
    tcp_port: int = opt(443, "Port for TCP-connect timing when ICMP is not permitted.",
                         between(1, 65535))
    netio_interval_s: float = opt(60.0, "Seconds between interface byte-counter readings.",
                                   at_least(5))


@dataclass(frozen=True)
class OutageSection:
    open_after: int = opt(3, "Consecutive failed rounds that open an outage episode.", between(1, 1000))
    close_after: int = opt(2, "Consecutive good rounds that close it.", between(1, 1000))
    momentary_max_s: float = opt(300.0, "Episodes this long or shorter are momentary, longer ones "
                                  "sustained (IEEE 1366).", at_least(0))
    degraded_loss_pct: float = opt(20.0, "A round is degraded when even the best internet target "
                                    "lost at least this share of echoes.", between(0, 100))
    degraded_rtt_ms: float = opt(500.0, "... or when even the best target's average RTT is at "
                                  "least this.", at_least(1))


@dataclass(frozen=True)
class PowerSection:
    battery: str = opt("auto", '"auto": watch the laptop\'s AC adapter and battery when there is '
                        'one; "off": do not.', one_of("auto", "off"))
    ups: str = opt("", "A UPS through Network UPS Tools: nut://[user@]host[:3493]/upsname. "
                    "Empty: no UPS. Reading needs no credentials (upsd checks them only for "
                    "commands) and NUT sends them in clear text: leave them out unless your server "
                    "requires them. With a user, keep the password out of this file (which the "
                    "service's user, and often everyone, can read): in ups_password_file, "
                    "$LINEWATCH_UPS_PASSWORD or the systemd credential ups-password. "
                    "nut://user:password@host/ups works too, and `run` and `check` warn while "
                    "this file is readable by others. The password is never printed.", _check_ups,
                    "nut://localhost/ups")
    ups_password_file: str = opt("", "File holding the password of the user power.ups names "
                                  "(one line; keep it private: chmod 600). The password is read "
                                  "from $LINEWATCH_UPS_PASSWORD first, then this file, then the "
                                  "systemd credential ups-password ($CREDENTIALS_DIRECTORY).",
                                  example="/etc/linewatch/ups-password")
    poll_s: float = opt(5.0, "Seconds between readings of the AC adapter and the UPS; a power cut "
                         "is recorded within one of these.", between(0.5, 300))


@dataclass(frozen=True)
class StoreSection:
    retention_days: float = opt(90.0, "Raw rounds older than this are deleted; episodes are kept "
                                 "forever.", at_least(1))
    max_size_mb: float = opt(1024.0, "Size cap of the local store; past it the oldest raw rounds "
                              "go first (counted in the agent's self-metrics).", at_least(10))


def _check_server_id(v: str) -> str | None:
    return None if v.isdigit() and len(v) <= 9 else "must be a speedtest.net server id (digits)"


_check_cron = parses("agent.speedplan", "check_cron", allow_empty=True)
_check_speed_url = parses("agent.probes.speedtest", "parse_server_url", allow_empty=True)


@dataclass(frozen=True)
class SpeedtestSection:
    enabled: bool = opt(True, "Run speed tests on a schedule (each moves tens of MB, about 1 GB "
                         "on a gigabit line; the monthly budget below caps the total).")
    server_ids: tuple[str, ...] = opt((), "speedtest.net server ids to choose from (the one "
                                       "with the lowest latency is used). Empty: the nearest.",
                                       each(_check_server_id))
    exclude_ids: tuple[str, ...] = opt((), "speedtest.net server ids never to use.",
                                        each(_check_server_id))
    server_url: str = opt("", "Your own speed-test server instead of speedtest.net: the URL of "
                           "its upload endpoint, as in speedtest.net server lists "
                           "(http://host:port/speedtest/upload.php); latency.txt and the "
                           "randomNxN.jpg files sit beside it. Nothing then goes to speedtest.net.",
                           _check_speed_url, "http://speed.example.org:8080/speedtest/upload.php")
    mean_interval_h: float = opt(6.0, "Mean hours between tests, drawn from an exponential "
                                  "distribution and clamped to 36 minutes .. 15 hours (M-Lab's "
                                  "guidance: tests spread evenly over the day).", between(1, 168))
    cron: str = opt("", "Fixed times instead, as a crontab line in the machine's local time, "
                     "e.g. \"0 9,21 * * *\" (09:00 and 21:00).", _check_cron, "0 9,21 * * *")
    monthly_budget_mb: float = opt(2000.0, "Data the tests may use per calendar month (UTC), "
                                    "counted from the bytes each test really moved. A test that "
                                    "would cross it is skipped, and the skip recorded.",
                                    at_least(0))
    only_on_ac: bool = opt(False, "Skip tests while the machine runs on battery.")


def _check_plan_speed(v: float) -> str | None:
    return None if v >= 0 else "must be the paid speed in Mbit/s (> 0), or 0 for not set"


@dataclass(frozen=True)
class ReportSection:
    account: str = opt("", "Your customer account or line reference with the ISP (as on the bill), "
                        "printed on the page `linewatch report` writes so the ISP can find the "
                        "line. It stays on this machine: never a tag, never forwarded.",
                        max_len(64), "1234567890")
    plan_download_mbps: float = opt(0.0, "The download speed your plan is sold at (paid), Mbit/s; "
                                     "the report sets the measured speeds against it. 0: not set.",
                                     _check_plan_speed, 20)
    plan_upload_mbps: float = opt(0.0, "The plan's paid upload speed, Mbit/s. 0: not set.",
                                   _check_plan_speed, 5)


_check_service = parses("agent.probes.services", "parse_service")


def _check_throttle_url(v: str) -> str | None:
    if v == "":
        return None
    if not v.lower().startswith("https://"):
        return 'must be an https:// URL of a file on a server you run, or "" for none'
    return _check_service(v)


def _check_resolver(v: str) -> str | None:
    if v == "" or _check_ip(v) is None:
        return None
    if v.lower().startswith("https://"):
        return _check_service(v)
    return 'must be an IP address, an https:// DNS-over-HTTPS URL, or "" for none'


@dataclass(frozen=True)
class ServicesSection:
    urls: tuple[str, ...] = opt(
        ("https://www.upwork.com/", "https://www.fiverr.com/", "https://zoom.us/",
         "https://github.com/", "https://www.payoneer.com/", "https://slack.com/"),
        "Sites to check while the line is up (https:// URLs; `linewatch services` checks them "
        "now): where remote workers find work, meet, keep code and get paid. Each check is DNS, "
        "TCP, TLS and one HEAD request, a few kB. Empty: no site checks.", each(_check_service))
    vpn: tuple[str, ...] = opt((), "Your own VPN endpoints to check: "
                                "wireguard://host[:port]?config=/path/to/wg.conf (a WireGuard "
                                "server: a handshake made with the keys of that wg-quick config, "
                                "which the agent's user must be able to read; a WireGuard server "
                                "answers nothing else. Use a peer kept for monitoring: the server "
                                "points a peer's tunnel at the check until its client's next "
                                "packet, and a clock running ahead here makes the server refuse "
                                "that peer's next handshakes as replays), "
                                "openvpn://host[:port][?transport=udp|tcp] (an OpenVPN "
                                "server: its answer to a client's first packet; a server that "
                                "requires tls-auth or tls-crypt does not answer without its key, "
                                "so it fails this check), or tcp://host:port (another TCP-based "
                                "VPN: a name lookup and a connect). Empty: none.",
                                each(_check_service), ("openvpn://vpn.example.org:1194",))
    interval_s: float = opt(1800.0, "Seconds between checks of a site or endpoint that passed "
                             "its last check (checks run only while the line is up: none during "
                             "an outage, a power cut or a speed test). A check of a site moves "
                             "about 5 kB: at the defaults, 6 sites cost about 43 MB a month "
                             "(bench/README.md).", between(10, 86400))
    retry_s: float = opt(60.0, "Seconds before a target whose last check failed is checked "
                          "again: blocking is confirmed (open_after checks) within minutes, and "
                          "only a failing target is checked this often.", between(10, 3600))
    timeout_s: float = opt(10.0, "Seconds each step of a check (DNS, TCP, TLS, HTTP) may take.",
                            between(1, 60))
    open_after: int = opt(3, "Consecutive checks of one target failing at the same step, while "
                           "the line is up, that open an interference episode (the first check "
                           "that passes ends it).", between(1, 100))
    resolver: str = opt("1.1.1.1", "A second DNS path: a resolver asked beside the system's, so "
                         "a poisoned answer shows as a mismatch: its IP address (asked at each "
                         "check, over port 53, where a network can answer for it), or a "
                         "DNS-over-HTTPS URL such as https://1.1.1.1/dns-query (asked only when "
                         "a site fails at TCP or TLS; its certificate verified). \"\": none.",
                         _check_resolver)
    control_sni: str = opt("example.com", "A neutral name sent in a second TLS handshake to a "
                            "site whose own handshake was reset: if that one completes, the "
                            "blocking keys on the site's name (SNI filtering).",
                            _check_dns_name)
    ca_file: str = opt("", "A CA certificate file (PEM) to trust for the checks besides the "
                        "system's (a company's own CA).", example="/etc/linewatch/ca.pem")
    throttle_url: str = opt("", "Throttling checks (optional): an https:// URL of a file of at "
                             "least throttle_bytes on a server you or your NGO runs, which "
                             "serves it whatever TLS name a client sends. Each name of "
                             "throttle_names is checked by fetching it twice, with "
                             "control_sni and with the name as TLS name: a box that slows "
                             "traffic by name slows only the second, and a rate under half the "
                             "neutral one is throttling. Each check moves 2 x throttle_bytes: "
                             "leave it off on a metered line. \"\": off.",
                             _check_throttle_url, "https://probe.example.org/1mb.bin")
    throttle_names: tuple[str, ...] = opt((), "Names checked for throttling (sent as the TLS "
                                           "name). Empty: the hosts of urls.",
                                           each(_check_dns_name), ("www.youtube.com",))
    throttle_bytes: int = opt(1_000_000, "Bytes fetched per download of a throttling check "
                               "(enough to get past a throttler's first burst).",
                               between(100_000, 50_000_000))
    throttle_interval_s: float = opt(21600.0, "Seconds between throttling checks of a name not "
                                      "found throttled (one found throttled is checked again "
                                      "after retry_s, so open_after checks, at least 3, confirm "
                                      "it). At 6 names and the defaults, about 1.4 GB a month.",
                                      between(600, 7 * 86400))


@dataclass(frozen=True)
class Config:
    agent: AgentSection = field(default_factory=AgentSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    outage: OutageSection = field(default_factory=OutageSection)
    power: PowerSection = field(default_factory=PowerSection)
    store: StoreSection = field(default_factory=StoreSection)
    influx: InfluxSection = field(default_factory=InfluxSection)
    speedtest: SpeedtestSection = field(default_factory=SpeedtestSection)
    report: ReportSection = field(default_factory=ReportSection)
    services: ServicesSection = field(default_factory=ServicesSection)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    source: str = "(defaults)"  # the file this came from, for messages

    @property
    def state_dir(self) -> Path:
        return Path(self.agent.state_dir)


SECTIONS: dict[str, type] = {
    "agent": AgentSection, "probe": ProbeSection, "outage": OutageSection, "power": PowerSection,
    "store": StoreSection, "influx": InfluxSection, "speedtest": SpeedtestSection,
    "report": ReportSection, "services": ServicesSection, "alerts": AlertsSection,
}


# -- locating files ---------------------------------------------------------------------------

def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """``config.toml`` in the platform's user config dir."""
    return _platform_dir("config", env) / "config.toml"


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$STATE_DIRECTORY`` (set by systemd's StateDirectory=; first entry) or the user data dir."""
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return _platform_dir("data", env)


def _platform_dir(kind: str, env: Mapping[str, str]) -> Path:
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "win32":
        base = env.get("APPDATA" if kind == "config" else "LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "linewatch"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "linewatch"
    if kind == "config":
        return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "linewatch"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "linewatch"


def resolve_path(cli_path: str | None, env: Mapping[str, str] = os.environ) -> tuple[Path, bool]:
    """The config file to read and whether it was asked for explicitly (then it must exist)."""
    if cli_path:
        return Path(cli_path), True
    if env.get("LINEWATCH_CONFIG"):
        return Path(env["LINEWATCH_CONFIG"]), True
    return default_config_path(env), False


# -- loading ----------------------------------------------------------------------------------

def load(cli_path: str | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Find, read and validate the config; raise ConfigError naming the file and key."""
    path, explicit = resolve_path(cli_path, env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(str(path), "", "file not found") from None
        return finish(Config(), env)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc}") from exc
    return finish(parse(text, str(path)), env)


def parse(text: str, source: str = "config.toml") -> Config:
    """Parse and validate TOML text (no defaults resolved from the environment)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from exc
    return from_dict(data, source)


def from_dict(data: Mapping[str, Any], source: str = "config.toml") -> Config:
    data = dict(data)
    alerts = data.pop("alerts", None)
    sections = sections_of(data, SECTIONS, source)
    if alerts is not None:
        if not isinstance(alerts, dict):
            raise ConfigError(source, "alerts", "must be a table ([alerts])")
        sections["alerts"] = alerts_of(alerts, source)
    timeout_set = "timeout_s" in data.get("probe", {})
    if "probe" in sections and not timeout_set:
        p = sections["probe"]
        sections["probe"] = replace(p, timeout_s=default_timeout_s(p.interval_s))
    cfg = Config(**sections, source=source)
    _cross_checks(cfg, timeout_set)
    return cfg


def default_timeout_s(interval_s: float) -> float:
    """probe.timeout_s when the file leaves it out: 2 s, or half the interval when that is
    shorter, so that an interval alone (``interval_s = 2``) is always a valid config."""
    return min(2.0, interval_s / 2)


def _cross_checks(cfg: Config, timeout_set: bool) -> None:
    p = cfg.probe
    if timeout_set and p.timeout_s >= p.interval_s:
        raise ConfigError(cfg.source, "probe.timeout_s",
                          f"must be shorter than probe.interval_s ({p.interval_s:g}), got {p.timeout_s:g}")
    w = cfg.power
    if w.ups_password_file:
        # deferred: the UPS URL parser loads only when a UPS password file is set (the config stays light)
        from agent.probes.nut_url import url_credentials

        user, password = url_credentials(w.ups) if w.ups else (False, False)
        if not user:
            raise ConfigError(cfg.source, "power.ups_password_file", "set, but power.ups names no "
                              "user: nut://user@host/ups")
        if password:
            raise ConfigError(cfg.source, "power.ups_password_file", "set, but power.ups holds a "
                              "password too: keep it in one place (nut://user@host/ups)")
    i = cfg.influx
    if i.url and not (i.bucket or i.database):
        key = "influx.database" if i.api == "v1" else "influx.bucket"
        raise ConfigError(cfg.source, key, "required when influx.url is set (a bucket for InfluxDB "
                          "2.x, 3.x and Cloud, a database for 1.x)")


def finish(cfg: Config, env: Mapping[str, str] = os.environ) -> Config:
    """Fill in values that come from the environment (the state dir)."""
    if not cfg.agent.state_dir:
        cfg = replace(cfg, agent=replace(cfg.agent, state_dir=str(default_state_dir(env))))
    return cfg


def check_value(section: str, key: str, value: Any) -> str | None:
    """What the config file expects of ``section.key`` if ``value`` is wrong, else None (for
    answers checked one by one, as ``init`` does at its prompts)."""
    return problem_of(next(f for f in fields(SECTIONS[section]) if f.name == key), value)


# -- reloading --------------------------------------------------------------------------------

# What a running agent applies when it reads its config again (SIGHUP): the tags on its rows, the
# keys `init` writes. Every other key shapes jobs, sockets or the store and waits for a restart.
LIVE_KEYS: tuple[str, ...] = ("agent.region", "agent.city", "agent.isp", "agent.access")


def changed_keys(old: Config, new: Config) -> list[str]:
    """``section.key`` of every value that differs between two configs, in file order."""
    out = []
    for name in SECTIONS:
        a, b = getattr(old, name), getattr(new, name)
        out += [f"{name}.{f.name}" for f in fields(a) if getattr(a, f.name) != getattr(b, f.name)]
    return out


def reloaded(running: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """(the config to run with now, the keys it applied, the changed keys that need a restart).

    The config to run with is the running one with the live keys taken from ``new``: the rest
    stays as the agent's jobs were built with, so ``cfg`` never claims a value the agent does not
    use."""
    changed = changed_keys(running, new)
    live = [k for k in changed if k in LIVE_KEYS]
    agent = replace(running.agent, **{k.split(".", 1)[1]: getattr(new.agent, k.split(".", 1)[1])
                                      for k in live})
    return (replace(running, agent=agent, source=new.source), live,
            [k for k in changed if k not in LIVE_KEYS])


# -- the example config -----------------------------------------------------------------------

def example_toml(values: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The commented config file: every key with its doc; keys in ``values`` are set, the rest
    are shown commented out at their defaults."""
    values = values or {}
    out = [
        "# linewatch configuration. Every key is optional: delete what you do not need.",
        "# Keys shown commented out are at their defaults.",
        "# A running agent reads this file again on SIGHUP (`systemctl reload linewatch-agent` or",
        "# `kill -HUP <pid>`): it applies agent.region, city, isp and access at once and logs any",
        "# other change, which waits for a restart.",
    ]
    for name, cls in SECTIONS.items():
        out += ["", f"[{name}]"]
        for i, f in enumerate(fields(cls)):
            if f.name == "channels":
                continue  # an array of tables: shown after the section's keys
            if i:
                out.append("")
            for line in wrap(f.metadata["doc"]):
                out.append(f"# {line}")
            chosen = values.get(name, {})
            if f.name in chosen:
                out.append(f"{f.name} = {toml_value(chosen[f.name])}")
            else:
                out.append(f"# {f.name} = {toml_value(default_of(f))}")
        if cls is AlertsSection:
            out += _channel_example()
    return "\n".join(out) + "\n"


def _channel_example() -> list[str]:
    """The commented ``[[alerts.channels]]`` table: each key with its doc and an example."""
    out = ["", *(f"# {line}" for line in wrap("Channels: one [[alerts.channels]] table each, "
                                              "such as this one (remove the # to use it).")),
           "# [[alerts.channels]]"]
    for f in fields(ChannelSection):
        out.append("#")
        out += [f"# {line}" for line in wrap(f.metadata["doc"])]
        example = f.metadata.get("example")
        shown = example if example is not None else default_of(f)
        out.append(f"# {f.name} = {toml_value(tuple(shown) if isinstance(shown, list) else shown)}")
    return out
