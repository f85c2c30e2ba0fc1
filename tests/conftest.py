import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent.store import Store
from tests import netlab
from tests.influxlab import InfluxV1, VictoriaMetrics, influx_unavailable, vm_unavailable

_netns_reason: list = []


def _netns_skip_reason():
    if not _netns_reason:
        _netns_reason.append(netlab.netns_unavailable())
    return _netns_reason[0]


@pytest.fixture
def lab():
    reason = _netns_skip_reason()
    if reason:
        pytest.skip(reason)
    lab = netlab.Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def net(lab):
    """The standard agent / gateway / internet topology."""
    return netlab.standard(lab)


@pytest.fixture
def desktop():
    """A real session bus (Debian's dbus-daemon) with a test double of the desktop's
    notification daemon on it (tests/dbuslab.py): (bus, double); skips without dbus-daemon."""
    # deferred: jeepney loads for the tests that use a bus only
    from tests import dbuslab

    reason = dbuslab.unavailable()
    if reason:
        pytest.skip(reason)
    with dbuslab.SessionBus() as bus, dbuslab.NotificationDouble(bus.address) as notes:
        yield bus, notes


@pytest.fixture
def store(tmp_path):
    """A fresh local store in the test's temp dir."""
    s = Store.open(tmp_path / "state")
    yield s
    s.close()


@pytest.fixture
def influx(tmp_path):
    """A real InfluxDB 1.6.7 with the database "linewatch"; skips when influxd is missing."""
    reason = influx_unavailable()
    if reason:
        pytest.skip(reason)
    with InfluxV1.create(tmp_path / "influx") as server:
        yield server


@pytest.fixture
def vm(tmp_path):
    """A real VictoriaMetrics; skips when it is not installed."""
    reason = vm_unavailable()
    if reason:
        pytest.skip(reason)
    with VictoriaMetrics.create(tmp_path / "vm") as server:
        yield server


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium (Debian's, through Playwright) for rendering the HTML pages; skips with
    the reason when it is missing."""
    from tests import browser

    reason = browser.unavailable()
    if reason:
        pytest.skip(reason)
    with browser.Browser() as b:
        yield b


@pytest.fixture
def mount_point():
    """A small tmpfs (1 MB) that a test can fill to the last block, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (run the suite as root or in CI)")
    d = Path(tempfile.mkdtemp(prefix="lw-tmpfs-"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)
    shutil.rmtree(d, ignore_errors=True)
