"""End to end: an outage that closes while the store's file system is full is still recorded,
closed at the moment the line came back.

The real ``linewatch run`` probes from a network namespace (tests/netlab.py: agent, gateway,
"internet"); its state dir is on a real 1 MB tmpfs. The WAN link is cut (an ISP outage), the
file system is filled to the last block, the link comes back while nothing can be written, then
space is freed. The episode must be closed at the first good round after the repair, exactly
once, with its ``outage`` row in the outbox, and the agent must have said both ends of the full
disk once each.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.hosttree import fill_file_system

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
INTERVAL = 1.0
TIMEOUT = 0.4


def write_config(tmp_path: Path, state: Path) -> Path:
    p = tmp_path / "config.toml"
    p.write_text("\n".join([
        "[agent]", f'state_dir = "{state}"', 'region = "PK-SD"',
        "[probe]", f"interval_s = {INTERVAL}", f"timeout_s = {TIMEOUT}", "count = 2",
        'targets = ["198.51.100.1", "198.51.100.2"]', "dns_names = []", "netio_interval_s = 5",
        "[outage]", "open_after = 3", "close_after = 2", "momentary_max_s = 5",
        "[power]", 'battery = "off"', "[speedtest]", "enabled = false", "[services]", "urls = []",
    ]) + "\n")
    return p


def wait_for(log: Path, what: str, proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while what not in log.read_text():
        assert proc.poll() is None, f"agent exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what!r} in the log:\n{log.read_text()}"
        time.sleep(0.1)


def test_an_outage_that_closes_on_a_full_disk_is_written_when_space_returns(net, tmp_path, mount_point):
    state = mount_point / "state"
    cfg = write_config(tmp_path, state)
    log = tmp_path / "agent.log"
    with open(log, "w") as out:
        agent = net.lab.popen(net.agent, sys.executable, "-m", "agent", "run", "--config", str(cfg),
                              cwd=ROOT, env=ENV, stdout=out, stderr=out)
        filler = mount_point / "filler"
        try:
            wait_for(log, "started", agent)
            time.sleep(3)                                           # rounds up, written
            t_cut = datetime.now(UTC)
            net.cut_wan(True)
            wait_for(log, "connectivity episode started", agent)
            time.sleep(2)
            fill_file_system(filler)
            wait_for(log, "cannot be written since", agent)
            time.sleep(1.5)                                         # outage rounds while full
            t_back = datetime.now(UTC)
            net.cut_wan(False)
            wait_for(log, "connectivity episode ended", agent)      # closed while nothing can be written
            time.sleep(2)
            assert "can be written again" not in log.read_text()    # the disk really was full throughout
            filler.unlink()
            wait_for(log, "can be written again", agent)
            time.sleep(1.5)
        finally:
            if filler.exists():
                filler.unlink()
            os.killpg(agent.pid, signal.SIGTERM)
            code = agent.wait(timeout=20)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    assert text.count("cannot be written since") == 1 and text.count("can be written again") == 1, text

    r = net.lab.run(net.agent, sys.executable, "-m", "agent", "outages", "--json", "--config", str(cfg),
                    cwd=ROOT, env=ENV)
    eps = [e for e in json.loads(r.stdout) if e["type"] == "connectivity"]
    assert [e["cause"] for e in eps] == ["isp"], eps
    (ep,) = eps
    assert ep["end"] is not None, ep                            # closed, not in progress for ever
    start = datetime.fromisoformat(ep["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(ep["end"].replace("Z", "+00:00"))
    # A round is stamped with its start and lasts up to one spacing and a timeout: one that
    # straddles a cut or a repair goes either way, and the next starts an interval later.
    round_s = INTERVAL + 0.25 + TIMEOUT
    assert abs((start - t_cut).total_seconds()) <= round_s, (start, t_cut)
    assert abs((end - t_back).total_seconds()) <= round_s, (end, t_back)

    c = sqlite3.connect(f"file:{state / 'linewatch.db'}?mode=ro", uri=True)
    try:
        rows = c.execute("SELECT s.fields FROM samples s JOIN series r ON r.id = s.series_id"
                         " WHERE r.measurement = 'outage'").fetchall()
        (open_rows,) = c.execute("SELECT count(*) FROM episodes WHERE end_ns IS NULL").fetchone()
    finally:
        c.close()
    assert len(rows) == 1, rows                                  # one forwardable outage row
    fields = json.loads(rows[0][0])
    assert abs(fields["duration_s"] - (end - start).total_seconds()) < 0.01
    assert open_rows == 0
