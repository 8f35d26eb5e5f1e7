"""The runner daemon: claims jobs, feeds items to worker subprocesses, enforces timeouts.

One loop, never blocked for more than a tick: it renews the lease, applies requests,
dispatches items, collects results and kills workers past their deadline. Signal handlers
only set a flag (the loop acts on it). Local timing is monotonic; only lease expiry, which
other hosts must read, is wall-clock (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from jobs import config, lease
from jobs.atomic import TMP_PREFIX, is_disk_full
from jobs.control import apply_requests
from jobs.errors import LeaseLost, StoreBusy
from jobs.heartbeat import Telemetry
from jobs.housekeeping import housekeep
from jobs.lease import Claim, log_event
from jobs.pool import InFlight, WorkerHandle
from jobs.status import ErrorKind, ItemStatus, JobStatus
from jobs.store import Store

log = logging.getLogger("ocrjobs.runner")
POISON_CRASHES = 2
#: Disk space each runner keeps in reserve to record a "disk full" pause (see ``_keep_reserve``).
RESERVE_BYTES = 256 * 1024


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


class Runner:
    def __init__(self, opts: RunnerOptions) -> None:
        self.opts = opts
        self.store = Store(opts.state)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"
        self.started_at = time.time()
        # before the workers start, so a busy metrics port fails fast
        metrics_at = (opts.metrics_host, opts.metrics_port) if opts.metrics_port is not None else None
        self.telemetry = Telemetry(self.store, self.id, opts.heartbeat_s, metrics_at)
        self.workers = [WorkerHandle(i, opts.device, opts.hb_interval_s) for i in range(opts.workers)]
        self.claim: Claim | None = None
        self.pending: deque[dict[str, Any]] = deque()
        self.job_spec: dict[str, Any] = {}
        self.draining: tuple[JobStatus, float, list[Path]] | None = None
        self.stopping = False
        self._stop_deadline = float("inf")
        self.counters = {"done": 0, "failed": 0, "timed_out": 0}
        self.last_error: str | None = None
        self.claim_error: str | None = None
        self._next = {"heartbeat": 0.0, "requests": 0.0, "housekeeping": 0.0}
        self._reserve = self.store.runners_dir / f"{TMP_PREFIX}reserve-{self.id}"

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
            if not w.proc.is_alive():
                w.restart()
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
        self.job_spec = job.spec
        done = {r["index"] for r in self.store.iter_results(claim.job_id)}
        self.pending = deque(i for i in self.store.manifest(claim.job_id) if i["index"] not in done)
        self.draining = None
        self.telemetry.on_claim(claim.job_id, float(job.spec.get("item_timeout", config.DEFAULT_ITEM_TIMEOUT_S)))
        log.info(
            "claimed job %s (epoch %d): %d of %d items to do",
            claim.job_id,
            claim.epoch,
            len(self.pending),
            job.total,
            extra={"event": "claimed", "job_id": claim.job_id, "epoch": claim.epoch, "pending": len(self.pending)},
        )

    def _job_tick(self) -> None:
        assert self.claim is not None
        try:
            for w in self.workers:
                for msg in w.messages():
                    self._on_message(w, msg)
            self._check_workers()
            self._renew_if_due()
            self._own_requests()
            if self.stopping:
                self._drain_for_shutdown()
            self._dispatch()
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

    # -- items ----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        assert self.claim is not None
        if self.draining is not None:
            return
        for w in self.workers:
            while w.idle and self.pending:
                item = self.pending.popleft()
                if item.get("error"):
                    self._commit(self._failure(item, ErrorKind.INPUT, item["error"]))
                    continue
                timeout = float(self.job_spec.get("item_timeout", config.DEFAULT_ITEM_TIMEOUT_S))
                w.send_task(
                    InFlight(self.claim.job_id, item, self.claim.epoch, time.monotonic(), timeout),
                    {
                        "job_dir": str(self.store.job_dir(self.claim.job_id)),
                        "item": item,
                        "engine": self.job_spec.get("engine", config.DEFAULT_ENGINE),
                        "engine_options": self.job_spec.get("engine_options") or {},
                        "dpi": int(self.job_spec.get("dpi", config.DEFAULT_DPI)),
                        "retries": int(self.job_spec.get("retries", config.DEFAULT_RETRIES)),
                    },
                )
                self.claim.state["progress"]["current"] = {
                    "index": item["index"],
                    "source": item["source"],
                    "page": item.get("page"),
                    "started_at": time.time(),
                    "worker_pid": w.pid,
                }

    def _on_message(self, w: WorkerHandle, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "loading":
            w.loading_since = time.monotonic()
        elif kind == "loaded":
            w.loading_since, w.engine_device, w.engine_name = None, msg[2], msg[1]
            if w.task:
                w.task.started = time.monotonic()  # the item's clock starts once the model is in
            log.info("worker %d loaded %s on %s in %.1f s", w.slot, msg[1], msg[2], msg[3])
        elif kind == "load_error":
            self.last_error = msg[1]
            log.error("%s", msg[1])
            if w.task:
                self.pending.appendleft(w.task.item)
                w.task = None
            self._drain(JobStatus.FAILED, [], error=msg[1])
        elif kind == "attempt" and msg[1] > 1 and w.task:
            w.task.started = time.monotonic()
            log_event(self.store, w.task.job_id, "item_retry", index=w.task.item["index"], attempt=msg[1])
        elif kind == "result":
            task, w.task = w.task, None
            if (
                task is None
                or self.claim is None
                or task.epoch != self.claim.epoch
                or task.item["index"] != msg[1]["index"]
            ):
                return
            self._commit(msg[1])

    def _check_workers(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if not w.proc.is_alive():
                self._on_crash(w, f"the worker process died (exit code {w.proc.exitcode})")
            elif now - w.last_hb > self.opts.hb_timeout_s:
                self._on_crash(w, f"the worker stopped heartbeating for {now - w.last_hb:.0f} s and was killed")
            elif w.loading_since and now - w.loading_since > self.opts.load_timeout_s:
                self._on_crash(w, f"loading the engine took over {self.opts.load_timeout_s:.0f} s")
            elif w.task and not w.loading_since:
                elapsed = now - w.task.started
                if elapsed > w.task.timeout:
                    w.soft_stop()
                if elapsed > w.task.timeout + self.opts.grace_s:
                    self._on_timeout(w, elapsed)

    def _on_timeout(self, w: WorkerHandle, elapsed: float) -> None:
        task = w.task
        assert task is not None
        w.restart()
        msg = (
            f"no result within the {task.timeout:g} s item timeout (+{self.opts.grace_s:g} s grace); "
            "the worker was killed and restarted"
        )
        self._commit(
            self._failure(task.item, ErrorKind.TIMEOUT, msg, status=ItemStatus.TIMED_OUT, elapsed_ms=elapsed * 1000)
        )

    def _on_crash(self, w: WorkerHandle, why: str) -> None:
        task = w.task
        log.warning("worker %d (pid %d): %s", w.slot, w.pid, why)
        w.restart()
        if task is None or self.claim is None or task.epoch != self.claim.epoch:
            return
        crashes = self.claim.state.setdefault("item_crashes", {})
        key = str(task.item["index"])
        crashes[key] = crashes.get(key, 0) + 1
        log_event(self.store, task.job_id, "worker_crash", index=task.item["index"], crashes=crashes[key], why=why)
        if crashes[key] >= POISON_CRASHES:
            self._commit(
                self._failure(
                    task.item,
                    ErrorKind.CRASH,
                    f"poison item: {why} while processing it, {crashes[key]} times; "
                    "it was set aside and the job went on",
                )
            )
        else:
            lease.save(self.store, self.claim)
            self.pending.appendleft(task.item)

    def _failure(
        self,
        item: dict[str, Any],
        kind: ErrorKind,
        message: str,
        status: ItemStatus = ItemStatus.FAILED,
        elapsed_ms: float | None = None,
    ) -> dict[str, Any]:
        return {
            "index": item["index"],
            "source": item["source"],
            "page": item.get("page"),
            "status": status.value,
            "text": "",
            "confidence": None,
            "boxes": [],
            "device": None,
            "processing_time_ms": round(elapsed_ms, 1) if elapsed_ms is not None else None,
            "error": {"kind": kind.value, "message": message},
        }

    def _commit(self, result: dict[str, Any]) -> None:
        assert self.claim is not None
        if lease.commit_item(self.store, self.claim, result):
            self.counters[result["status"]] = self.counters.get(result["status"], 0) + 1
            self.telemetry.on_commit(self.claim.job_id, result)

    # -- the job as a whole -----------------------------------------------------------------
    def _renew_if_due(self) -> None:
        assert self.claim is not None
        # monotonic, so a wall-clock jump can neither stop the renewals nor let the lease lapse
        if time.monotonic() - self.claim.renewed >= self.claim.lease_s / 3:
            lease.save(self.store, self.claim, renew=True)

    def _own_requests(self) -> None:
        assert self.claim is not None
        now = time.monotonic()
        if now < self._next["requests"]:
            return
        self._next["requests"] = now + 0.5
        applying = self.draining[2] if self.draining else []
        for path, req in apply_requests(self.store, own_job=self.claim.job_id):
            if path in applying:
                continue  # already being applied; its file is removed when the job ends
            kind = req.get("kind")
            if kind == "cancel":
                self._drain(JobStatus.CANCELLED, [path], soft=True)
            elif kind == "delete":  # cancel now; the request stays, and is applied once the job stops
                self._drain(JobStatus.CANCELLED, [], soft=True)
            elif kind == "pause" and (self.draining is None or self.draining[0] == JobStatus.QUEUED):
                self._drain(JobStatus.PAUSED, [path])
            else:
                log_event(self.store, self.claim.job_id, "request_ignored", kind=kind, status="running")
                path.unlink(missing_ok=True)

    def _drain(self, target: JobStatus, requests: list[Path], soft: bool = False, error: str | None = None) -> None:
        """Stop dispatching; end the job as ``target`` once in-flight items finish (or the grace ends)."""
        deadline = time.monotonic() + (self.opts.grace_s if soft or target == JobStatus.QUEUED else 1e9)
        if target == JobStatus.FAILED:
            deadline = time.monotonic()
        if self.draining is not None:  # a later request never postpones an earlier deadline
            if self.draining[0] == target:
                deadline = min(deadline, self.draining[1])
            requests = [*self.draining[2], *requests]
        self.draining = (target, deadline, requests)
        if error:
            self.claim_error = error
        if soft:
            for w in self.workers:
                w.soft_stop()

    def _drain_for_shutdown(self) -> None:
        """On SIGTERM: hand the job back, or finish a pause or cancel under way, within the grace."""
        if self.draining is None:
            self._drain(JobStatus.QUEUED, [])
            return
        target, deadline, requests = self.draining
        self.draining = (target, min(deadline, self._stop_deadline), requests)

    def _maybe_finish(self) -> None:
        assert self.claim is not None
        busy = [w for w in self.workers if w.task is not None]
        if self.draining is not None:
            target, deadline, requests = self.draining
            if busy and time.monotonic() < deadline:
                return
            for w in busy:  # abandoned: their items stay pending for whoever runs the job next
                w.restart()
            error = self.claim_error if target == JobStatus.FAILED else None
            self._end(target, error)
            for p in requests:
                p.unlink(missing_ok=True)
            return
        if busy or self.pending:
            return
        progress = self.claim.state["progress"]
        self._end(lease.final_status(progress))

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
        self.claim, self.draining, self.pending = None, None, deque()
        self.claim_error = None

    def _abandon(self) -> None:
        for w in self.workers:
            if w.task is not None:
                w.restart()
        self.claim, self.draining, self.pending = None, None, deque()

    def _on_disk_full(self, e: OSError) -> None:
        assert self.claim is not None
        reason = f"disk full in {self.store.root}: {e.strerror}; free space, then `resume` the job"
        self.last_error = reason
        log.error("%s", reason)
        for w in self.workers:
            if w.task is not None:
                w.restart()
        self._reserve.unlink(missing_ok=True)  # room for the small write that records the pause
        try:
            lease.finish(self.store, self.claim, JobStatus.PAUSED, error=reason, reason="disk_full")
        except (OSError, LeaseLost) as e2:
            log.error("could not even record the pause (%s); the lease will expire and the job be retried", e2)
        self.claim, self.draining, self.pending = None, None, deque()

    # -- bookkeeping --------------------------------------------------------------------------
    def _write_heartbeat(self) -> None:
        self.telemetry.write(self)  # state/runners/<id>.json; see jobs/heartbeat.py
        self._keep_reserve()

    def _keep_reserve(self) -> None:
        """Hold RESERVE_BYTES of the job folder's disk so that, when it fills up, the pause that says
        "disk full" can still be written. A ``.tmp-`` name, touched at each heartbeat: housekeeping
        sweeps the reserve of a runner that was killed (after an hour), never a live one's."""
        try:
            if self._reserve.exists():
                os.utime(self._reserve)
            else:
                with open(self._reserve, "wb") as f:
                    f.write(b"\0" * RESERVE_BYTES)
        except OSError:
            self._reserve.unlink(missing_ok=True)  # no room yet: retried at the next heartbeat

    def _shutdown(self) -> None:
        if self.claim is not None:
            try:
                self._end(JobStatus.QUEUED)
            except (LeaseLost, OSError) as e:
                log.warning("could not hand the job back: %s", e)
        for w in self.workers:
            w.stop()
        self.telemetry.close()
        self._reserve.unlink(missing_ok=True)
        log.info("runner %s stopped", self.id)
