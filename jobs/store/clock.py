"""The wall clock that lease code reads, with a test hook to make it jump.

Lease expiry timestamps are wall-clock (other hosts read them), but no decision to take a lease
over rests on them: see :class:`jobs.store.lease_watch.LeaseWatch`. ``OCRJOBS_CLOCK_OFFSET_S`` (seconds,
may be negative) shifts this process's wall clock, and ``OCRJOBS_CLOCK_OFFSET_FILE`` names a file
holding that offset, re-read when it changes, so a test can jump a running process's clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

_file_cache: tuple[tuple[int, int], float] | None = None


def offset() -> float:
    """Seconds added to the real wall clock (0 outside tests)."""
    global _file_cache
    path = os.environ.get("OCRJOBS_CLOCK_OFFSET_FILE")
    if path:
        try:
            st = os.stat(path)
            key = (st.st_mtime_ns, st.st_size)
            if _file_cache is None or _file_cache[0] != key:
                with open(path) as f:
                    _file_cache = (key, float(f.read().strip() or 0))
            return _file_cache[1]
        except (OSError, ValueError):
            return 0.0
    raw = os.environ.get("OCRJOBS_CLOCK_OFFSET_S")
    return float(raw) if raw else 0.0


def wall() -> float:
    """``time.time()`` as this process believes it: the real clock plus any test offset."""
    return time.time() + offset()


def when(ts: object) -> str | None:
    """A wall-clock time as people read it, with its date and zone (this machine's), e.g.
    ``2026-12-01 10:55:06 CET``; None for a missing or non-positive time."""
    if not isinstance(ts, int | float) or ts <= 0:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def milestones(
    created_at: object, started_at: object, finished_at: object, *, took: Callable[[float], str], submitted: str
) -> str:
    """A job's life in one line: ``submitted ... · started ... · finished ... · took ...`` (the parts known).

    ``submitted`` is the first part's label (the page adds who); ``took`` formats the seconds it ran."""
    parts = [f"{submitted} {when(created_at) or '-'}"]
    if when(started_at):
        parts.append(f"started {when(started_at)}")
    if when(finished_at):
        parts.append(f"finished {when(finished_at)}")
        if isinstance(started_at, int | float) and isinstance(finished_at, int | float):
            parts.append(f"took {took(max(0.0, finished_at - started_at))}")
    return " · ".join(parts)
