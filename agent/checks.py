"""``linewatch check``: each check returns what works or what does not, with its fix.

A check is a function ``(cfg) -> dict(name, result: ok|warn|fail, detail, fix)``; one that raises
is reported as failed, never crashes the command.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import stat
from urllib.parse import urlencode, urlsplit

from agent import lock, power
from agent.clock import SystemClock
from agent.config import Config
from agent.probes import dns, icmp, nut_protocol, nut_url, ups
from agent.probes.echo import EchoDispatch
from agent.probes.registry import host_sensor, platform_for
from agent.probes.target import parse_target
from agent.statekeys import STATE_FORWARD
from agent.store import STATE_RECOVERED, Store
from kit.errors import ConfigError, StoreCorrupt, StoreError, StoreMissing, os_error_line
from kit.influx import Sink, api_for_version, load_token, target_for
from kit.secret import redact_value
from kit.words import plural


def _r(name: str, result: str, detail: str, fix: str = "") -> dict:
    return {"name": name, "result": result, "detail": detail, "fix": fix}


def check_config(cfg: Config) -> dict:
    return _r("config", "ok", f"loaded from {cfg.source}")


def check_icmp(cfg: Config) -> dict:
    if cfg.probe.method == "tcp":
        return _r("echo method", "ok", f"TCP connect to port {cfg.probe.tcp_port} (forced in config)")
    if cfg.probe.method != "auto":
        if icmp.permitted(cfg.probe.method):
            return _r("echo method", "ok", f"{cfg.probe.method} (forced in config)")
        return _r("echo method", "fail", f"{cfg.probe.method} is forced in config but not permitted",
                  platform_for(cfg).icmp_help())
    method = icmp.available_method(socket.AF_INET)
    if method == "icmp_dgram":
        return _r("echo method", "ok", "ICMP through an unprivileged datagram socket")
    if method == "icmp_raw":
        return _r("echo method", "ok", "ICMP through a raw socket (the process has CAP_NET_RAW)")
    return _r("echo method", "warn",
              f"ICMP is refused; falling back to TCP connect timing on port {cfg.probe.tcp_port} "
              "(routers that drop that port look unreachable)", platform_for(cfg).icmp_help())


def check_gateway(cfg: Config) -> dict:
    g = cfg.probe.gateway
    if g == "off":
        return _r("gateway", "ok", "not probed (probe.gateway = \"off\"): LAN and ISP outages look alike")
    host = platform_for(cfg)
    addr = g if g != "auto" else host.default_gateway()
    if not addr and g == "auto" and not host.routes_known():
        return _r("gateway", "warn", "cannot read the routing table on this system: the gateway is "
                  "not probed and LAN outages are reported with cause \"unknown\"",
                  "set probe.gateway to the router's address (e.g. 192.168.1.1)")
    if not addr:
        return _r("gateway", "fail", "no default route: the machine is not connected",
                  "connect to the network, or set probe.gateway to the router's address")
    s = EchoDispatch(cfg.probe.method, cfg.probe.tcp_port)(
        parse_target(addr), count=2, timeout_s=cfg.probe.timeout_s, clock=SystemClock())
    if s.fields["received"]:
        return _r("gateway", "ok", f"{addr} answers ({s.tags['method']}, {s.fields['rtt_avg_ms']:.1f} ms)")
    return _r("gateway", "warn", f"{addr} does not answer echoes ({s.tags['method']})",
              "some routers drop echoes; LAN outages are then reported with cause \"unknown\"")


def check_targets(cfg: Config) -> dict:
    echo = EchoDispatch(cfg.probe.method, cfg.probe.tcp_port)
    up, down = [], []
    for t in cfg.probe.targets:
        s = echo(parse_target(t), count=2, timeout_s=cfg.probe.timeout_s, clock=SystemClock())
        (up if s.fields["received"] else down).append(t)
    if not down:
        return _r("internet targets", "ok", "all answer: " + ", ".join(up))
    if up:
        return _r("internet targets", "warn", f"no answer from {', '.join(down)}; {', '.join(up)} answer",
                  "check the addresses in probe.targets")
    return _r("internet targets", "fail", "none answers: " + ", ".join(down),
              "the internet is down now, or a firewall drops echoes to these targets")


def check_dns(cfg: Config) -> dict:
    servers = list(cfg.probe.dns_servers) or dns.system_servers()
    bad = []
    for name in cfg.probe.dns_names:
        s = dns.measure(name, servers=servers, timeout_s=cfg.probe.timeout_s, clock=SystemClock())
        if not s.fields.get("success"):
            bad.append(f"{name} ({s.fields.get('error')})")
    where = ", ".join(servers)
    if not cfg.probe.dns_names:
        return _r("dns", "ok", "no names configured (probe.dns_names is empty)")
    if bad:
        return _r("dns", "fail", f"via {where}: " + ", ".join(bad),
                  "check probe.dns_servers (or /etc/resolv.conf) and probe.dns_names")
    n = len(cfg.probe.dns_names)
    return _r("dns", "ok", f"{plural(n, 'name')} {'resolves' if n == 1 else 'resolve'} via {where}")


def check_store(cfg: Config) -> list[dict]:
    """The store, read-only (a check never creates, moves or changes it), and whether an agent
    runs on it (by its lock, :mod:`agent.lock`)."""
    held = lock.holder(cfg.state_dir)
    if held.running:
        rec = held.record or {}
        agent = _r("agent", "ok", f"running (pid {held.pid})" if held.pid else "running")
        if rec.get("store_error"):
            agent = _r("agent", "fail", f"running (pid {held.pid}), but the store cannot be written "
                       f"since {rec.get('store_error_since')}: {rec['store_error']}; rounds wait in memory",
                       f"free space on the disk that holds {cfg.state_dir}, or fix the file's permissions")
    elif held.running is None:
        agent = _r("agent", "warn", f"cannot read {cfg.state_dir / lock.LOCK_NAME}: is the agent "
                   "another user's?", "run `linewatch check` as the agent's user")
    else:
        agent = _r("agent", "warn", f"not running on {cfg.state_dir}",
                   "start it: `linewatch run`, or `systemctl start linewatch-agent`")
    try:
        store = Store.open_readonly(cfg.state_dir, live=held.running is not False)
    except StoreMissing:
        return [agent, _r("store", "ok",
                          f"none yet in {cfg.state_dir}: the agent creates it at its first start")]
    except StoreCorrupt as exc:
        return [agent, _r("store", "fail", str(exc).split("; ", 1)[0],
                          "start the agent (`linewatch run`): it moves the damaged file aside and keeps "
                          "every row it can still read; copy the file first if you want it as it is")]
    except (StoreError, OSError) as exc:
        text = os_error_line(exc) if isinstance(exc, OSError) else str(exc)
        return [agent, _r("store", "fail", text, "run the check as the agent's user, or fix the state "
                          "dir's owner and permissions")]
    try:
        size = store.file_bytes()
        path = store.path
        recovered = json.loads(store.get_state(STATE_RECOVERED) or "null")
    finally:
        store.close()
    mode = stat.S_IMODE(os.stat(cfg.state_dir).st_mode)
    if not os.access(path, os.W_OK) or not os.access(cfg.state_dir, os.W_OK):
        return [agent, _r("store", "fail", f"{path} cannot be written by this user",
                          f"run the agent as the owner of {cfg.state_dir}, or chown it to the agent's user")]
    if mode & 0o077:
        return [agent, _r("store", "warn", f"{cfg.state_dir} is readable by others (mode {mode:o})",
                          f"chmod 700 {cfg.state_dir}")]
    rows = [agent, _r("store", "ok", f"{path} is writable ({size / 1e6:.1f} MB)")]
    if recovered:
        rows.append(_r("store history", "warn", f"the store was damaged and replaced on "
                       f"{recovered.get('time')}; the old file is {recovered.get('moved_to')}"))
    return rows


def check_clock(cfg: Config) -> dict:
    state = platform_for(cfg).clock_state()
    if state == power.SYNCED:
        return _r("clock", "ok", "synchronised by a time-sync service")
    if state == power.NO_SYNC_SERVICE:
        return _r("clock", "ok", "no time-sync service runs: the clock comes from the hardware clock "
                  "(RTC) and is trusted as it is; install systemd-timesyncd or chrony if it drifts")
    return _r("clock", "warn", "a time-sync service runs but the clock is not synchronised yet: "
              "host-down episodes wait for it (durations use the monotonic clock and are unaffected)",
              "check the network and `timedatectl timesync-status`")


def check_battery(cfg: Config) -> dict:
    if cfg.power.battery == "off":
        return _r("battery", "ok", "not watched (power.battery = \"off\")")
    r = platform_for(cfg).ac_power()
    if r is None:
        return _r("battery", "ok", "no battery or AC adapter found: power cuts are seen through the UPS "
                  "or, without one, as host-down episodes after the next boot")
    state = {True: "on battery", False: "on mains", None: "state unknown"}[r.on_battery]
    charge = f", charge {r.charge_pct:.0f} %" if r.charge_pct is not None else ""
    return _r("battery", "ok", f"AC adapter watched: {state}{charge}")


def check_ups(cfg: Config) -> list[dict]:
    """The UPS server, read once as the agent reads it, after where its password is kept."""
    if not cfg.power.ups:
        return [_r("ups", "ok", "none configured (power.ups)")]
    try:
        url, warnings = nut_url.load_url(cfg.power, os.environ, cfg.source)
    except ConfigError as exc:
        return [_r("ups password", "fail", str(exc),
                   f"keep the password in {nut_url.PASSWORD_PLACES}, readable by the agent's user")]
    rows = [_r("ups password", "warn", w, "chmod 600 the file, or move the password out of the "
               "config file") for w in warnings]
    try:
        s = ups.measure(url, timeout_s=2.0, clock=SystemClock())
    except nut_protocol.NutError as exc:
        fixes = {"unreachable": "start the NUT server (upsd) or correct the host and port in power.ups",
                 "unknown_ups": "list the server's UPS names with `upsc -l HOST` and correct power.ups",
                 "access_denied": "check the user in power.ups and its password against upsd.users",
                 "stale": "the NUT driver lost contact with the UPS: check its cable and driver"}
        return rows + [_r("ups", "warn", f"{exc} (the agent keeps measuring without it)",
                          fixes.get(getattr(exc, "kind", ""), "check power.ups"))]
    f = s.fields
    charge = f", charge {f['charge_pct']:.0f} %" if "charge_pct" in f else ""
    return rows + [_r("ups", "ok", f"{url}: status {f.get('status')}{charge}")]


def check_host(cfg: Config) -> dict:
    boot = host_sensor(platform_for(cfg)).measure()
    bid, bt = boot.boot_id, boot.boot_time
    if not bid or bt is None:
        return _r("host", "warn", f"cannot read the boot id or boot time under {cfg.agent.procfs}: "
                  "power cuts that take the host down will not be recorded", "check agent.procfs")
    return _r("host", "ok", f"booted {bt.isoformat()}; a reboot without a clean stop is recorded as "
              "a host-down power episode")


def check_influx(cfg: Config) -> list[dict]:
    """The server: URL (``/ping``), credentials and bucket/database (an empty write, which the
    server authorises and routes like a real one but which stores nothing), each its own row, so
    the one that is wrong is named; then the agent's forwarding state from the store."""
    i = cfg.influx
    if not i.url:
        return [_r("influx", "ok", "not configured (influx.url): the local store keeps everything")]
    rows = []
    try:
        token = load_token(i, os.environ, cfg.source)
    except ConfigError as exc:
        return [_r("influx token", "fail", str(exc), "make the file readable by the agent's user")]
    if token.warning:
        rows.append(_r("influx token", "warn", token.warning))
    if not i.verify_tls:
        rows.append(_r("influx tls", "warn", "influx.verify_tls = false: the server's certificate "
                       "is not checked", "use influx.ca_file for a private CA"))
    elif i.url.startswith("http://") and token.value and not _loopback(i.url):
        rows.append(_r("influx tls", "warn", "the token crosses the network unencrypted (http://)",
                       "use https:// for a server on another machine"))
    sink = Sink(i, token)
    shown = redact_value(sink.url)
    ans, version = sink.ping()
    if ans.status is None:
        return rows + [_r("influx url", "fail", f"{shown}: {ans.message}",
                          "check influx.url (scheme, host, port) and that the server runs")]
    api = i.api if i.api != "auto" else api_for_version(version)
    target = target_for(i, api)
    said = f"version {version}" if version else "no version header"
    rows.append(_r("influx url", "ok", f"{shown} answers ({said}); writing with {target.describe()}"))
    rows += _empty_write(sink, api, target, token, shown)
    rows.append(_forward_state(cfg))
    return rows


def _empty_write(sink: Sink, api: str, target, token, shown: str) -> list[dict]:
    """The rows for the credentials and the bucket/database, from an empty write: the server
    authorises and routes it like a real one, but it stores nothing."""
    path = ("/write?" + _q({"db": target.database, "rp": target.retention_policy, "precision": "ns"})
            if api == "v1" else
            "/api/v2/write?" + _q({"bucket": target.bucket, "org": target.org, "precision": "ns"}))
    h = sink.http(api)
    try:
        w, _ = h.request("POST", path, b"", {"Content-Type": "text/plain; charset=utf-8"})
    finally:
        h.close()
    msg = sink.redact(w.message)
    where = f"database {target.database}" if api == "v1" else f"bucket {target.bucket}"
    creds = "no token" if not token.value else f"token from {token.source}"
    out: list[dict] = []
    empty_ok = w.ok or (w.status == 400 and "point" in msg.lower())
    if w.status is None:
        out.append(_r("influx credentials", "fail", f"the write endpoint did not answer: {msg}",
                      "check influx.url"))
    elif w.status == 401:
        out.append(_r("influx credentials", "fail", f"the server refused the {creds} (401): {msg}",
                      "put a valid token in $LINEWATCH_INFLUX_TOKEN, influx.token_file or the "
                      "influx-token credential (InfluxDB 1.x: user:password)"))
    elif w.status == 403:
        out.append(_r("influx credentials", "fail", f"the {creds} may not write to {where} (403): {msg}",
                      "give the token write permission on it"))
    elif w.status == 404 and "page not found" in msg.lower():
        hint = ('set influx.api = "v1" (InfluxDB 1.x older than 1.8 has no /api/v2/write)'
                if api == "v2" else "check influx.url and influx.api")
        out.append(_r("influx url", "fail", f"{shown}{path.split('?')[0]} does not exist (404)", hint))
    elif w.status == 404:
        out.append(_r("influx credentials", "ok", f"accepted ({creds})"))
        thing = "org" if "org" in msg.lower() and "bucket" not in msg.lower() else where
        out.append(_r("influx bucket", "fail", f"{thing} not found: {msg}",
                      "create it, or correct influx.bucket / influx.org / influx.database"))
    elif empty_ok:
        out.append(_r("influx credentials", "ok", f"accepted ({creds})" if token.value else
                      "the server asks for none"))
        out.append(_r("influx bucket", "ok", f"{where} accepts writes"))
    else:
        out.append(_r("influx credentials", "fail", f"a test write was refused ({w.status}): {msg}",
                      "check influx.* against the server"))
    return out


def check_speedtest(cfg: Config) -> dict:
    """The speed-test settings and, for a self-hosted server, whether its latency.txt answers
    (a request of a few bytes: a check never runs a test, it would spend the user's data)."""
    st = cfg.speedtest
    if not st.enabled:
        return _r("speedtest", "ok", "off (speedtest.enabled = false)")
    plan = f"cron {st.cron!r}" if st.cron else f"every {st.mean_interval_h:g} h on average"
    budget = f"{plan}, budget {st.monthly_budget_mb:g} MB a month"
    if not st.server_url:
        return _r("speedtest", "ok", f"speedtest.net, {budget}")
    u = urlsplit(st.server_url)
    path = u.path.rsplit("/", 1)[0] + "/latency.txt"
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    try:
        conn = conn_cls(u.hostname, u.port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read(9)
        conn.close()
    except OSError as exc:
        return _r("speedtest", "fail", f"{redact_value(st.server_url)}: cannot reach the server ({exc})",
                  "check speedtest.server_url and that the server runs")
    if resp.status != 200 or body != b"test=test":
        return _r("speedtest", "fail", f"{u.scheme}://{u.netloc}{path} answered {resp.status}, not "
                  "test=test: not a speed-test server", "check speedtest.server_url")
    return _r("speedtest", "ok", f"self-hosted server {u.netloc} answers; {budget}")


def _forward_state(cfg: Config) -> dict:
    try:
        store = Store.open_readonly(cfg.state_dir)
    except StoreError as exc:
        return _r("influx forwarding", "warn", f"no forwarding state: {str(exc).split('; ', 1)[0]}")
    try:
        st = json.loads(store.get_state(STATE_FORWARD) or "{}") or {}
        backlog, _ = store.backlog()
        nq, _ = store.quarantined(0)
    finally:
        store.close()
    extra = f"; {plural(nq, 'row')} quarantined (see `linewatch status`)" if nq else ""
    wait = f"{plural(backlog, 'row')} {'waits' if backlog == 1 else 'wait'}{extra}"
    if st.get("halted"):
        return _r("influx forwarding", "fail", f"stopped: {st['halted']}; {wait}",
                  "fix it, then restart the agent or run `linewatch push`")
    if st.get("attempt"):
        err = st.get("last_error") or {}
        return _r("influx forwarding", "warn", f"retrying after: {err.get('message')}; {wait}")
    return _r("influx forwarding", "warn" if nq else "ok", wait)


def _q(params: dict) -> str:
    return urlencode({k: v for k, v in params.items() if v})


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_services(cfg: Config) -> dict:
    """What [services] will check, and whether what it needs can be read: the extra CA
    (services.ca_file) and each WireGuard endpoint's keys. Nothing is sent."""
    # deferred: the checks' module, for this check only
    from agent.jobs.services import configured_targets
    from agent.probes.services import wireguard_keys

    sv = cfg.services
    targets = configured_targets(sv)
    if not targets:
        return _r("services", "ok", "no sites or VPN endpoints to check ([services] urls, vpn)")
    if sv.ca_file:
        try:
            with open(sv.ca_file, "rb") as f:
                pem = f.read(1 << 20)
        except OSError as exc:
            return _r("services", "fail", f"services.ca_file: {os_error_line(exc)}",
                      "make the CA file readable by the agent's user, or set ca_file = \"\"")
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            return _r("services", "fail", f"services.ca_file: {sv.ca_file} is not a PEM "
                      "certificate file", "point it at the CA's certificate in PEM")
    for t in targets:
        if t.kind == "wireguard":
            try:
                wireguard_keys(t)
            except ValueError as exc:
                return _r("services", "fail", f"services.vpn: the keys for {t.target}: {exc}",
                          "give the path of a wg-quick config the agent's user can read, with "
                          "[Interface] PrivateKey and the server's [Peer] PublicKey")
            mode = stat.S_IMODE(os.stat(t.keys_file).st_mode)
            if mode & 0o077:
                return _r("services", "warn", f"services.vpn: {t.keys_file} holds a private key "
                          f"and is readable by others (mode {mode:o})", f"chmod 600 {t.keys_file}")
    sites = sum(t.kind == "site" for t in targets)
    throttled = sum(t.kind == "throttle" for t in targets)
    endpoints = plural(len(targets) - sites - throttled, "VPN endpoint")
    also = (f"; {plural(throttled, 'name')} for throttling every {sv.throttle_interval_s:g} s, "
            f"through {sv.throttle_url}") if throttled else ""
    return _r("services", "ok", f"{plural(sites, 'site')} and {endpoints} checked while the "
              f"line is up, every {sv.interval_s:g} s{also} (`linewatch services` checks them "
              "now)")


def check_alerts(cfg: Config) -> list[dict]:
    """Each alert channel: whether it can be made (its keys, its secret) and whether it looks
    usable now (the desktop's session bus answers; nothing is sent: `linewatch alerts test`
    sends), and the alerts waiting in the outbox."""
    a = cfg.alerts
    out = []
    if a.heartbeat_url:
        # deferred: the alert channels' HTTP module (cheap: http.client loads only to send)
        from agent.alerts.web import show_heartbeat

        out.append(_r("alerts heartbeat", "ok", f"{show_heartbeat(a.heartbeat_url)} fetched "
                      f"every {a.heartbeat_every_s:g} s while the agent runs"))
    if not a.channels:
        return out or [_r("alerts", "ok", "no channels ([[alerts.channels]]): no alerts are sent")]
    # deferred: the channels' registry, for this check only
    from agent.alerts.channels import build
    from agent.alerts.settings import channel_name
    from agent.status import alert_outbox

    waiting = {c: n["queued"] for c, n in alert_outbox(cfg, 1)["channels"].items()}
    for i, sec in enumerate(a.channels):
        name = f"alerts {channel_name(sec)}"
        try:
            ch = build(sec, i, cfg.source)
        except ConfigError as exc:
            out.append(_r(name, "fail", str(exc), "see the channel's keys in "
                          "docs/example-config.toml"))
            continue
        state = ch.state()
        queued = waiting.get(ch.key, 0)
        detail = f"{sec.kind}: {state}" + (f"; {plural(queued, 'alert')} waiting" if queued else "")
        if sec.on_lan:
            detail += "; on this network (on_lan): alerted during an ISP outage too"
        ready = state.startswith("ready") and not ch.warnings
        fix = "`linewatch alerts test` sends a test message"
        if ch.warnings:
            detail += "; " + "; ".join(ch.warnings)
            fix = "chmod 600 the secret file" if any("read" in w for w in ch.warnings) else fix
        out.append(_r(name, "ok" if ready else "warn", detail, "" if ready else fix))
    return out


CHECKS = (check_config, check_icmp, check_gateway, check_targets, check_dns, check_store, check_clock,
          check_battery, check_ups, check_host, check_speedtest, check_influx, check_services,
          check_alerts)


def run_checks(cfg: Config) -> list[dict]:
    out = []
    for check in CHECKS:
        try:
            got = check(cfg)
            out.extend(got if isinstance(got, list) else [got])
        except Exception as exc:  # noqa: BLE001 - a broken check is a failed check, not a crash
            out.append(_r(check.__name__.removeprefix("check_"), "fail", f"{type(exc).__name__}: {exc}"))
    return out


def worst(results: list[dict]) -> str:
    """The overall result: fail if any check failed, else warn if any warned, else ok."""
    out = "ok"
    for r in results:
        if r["result"] == "fail":
            out = "fail"
        elif r["result"] == "warn" and out == "ok":
            out = "warn"
    return out
