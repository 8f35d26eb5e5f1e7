"""Which jobs a runner takes on, and the checks a claimed job passes before its items go out.

A runner holding jobs takes another only if it needs the same worker plan (the pool is reshaped only
between jobs: jobs/runner/pool.py's ``Shape``), and leaves a new job for :data:`LEAVE_TO_IDLE_S` to
another live runner on the folder that holds none: on two machines, the second one's workers take it
instead of the busy runner's being shared. A claimed job is then checked (its engine allowed, its
engine not changed since its first run, its item list readable) before the runner holds it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from jobs import config
from jobs.engines import allow
from jobs.errors import Corrupt, EngineError, JobNotFound
from jobs.ops.liveness import runner_states
from jobs.runner import pinning
from jobs.runner.drain import Drain
from jobs.runner.held import Held
from jobs.runner.pool import Shape
from jobs.store import lease
from jobs.store.clock import wall
from jobs.store.lease import Claim
from jobs.store.status import JobStatus
from jobs.store.store import Job, Store

log = logging.getLogger("ocrjobs.runner")
#: A runner holding jobs leaves a new job this long to another runner that is idle.
LEAVE_TO_IDLE_S = 10.0


class Admission:
    def __init__(self, store: Store, runner_id: str, shape: Shape | None) -> None:
        self.store, self.runner_id, self.shape = store, runner_id, shape
        self._idle_checked = (0.0, False)  # (monotonic time to look again, whether another runner was idle)

    def accept(self, job: Job, holding: bool) -> bool:
        """Whether to claim ``job`` now (see the module's docstring); with no job held, always."""
        if not holding:
            return True
        if self.shape is not None and self.shape.kind_for(job.spec) != self.shape.kind:
            return False
        waited = wall() - float(job.state.get("updated_at") or job.created_at)
        return waited >= LEAVE_TO_IDLE_S or not self.another_runner_idle()

    def another_runner_idle(self) -> bool:
        """A live runner, not this one, that holds no job (from the heartbeats, re-read at most every second)."""
        now = time.monotonic()
        if now >= self._idle_checked[0]:
            idle = any(
                hb["id"] != self.runner_id
                and hb["state"] == "alive"
                and not hb.get("jobs")
                and not hb.get("job")
                and not hb.get("stopping")
                for hb in runner_states(self.store)
            )
            self._idle_checked = (now + 1.0, idle)
        return self._idle_checked[1]


def admit(store: Store, claim: Claim, workers: list[Any], grace_s: float) -> tuple[Job, Held] | None:
    """The claimed job, checked and with its pending items loaded; None if it was ended instead (failed:
    an engine not allowed, an unreadable item list; paused: its engine changed since its first run)."""
    job = store.get(claim.job_id)
    try:  # job.json is anyone's to write: its engine is checked before any worker could import it
        allow.resolve(job.spec.get("engine", config.DEFAULT_ENGINE))
    except EngineError as e:
        log.error("job %s: %s", claim.job_id, e)
        lease.finish(store, claim, JobStatus.FAILED, str(e))
        return None
    changed = pinning.enforce(store, claim, job.spec)
    if changed is not None:  # never mix two engines' output in one job without a user's say-so
        log.warning("job %s paused: %s", claim.job_id, changed)
        lease.finish(store, claim, JobStatus.PAUSED, changed, reason=pinning.PAUSE_REASON)
        return None
    held = Held(claim, job.spec, Drain(store, workers, grace_s, claim.job_id))
    held.base_priority = job.priority if type(job.priority) is int else 0
    try:
        held.load(store)
    except (Corrupt, JobNotFound) as e:  # a hand-edited or damaged manifest: fail the job, not the runner
        log.error("job %s: %s", claim.job_id, e)
        lease.finish(store, claim, JobStatus.FAILED, f"the job's item list is unreadable ({e}); submit again")
        return None
    return job, held
