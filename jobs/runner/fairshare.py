"""Which held job a free worker serves next: stride scheduling by priority and owner, engine-aware.

**Fair share.** Each held job has a *pass* (jobs/runner/held.py): every item sent to a worker adds
``1 / share`` to it, and a free worker serves the job with the lowest pass. A job's share is its
weight (``2 ** (priority / 5)``: 10 priority points, 4 times the workers) divided by the number of held
jobs of the same owner, so one person's ten jobs share what one job of another person gets. A job
that joins starts at the lowest pass of the jobs already held (it neither jumps ahead by its history nor
waits behind theirs), and on a tie the job with fewer workers on it goes first: a one-page job
submitted into a busy runner takes the next free worker.

**Engine switches are bounded.** Loading a model takes seconds to minutes, so a worker whose engine
is loaded stays with jobs of that engine (the lowest pass among them) while any has items, *unless*
the job the fair share picks has no worker holding or loading its engine at all: then this worker
switches, so no job starves. A worker that switched keeps its new engine for at least
``SWITCH_DWELL`` times its load time before it switches again, so at most about a quarter of a
worker's time goes to loading however the jobs interleave.

**Shared batches.** When the job a worker serves has fewer items left than the engine's batch, the
rest of the batch is filled from other held jobs with the same engine and reading options
(:func:`riders`, lowest pass first), each charged for its own items: many small jobs of one engine
run at the batch size one big job would, not at one job's item count per engine call.

**Limits.** A job's ``max_workers`` caps the workers on it; the runner's total stays ``--workers``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from jobs.runner.held import Held, weight_of

#: A worker keeps an engine it switched to for at least this many times its load time.
SWITCH_DWELL = 3.0
#: ...and at least this many seconds (a load measured at 0 s says little).
MIN_DWELL_S = 5.0


def share(job: Held, held: Iterable[Held]) -> float:
    same_owner = sum(1 for h in held if h.owner == job.owner)
    return weight_of(job.priority) / max(1, same_owner)


def charge(job: Held, items: int, held: Iterable[Held]) -> None:
    """``items`` were sent for ``job``: its pass moves on by their cost at its share."""
    job.pass_ += items / share(job, held)


def join(job: Held, held: Iterable[Held]) -> None:
    """A newly held job starts at the current lowest pass."""
    others = [h.pass_ for h in held if h is not job]
    job.pass_ = min(others) if others else 0.0


def workers_per_job(workers: Iterable[Any]) -> Counter[str]:
    """How many workers each job has now (a worker counts for every job it holds a task of)."""
    out: Counter[str] = Counter()
    for w in workers:
        for job_id in {t.job_id for t in w.tasks}:
            out[job_id] += 1
    return out


def engine_holders(workers: Iterable[Any]) -> set[str]:
    """Engine keys that some worker has loaded or is loading."""
    keys = set()
    for w in workers:
        if w.loaded_key is not None:
            keys.add(w.loaded_key)
        if w.task is not None:
            keys.add(w.task.engine_key)
    return keys


def may_switch(w: Any, now: float | None = None) -> bool:
    """Whether ``w`` has kept its engine long enough (see the module's docstring)."""
    now = time.monotonic() if now is None else now
    since = getattr(w, "loaded_at", None)
    if since is None:
        return True
    return now - since >= max(MIN_DWELL_S, SWITCH_DWELL * float(getattr(w, "load_s", 0.0) or 0.0))


def pick(w: Any, held: list[Held], workers: list[Any]) -> Held | None:
    """The job worker ``w`` serves next, or None (no job has items it may send to ``w``)."""
    on = workers_per_job(workers)
    ready = [
        h for h in held if h.has_work() and (h.max_workers is None or on[h.job_id] < h.max_workers or _already_on(w, h))
    ]
    if not ready:
        return None
    ready.sort(key=lambda h: (h.pass_, on[h.job_id], h.claimed_at))
    best = ready[0]
    mine = w.loaded_key
    if mine is None or best.engine_key == mine:
        return best
    warm = next((h for h in ready if h.engine_key == mine), None)
    if warm is None:
        return best  # nothing left for its engine: switch
    starving = best.engine_key not in engine_holders(x for x in workers if x is not w)
    return best if starving and may_switch(w) else warm


def riders(w: Any, lead: Held, held: Iterable[Held], workers: list[Any]) -> list[Held]:
    """Other jobs whose items may fill the rest of ``lead``'s batch on ``w``, in the order to take them."""
    on = workers_per_job(workers)
    out = [
        h
        for h in held
        if h is not lead
        and h.batch_key == lead.batch_key
        and h.has_work()
        and (h.max_workers is None or on[h.job_id] < h.max_workers or _already_on(w, h))
    ]
    return sorted(out, key=lambda h: (h.pass_, h.claimed_at))


def _already_on(w: Any, h: Held) -> bool:
    """A worker already serving a job may take its next task (decode-ahead) even at the cap."""
    return any(t.job_id == h.job_id for t in w.tasks)
