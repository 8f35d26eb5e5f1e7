"""The held job's items: out to the workers, results back, timeouts, crashes and poison items.

The Runner owns one ``Items`` and calls it from its loop, passing the claim it holds. Every
result, a worker's or one made up here for an item that failed (bad input, timeout, poison), goes
through ``commit``, which is fenced by the claim's epoch (jobs/store/lease.py): a runner that lost its
lease writes nothing. Times are monotonic, so a wall-clock jump cannot time an item out.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from typing import Any

from jobs import config
from jobs.runner.heartbeat import Telemetry
from jobs.runner.pool import InFlight, WorkerHandle
from jobs.runner.respawn import Respawner, describe_exit
from jobs.store import lease
from jobs.store.lease import Claim, log_event
from jobs.store.status import ErrorKind, ItemStatus
from jobs.store.store import Store
from jobs.worker.core import DEPTH

log = logging.getLogger("ocrjobs.runner")
#: Crashes of the same item (counted in state.json, so across restarts) before it is set aside as failed.
POISON_CRASHES = 2


class Items:
    """The pending items of the held job and the workers' side of it; counts what was committed.

    Items go out in tasks of up to the engine's ``max_batch``. After a crash that cannot be pinned on
    one item (a batch, or a task being decoded behind the running one) the items involved are
    *suspects*: each runs alone, with nothing queued behind it, so that a second crash is charged to
    the item that caused it and only a poison item is ever set aside.
    """

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
        self.solo: set[int] = set()  # suspects: indices to run alone
        self.spec: dict[str, Any] = {}
        self.engine_key = ""  # the held job's engine and options: a worker's max_batch holds for this key
        self.counters = {"done": 0, "failed": 0, "timed_out": 0}
        self._task_ids = itertools.count(1)
        self.respawn = Respawner()

    def load(self, job_id: str, spec: dict[str, Any]) -> None:
        """A job was claimed: its items without a result yet are the ones to do."""
        self.spec = spec
        options = sorted((spec.get("engine_options") or {}).items())
        self.engine_key = repr((spec.get("engine", config.DEFAULT_ENGINE), options))
        done = {r["index"] for r in self.store.iter_results(job_id)}
        self.pending = deque(i for i in self.store.manifest(job_id) if i["index"] not in done)
        self.solo = set()

    def clear(self) -> None:
        """The job is no longer held: whatever was pending is left for whoever runs it next."""
        self.pending = deque()
        self.solo = set()

    def busy(self) -> list[WorkerHandle]:
        return [w for w in self.workers if w.tasks]

    # -- out -----------------------------------------------------------------------------
    def dispatch(self, claim: Claim) -> None:
        """Fill each worker up to its depth: idle workers first, then a second task to decode ahead."""
        for depth in range(DEPTH):
            for w in self.workers:
                if len(w.tasks) != depth or not w.can_take() or (w.tasks and self._is_solo(w.tasks[0])):
                    continue
                known = w.loaded_key == self.engine_key and not w.loading_since
                if depth and not known:
                    continue  # wait for the engine: its batch size decides how many items go next
                batch = self._next_batch(claim, w.max_batch if known else 1, alone=not w.tasks)
                if batch:
                    self._send(claim, w, batch)

    def _is_solo(self, task: InFlight) -> bool:
        return len(task.items) == 1 and task.items[0]["index"] in self.solo

    def _next_batch(self, claim: Claim, size: int, *, alone: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self.pending and len(out) < size:
            item = self.pending[0]
            if item.get("error"):  # the submit already found it unreadable
                self.pending.popleft()
                self.commit(claim, self._failure(item, ErrorKind.INPUT, item["error"]))
            elif item["index"] in self.solo:
                if not out and alone:
                    out.append(self.pending.popleft())
                break
            else:
                out.append(self.pending.popleft())
        return out

    def _send(self, claim: Claim, w: WorkerHandle, batch: list[dict[str, Any]]) -> None:
        timeout = float(self.spec.get("item_timeout", config.DEFAULT_ITEM_TIMEOUT_S))
        task_id = next(self._task_ids)
        w.send_task(
            InFlight(claim.job_id, task_id, batch, claim.epoch, timeout),
            {
                "task_id": task_id,
                "job_dir": str(self.store.job_dir(claim.job_id)),
                "state_root": str(self.store.root),  # no engine is imported from in there (jobs/worker/core.py)
                "items": batch,
                "engine": self.spec.get("engine", config.DEFAULT_ENGINE),
                "engine_options": self.spec.get("engine_options") or {},
                "dpi": int(self.spec.get("dpi", config.DEFAULT_DPI)),
                "pdf_text": self.spec.get("pdf_text", "auto"),  # jobs before it: auto
                "retries": int(self.spec.get("retries", config.DEFAULT_RETRIES)),
            },
        )

    def _requeue(self, items: list[dict[str, Any]], *, solo: bool = False) -> None:
        """Back to the front of the queue, in order."""
        for item in reversed(items):
            self.pending.appendleft(item)
            if solo:
                self.solo.add(item["index"])

    # -- back ----------------------------------------------------------------------------
    def on_message(self, claim: Claim, w: WorkerHandle, msg: tuple[Any, ...]) -> str | None:
        """Act on one message from worker ``w``. Returns the error if the engine would not load: that
        fails the whole job, which is the Runner's to end (the items go back to pending first)."""
        kind, now = msg[0], time.monotonic()
        task = _find(w, msg[1]) if kind in ("decoded", "started", "attempt", "dropped") else None
        if kind == "loading":
            w.loading_since = now
        elif kind == "loaded":
            w.loading_since, w.engine_device, w.engine_name = None, msg[2], msg[1]
            w.max_batch = max(1, int(msg[4])) if len(msg) > 4 else 1
            w.loaded_key = self.engine_key
            self.respawn.started(w)
            if w.task:
                w.task.started = now  # the task's clock starts once the model is in
            log.info("worker %d loaded %s on %s in %.1f s (batch %d)", w.slot, msg[1], msg[2], msg[3], w.max_batch)
        elif kind == "load_error":
            log.error("%s", msg[1])
            w.loaded_key = None
            self._requeue([i for t in w.tasks for i in t.items if i["index"] in t.left])
            w.tasks.clear()
            return msg[1]
        elif kind == "decoded" and task:
            task.decoded = True
        elif kind == "started" and task:
            task.running = True
            first = task.items[0]
            claim.state["progress"]["current"] = {
                "index": first["index"],
                "source": first["source"],
                "page": first.get("page"),
                "batch": len(task.items),
                "started_at": time.time(),
                "worker_pid": w.pid,
            }
        elif kind == "attempt" and task and msg[2] > 1:
            task.started = now
            for item in task.items:
                log_event(self.store, task.job_id, "item_retry", index=item["index"], attempt=msg[2])
        elif kind == "dropped" and task:
            w.tasks.remove(task)
            self._requeue([i for i in task.items if i["index"] in task.left])
            _advance(w)
        elif kind == "result":
            index = int(msg[1]["index"])
            task = next((t for t in w.tasks if index in t.left), None)
            if task is None or task.epoch != claim.epoch:
                return None  # a stale result: from an earlier epoch, or for an item given up on
            task.left.discard(index)
            if not task.left:
                w.tasks.remove(task)
                _advance(w)
            self.solo.discard(index)
            if task.drained and msg[1].get("status") != ItemStatus.DONE.value:
                self._stopped(task, [i for i in task.items if int(i["index"]) == index])
                return None
            self.commit(claim, msg[1])
        return None

    def _stopped(self, task: InFlight, items: list[dict[str, Any]]) -> None:
        """Items in flight when the job began to wind down (cancel, delete, pause, shutdown) that ended in
        error: the error may be the wind-down's (the engine's answer to the soft stop, "stopped at the item
        timeout"; a service stop's signal killing an engine's subprocess), so it is not theirs to carry.
        Not committed, not counted: they stay pending, for a resume, a retry or another runner."""
        if not items:
            return
        self._requeue(items)
        log_event(self.store, task.job_id, "items_stopped", indices=[i["index"] for i in items])

    def check_workers(self, claim: Claim) -> str | None:
        """Restart dead, silent or stuck-loading workers; stop, then kill, a task past its deadline.
        Returns why, if workers failed to start so often that the job must fail (the Runner ends it)."""
        now = time.monotonic()
        for w in self.workers:
            if self.respawn.waiting(w):
                continue
            head = w.task
            if not w.alive():
                for msg in w.messages():  # its last words: a "loading" says the engine, not an item, killed it
                    if (load_error := self.on_message(claim, w, msg)) is not None:
                        return load_error
                if self.respawn.died_starting(w):
                    self._requeue([i for t in w.tasks for i in t.items if i["index"] in t.left])
                    w.tasks.clear()
                    if (failure := self.respawn.failed_start(w)) is not None:
                        return failure
                    continue
                self._on_crash(claim, w, f"the worker process died ({describe_exit(w.exitcode)})")
            elif now - w.last_hb > self.hb_timeout_s:
                self._on_crash(claim, w, f"the worker stopped heartbeating for {now - w.last_hb:.0f} s and was killed")
            elif w.loading_since and now - w.loading_since > self.load_timeout_s:
                self._on_crash(claim, w, f"loading the engine took over {self.load_timeout_s:.0f} s")
            elif head and not w.loading_since:
                if head.started is None:
                    head.started = now
                elapsed = now - head.started
                if elapsed > head.deadline_s:
                    w.soft_stop()
                if elapsed > head.deadline_s + self.grace_s:
                    self._on_timeout(claim, w, elapsed)

    def _on_timeout(self, claim: Claim, w: WorkerHandle, elapsed: float) -> None:
        """A lone item past its deadline is timed out; a batch's items are tried again, each alone."""
        head, *rest = [t for t in w.tasks if t.epoch == claim.epoch] or [w.task]
        w.restart()
        assert head is not None
        left = [i for i in head.items if i["index"] in head.left]
        self._requeue([i for t in rest for i in t.items if i["index"] in t.left])
        if head.drained:  # the job is being wound down: the item is left for whoever runs the job next
            self._stopped(head, left)
            return
        if len(head.items) > 1:
            log_event(self.store, head.job_id, "batch_timed_out", indices=[i["index"] for i in left])
            self._requeue(left, solo=True)
            return
        msg = (
            f"no result within the {head.timeout:g} s item timeout (+{self.grace_s:g} s grace); "
            "the worker was killed and restarted"
        )
        for item in left:
            self.solo.discard(item["index"])
            failure = self._failure(item, ErrorKind.TIMEOUT, msg, ItemStatus.TIMED_OUT, elapsed * 1000)
            self.commit(claim, failure)

    def _on_crash(self, claim: Claim, w: WorkerHandle, why: str) -> None:
        """Charge the crash to the item if it is the only one that can have caused it; else make suspects."""
        tasks = [t for t in w.tasks if t.epoch == claim.epoch]
        log.warning("worker %d (pid %d): %s", w.slot, w.pid, why)
        w.restart()
        if not tasks:
            return
        # the head ran (or loaded); a task behind it that was still being decoded may be the culprit too
        suspects = [tasks[0], *(t for t in tasks[1:] if not t.decoded)]
        innocent = [i for t in tasks[1:] if t.decoded for i in t.items if i["index"] in t.left]
        items = [i for t in suspects for i in t.items if i["index"] in t.left]
        self._requeue(innocent)
        if len(items) != 1:
            if items:
                log_event(self.store, tasks[0].job_id, "batch_crash", indices=[i["index"] for i in items], why=why)
                self._requeue(items, solo=True)
            return
        item = items[0]
        crashes = claim.state.setdefault("item_crashes", {})
        key = str(item["index"])
        crashes[key] = crashes.get(key, 0) + 1
        log_event(self.store, tasks[0].job_id, "worker_crash", index=item["index"], crashes=crashes[key], why=why)
        if crashes[key] >= POISON_CRASHES:
            self.solo.discard(item["index"])
            self.commit(
                claim,
                self._failure(
                    item,
                    ErrorKind.CRASH,
                    f"poison item: {why} while processing it, {crashes[key]} times; "
                    "it was set aside and the job went on",
                ),
            )
        else:
            lease.save(self.store, claim)
            self._requeue([item], solo=True)

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


def _find(w: WorkerHandle, task_id: Any) -> InFlight | None:
    return next((t for t in w.tasks if t.task_id == task_id), None)


def _advance(w: WorkerHandle) -> None:
    """The next task is now the head: its clock starts."""
    if w.task is not None and w.task.started is None:
        w.task.started = time.monotonic()
