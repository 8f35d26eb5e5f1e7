"""Where each item ends: its result committed under its job's epoch, or the failure made up for it.

Every result, a worker's or one made up here for an item that produced none (bad input, timeout,
poison), goes through :meth:`Outcomes.commit`, fenced by the claim's epoch (jobs/store/lease.py): a
runner that lost its lease writes nothing. A crash or timeout that cannot be pinned on one item makes
its items *suspects*, each run alone next, so only a poison item is ever set aside; an item in flight
when its job winds down and ends in error stays pending (the wind-down may have caused the error).
"""

from __future__ import annotations

import logging
from typing import Any

from jobs.runner.heartbeat import Telemetry
from jobs.runner.held import Held
from jobs.runner.pool import InFlight, WorkerHandle, head_parts
from jobs.store import lease
from jobs.store.lease import Claim, log_event
from jobs.store.status import ErrorKind, ItemStatus
from jobs.store.store import Store

log = logging.getLogger("ocrjobs.runner")
#: Crashes of the same item (counted in state.json, so across restarts) before it is set aside as failed.
POISON_CRASHES = 2


class Outcomes:
    """The part of :class:`jobs.runner.items.Items` that ends items; Items sets the fields below."""

    store: Store
    held: dict[str, Held]
    telemetry: Telemetry
    counters: dict[str, int]
    grace_s: float

    def _own(self, task: InFlight) -> Held | None:
        """The held job a task is for, if the runner still holds it under the task's epoch."""
        held = self.held.get(task.job_id)
        return held if held is not None and held.claim.epoch == task.epoch else None

    def _give_back(self, tasks: list[InFlight]) -> None:
        """Put the items of ``tasks`` that have no result yet back at the front of their jobs' queues."""
        for t in tasks:
            if (held := self._own(t)) is not None:
                held.requeue([i for i in t.items if i["index"] in t.left])

    def commit(self, claim: Claim, result: dict[str, Any]) -> None:
        """Write the result (once: a duplicate is ignored) and count it; raises LeaseLost if fenced off."""
        if lease.commit_item(self.store, claim, result):
            self.counters[result["status"]] = self.counters.get(result["status"], 0) + 1
            self.telemetry.on_commit(claim.job_id, result)

    def _stopped(self, held: Held, task: InFlight, items: list[dict[str, Any]]) -> None:
        """Items in flight when the job began to wind down (cancel, delete, pause, shutdown) that ended in
        error: the error may be the wind-down's (the engine's answer to the soft stop, "stopped at the item
        timeout"; a service stop's signal killing an engine's subprocess), so it is not theirs to carry.
        Not committed, not counted: they stay pending, for a resume, a retry or another runner."""
        if not items:
            return
        held.requeue(items)
        log_event(self.store, task.job_id, "items_stopped", indices=[i["index"] for i in items])

    def _on_timeout(self, w: WorkerHandle, elapsed: float) -> None:
        """A lone item past its deadline is timed out; a batch's items are tried again, each alone."""
        heads = head_parts(w.tasks)
        rest = [t for t in w.tasks if t.task_id != heads[0].task_id]
        w.restart()
        self._give_back(rest)
        batch = sum(len(t.items) for t in heads)
        for head in heads:
            if (held := self._own(head)) is not None:
                self._timed_out(held, head, batch, elapsed)

    def _timed_out(self, held: Held, head: InFlight, batch: int, elapsed: float) -> None:
        left = [i for i in head.items if i["index"] in head.left]
        if head.drained:  # the job is being wound down: the item is left for whoever runs the job next
            self._stopped(held, head, left)
            return
        if batch > 1:
            log_event(self.store, head.job_id, "batch_timed_out", indices=[i["index"] for i in left])
            held.requeue(left, solo=True)
            return
        msg = (
            f"no result within the {head.timeout:g} s item timeout (+{self.grace_s:g} s grace); "
            "the worker was killed and restarted"
        )
        for item in left:
            held.solo.discard(item["index"])
            failure = self._failure(item, ErrorKind.TIMEOUT, msg, ItemStatus.TIMED_OUT, elapsed * 1000)
            self.commit(held.claim, failure)

    def _on_crash(self, w: WorkerHandle, why: str) -> None:
        """Charge the crash to the item if it is the only one that can have caused it; else make suspects."""
        head_id = w.tasks[0].task_id if w.tasks else None
        tasks = [t for t in w.tasks if self._own(t) is not None]
        log.warning("worker %d (pid %d): %s", w.slot, w.pid, why)
        w.restart()
        # the head ran (or loaded); a task behind it that was still being decoded may be the culprit too
        suspects = [t for t in tasks if t.task_id == head_id or not t.decoded]
        self._give_back([t for t in tasks if t.task_id != head_id and t.decoded])
        left = [(t, i) for t in suspects for i in t.items if i["index"] in t.left]
        if len(left) != 1:
            for job_id in dict.fromkeys(t.job_id for t, _ in left):  # each runs alone next: a second crash
                items = [i for t, i in left if t.job_id == job_id]  # is charged to the item that caused it
                log_event(self.store, job_id, "batch_crash", indices=[i["index"] for i in items], why=why)
                self.held[job_id].requeue(items, solo=True)
            return
        task, item = left[0]
        held = self.held[task.job_id]
        crashes = held.claim.state.setdefault("item_crashes", {})
        key = str(item["index"])
        crashes[key] = crashes.get(key, 0) + 1
        log_event(self.store, task.job_id, "worker_crash", index=item["index"], crashes=crashes[key], why=why)
        if crashes[key] >= POISON_CRASHES:
            held.solo.discard(item["index"])
            self.commit(
                held.claim,
                self._failure(
                    item,
                    ErrorKind.CRASH,
                    f"poison item: {why} while processing it, {crashes[key]} times; "
                    "it was set aside and the job went on",
                ),
            )
        else:
            lease.save(self.store, held.claim)
            held.requeue([item], solo=True)

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
