"""The held jobs' items: out to the workers, results back, workers watched.

The Runner owns one ``Items`` and calls it from its loop. Where each item ends (a commit fenced by its
job's epoch, a timeout, a crash, a poison item, an item stopped by a wind-down) is
jobs/runner/outcomes.py. Times are monotonic, so a wall-clock jump cannot time an item out.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from jobs import config
from jobs.runner import fairshare
from jobs.runner.heartbeat import Telemetry
from jobs.runner.held import Held
from jobs.runner.outcomes import Outcomes
from jobs.runner.pool import InFlight, WorkerHandle, depth, head_parts
from jobs.runner.respawn import Respawner, describe_exit
from jobs.store.lease import log_event
from jobs.store.status import ErrorKind, ItemStatus
from jobs.store.store import Store
from jobs.worker.core import DEPTH

log = logging.getLogger("ocrjobs.runner")


class Items(Outcomes):
    """The held jobs' items and the workers' side of them; counts what was committed.

    ``held`` (the Runner's own dict, job id -> :class:`Held`) says which jobs there are; a free worker
    gets its next task from the job the fair share picks (jobs/runner/fairshare.py). A task holds the
    items of one job; each result goes back to its task's job, fenced by that job's epoch.

    Items go out in tasks of up to the engine's ``max_batch``; a job with fewer items left than that shares
    its batch with other jobs of the same engine (``fairshare.riders``): one :class:`InFlight` per job, all
    with the task's id, each result matched to its part by the job id the worker echoes.

    After a crash that cannot be pinned on one item (a batch, or a task being decoded behind the running
    one) the items involved are *suspects*: each runs alone, with nothing queued behind it, so that a
    second crash is charged to the item that caused it and only a poison item is ever set aside.
    """

    def __init__(
        self,
        store: Store,
        workers: list[WorkerHandle],
        telemetry: Telemetry,
        held: dict[str, Held],
        *,
        grace_s: float,
        hb_timeout_s: float,
        load_timeout_s: float,
    ) -> None:
        self.store, self.workers, self.telemetry, self.held = store, workers, telemetry, held
        self.grace_s, self.hb_timeout_s, self.load_timeout_s = grace_s, hb_timeout_s, load_timeout_s
        self.counters = {"done": 0, "failed": 0, "timed_out": 0}
        self._task_ids = itertools.count(1)
        self.respawn = Respawner()

    def busy(self, job_id: str | None = None) -> list[WorkerHandle]:
        """Workers with a task (of ``job_id``, if given)."""
        return [w for w in self.workers if any(job_id in (None, t.job_id) for t in w.tasks)]

    def restart(self, w: WorkerHandle, job_id: str | None = None) -> None:
        """Restart ``w`` (abandoning ``job_id``'s tasks on it); other jobs' items on it go back to pending."""
        self._give_back([t for t in w.tasks if t.job_id != job_id])
        w.restart()

    def make_room(self, joined: Held) -> None:
        """A job just joined: take back tasks queued behind running ones (decode-ahead, not started) on as
        many workers as it has items, those whose running task began first, so its items go next instead of
        after them. Their workers answer ``dropped`` and the items go back to the front of their jobs."""
        want = len(joined.pending)
        full = [w for w in self.workers if depth(w.tasks) == DEPTH and not w.tasks[-1].running]
        full.sort(key=lambda w: w.tasks[0].started if w.tasks[0].started is not None else float("inf"))
        for w in full[:want]:
            queued = w.tasks[-1]
            if (held := self.held.get(queued.job_id)) is not None and held.pass_ >= joined.pass_:
                w.drop(queued.task_id)

    # -- out -----------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Fill each worker up to its depth: idle workers first, then a second task to decode ahead."""
        jobs = list(self.held.values())
        for ahead in range(DEPTH):
            for w in self.workers:
                if depth(w.tasks) != ahead or not w.can_take() or (w.tasks and self._is_solo(w.tasks[0])):
                    continue
                if ahead:  # decode ahead only for the engine it has: its batch size decides the next task
                    if w.loading_since or w.loaded_key is None or w.tasks[0].engine_key != w.loaded_key:
                        continue  # (a head task of another engine: the worker is about to switch)
                    candidates = [h for h in jobs if h.engine_key == w.loaded_key]
                else:
                    candidates = jobs
                held = fairshare.pick(w, candidates, self.workers)
                if held is None:
                    continue
                known = w.loaded_key == held.engine_key and not w.loading_since
                size = w.max_batch if known else 1
                batch = self._next_batch(held, size, alone=not w.tasks)
                if not batch:
                    continue
                fairshare.charge(held, len(batch), jobs)
                parts = [(held, batch)]
                if known and w.shares_batches and batch[-1]["index"] not in held.solo:
                    parts += self._riders(w, held, size - len(batch), jobs)
                self._send(w, parts)

    def _riders(self, w: WorkerHandle, lead: Held, room: int, jobs: list[Held]) -> list[tuple[Held, list[Any]]]:
        """Other jobs' items that fill the rest of ``lead``'s batch (jobs/runner/fairshare.py)."""
        out: list[tuple[Held, list[Any]]] = []
        for rider in fairshare.riders(w, lead, jobs, self.workers):
            if room <= 0:
                break
            if extra := self._next_batch(rider, room, alone=False):
                fairshare.charge(rider, len(extra), jobs)
                out.append((rider, extra))
                room -= len(extra)
        return out

    def _is_solo(self, task: InFlight) -> bool:
        held = self.held.get(task.job_id)
        return len(task.items) == 1 and held is not None and task.items[0]["index"] in held.solo

    def _next_batch(self, held: Held, size: int, *, alone: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while held.pending and len(out) < size:
            item = held.pending[0]
            if item.get("error"):  # the submit already found it unreadable
                held.pending.popleft()
                self.commit(held.claim, self._failure(item, ErrorKind.INPUT, item["error"]))
            elif item["index"] in held.solo:
                if not out and alone:
                    out.append(held.pending.popleft())
                break
            else:
                out.append(held.pending.popleft())
        return out

    def _send(self, w: WorkerHandle, parts: list[tuple[Held, list[dict[str, Any]]]]) -> None:
        """One task: the first part's job leads (its options are the task's), the others ride along."""
        spec = parts[0][0].spec
        task_id = next(self._task_ids)
        flights = [
            InFlight(h.job_id, task_id, batch, h.claim.epoch, h.item_timeout, engine_key=h.engine_key)
            for h, batch in parts
        ]
        payload = {
            "task_id": task_id,
            "job_dir": str(self.store.job_dir(parts[0][0].job_id)),
            "state_root": str(self.store.root),  # no engine is imported from in there (jobs/worker/core.py)
            "items": [item for _, batch in parts for item in batch],
            "engine": spec.get("engine", config.DEFAULT_ENGINE),
            "engine_options": spec.get("engine_options") or {},
            "dpi": int(spec.get("dpi", config.DEFAULT_DPI)),
            "pdf_text": spec.get("pdf_text", "auto"),  # jobs before it: auto
            "retries": int(spec.get("retries", config.DEFAULT_RETRIES)),
        }
        if len(parts) > 1:
            payload["parts"] = [
                {"job_id": h.job_id, "job_dir": str(self.store.job_dir(h.job_id)), "count": len(b)} for h, b in parts
            ]
        w.send_task(flights[0], payload, flights[1:])

    # -- back ----------------------------------------------------------------------------
    def on_message(self, w: WorkerHandle, msg: tuple[Any, ...]) -> tuple[str, str] | None:
        """Act on one message from worker ``w``. Returns (job id, error) if the engine would not load for
        that job's task: that fails the job, which is the Runner's to end (its items go back first)."""
        kind, now = msg[0], time.monotonic()
        by_task = kind in ("decoded", "started", "attempt", "dropped")
        parts = [t for t in w.tasks if t.task_id == msg[1]] if by_task else []
        if kind == "loading":
            w.loading_since = now
        elif kind == "loaded":
            w.loading_since, w.engine_device, w.engine_name = None, msg[2], msg[1]
            w.max_batch = max(1, int(msg[4])) if len(msg) > 4 else 1
            w.loaded_key = w.task.engine_key if w.task else None
            w.loaded_at, w.load_s = now, float(msg[3])
            self.respawn.started(w)
            for part in head_parts(w.tasks):
                part.started = now  # the task's clock starts once the model is in
            log.info("worker %d loaded %s on %s in %.1f s (batch %d)", w.slot, msg[1], msg[2], msg[3], w.max_batch)
        elif kind == "load_error":
            log.error("%s", msg[1])
            w.loaded_key = None
            head = w.task
            self._give_back(list(w.tasks))
            w.tasks.clear()
            if head is not None and self._own(head) is not None:
                return head.job_id, msg[1]
        elif kind == "decoded":
            for task in parts:
                task.decoded = True
        elif kind == "started":
            for task in parts:
                task.running = True
                if (held := self._own(task)) is not None:
                    first = task.items[0]
                    held.claim.state["progress"]["current"] = {
                        "index": first["index"],
                        "source": first["source"],
                        "page": first.get("page"),
                        "batch": sum(len(t.items) for t in parts),
                        "started_at": time.time(),
                        "worker_pid": w.pid,
                    }
        elif kind == "attempt" and msg[2] > 1:
            for task in parts:
                task.started = now
                for item in task.items:
                    log_event(self.store, task.job_id, "item_retry", index=item["index"], attempt=msg[2])
        elif kind == "dropped" and parts:
            for task in parts:
                w.tasks.remove(task)
            self._give_back(parts)
            _advance(w)
        elif kind == "result":
            index, job = int(msg[1]["index"]), msg[1].pop("job_id", None)  # job: a shared batch's (workers say)
            task = next((t for t in w.tasks if index in t.left and job in (None, t.job_id)), None)
            if task is None:
                return None  # a stale result: for an item given up on
            task.left.discard(index)
            if not task.left:
                w.tasks.remove(task)
                _advance(w)
            held = self._own(task)
            if held is None:
                return None  # from an earlier epoch, or for a job this runner no longer holds
            held.solo.discard(index)
            if task.drained and msg[1].get("status") != ItemStatus.DONE.value:
                self._stopped(held, task, [i for i in task.items if int(i["index"]) == index])
                return None
            self.commit(held.claim, {**msg[1], "worker": {"slot": w.slot, "pid": w.pid}})
        return None

    def check_workers(self) -> list[tuple[str | None, str]]:
        """Restart dead, silent or stuck-loading workers; stop, then kill, a task past its deadline.
        Returns (job id, why) for jobs that must fail: an engine that would not load for one, or workers
        that failed to start so often (job id None: every held job) that no job can run here."""
        now = time.monotonic()
        failures: list[tuple[str | None, str]] = []
        for w in self.workers:
            if self.respawn.waiting(w):
                continue
            head = w.task
            if not w.alive():
                for msg in w.messages():  # its last words: a "loading" says the engine, not an item, killed it
                    if (load_error := self.on_message(w, msg)) is not None:
                        failures.append(load_error)
                if self.respawn.died_starting(w):
                    self._give_back(list(w.tasks))
                    w.tasks.clear()
                    if (failure := self.respawn.failed_start(w)) is not None:
                        failures.append((None, failure))
                    continue
                self._on_crash(w, f"the worker process died ({describe_exit(w.exitcode)})")
            elif now - w.last_hb > self.hb_timeout_s:
                self._on_crash(w, f"the worker stopped heartbeating for {now - w.last_hb:.0f} s and was killed")
            elif w.loading_since and now - w.loading_since > self.load_timeout_s:
                self._on_crash(w, f"loading the engine took over {self.load_timeout_s:.0f} s")
            elif head and not w.loading_since:
                if head.started is None:
                    head.started = now
                elapsed = now - head.started
                if elapsed > sum(t.deadline_s for t in head_parts(w.tasks)):
                    w.soft_stop()
                if elapsed > sum(t.deadline_s for t in head_parts(w.tasks)) + self.grace_s:
                    self._on_timeout(w, elapsed)
        return failures


def _advance(w: WorkerHandle) -> None:
    """The next task is now the head: its clock starts."""
    for part in head_parts(w.tasks):
        if part.started is None:
            part.started = time.monotonic()
