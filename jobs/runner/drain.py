"""Winding down one held job: requests for it (cancel, pause, delete) and the drain they start.

A drain stops new items from being dispatched and ends the job as its target status once the
items in flight finish, or at its deadline (monotonic), whichever comes first; the Runner then
ends the job (``Runner._maybe_finish``) and only then removes the request files the drain applied.
Items in flight when a drain starts are marked ``drained``: if they end in error, the error may be
the drain's doing, and they stay pending instead of failing (``Items._stopped``).

A runner holds several jobs (jobs/runner/held.py), each with its own ``Drain``: a drain touches only
its own job's tasks, so cancelling one job leaves the others' items running.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from jobs.runner.pool import WorkerHandle
from jobs.store.lease import Claim, log_event
from jobs.store.status import JobStatus
from jobs.store.store import Store

log = logging.getLogger("ocrjobs.runner")
#: (target status, monotonic deadline, request files to remove once the job has ended)
Draining = tuple[JobStatus, float, list[Path]]


class Drain:
    """One held job's drain, if any (``state``), and why it failed (``error``) for a FAILED drain."""

    def __init__(self, store: Store, workers: list[WorkerHandle], grace_s: float, job_id: str) -> None:
        self.store, self.workers, self.grace_s, self.job_id = store, workers, grace_s, job_id
        self.state: Draining | None = None
        self.error: str | None = None

    def own_requests(self, claim: Claim, requests: list[tuple[Path, dict[str, Any]]]) -> None:
        """Apply the requests for this job (the runner reads them for all its jobs at item boundaries)."""
        applying = self.state[2] if self.state else []
        for path, req in requests:
            if path in applying:
                continue  # already being applied; its file is removed when the job ends
            kind = req.get("kind")
            if kind == "cancel":
                self.start(JobStatus.CANCELLED, [path], soft=True)
            elif kind == "delete":  # cancel now; the request stays, and is applied once the job stops
                self.start(JobStatus.CANCELLED, [], soft=True)
            elif kind == "pause" and (self.state is None or self.state[0] == JobStatus.QUEUED):
                self.start(JobStatus.PAUSED, [path])
            elif kind == "priority" and type(req.get("priority")) is int:  # kept with the next state write
                claim.state["priority"] = req["priority"]
                log_event(self.store, claim.job_id, "request_priority", priority=req["priority"])
                path.unlink(missing_ok=True)
            else:
                log_event(self.store, claim.job_id, "request_ignored", kind=kind, status="running")
                path.unlink(missing_ok=True)

    def start(self, target: JobStatus, requests: list[Path], soft: bool = False, error: str | None = None) -> None:
        """Stop dispatching; end the job as ``target`` once in-flight items finish (or the grace ends)."""
        deadline = time.monotonic() + (self.grace_s if soft or target == JobStatus.QUEUED else 1e9)
        if target == JobStatus.FAILED:
            deadline = time.monotonic()
        if self.state is not None:  # a later request never postpones an earlier deadline
            if self.state[0] == target:
                deadline = min(deadline, self.state[1])
            requests = [*self.state[2], *requests]
        self.state = (target, deadline, requests)
        if error:
            self.error = error
        for w in self.workers:  # this job's tasks queued behind the running one go back to pending
            for task in list(w.tasks)[1:]:
                if not task.running and task.job_id == self.job_id and task.task_id != w.tasks[0].task_id:
                    w.drop(task.task_id)
        if target != JobStatus.FAILED:
            self.mark_in_flight()
        if soft:  # not a batch shared with other jobs: their items would end stopped too
            for w in self.workers:
                heads = {t.job_id for t in w.tasks if w.task is not None and t.task_id == w.task.task_id}
                if heads == {self.job_id}:
                    w.soft_stop()

    def mark_in_flight(self) -> None:
        """This job's tasks in flight now: if their items end in error, it may be the wind-down's doing (a
        soft stop, a service stop's signal), and they stay pending (``Items._stopped``). Only sets flags, so
        the signal handler may call it too, before any result the signal spoiled can be read."""
        for w in self.workers:
            for task in w.tasks:
                if task.job_id == self.job_id:
                    task.drained = True

    def for_shutdown(self, stop_deadline: float) -> None:
        """On SIGTERM: hand the job back, or finish a pause or cancel under way, within the grace."""
        if self.state is None:
            self.start(JobStatus.QUEUED, [])
            return
        target, deadline, requests = self.state
        self.state = (target, min(deadline, stop_deadline), requests)
