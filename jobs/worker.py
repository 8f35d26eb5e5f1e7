"""The worker subprocess: loads an engine once and recognises items sent by the supervisor.

Started with ``spawn`` (never fork: CUDA and onnxruntime threads do not survive a fork).
A heartbeat thread reports liveness independently of items, so the supervisor can tell a
worker that is busy from one that is wedged, and kill the latter.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from jobs.errors import InputError
from jobs.status import ErrorKind, ItemStatus


class _Channel:
    """Thread-safe sends; a reader thread turns ``stop_item`` into an event at once."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.stop_item = threading.Event()
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
                self.stop_item.set()
            else:
                self.inbox.put(msg)
            if msg[0] == "exit":
                return


def _heartbeat(chan: _Channel, interval: float) -> None:
    while True:
        try:
            chan.send("hb", time.time())
        except (OSError, EOFError, BrokenPipeError):
            os._exit(0)  # the supervisor is gone: nobody will take our results
        time.sleep(interval)


def worker_main(conn: Connection, device: str, hb_interval: float) -> None:
    # Ctrl-C or a service stop signals the whole process group: the supervisor alone decides when
    # a worker stops (it lets the item finish, or kills the worker), so a stop never blames an item.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker[%(process)d] %(levelname)s %(message)s")
    chan = _Channel(conn)
    threading.Thread(target=_heartbeat, args=(chan, hb_interval), daemon=True, name="heartbeat").start()
    engine = None
    engine_key: tuple[str, str] | None = None
    while True:
        msg = chan.inbox.get()
        if msg[0] == "exit":
            break
        task: dict[str, Any] = msg[1]
        key = (task["engine"], repr(sorted(task["engine_options"].items())))
        if key != engine_key:
            if engine is not None:
                engine.close()
            engine, engine_key = None, None
            chan.send("loading", task["engine"])
            t0 = time.monotonic()
            try:
                engine = _load(task["engine"], task["engine_options"], device)
            except Exception as e:  # noqa: BLE001 - any load failure fails the job with its message
                chan.send("load_error", f"engine {task['engine']!r} could not be loaded: {type(e).__name__}: {e}")
                continue
            engine.set_stop_check(chan.stop_item.is_set)
            engine_key = key
            chan.send("loaded", task["engine"], engine.device, time.monotonic() - t0)
        chan.stop_item.clear()
        chan.send("result", run_item(engine, task, chan))
    if engine is not None:
        engine.close()


def _load(name: str, options: dict[str, Any], device: str) -> Any:
    from jobs.engines.registry import load_engine_class

    engine = load_engine_class(name)(**options)
    engine.load(device)
    return engine


def run_item(engine: Any, task: dict[str, Any], chan: _Channel) -> dict[str, Any]:
    """Decode and recognise one item, retrying transient engine errors with backoff and jitter."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    from jobs.decode import load_item
    from jobs.engines.registry import normalize

    item = task["item"]
    base = {"index": item["index"], "source": item["source"], "page": item.get("page"), "device": engine.device}
    t0 = time.monotonic()
    attempts = 0
    try:
        image = load_item(Path(task["job_dir"]), item, task["dpi"])
        retrying = Retrying(
            stop=stop_after_attempt(task["retries"] + 1),
            wait=wait_exponential_jitter(initial=task.get("backoff_s", 0.5), max=8),
            retry=retry_if_exception(lambda e: not isinstance(e, InputError) and not chan.stop_item.is_set()),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                chan.send("attempt", attempts)
                out = engine.recognize([image])
                if len(out) != 1:
                    raise RuntimeError(f"engine returned {len(out)} results for 1 image")
                rec = normalize(out[0])
    except InputError as e:
        return {
            **base,
            "status": ItemStatus.FAILED.value,
            "text": "",
            "confidence": None,
            "attempts": attempts,
            "error": {"kind": ErrorKind.INPUT.value, "message": str(e)},
            "processing_time_ms": round((time.monotonic() - t0) * 1000, 1),
        }
    except Exception as e:  # noqa: BLE001 - an engine error fails this item only
        logging.getLogger(__name__).warning("item %s failed: %s", item["index"], traceback.format_exc(limit=3))
        return {
            **base,
            "status": ItemStatus.FAILED.value,
            "text": "",
            "confidence": None,
            "attempts": attempts,
            "error": {"kind": ErrorKind.ENGINE.value, "message": f"{type(e).__name__}: {e}"},
            "processing_time_ms": round((time.monotonic() - t0) * 1000, 1),
        }
    return {
        **rec,
        **base,
        "status": ItemStatus.DONE.value,
        "error": None,
        "attempts": attempts,
        "processing_time_ms": round((time.monotonic() - t0) * 1000, 1),
    }
