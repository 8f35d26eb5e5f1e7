"""The worker: loads an engine once and recognises the batches of items sent by the supervisor.

Started with ``spawn`` (never fork: CUDA and onnxruntime threads do not survive a fork).
A heartbeat thread reports liveness independently of items, so the supervisor can tell a
worker that is busy from one that is wedged, and kill the latter. A prefetch thread decodes
the next task (image load, PDF render) while the engine runs the current one, so the engine
(often a GPU) does not wait on the CPU. :class:`WorkerCore` is the part that needs no process
of its own; the Ray executor runs it inside an actor.

An engine needs only ``load(device)`` and ``recognize(images)`` (jobs/engines/base.py): ``device``,
``max_batch``, ``set_stop_check`` and ``close`` are used when it has them, so a plug-in that does not
subclass ``Engine`` runs too. An engine that breaks on its first call (jobs/worker/batch.py's
``BrokenEngine``) is reported like one that would not load: its job fails with that one message.
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

from PIL import Image

from jobs.worker.batch import BrokenEngine, decode_task, recognize_task

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
        self._proven = False  # the engine recognised something since it loaded (jobs/worker/batch.py)

    def engine_for(self, task: dict[str, Any], emit: Emit) -> Any:
        """The task's engine, loaded on first use and kept; None (after a ``load_error``) if it won't load."""
        key = _engine_key(task)
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
        self.engine, self._key, self._proven = engine, key, False
        try:
            batch = max(1, int(getattr(engine, "max_batch", 1) or 1))
        except (TypeError, ValueError):
            batch = 1
        emit("loaded", task["engine"], str(getattr(engine, "device", self.device)), time.monotonic() - t0, batch)
        return engine

    def run_task(
        self, task: dict[str, Any], emit: Emit, stop_check: Callable[[], bool], decoded: list[Any] | None = None
    ) -> None:
        """Recognise one task (a batch) and emit one ``result`` per item; ``decoded`` if prefetched."""
        engine = self.engine_for(task, emit)
        if engine is None:
            return
        if callable(getattr(engine, "set_stop_check", None)):
            engine.set_stop_check(stop_check)
        emit("started", task["task_id"])
        images = decoded if decoded is not None else decode_task(task)

        def on_attempt(n: int) -> None:
            emit("attempt", task["task_id"], n)

        try:
            results = recognize_task(engine, task, images, on_attempt, stop_check, self.device, self._proven)
        except BrokenEngine as e:  # the runner fails the job on it, as on an engine that won't load
            self.close()
            emit("load_error", str(e))
            return
        self._proven = self._proven or any(r.get("status") == "done" for r in results)
        for result in results:
            emit("result", result)

    def prepare(self, task: dict[str, Any], decoded: list[Any]) -> None:
        """On the prefetch thread: let the loaded engine, if it is this task's and has the optional
        ``prepare(images)``, do its CPU-side work on the task's images while it still runs the one before."""
        engine = self.engine
        prepare = getattr(engine, "prepare", None)
        if not callable(prepare) or self._key != _engine_key(task):
            return
        images = [im for im in decoded if isinstance(im, Image.Image)]
        if not images:
            return
        try:
            prepare(images)
        except Exception as e:  # noqa: BLE001 - a head start only: recognize() does the work itself
            logging.getLogger(__name__).debug("engine %s: prepare() failed: %s", self._key, e)

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if callable(close):
            try:
                close()
            except Exception as e:  # noqa: BLE001 - a failing close must not take the worker down
                logging.getLogger(__name__).warning("engine %s: close() failed: %s", self._key, e)
        self.engine, self._key, self._proven = None, None, False


def _engine_key(task: dict[str, Any]) -> tuple[str, str]:
    return (task["engine"], repr(sorted(task["engine_options"].items())))


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


def _prefetch(chan: _Channel, ready: queue.Queue[tuple[dict[str, Any], list[Any]] | None], core: WorkerCore) -> None:
    """Decode tasks in arrival order, one ahead of the engine (``ready`` holds one), and let the engine
    prepare them (its processor work) while it still recognises the task before."""
    while True:
        task = chan.inbox.get()
        if task is None:
            ready.put(None)
            return
        if chan.take_dropped(task):
            continue
        decoded = decode_task(task)
        chan.send("decoded", task["task_id"])
        core.prepare(task, decoded)
        ready.put((task, decoded))


def worker_main(conn: Connection, device: str, hb_interval: float, env: dict[str, str] | None = None) -> None:
    """``env``: this worker's own variables (its GPU pin, its thread budget), set before any engine loads."""
    os.environ.update(env or {})
    # Ctrl-C or a service stop signals the whole process group: the supervisor alone decides when
    # a worker stops (it lets the item finish, or kills the worker), so a stop never blames an item.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker[%(process)d] %(levelname)s %(message)s")
    chan = _Channel(conn)
    threading.Thread(target=_heartbeat, args=(chan, hb_interval), daemon=True, name="heartbeat").start()
    ready: queue.Queue[tuple[dict[str, Any], list[Any]] | None] = queue.Queue(maxsize=1)
    core = WorkerCore(device)
    threading.Thread(target=_prefetch, args=(chan, ready, core), daemon=True, name="prefetch").start()
    while (got := ready.get()) is not None:
        task, decoded = got
        if chan.take_dropped(task):
            continue
        chan.running = task["task_id"]
        chan.stop_item.clear()
        core.run_task(task, chan.send, chan.stop_item.is_set, decoded)
        chan.running = None
    core.close()
