"""The held job's items: out to the workers, results back, timeouts, crashes and poison items.

The Runner owns one ``Items`` and calls it from its loop, passing the claim it holds. Every
result, a worker's or one made up here for an item that failed (bad input, timeout, poison), goes
through ``commit``, which is fenced by the claim's epoch (jobs/lease.py): a runner that lost its
lease writes nothing. Times are monotonic, so a wall-clock jump cannot time an item out.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from jobs import config, lease
from jobs.heartbeat import Telemetry
from jobs.lease import Claim, log_event
from jobs.pool import InFlight, WorkerHandle
from jobs.status import ErrorKind, ItemStatus
from jobs.store import Store

log = logging.getLogger("ocrjobs.runner")
#: Crashes of the same item (counted in state.json, so across restarts) before it is set aside as failed.
POISON_CRASHES = 2


class Items:
    """The pending items of the held job and the workers' side of it; counts what was committed."""

    def __init__(
        self,
        store: Store,
        workers: list[WorkerHandle],
        telemetry: Telemetry,
        *,
        grace_s: float,
        hb_timeout_s: float,
        load_timeout_s: float,
    ) -> None:
        self.store, self.workers, self.telemetry = store, workers, telemetry
        self.grace_s, self.hb_timeout_s, self.load_timeout_s = grace_s, hb_timeout_s, load_timeout_s
        self.pending: deque[dict[str, Any]] = deque()
        self.spec: dict[str, Any] = {}
        self.counters = {"done": 0, "failed": 0, "timed_out": 0}

    def load(self, job_id: str, spec: dict[str, Any]) -> None:
        """A job was claimed: its items without a result yet are the ones to do."""
        self.spec = spec
        done = {r["index"] for r in self.store.iter_results(job_id)}
        self.pending = deque(i for i in self.store.manifest(job_id) if i["index"] not in done)

    def clear(self) -> None:
        """The job is no longer held: whatever was pending is left for whoever runs it next."""
        self.pending = deque()

    def busy(self) -> list[WorkerHandle]:
        return [w for w in self.workers if w.task is not None]

    def dispatch(self, claim: Claim) -> None:
        """Give each idle worker the next item; an item the submit already found unreadable fails here."""
        for w in self.workers:
            while w.idle and self.pending:
                item = self.pending.popleft()
                if item.get("error"):
                    self.commit(claim, self._failure(item, ErrorKind.INPUT, item["error"]))
                    continue
                timeout = float(self.spec.get("item_timeout", config.DEFAULT_ITEM_TIMEOUT_S))
                w.send_task(
                    InFlight(claim.job_id, item, claim.epoch, time.monotonic(), timeout),
                    {
                        "job_dir": str(self.store.job_dir(claim.job_id)),
                        "item": item,
                        "engine": self.spec.get("engine", config.DEFAULT_ENGINE),
                        "engine_options": self.spec.get("engine_options") or {},
                        "dpi": int(self.spec.get("dpi", config.DEFAULT_DPI)),
                        "retries": int(self.spec.get("retries", config.DEFAULT_RETRIES)),
                    },
                )
                claim.state["progress"]["current"] = {
                    "index": item["index"],
                    "source": item["source"],
                    "page": item.get("page"),
                    "started_at": time.time(),
                    "worker_pid": w.pid,
                }

    def on_message(self, claim: Claim, w: WorkerHandle, msg: tuple[Any, ...]) -> str | None:
        """Act on one message from worker ``w``. Returns the error if the engine would not load: that
        fails the whole job, which is the Runner's to end (the item goes back to pending first)."""
        kind = msg[0]
        if kind == "loading":
            w.loading_since = time.monotonic()
        elif kind == "loaded":
            w.loading_since, w.engine_device, w.engine_name = None, msg[2], msg[1]
            if w.task:
                w.task.started = time.monotonic()  # the item's clock starts once the model is in
            log.info("worker %d loaded %s on %s in %.1f s", w.slot, msg[1], msg[2], msg[3])
        elif kind == "load_error":
            log.error("%s", msg[1])
            if w.task:
                self.pending.appendleft(w.task.item)
                w.task = None
            return msg[1]
        elif kind == "attempt" and msg[1] > 1 and w.task:
            w.task.started = time.monotonic()
            log_event(self.store, w.task.job_id, "item_retry", index=w.task.item["index"], attempt=msg[1])
        elif kind == "result":
            task, w.task = w.task, None
            if task is None or task.epoch != claim.epoch or task.item["index"] != msg[1]["index"]:
                return None  # a stale result: from an earlier epoch, or for an item given up on
            self.commit(claim, msg[1])
        return None

    def check_workers(self, claim: Claim) -> None:
        """Restart dead, silent or stuck-loading workers; stop, then kill, an item past its timeout."""
        now = time.monotonic()
        for w in self.workers:
            if not w.proc.is_alive():
                self._on_crash(claim, w, f"the worker process died (exit code {w.proc.exitcode})")
            elif now - w.last_hb > self.hb_timeout_s:
                self._on_crash(claim, w, f"the worker stopped heartbeating for {now - w.last_hb:.0f} s and was killed")
            elif w.loading_since and now - w.loading_since > self.load_timeout_s:
                self._on_crash(claim, w, f"loading the engine took over {self.load_timeout_s:.0f} s")
            elif w.task and not w.loading_since:
                elapsed = now - w.task.started
                if elapsed > w.task.timeout:
                    w.soft_stop()
                if elapsed > w.task.timeout + self.grace_s:
                    self._on_timeout(claim, w, elapsed)

    def _on_timeout(self, claim: Claim, w: WorkerHandle, elapsed: float) -> None:
        task = w.task
        assert task is not None
        w.restart()
        msg = (
            f"no result within the {task.timeout:g} s item timeout (+{self.grace_s:g} s grace); "
            "the worker was killed and restarted"
        )
        self.commit(
            claim,
            self._failure(task.item, ErrorKind.TIMEOUT, msg, status=ItemStatus.TIMED_OUT, elapsed_ms=elapsed * 1000),
        )

    def _on_crash(self, claim: Claim, w: WorkerHandle, why: str) -> None:
        """The item is retried, unless it has now crashed a worker POISON_CRASHES times."""
        task = w.task
        log.warning("worker %d (pid %d): %s", w.slot, w.pid, why)
        w.restart()
        if task is None or task.epoch != claim.epoch:
            return
        crashes = claim.state.setdefault("item_crashes", {})
        key = str(task.item["index"])
        crashes[key] = crashes.get(key, 0) + 1
        log_event(self.store, task.job_id, "worker_crash", index=task.item["index"], crashes=crashes[key], why=why)
        if crashes[key] >= POISON_CRASHES:
            self.commit(
                claim,
                self._failure(
                    task.item,
                    ErrorKind.CRASH,
                    f"poison item: {why} while processing it, {crashes[key]} times; "
                    "it was set aside and the job went on",
                ),
            )
        else:
            lease.save(self.store, claim)
            self.pending.appendleft(task.item)

    def _failure(
        self,
        item: dict[str, Any],
        kind: ErrorKind,
        message: str,
        status: ItemStatus = ItemStatus.FAILED,
        elapsed_ms: float | None = None,
    ) -> dict[str, Any]:
        """The result of an item that produced none: same shape as a worker's, with the error."""
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

    def commit(self, claim: Claim, result: dict[str, Any]) -> None:
        """Write the result (once: a duplicate is ignored) and count it; raises LeaseLost if fenced off."""
        if lease.commit_item(self.store, claim, result):
            self.counters[result["status"]] = self.counters.get(result["status"], 0) + 1
            self.telemetry.on_commit(claim.job_id, result)
