"""``linewatch-collector check``: can the collector read its sources? Rows of (status, what,
detail), status OK / WARN / FAIL; FAIL makes the command exit 1."""

from __future__ import annotations

from datetime import UTC, datetime

from collector.config import CollectorConfig
from collector.influxql import Reader
from collector.storefile import expand
from kit.errors import ConfigError, SourceError
from kit.influx import Sink, load_token
from kit.secret import redact_value
from kit.storefile import StoreFile, shown


def run_checks(cfg: CollectorConfig, stores: tuple[str, ...], now: float) -> list[tuple[str, str, str]]:
    rows = [("OK", "config", cfg.source)]
    if cfg.influx.url:
        rows += _influx(cfg)
    paths = tuple(cfg.collector.stores) + tuple(stores)
    if paths:
        rows += _stores(paths, now)
    if not cfg.influx.url and not paths:
        rows.append(("FAIL", "source", "none: set [influx] url and database, or [collector] "
                                       "stores, or pass --store FILE"))
    return rows


def _influx(cfg: CollectorConfig) -> list[tuple[str, str, str]]:
    rows = []
    try:
        token = load_token(cfg.influx, source=cfg.source)
    except ConfigError as exc:
        return [("FAIL", "influx credentials", str(exc))]
    if token.warning:
        rows.append(("WARN", "influx credentials", token.warning))
    if not cfg.influx.verify_tls and cfg.influx.url.startswith("https"):
        rows.append(("WARN", "influx tls", "verify_tls = false: the server's certificate is not checked"))
    sink = Sink(cfg.influx, token)
    shown = redact_value(sink.url)
    ans, version = sink.ping()
    if not ans.ok:
        return rows + [("FAIL", "influx url", f"{shown}/ping: "
                        + (f"HTTP {ans.status}: {ans.message}" if ans.status else ans.message))]
    rows.append(("OK", "influx url", f"{shown} (version {version or 'not reported'})"))
    db = cfg.influx.database or cfg.influx.bucket
    reader = Reader(sink.http("v1"), db, cfg.influx.retention_policy,
                    max_answer_mb=cfg.collector.max_answer_mb,
                    query_timeout_s=cfg.collector.query_timeout_s)
    try:
        # Rows are the server's words: only one-string rows name a measurement.
        names = {v[0] for s in reader.query("SHOW MEASUREMENTS", "the SHOW MEASUREMENTS query")
                 for v in s["values"] if isinstance(v, list) and v and isinstance(v[0], str)}
        rows.append(("OK", "influx query", f"database {db!r} answers InfluxQL"))
        # An agent writes its summaries (``daily``, ``hourly``) and, unless it sends summaries
        # only (influx.send = "summaries"), its raw ``round`` rows: any of them is its data.
        kinds = [m for m in ("hourly", "round", "daily") if m in names]
        if not kinds:
            rows.append(("FAIL", "influx data", f"no 'hourly', 'round' or 'daily' measurement in "
                                                f"{db!r}: no agent has written here (check the "
                                                "agents' influx settings)"))
        else:
            field = {"hourly": "observed_s", "round": "interval_s", "daily": "observed_hours"}
            m = kinds[0]
            recent = reader.query(f'SELECT count("{field[m]}") FROM "{m}" WHERE time > now() - 1d '
                                  'GROUP BY "agent"', "the query for agents of the last day")
            what = "rounds" if m == "round" else "hourly summaries" if m == "hourly" else "days"
            detail = f"{len(recent)} agent(s) wrote {what} in the last 24 h"
            wanted = ["outage", "speedtest"] + (["ping"] if "round" in names else [])
            missing = [w for w in wanted if w not in names]
            if missing:
                detail += "; not yet written: " + ", ".join(missing)
            rows.append(("OK" if recent else "WARN", "influx data", detail))
    except SourceError as exc:
        rows.append(("FAIL", "influx query", sink.redact(str(exc))))
    finally:
        reader.http.close()
    return rows


def _stores(paths: tuple[str, ...], now: float) -> list[tuple[str, str, str]]:
    rows = []
    try:
        files = expand(paths)
    except SourceError as exc:
        return [("FAIL", "store", str(exc))]
    for p in files:
        try:
            f = StoreFile.open(p)
        except SourceError as exc:
            rows.append(("FAIL", "store", str(exc)))
            continue
        try:
            spans = f.round_spans(0, now + 86400)
            if not spans:
                rows.append(("WARN", "store", f"{p}: no probe rounds"))
                continue
            # One file is one agent's (the one with the most rounds); others' rows are refused.
            owner = f.owner
            others = sorted({s[2].agent for s in spans} - {owner})
            spans = [s for s in spans if s[2].agent == owner] or spans
            first = datetime.fromtimestamp(min(s[0] for s in spans) / 1e9, UTC)
            last = datetime.fromtimestamp(max(s[1] for s in spans) / 1e9, UTC)
            regions = sorted({s[2].region or "(no region)" for s in spans})
            detail = (f"{shown(p)}: agent {shown(owner, 60)}, {shown(', '.join(regions), 200)}, "
                      f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC")
            if others:
                rows.append(("WARN", "store", f"{detail}; rows of {len(others)} other agent "
                                              "id(s) are refused (one agent per file)"))
                continue
            rows.append(("OK", "store", detail))
        except SourceError as exc:
            rows.append(("FAIL", "store", str(exc)))
        finally:
            f.close()
    return rows
