"""The supervisor's side of worker subprocesses: start, feed, watch, kill, respawn."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from jobs.worker import worker_main

log = logging.getLogger(__name__)
_SPAWN = mp.get_context("spawn")


@dataclass
class InFlight:
    job_id: str
    item: dict[str, Any]
    epoch: int
    started: float  # monotonic
    timeout: float
    soft_sent: bool = False


class WorkerHandle:
    """One long-lived worker process. All times are monotonic (immune to wall-clock jumps)."""

    def __init__(self, slot: int, device: str, hb_interval: float) -> None:
        self.slot, self.device, self.hb_interval = slot, device, hb_interval
        self.proc: Any = None
        self.conn: Connection | None = None
        self.task: InFlight | None = None
        self.loading_since: float | None = None
        self.last_hb = 0.0
        self.engine_device: str | None = None
        self.engine_name: str | None = None
        self.start()

    def start(self) -> None:
        parent, child = _SPAWN.Pipe(duplex=True)
        self.proc = _SPAWN.Process(
            target=worker_main, args=(child, self.device, self.hb_interval), name=f"ocr-worker-{self.slot}", daemon=True
        )
        self.proc.start()
        child.close()
        self.conn = parent
        self.task = None
        self.loading_since = None
        self.last_hb = time.monotonic()
        log.info("worker %d started (pid %d)", self.slot, self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def idle(self) -> bool:
        return self.task is None and self.proc.is_alive()

    def send_task(self, inflight: InFlight, payload: dict[str, Any]) -> None:
        """Hand over an item. A worker that died since it was last seen idle is noticed by the
        supervisor's liveness check, which then treats the item like any other crash."""
        assert self.conn is not None
        self.task = inflight
        try:
            self.conn.send(("task", payload))
        except OSError:
            log.warning("worker %d: could not send item %s (worker gone)", self.slot, inflight.item["index"])

    def soft_stop(self) -> None:
        if self.task and not self.task.soft_sent:
            self.task.soft_sent = True
            try:
                assert self.conn is not None
                self.conn.send(("stop_item",))
            except OSError:
                pass

    def messages(self) -> list[tuple[Any, ...]]:
        """Drain whatever the worker has sent; updates the heartbeat clock."""
        out = []
        assert self.conn is not None
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                self.last_hb = time.monotonic()
                if msg[0] == "hb":
                    continue
                out.append(msg)
        except (EOFError, OSError):
            pass
        return out

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        if self.conn is not None:
            self.conn.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        try:
            assert self.conn is not None
            self.conn.send(("exit",))
        except OSError:
            pass
        self.proc.join(timeout)
        self.kill()
