"""Power alerts from a real UPS: the agent (`linewatch run`) reads a real Network UPS Tools
server (upsd with its dummy-ups driver, tests/nutlab.py) and sends to a real D-Bus session bus,
where a test double of the desktop's notification daemon records what it is shown
(tests/dbuslab.py). The UPS goes on battery at 64 % with 22 minutes left, drains to 25 %, and
the mains come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.nutlab import NutServer, nut_unavailable

ROOT = Path(__file__).resolve().parents[1]


def wait_for(predicate, timeout_s: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture
def nut(tmp_path):
    reason = nut_unavailable()
    if reason:
        pytest.skip(reason)
    (tmp_path / "nut").mkdir()
    with NutServer.create(tmp_path / "nut", status="OL", charge=100, runtime=3600,
                          voltage=231.0) as server:
        yield server


def test_a_power_cut_on_a_ups_says_its_charge_and_time_left_then_low_then_back(
        tmp_path, nut, desktop):
    bus, notes = desktop
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        '[probe]\ninterval_s = 1\ntimeout_s = 0.3\ncount = 1\ngateway = "off"\n'
        'targets = ["127.0.0.1:9"]\ndns_names = []\n'
        f'[power]\nbattery = "off"\nups = "{nut.url()}"\npoll_s = 1\n'
        '[speedtest]\nenabled = false\n[services]\nurls = []\n'
        '[alerts]\nmin_duration_s = 2\nups_low_pct = 30\n'
        f'[[alerts.channels]]\nkind = "desktop"\nurl = "{bus.address}"\n')
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        assert not wait_for(lambda: notes.notes, 3)      # mains: nothing to say
        nut.set(status="OB DISCHRG", charge=64, runtime=1320, voltage=0)
        assert wait_for(lambda: len(notes.notes) == 1, 10), agent
        nut.set(status="OB DISCHRG", charge=25, runtime=400, voltage=0)
        assert wait_for(lambda: len(notes.notes) == 2, 10)
        nut.set(status="OL CHRG", charge=26, runtime=420, voltage=230.0)
        assert wait_for(lambda: len(notes.notes) == 3, 10)
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        code = agent.wait(20)
        err = agent.stderr.read().decode()
        agent.stderr.close()
    assert code == 0, err
    (cut_title, cut), (low_title, low), (back_title, back) = [(c.args[3], c.args[4])
                                                              for c in notes.notes]
    assert cut_title == "Power cut" and cut.endswith("(on UPS), 64 %, about 22 min left.")
    assert low_title == "UPS battery low: 25 %"
    assert "25 %, about 7 min left" in low and low.endswith("Save your work.")
    hints = notes.notes[1].args[6]
    assert hints["urgency"][1] == 2                       # critical
    assert back_title.startswith("Power back after") and "(on UPS)" in back
