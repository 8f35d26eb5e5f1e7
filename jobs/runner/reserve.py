"""A few hundred KB of the job folder's disk, held so that a "disk full" pause can still be recorded.

Each runner keeps ``runners/.tmp-reserve-<id>``: when the disk fills up it deletes the file to make
room for the small write that pauses the job (``Runner._on_disk_full``). A ``.tmp-`` name, touched at
each heartbeat: housekeeping sweeps the reserve of a runner that was killed (after an hour), never a
live one's.
"""

from __future__ import annotations

import os
from pathlib import Path

from jobs.store.atomic import TMP_PREFIX

#: Disk space each runner keeps in reserve to record a "disk full" pause.
RESERVE_BYTES = 256 * 1024


class DiskReserve:
    def __init__(self, runners_dir: Path, runner_id: str) -> None:
        self.path = runners_dir / f"{TMP_PREFIX}reserve-{runner_id}"

    def keep(self) -> None:
        """Hold RESERVE_BYTES (or touch the file that holds them); called at each heartbeat."""
        try:
            if self.path.exists():
                os.utime(self.path)
            else:
                with open(self.path, "wb") as f:
                    f.write(b"\0" * RESERVE_BYTES)
        except OSError:
            self.path.unlink(missing_ok=True)  # no room yet: retried at the next heartbeat

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
