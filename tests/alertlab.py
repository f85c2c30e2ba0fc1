"""The alert services of tests/alertservers.py as one process on a lab host, recording what
they receive: ``python -m tests.alertlab --host H --out FILE --token T`` runs an ntfy double
(port 8081, topic /linewatch), a Telegram Bot API double (8082, bot token T, chat 123456789)
and a webhook receiver (8083) on address H (a namespace's address: they can be reached only
while the lab's line is up) and appends one JSON line per request to FILE: the service, the
status it answered, the path, the headers (Authorization left out) and the body.

:func:`received` reads the file back. The real agent's alerts reach these servers through the
lab's gateway, as they would reach ntfy.sh or Telegram over a user's line.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from tests.alertservers import NtfyDouble, Request, Server, TelegramDouble, WebhookDouble

PORTS = {"ntfy": 8081, "telegram": 8082, "webhook": 8083}
TOPIC, CHAT = "linewatch", 123456789


def received(path: Path) -> list[dict[str, Any]]:
    """What the services received, oldest first (none before the file exists)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def serve(host: str, out: Path, token: str, stop: threading.Event) -> None:
    lock = threading.Lock()

    def record(server: Server, req: Request, status: int) -> None:
        kind = next(k for k, v in servers.items() if v is server)
        line = {"service": kind, "status": status, "path": req.path, "headers": {
            k: v for k, v in req.headers.items() if k != "authorization"},
            "body": req.body.decode("utf-8", "replace")}
        with lock, out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")

    servers: dict[str, Server] = {"ntfy": NtfyDouble(TOPIC), "telegram": TelegramDouble(token, (CHAT,)),
                                  "webhook": WebhookDouble()}
    for kind, server in servers.items():
        server.host, server.port, server.on_request = host, PORTS[kind], record
        server.__enter__()
    try:
        stop.wait()
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--token", required=True)
    args = ap.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serve(args.host, args.out, args.token, stop)


if __name__ == "__main__":
    main()
