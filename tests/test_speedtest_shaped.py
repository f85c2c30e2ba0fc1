"""Speed-test accuracy over a bandwidth-shaped link, against iperf3 over the same link in the same
run: `linewatch speedtest` in a client namespace, the classic endpoints (tests/speedserver.py) in
a server namespace, tbf shaping both directions (tests/speedlab.py). Needs root."""

import json
import sys

import pytest

from tests.speedlab import ShapedLink

# Runs alone (tests/run.sh): rates over a shaped link are bounded to a few per cent.
pytestmark = pytest.mark.serial


@pytest.mark.parametrize("rate_mbit", [20, 100])
def test_speedtest_within_10_percent_of_the_shaped_rate(lab, tmp_path, rate_mbit):
    link = ShapedLink.create(lab, rate_mbit)
    url = link.start_server()
    link.start_iperf3()
    ref_down = link.iperf3("download")
    ref_up = link.iperf3("upload")
    cfg = tmp_path / "lw.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n[speedtest]\nserver_url = "{url}"\n')
    r = link.run_in_client(sys.executable, "-m", "agent", "speedtest", "--json", "--force",
                           "--config", str(cfg), check=False, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    rate = rate_mbit * 1e6
    report = (f"{rate_mbit} Mbit/s: speedtest down {res['download_bps'] / 1e6:.2f} up "
              f"{res['upload_bps'] / 1e6:.2f}; iperf3 down {ref_down / 1e6:.2f} up {ref_up / 1e6:.2f}")
    print(report)
    # The link is what it says (iperf3, the reference), and the speed test agrees with both.
    assert abs(ref_down / rate - 1) < 0.05 and abs(ref_up / rate - 1) < 0.05, report
    assert abs(res["download_bps"] / rate - 1) <= 0.10, report
    assert abs(res["upload_bps"] / rate - 1) <= 0.10, report
    assert res["download_bps"] / ref_down >= 0.90 and res["upload_bps"] / ref_up >= 0.90, report
