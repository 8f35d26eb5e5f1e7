"""The worker: loads an engine once and recognises the batches of items sent by the supervisor.

Started with ``spawn`` (never fork: CUDA and onnxruntime threads do not survive a fork).
A heartbeat thread reports liveness independently of items, so the supervisor can tell a
worker that is busy from one that is wedged, and kill the latter. A prefetch thread decodes
the next task (image load, PDF render) while the engine runs the current one, so the engine
(often a GPU) does not wait on the CPU. :class:`WorkerCore` is the part that needs no process
of its own; the Ray executor runs it inside an actor.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from jobs.worker.batch import decode_task, recognize_task

Emit = Callable[..., None]
#: Tasks a worker holds at once: the running one and the one being decoded behind it (its prefetch).
#: The local pool (jobs/runner/pool.py) and the Ray executor (jobs/ray/executor.py) both feed this many.
DEPTH = 2


class WorkerCore:
    """Engine loading and task running, independent of how messages travel (pipe, Ray)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.engine: Any = None
        self._key: tuple[str, str] | None = None

    def engine_for(self, task: dict[str, Any], emit: Emit) -> Any:
        """The task's engine, loaded on first use and kept; None (after a ``load_error``) if it won't load."""
        key = (task["engine"], repr(sorted(task["engine_options"].items())))
        if key == self._key:
            return self.engine
        self.close()
        emit("loading", task["engine"])
        t0 = time.monotonic()
        try:
            engine = _load(task["engine"], task["engine_options"], self.device, _state_root(task))
        except Exception as e:  # noqa: BLE001 - any load failure fails the job with its message
            emit("load_error", f"engine {task['engine']!r} could not be loaded: {type(e).__name__}: {e}")
            return None
        self.engine, self._key = engine, key
        batch = max(1, int(getattr(engine, "max_batch", 1)))
        emit("loaded", task["engine"], engine.device, time.monotonic() - t0, batch)
        return engine

    def run_task(
        self, task: dict[str, Any], emit: Emit, stop_check: Callable[[], bool], decoded: list[Any] | None = None
    ) -> None:
        """Recognise one task (a batch) and emit one ``result`` per item; ``decoded`` if prefetched."""
        engine = self.engine_for(task, emit)
        if engine is None:
            return
        engine.set_stop_check(stop_check)
        emit("started", task["task_id"])
        images = decoded if decoded is not None else decode_task(task)
        for result in recognize_task(engine, task, images, lambda n: emit("attempt", task["task_id"], n), stop_check):
            emit("result", result)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine, self._key = None, None


def _load(name: str, options: dict[str, Any], device: str, forbidden: tuple[Path, ...] = ()) -> Any:
    from jobs.engines.registry import load_engine_class

    engine = load_engine_class(name, forbidden)(**options)
    engine.load(device)
    return engine


def _state_root(task: dict[str, Any]) -> tuple[Path, ...]:
    """The job folder (the store's root): anyone who submits can write files there, so no engine module
    may be imported from it, whatever the allow-list says."""
    root = task.get("state_root")
    return (Path(root),) if root else ()


class _Channel:
    """Thread-safe sends; a reader thread queues tasks and acts on stop/drop messages at once."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stop_item = threading.Event()
        self.running: int | None = None  # the task id the engine is on
        self.dropped: set[int] = set()
        threading.Thread(target=self._read, daemon=True, name="reader").start()

    def send(self, *msg: Any) -> None:
        with self._send_lock:
            self.conn.send(msg)

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                msg = ("exit",)
            if msg[0] == "stop_item":
                if len(msg) < 2 or msg[1] == self.running:  # a late stop never hits the next task
                    self.stop_item.set()
            elif msg[0] == "drop":
                self.dropped.add(msg[1])
            elif msg[0] == "task":
                self.inbox.put(msg[1])
            elif msg[0] == "exit":
                self.inbox.put(None)
                return

    def take_dropped(self, task: dict[str, Any]) -> bool:
        """True (and tell the supervisor) if the task was dropped before it started."""
        if task["task_id"] not in self.dropped:
            return False
        self.dropped.discard(task["task_id"])
        self.send("dropped", task["task_id"])
        return True


def _heartbeat(chan: _Channel, interval: float) -> None:
    while True:
        try:
            chan.send("hb", time.time())
        except (OSError, EOFError, BrokenPipeError):
            os._exit(0)  # the supervisor is gone: nobody will take our results
        time.sleep(interval)


def _prefetch(chan: _Channel, ready: queue.Queue[tuple[dict[str, Any], list[Any]] | None]) -> None:
    """Decode tasks in arrival order, one ahead of the engine (``ready`` holds one)."""
    while True:
        task = chan.inbox.get()
        if task is None:
            ready.put(None)
            return
        if chan.take_dropped(task):
            continue
        decoded = decode_task(task)
        chan.send("decoded", task["task_id"])
        ready.put((task, decoded))


def worker_main(conn: Connection, device: str, hb_interval: float) -> None:
    # Ctrl-C or a service stop signals the whole process group: the supervisor alone decides when
    # a worker stops (it lets the item finish, or kills the worker), so a stop never blames an item.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker[%(process)d] %(levelname)s %(message)s")
    chan = _Channel(conn)
    threading.Thread(target=_heartbeat, args=(chan, hb_interval), daemon=True, name="heartbeat").start()
    ready: queue.Queue[tuple[dict[str, Any], list[Any]] | None] = queue.Queue(maxsize=1)
    threading.Thread(target=_prefetch, args=(chan, ready), daemon=True, name="prefetch").start()
    core = WorkerCore(device)
    while (got := ready.get()) is not None:
        task, decoded = got
        if chan.take_dropped(task):
            continue
        chan.running = task["task_id"]
        chan.stop_item.clear()
        core.run_task(task, chan.send, chan.stop_item.is_set, decoded)
        chan.running = None
    core.close()
