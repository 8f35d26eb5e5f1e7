"""The runner daemon: holds up to ``max_jobs`` jobs, feeds their items to worker subprocesses.

One loop, never blocked for more than a tick: it renews each held job's lease, applies requests,
claims another job while it holds fewer than ``max_jobs``, dispatches items across the held jobs by
fair share (jobs/runner/fairshare.py), collects results and kills workers past their deadline.
Signal handlers only set a flag (the loop acts on it). Local timing is monotonic; only lease expiry,
which other hosts must read, is wall-clock (see docs/architecture.md).

This module holds the loop and each job as a whole (claim, renew, end, hand back); one held job is
``jobs/runner/held.py``'s, the items are ``jobs/runner/items.py``'s, and winding a job down on request
is ``jobs/runner/drain.py``'s.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from jobs import config
from jobs.errors import LeaseLost, StoreBusy
from jobs.runner import fairshare, sizing
from jobs.runner.admission import Admission, admit
from jobs.runner.heartbeat import Telemetry
from jobs.runner.held import Held
from jobs.runner.items import Items
from jobs.runner.pool import Shape, room
from jobs.runner.reserve import DiskReserve
from jobs.store import lease, shared_folder
from jobs.store.atomic import is_disk_full
from jobs.store.housekeeping import housekeep
from jobs.store.lease import Claim
from jobs.store.requests import apply_requests
from jobs.store.status import JobStatus
from jobs.store.store import Store

log = logging.getLogger("ocrjobs.runner")
#: How often a runner holding jobs looks for another to hold (a new job starts within this).
CLAIM_EVERY_S = 0.1


@dataclass
class RunnerOptions:
    state: Path | str | None = None
    workers: int = 1
    device: str = "auto"
    lease_s: float = config.DEFAULT_LEASE_S
    once: bool = False
    grace_s: float = config.KILL_GRACE_S
    hb_interval_s: float = 1.0
    hb_timeout_s: float = config.env_float("OCRJOBS_WORKER_HB_TIMEOUT", 15.0)
    load_timeout_s: float = 900.0
    poll_max_s: float = 2.0
    retention_days: float = config.RETENTION_DAYS
    heartbeat_s: float = config.env_float("OCRJOBS_HEARTBEAT_S", 2.0)
    metrics_port: int | None = None  # None: no metrics server
    metrics_host: str = "127.0.0.1"
    executor: str = "local"  # "ray": the workers are Ray actors (jobs/ray/executor.py)
    ray_address: str | None = None
    ray_actors: int | None = None
    ray_actor_cpus: float = 1.0
    gpu: sizing.GpuPlan | None = None  # the plan for a GPU engine's jobs (jobs/runner/sizing.py); None: no GPU
    max_jobs: int = config.DEFAULT_MAX_JOBS  # jobs held at once, their items interleaved (jobs/runner/fairshare.py)


class Runner:
    def __init__(self, opts: RunnerOptions) -> None:
        self.opts = opts
        shared_folder.prepare_runner(config.state_dir(opts.state))  # umask and setup warnings (jobs/store/perms.py)
        self.store = Store(opts.state)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"
        self.started_at = time.time()
        # before the workers start, so a busy metrics port fails fast
        metrics_at = (opts.metrics_host, opts.metrics_port) if opts.metrics_port is not None else None
        self.telemetry = Telemetry(self.store, self.id, opts.heartbeat_s, metrics_at)
        self.shape: Shape | None = None  # local workers' plan (the Ray executor sizes its own actors)
        if opts.executor == "ray":
            from jobs.ray.cluster import make_ray_handles

            self.workers: list[Any] = make_ray_handles(
                opts.ray_address, opts.ray_actors, opts.device, opts.ray_actor_cpus
            )
        else:
            self.shape = Shape(opts.workers, opts.gpu, opts.device, opts.hb_interval_s)
            self.workers = self.shape.start()
        self.held: dict[str, Held] = {}  # the jobs this runner holds, in the order it claimed them
        self.items = Items(
            self.store,
            self.workers,
            self.telemetry,
            self.held,
            grace_s=opts.grace_s,
            hb_timeout_s=opts.hb_timeout_s,
            load_timeout_s=opts.load_timeout_s,
        )
        self.stopping = False
        self._stop_deadline = float("inf")
        self.last_error: str | None = None
        self._next = {"heartbeat": 0.0, "housekeeping": 0.0, "requests": 0.0, "claim": 0.0}
        self._reserve = DiskReserve(self.store.runners_dir, self.id)
        self.admission = Admission(self.store, self.id, self.shape)

    @property
    def counters(self) -> dict[str, int]:
        """Items committed since start, by status (read by the heartbeat)."""
        return self.items.counters

    @property
    def claim(self) -> Claim | None:
        """The first job held (what a runner holding one job at a time reported)."""
        return next(iter(self.held.values())).claim if self.held else None

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info(
            "runner %s: %d worker(s), up to %d job(s) at once, device %s, state %s",
            self.id,
            len(self.workers),
            self.opts.max_jobs,
            self.opts.device,
            self.store.root,
        )
        idle_sleep = 0.1
        try:
            while True:
                now = time.monotonic()
                if now >= self._next["heartbeat"]:
                    self._write_heartbeat()
                    self._next["heartbeat"] = now + self.opts.heartbeat_s
                if not self.held:
                    if self.stopping:
                        break
                    if self._idle_tick():
                        idle_sleep = 0.1
                        continue
                    suspect = lease.watch_of(self.store).suspect()  # an orphan's lease, maybe: watch it closely
                    if self.opts.once and not suspect:
                        break
                    if suspect:
                        idle_sleep = min(idle_sleep, 0.25)
                    self._wait(min(idle_sleep, max(self._next["heartbeat"] - time.monotonic(), 0.01)))
                    idle_sleep = min(idle_sleep * 2, self.opts.poll_max_s)
                    continue
                self._jobs_tick()
                self._wait(0.1)
        finally:
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stopping:
            return
        log.info("signal %d: finishing the current items (grace %.0f s), then exiting", signum, self.opts.grace_s)
        self.stopping = True
        self._stop_deadline = time.monotonic() + self.opts.grace_s
        for held in list(self.held.values()):  # a service stop signals the workers too: what fails is not the items'
            held.drain.mark_in_flight()

    def _wait(self, timeout: float) -> None:
        conns = [w.conn for w in self.workers if w.conn is not None and not w.conn.closed]
        if conns:
            wait(conns, timeout)
        else:
            time.sleep(timeout)

    def _housekeep_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next["housekeeping"]:
            self._next["housekeeping"] = now + 60.0
            try:
                housekeep(self.store, self.opts.retention_days)
            except (OSError, StoreBusy) as e:
                log.warning("housekeeping: %s", e)

    def _idle_tick(self) -> bool:
        """No job held: apply requests, housekeeping, try to claim. True if a job was claimed."""
        self._housekeep_if_due()
        for w in self.workers:
            w.messages()  # keep heartbeats flowing while idle
        self.items.respawn.revive(self.workers)  # dead ones back: at once, or after a pause (runner/respawn.py)
        try:
            apply_requests(self.store)
        except StoreBusy as e:
            log.warning("%s", e)
            return False
        return self._claim_one()

    def _claim_one(self) -> bool:
        """Claim the best job this runner may take now, and start holding it. True if one was claimed."""
        try:
            claim = lease.claim_next(
                self.store,
                self.id,
                self.opts.lease_s,
                config.DEFAULT_MAX_ATTEMPTS,
                accept=lambda job: self.admission.accept(job, bool(self.held)),
            )
        except StoreBusy as e:
            log.warning("%s", e)
            return False
        except OSError as e:  # a full disk must not kill the daemon: claim again once there is room
            if not is_disk_full(e):
                raise
            self.last_error = f"disk full in {self.store.root}: {e.strerror}; cannot claim jobs until space is freed"
            log.warning("%s", self.last_error)
            return False
        if claim is None:
            return False
        self._start_job(claim)
        return True

    def _claim_while_room(self) -> None:
        """Claim a job, and more at once while the held jobs' items would leave workers idle: many small
        jobs then fill the batches together (jobs/runner/fairshare.py), yet a runner never claims more
        than it can start on now, so runners beside it on the same folder get their share."""
        for _ in range(self.opts.max_jobs):
            if len(self.held) >= self.opts.max_jobs or not self._claim_one():
                return
            if sum(len(h.pending) for h in self.held.values() if h.has_work()) >= room(self.workers):
                return

    def _start_job(self, claim: Claim) -> None:
        admitted = admit(self.store, claim, self.workers, self.opts.grace_s)
        if admitted is None:
            return
        job, held = admitted
        if not self.held and self.shape is not None:
            if reshaped := self.shape.fit(self.workers, job.spec, self.store.root):
                log.info("job %s: %s", claim.job_id, reshaped)  # one worker per GPU, or back to the CPU plan
                self.items.respawn.forget()
        fairshare.join(held, self.held.values())
        self.held[claim.job_id] = held
        self.items.make_room(held)
        self.items.respawn.new_job(self.workers)  # each job gets its own tries at starting workers
        self.telemetry.on_claim(claim.job_id, held.item_timeout)
        pending = len(held.pending)
        log.info(
            "claimed job %s (epoch %d): %d of %d items to do",
            claim.job_id,
            claim.epoch,
            pending,
            job.total,
            extra={"event": "claimed", "job_id": claim.job_id, "epoch": claim.epoch, "pending": pending},
        )

    def _jobs_tick(self) -> None:
        if self.stopping:  # before reading results: those of the items in flight now are the drains'
            self._drain_for_shutdown()
        self._guarded(self._read_workers)
        for held in list(self.held.values()):
            self._guarded(self._renew_if_due, held)
        self._guarded(self._requests)
        if self.stopping:  # again: a signal may have come since
            self._drain_for_shutdown()
        elif len(self.held) < self.opts.max_jobs and time.monotonic() >= self._next["claim"]:
            self._next["claim"] = time.monotonic() + CLAIM_EVERY_S
            self._housekeep_if_due()
            self._claim_while_room()
        self._guarded(self.items.dispatch)
        on = fairshare.workers_per_job(self.workers)
        for held in list(self.held.values()):
            held.claim.state["run"]["workers"] = on[held.job_id]  # written with the job's next state write
            self._guarded(self._maybe_finish, held)

    def _guarded(self, step: Any, *args: Any) -> None:
        """Run one step of the loop; a lost lease ends the hold on that job only, a full disk pauses."""
        try:
            step(*args)
        except LeaseLost as e:
            log.warning("%s: stopping work on this job without committing", e)
            self._abandon(e.job_id)
        except StoreBusy as e:
            log.warning("%s; trying again", e)
        except OSError as e:
            if not is_disk_full(e):
                raise
            self._on_disk_full(e)

    def _read_workers(self) -> None:
        for w in self.workers:
            for msg in w.messages():
                failed = self.items.on_message(w, msg)
                if failed is not None:  # the engine won't load: no item of this job can run
                    self._fail(*failed)
        for job_id, why in self.items.check_workers():  # its workers cannot even start: not here
            self._fail(job_id, why)

    def _fail(self, job_id: str | None, why: str) -> None:
        """End ``job_id`` (None: every held job) as failed, at once."""
        self.last_error = why
        for held in list(self.held.values()):
            if job_id is None or held.job_id == job_id:
                held.drain.start(JobStatus.FAILED, [], error=why)

    def _requests(self) -> None:
        """Requests for the held jobs, applied at item boundaries, at most every 0.5 s."""
        now = time.monotonic()
        if now < self._next["requests"]:
            return
        self._next["requests"] = now + 0.5
        mine = apply_requests(self.store, own_jobs=set(self.held))
        for held in list(self.held.values()):
            held.drain.own_requests(held.claim, [(p, r) for p, r in mine if r.get("job_id") == held.job_id])

    def _drain_for_shutdown(self) -> None:
        for held in self.held.values():
            held.drain.for_shutdown(self._stop_deadline)

    # -- one job as a whole -------------------------------------------------------------------
    def _renew_if_due(self, held: Held) -> None:
        claim = held.claim
        # monotonic, so a wall-clock jump can neither stop the renewals nor let the lease lapse
        if time.monotonic() - claim.renewed >= claim.lease_s / 3:
            lease.save(self.store, claim, renew=True)

    def _maybe_finish(self, held: Held) -> None:
        busy = self.items.busy(held.job_id)
        if held.drain.state is not None:
            target, deadline, requests = held.drain.state
            if busy and time.monotonic() < deadline:
                return
            for w in busy:  # abandoned: their items stay pending for whoever runs the job next
                self.items.restart(w, held.job_id)
            error = held.drain.error if target == JobStatus.FAILED else None
            self._end(held, target, error)
            for p in requests:
                p.unlink(missing_ok=True)
            return
        if busy or held.pending:
            return
        status = lease.settle(self.store, held.claim)  # from the valid result files, not running counts
        if status is None:  # a result was damaged or forged since the claim: redo its item
            held.load(self.store)
            if held.pending:
                return
            status = lease.final_status(held.claim.state["progress"])
        self._end(held, status)

    def _end(self, held: Held, status: JobStatus, error: str | None = None) -> None:
        claim = held.claim
        p = claim.state["progress"]
        if status in (JobStatus.FAILED, JobStatus.COMPLETED_WITH_ERRORS) and error is None:
            error = f"{p.get('failed', 0)} item(s) failed, {p.get('timed_out', 0)} timed out"
        self.held.pop(claim.job_id, None)
        self._next["claim"] = 0.0  # a place is free: the next job need not wait for the claim clock
        lease.finish(self.store, claim, status, error)
        log.info(
            "job %s: %s",
            claim.job_id,
            status.value,
            extra={"event": "job_" + status.value, "job_id": claim.job_id, "error": error},
        )

    def _abandon(self, job_id: str) -> None:
        """The lease on ``job_id`` is lost: its items in flight are dropped, nothing of it is committed."""
        self.held.pop(job_id, None)
        for w in self.workers:
            if any(t.job_id == job_id for t in w.tasks):
                self.items.restart(w, job_id)

    def _on_disk_full(self, e: OSError) -> None:
        reason = f"disk full in {self.store.root}: {e.strerror}; free space, then `resume` the job"
        self.last_error = reason
        log.error("%s", reason)
        for w in self.workers:
            if w.task is not None:
                w.restart()
        self._reserve.release()  # room for the small writes that record the pauses
        for held in list(self.held.values()):
            self.held.pop(held.job_id, None)
            try:
                lease.finish(self.store, held.claim, JobStatus.PAUSED, error=reason, reason="disk_full")
            except (OSError, LeaseLost) as e2:
                log.error("could not even record the pause (%s); the lease will expire and the job be retried", e2)

    # -- bookkeeping --------------------------------------------------------------------------
    def _write_heartbeat(self) -> None:
        self.telemetry.write(self)  # state/runners/<id>.json; see jobs/runner/heartbeat.py
        self._reserve.keep()  # see jobs/runner/reserve.py

    def _shutdown(self) -> None:
        for held in list(self.held.values()):
            try:
                self._end(held, JobStatus.QUEUED)
            except (LeaseLost, OSError) as e:
                log.warning("could not hand job %s back: %s", held.job_id, e)
        for w in self.workers:
            w.stop()
        self.telemetry.close()
        self._reserve.release()
        log.info("runner %s stopped", self.id)
