"""The Ray actor: one engine per actor, fed whole tasks by the head's ``RayWorkerHandle``.

Plain Python (``ray.remote`` is applied in jobs/ray/executor.py), so this module imports without
ray. The actor never sees the job folder: the head sends each task's input files as bytes through
the object store, and the actor writes them to a private temp dir, decodes and recognises them
there with the same ``WorkerCore`` a local worker uses, then deletes them. So no node needs a
shared filesystem, and the runner on the head stays the only writer of results.

Messages (the local worker protocol's: loading, loaded, started, attempt, result, dropped...) go to
an outbox the head long-polls (``poll``); a poll answered is also the actor's heartbeat. ``run``
calls run two at a time in the "work" concurrency group (one decodes while the other is on the
engine, which takes tasks strictly in the order sent); poll, soft_stop and drop run in "ctl", so a
soft stop reaches a task while it runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from jobs.engines.base import THREADS_ENV

#: Messages a poll returns for at once; the others wait for one of these (or the poll's time).
URGENT = frozenset({"result", "dropped", "loading", "loaded", "load_error"})
#: How often an actor re-reads its node's GPU, CPU and memory figures (they ride on poll answers).
STATS_EVERY_S = 5.0


class OcrActor:
    def __init__(self, device: str, threads: int | None = None) -> None:
        if threads:  # before any engine loads: onnxruntime / torch read these at load time
            os.environ[THREADS_ENV] = str(threads)
            os.environ["OMP_NUM_THREADS"] = str(threads)
        from jobs.worker.core import WorkerCore

        self.core = WorkerCore(device)
        #: Differs on every (re)start, so the head can tell a restarted actor from the one it killed.
        self.instance = uuid.uuid4().hex
        self._cv = threading.Condition()
        self._out: list[tuple[Any, ...]] = []
        self._stop = threading.Event()
        self._running: int | None = None
        self._dropped: set[int] = set()
        self._turn = 0  # the seq of the task whose turn it is on the engine
        self._stats: dict[str, Any] = {}
        self._stats_at = float("-inf")

    # -- the "work" group: two tasks at once, so the next one decodes while the engine runs ----
    def run(self, payload: dict[str, Any], files: dict[str, bytes], seq: int) -> int:
        """Decode the task's inputs (written to a private temp dir), then recognise them once every
        task sent before it (``seq``: the head's count for this actor instance) has had its turn."""
        task_id = int(payload["task_id"])
        tmp = Path(tempfile.mkdtemp(prefix="ocrjobs-ray-"))
        try:
            if self._take_dropped(task_id):
                return task_id
            task = {**payload, "job_dir": str(tmp)}
            _write_inputs(tmp, files)
            from jobs.worker.batch import decode_task

            decoded = decode_task(task)
            self._emit("decoded", task_id)
            with self._cv:
                self._cv.wait_for(lambda: self._turn == seq)
                if self._take_dropped(task_id):
                    return task_id
                self._running = task_id
                self._stop.clear()
            self.core.run_task(task, self._emit, self._stop.is_set, decoded)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with self._cv:
                self._cv.wait_for(lambda: self._turn >= seq)  # a failed decode still waits its turn
                if self._running == task_id:
                    self._running = None
                self._turn = max(self._turn, seq + 1)
                self._cv.notify_all()
        return task_id

    def _take_dropped(self, task_id: int) -> bool:
        with self._cv:
            if task_id not in self._dropped:
                return False
            self._dropped.discard(task_id)
            self._out.append(("dropped", task_id))
            self._cv.notify_all()
            return True

    # -- the "ctl" group ---------------------------------------------------------------------
    def poll(self, wait_s: float) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
        """Messages since the last poll, and this actor's figures. Waits up to ``wait_s`` for one the
        head must act on at once (a result, a load, a drop); progress notes (decoded, started,
        attempt) ride along with it, so a task costs one round trip, not four."""
        with self._cv:
            if wait_s > 0:
                self._cv.wait_for(lambda: any(m[0] in URGENT for m in self._out), wait_s)
            out, self._out = self._out, []
        return out, self.stats()

    def soft_stop(self, task_id: int) -> None:
        with self._cv:
            if self._running == task_id:
                self._stop.set()

    def drop(self, task_id: int) -> None:
        """Skip a task that has not started (it answers ``dropped``); one already running goes on."""
        with self._cv:
            if self._running != task_id and len(self._dropped) < 1000:
                self._dropped.add(task_id)

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._stats_at >= STATS_EVERY_S:
            self._stats_at = now
            self._stats = _node_stats()
        return {**self._stats, "instance": self.instance, "pid": os.getpid()}

    def _emit(self, *msg: Any) -> None:
        with self._cv:
            self._out.append(msg)
            self._cv.notify_all()


def _write_inputs(root: Path, files: dict[str, bytes]) -> None:
    """The task's input files, at their manifest paths under ``root`` (confined to it)."""
    from jobs.errors import InputError
    from jobs.intake.decode import item_path

    for rel, data in files.items():
        try:
            path = item_path(root, rel)
        except InputError:
            continue  # the item's own decode refuses the same path, as that item's error
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _node_stats() -> dict[str, Any]:
    import psutil
    import ray

    from jobs.ops.gpu import gpu_stats

    proc = psutil.Process()
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "cpu_percent": proc.cpu_percent(None),
        "rss_bytes": proc.memory_info().rss,
        "gpu": gpu_stats(),
    }


def read_inputs(job_dir: Path, items: list[dict[str, Any]]) -> dict[str, bytes]:
    """The items' input files (each once), keyed by manifest path; one that cannot be read is left
    out, and the actor's decode then fails that item with its usual InputError."""
    from jobs.errors import InputError
    from jobs.intake.decode import item_path

    files: dict[str, bytes] = {}
    for item in items:
        rel = item.get("path")
        if not isinstance(rel, str) or rel in files or item.get("error"):
            continue
        try:
            files[rel] = item_path(job_dir, rel).read_bytes()
        except (InputError, OSError):
            continue
    return files
