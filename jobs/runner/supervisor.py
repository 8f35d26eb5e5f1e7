"""The runner daemon: claims jobs, feeds items to worker subprocesses, enforces timeouts.

One loop, never blocked for more than a tick: it renews the lease, applies requests,
dispatches items, collects results and kills workers past their deadline. Signal handlers
only set a flag (the loop acts on it). Local timing is monotonic; only lease expiry, which
other hosts must read, is wall-clock (see docs/architecture.md).

This module holds the loop and the job as a whole (claim, renew, end, hand back); the items
are ``jobs/runner/items.py``'s, and winding a job down on request is ``jobs/runner/drain.py``'s.
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
from jobs.engines import allow
from jobs.errors import Corrupt, EngineError, JobNotFound, LeaseLost, StoreBusy
from jobs.runner import pinning, sizing
from jobs.runner.drain import Drain
from jobs.runner.heartbeat import Telemetry
from jobs.runner.items import Items
from jobs.runner.pool import Shape
from jobs.runner.reserve import DiskReserve
from jobs.store import lease, shared_folder
from jobs.store.atomic import is_disk_full
from jobs.store.housekeeping import housekeep
from jobs.store.lease import Claim
from jobs.store.requests import apply_requests
from jobs.store.status import JobStatus
from jobs.store.store import Store

log = logging.getLogger("ocrjobs.runner")


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
        self.claim: Claim | None = None
        self.items = Items(
            self.store,
            self.workers,
            self.telemetry,
            grace_s=opts.grace_s,
            hb_timeout_s=opts.hb_timeout_s,
            load_timeout_s=opts.load_timeout_s,
        )
        self.drain = Drain(self.store, self.workers, opts.grace_s)
        self.stopping = False
        self._stop_deadline = float("inf")
        self.last_error: str | None = None
        self._next = {"heartbeat": 0.0, "housekeeping": 0.0}
        self._reserve = DiskReserve(self.store.runners_dir, self.id)

    @property
    def counters(self) -> dict[str, int]:
        """Items committed since start, by status (read by the heartbeat)."""
        return self.items.counters

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info(
            "runner %s: %d worker(s), device %s, state %s",
            self.id,
            len(self.workers),
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
                if self.claim is None:
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
                self._job_tick()
                self._wait(0.1)
        finally:
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stopping:
            return
        log.info("signal %d: finishing the current item (grace %.0f s), then exiting", signum, self.opts.grace_s)
        self.stopping = True
        self._stop_deadline = time.monotonic() + self.opts.grace_s
        self.drain.mark_in_flight()  # a service stop signals the workers too: what now fails is not the items'

    def _wait(self, timeout: float) -> None:
        conns = [w.conn for w in self.workers if w.conn is not None and not w.conn.closed]
        if conns:
            wait(conns, timeout)
        else:
            time.sleep(timeout)

    def _idle_tick(self) -> bool:
        """No job held: apply requests, housekeeping, try to claim. True if a job was claimed."""
        now = time.monotonic()
        if now >= self._next["housekeeping"]:
            self._next["housekeeping"] = now + 60.0
            try:
                housekeep(self.store, self.opts.retention_days)
            except (OSError, StoreBusy) as e:
                log.warning("housekeeping: %s", e)
        for w in self.workers:
            w.messages()  # keep heartbeats flowing while idle
        self.items.respawn.revive(self.workers)  # dead ones back: at once, or after a pause (runner/respawn.py)
        try:
            apply_requests(self.store)
            claim = lease.claim_next(self.store, self.id, self.opts.lease_s, config.DEFAULT_MAX_ATTEMPTS)
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

    def _start_job(self, claim: Claim) -> None:
        self.claim = claim
        job = self.store.get(claim.job_id)
        try:  # job.json is anyone's to write: its engine is checked before any worker could import it
            allow.resolve(job.spec.get("engine", config.DEFAULT_ENGINE))
        except EngineError as e:
            log.error("job %s: %s", claim.job_id, e)
            lease.finish(self.store, claim, JobStatus.FAILED, str(e))
            self.claim = None
            return
        changed = pinning.enforce(self.store, claim, job.spec)
        if changed is not None:  # never mix two engines' output in one job without a user's say-so
            log.warning("job %s paused: %s", claim.job_id, changed)
            lease.finish(self.store, claim, JobStatus.PAUSED, changed, reason=pinning.PAUSE_REASON)
            self.claim = None
            return
        if self.shape is not None and (reshaped := self.shape.fit(self.workers, job.spec, self.store.root)):
            log.info("job %s: %s", claim.job_id, reshaped)  # one worker per GPU, or back to the CPU plan
            self.items.respawn.forget()
        try:
            self.items.load(claim.job_id, job.spec)
        except (Corrupt, JobNotFound) as e:  # a hand-edited or damaged manifest: fail the job, not the runner
            log.error("job %s: %s", claim.job_id, e)
            lease.finish(self.store, claim, JobStatus.FAILED, f"the job's item list is unreadable ({e}); submit again")
            self.claim = None
            return
        self.drain.state = None
        self.items.respawn.new_job(self.workers)  # each job gets its own tries at starting workers
        self.telemetry.on_claim(claim.job_id, float(job.spec.get("item_timeout", config.DEFAULT_ITEM_TIMEOUT_S)))
        pending = len(self.items.pending)
        log.info(
            "claimed job %s (epoch %d): %d of %d items to do",
            claim.job_id,
            claim.epoch,
            pending,
            job.total,
            extra={"event": "claimed", "job_id": claim.job_id, "epoch": claim.epoch, "pending": pending},
        )

    def _job_tick(self) -> None:
        claim = self.claim
        assert claim is not None
        try:
            if self.stopping:  # before reading results: those of the items in flight now are the drain's
                self.drain.for_shutdown(self._stop_deadline)
            for w in self.workers:
                for msg in w.messages():
                    load_error = self.items.on_message(claim, w, msg)
                    if load_error is not None:  # the engine won't load: no item of this job can run
                        self.last_error = load_error
                        self.drain.start(JobStatus.FAILED, [], error=load_error)
            failure = self.items.check_workers(claim)
            if failure is not None:  # its workers cannot even start: the job cannot run here
                self.last_error = failure
                self.drain.start(JobStatus.FAILED, [], error=failure)
            self._renew_if_due()
            self.drain.own_requests(claim)
            if self.stopping:  # again: a signal may have come since
                self.drain.for_shutdown(self._stop_deadline)
            if self.drain.state is None:
                self.items.dispatch(claim)
            self._maybe_finish()
        except LeaseLost as e:
            log.warning("%s: stopping work on this job without committing", e)
            self._abandon()
        except StoreBusy as e:
            log.warning("%s; trying again", e)
        except OSError as e:
            if not is_disk_full(e):
                raise
            self._on_disk_full(e)

    # -- the job as a whole -----------------------------------------------------------------
    def _renew_if_due(self) -> None:
        assert self.claim is not None
        # monotonic, so a wall-clock jump can neither stop the renewals nor let the lease lapse
        if time.monotonic() - self.claim.renewed >= self.claim.lease_s / 3:
            lease.save(self.store, self.claim, renew=True)

    def _maybe_finish(self) -> None:
        assert self.claim is not None
        busy = self.items.busy()
        if self.drain.state is not None:
            target, deadline, requests = self.drain.state
            if busy and time.monotonic() < deadline:
                return
            for w in busy:  # abandoned: their items stay pending for whoever runs the job next
                w.restart()
            error = self.drain.error if target == JobStatus.FAILED else None
            self._end(target, error)
            for p in requests:
                p.unlink(missing_ok=True)
            return
        if busy or self.items.pending:
            return
        status = lease.settle(self.store, self.claim)  # from the valid result files, not running counts
        if status is None:  # a result was damaged or forged since the claim: redo its item
            self.items.load(self.claim.job_id, self.items.spec)
            if self.items.pending:
                return
            status = lease.final_status(self.claim.state["progress"])
        self._end(status)

    def _end(self, status: JobStatus, error: str | None = None) -> None:
        assert self.claim is not None
        p = self.claim.state["progress"]
        if status in (JobStatus.FAILED, JobStatus.COMPLETED_WITH_ERRORS) and error is None:
            error = f"{p.get('failed', 0)} item(s) failed, {p.get('timed_out', 0)} timed out"
        lease.finish(self.store, self.claim, status, error)
        log.info(
            "job %s: %s",
            self.claim.job_id,
            status.value,
            extra={"event": "job_" + status.value, "job_id": self.claim.job_id, "error": error},
        )
        self.claim, self.drain.state = None, None
        self.items.clear()
        self.drain.error = None

    def _abandon(self) -> None:
        for w in self.workers:
            if w.task is not None:
                w.restart()
        self.claim, self.drain.state = None, None
        self.items.clear()

    def _on_disk_full(self, e: OSError) -> None:
        assert self.claim is not None
        reason = f"disk full in {self.store.root}: {e.strerror}; free space, then `resume` the job"
        self.last_error = reason
        log.error("%s", reason)
        for w in self.workers:
            if w.task is not None:
                w.restart()
        self._reserve.release()  # room for the small write that records the pause
        try:
            lease.finish(self.store, self.claim, JobStatus.PAUSED, error=reason, reason="disk_full")
        except (OSError, LeaseLost) as e2:
            log.error("could not even record the pause (%s); the lease will expire and the job be retried", e2)
        self.claim, self.drain.state = None, None
        self.items.clear()

    # -- bookkeeping --------------------------------------------------------------------------
    def _write_heartbeat(self) -> None:
        self.telemetry.write(self)  # state/runners/<id>.json; see jobs/runner/heartbeat.py
        self._reserve.keep()  # see jobs/runner/reserve.py

    def _shutdown(self) -> None:
        if self.claim is not None:
            try:
                self._end(JobStatus.QUEUED)
            except (LeaseLost, OSError) as e:
                log.warning("could not hand the job back: %s", e)
        for w in self.workers:
            w.stop()
        self.telemetry.close()
        self._reserve.release()
        log.info("runner %s stopped", self.id)
