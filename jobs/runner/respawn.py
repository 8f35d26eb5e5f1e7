"""Respawning workers that die: at once after one that worked, after a growing pause after one that died
starting, and failing the held job after too many failed starts in a row.

A worker that cannot start (an engine that kills its process while loading, a broken environment) used
to be respawned as fast as the runner's loop turned, tens of thousands of times a minute, while its job
never moved. A death counts as a *failed start* if the worker said nothing at all, died while loading
its engine, or died idle within :data:`YOUNG_S` of starting; a crash on an item is not one (that is the
item's doing, and jobs/runner/items.py sets poison items aside).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("ocrjobs.runner")
#: The pause before the first respawn after a failed start; it doubles with each one, up to CAP_S.
FIRST_S = 0.5
CAP_S = 30.0
#: Failed starts in a row, for the held job, after which the job fails with the reason.
MAX_FAILED_STARTS = 5
#: An idle worker that dies younger than this did not really start either.
YOUNG_S = 10.0


def describe_exit(code: Any) -> str:
    """A process's exit code in words (a Ray actor's handle gives its reason as text instead)."""
    if isinstance(code, int) and code < 0:
        try:
            return f"exit code {code}: killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"exit code {code}: killed by signal {-code}"
    return f"exit code {code}" if isinstance(code, int) or code is None else str(code)


class Respawner:
    """Per worker slot: failed starts in a row, and when a worker waiting out its pause may start again."""

    def __init__(self, first_s: float = FIRST_S, cap_s: float = CAP_S, max_failed: int = MAX_FAILED_STARTS) -> None:
        self.first_s, self.cap_s, self.max_failed = first_s, cap_s, max_failed
        self.failed: dict[int, int] = {}
        self._due: dict[int, float] = {}  # slot -> monotonic time its next start is due

    @staticmethod
    def died_starting(w: Any) -> bool:
        """Whether the dead worker ``w`` died starting (see the module's docstring), not on an item."""
        if not getattr(w, "heard", True) or w.loading_since is not None:
            return True
        started = getattr(w, "started_at", None)
        return not w.tasks and started is not None and time.monotonic() - started < YOUNG_S

    @staticmethod
    def why(w: Any) -> str:
        code = describe_exit(w.exitcode)
        if not getattr(w, "heard", True):
            return f"the worker process exited before it started ({code})"
        if w.loading_since is not None:
            return f"the worker process died while loading the engine ({code})"
        return f"the worker process died right after it started ({code})"

    def waiting(self, w: Any) -> bool:
        """True while ``w`` waits out its pause; starts it once the pause is over."""
        due = self._due.get(w.slot)
        if due is None:
            return False
        if time.monotonic() < due:
            return True
        del self._due[w.slot]
        w.restart()
        return False

    def failed_start(self, w: Any) -> str | None:
        """Count ``w``'s failed start and schedule the next; the reason to fail the job once there were too many."""
        why = self.why(w)
        n = self.failed[w.slot] = self.failed.get(w.slot, 0) + 1
        pause = min(self.first_s * 2 ** (n - 1), self.cap_s)
        w.kill()  # reap it; it stays down until the pause is over
        self._due[w.slot] = time.monotonic() + pause
        log.warning("worker %d: %s, %d time(s) in a row; starting it again in %.1f s", w.slot, why, n, pause)
        if n < self.max_failed:
            return None
        return (
            f"{why}, {n} times in a row, so the job was failed; the runner's log has the worker's output "
            "(an engine that kills its process while loading, or a broken Python environment)"
        )

    def started(self, w: Any) -> None:
        """``w`` loaded its engine: it starts fine."""
        self.failed.pop(w.slot, None)

    def new_job(self, workers: Iterable[Any]) -> None:
        """A job was claimed: it gets its own tries, and a worker waiting out a pause starts now."""
        self.failed.clear()
        for w in workers:
            if self._due.pop(w.slot, None) is not None:
                w.restart()

    def forget(self) -> None:
        """The pool was replaced (jobs/runner/pool.py's ``Shape``): no slot's count or pause holds any more."""
        self.failed.clear()
        self._due.clear()

    def revive(self, workers: Iterable[Any]) -> None:
        """No job held: replace dead workers, at once or after their pause."""
        for w in workers:
            if self.waiting(w) or w.alive():
                continue
            if self.died_starting(w):
                self.failed_start(w)
            else:
                w.restart()
