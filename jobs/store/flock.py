"""The locks of the job folder: an exclusive flock on a lock file that is never deleted.

The same lock filelock's FileLock takes on Unix, so the two interoperate; raw because a claim and a
commit each take one or two locks, and FileLock's bookkeeping cost more than the rest of the claim,
while its 50 ms poll made contended claimers wait; and FileLock creates missing parent folders, so
locking a job that was just deleted would bring back an empty job folder (here: ``JobNotFound``).
A contended lock is polled from 1 ms, backing off to 10 ms, until the timeout.
"""

from __future__ import annotations

import fcntl
import os
import time

from jobs.errors import Corrupt, JobDamaged, JobNotFound, StoreBusy
from jobs.store.safejson import open_regular


class Locked:
    """``with store.locked(job_id):``, turning a timeout into a message a user can act on, and a
    deleted job's folder into :class:`JobNotFound`."""

    def __init__(self, path: str, timeout: float, job_id: str | None) -> None:
        self._path, self._timeout, self._job_id = path, timeout, job_id
        self._fd = -1

    def __enter__(self) -> None:
        try:  # a symlink or a FIFO put in its place is refused: never ELOOP, never a block
            fd = open_regular(self._path, os.O_RDWR | os.O_CREAT)
        except FileNotFoundError:
            raise JobNotFound(str(self._job_id)) from None  # its folder was deleted
        except Corrupt as e:
            if self._job_id is None:
                raise StoreBusy(f"{self._path} is damaged ({e}): replace it with an empty regular file") from None
            raise JobDamaged(self._job_id, str(e)) from None
        delay, deadline = 0.001, 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if not deadline:
                    deadline = now + self._timeout
                elif now >= deadline:
                    os.close(fd)
                    what = f"job {self._job_id}" if self._job_id else "the job store"
                    raise StoreBusy(
                        f"{what} stayed locked for {self._timeout:.0f} s: another process holds "
                        f"{self._path}; check for a hung runner"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, -1
        os.close(fd)  # closing the only descriptor releases the flock
