"""Prepared host trees for tests and benchmarks: a laptop's power supplies under a sysfs root, a
boot under a procfs root, the time-sync flag under a run root, and a file system filled to its
last block."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path


def power_supply(sysfs: Path, online: str | None = "1", capacity: int | None = None,
                 status: str | None = None) -> Path:
    """Write (or rewrite) an AC adapter (``AC``) and a battery (``BAT0``) under
    ``<sysfs>/class/power_supply``. ``online`` is written last: it is the flip itself (None leaves
    it unwritten). Returns the AC adapter's directory."""
    ac, bat = Path(sysfs, "class/power_supply/AC"), Path(sysfs, "class/power_supply/BAT0")
    ac.mkdir(parents=True, exist_ok=True)
    bat.mkdir(parents=True, exist_ok=True)
    (ac / "type").write_text("Mains\n")
    (bat / "type").write_text("Battery\n")
    if capacity is not None:
        (bat / "capacity").write_text(f"{capacity}\n")
    if status is not None:
        (bat / "status").write_text(status + "\n")
    if online is not None:
        (ac / "online").write_text(online + "\n")
    return ac


def boot(procfs: Path, boot_id: str, when: datetime) -> None:
    """Write (or rewrite) the current boot as the kernel tells it under ``procfs``: its id
    (``sys/kernel/random/boot_id``) and its start (``btime`` in ``stat``)."""
    Path(procfs, "sys/kernel/random").mkdir(parents=True, exist_ok=True)
    Path(procfs, "sys/kernel/random/boot_id").write_text(boot_id + "\n")
    Path(procfs, "stat").write_text(f"cpu  1 2 3 4\nbtime {int(when.timestamp())}\nprocesses 9\n")


def time_synced(rundir: Path) -> None:
    """systemd-timesyncd's flag under ``rundir``: the clock is synchronised."""
    Path(rundir, "systemd/timesync").mkdir(parents=True, exist_ok=True)
    Path(rundir, "systemd/timesync/synchronized").write_text("")


def fill_file_system(filler: Path) -> None:
    """Write zeros into ``filler`` until its file system refuses one more block (ENOSPC)."""
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
