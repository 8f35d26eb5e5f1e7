"""The supervisor's side of worker subprocesses: start, feed, watch, kill, respawn.

A worker holds up to :data:`jobs.worker.core.DEPTH` tasks (batches of items): the one its engine runs and the
next, which it decodes meanwhile. ``Items`` (jobs/runner/items.py) drives workers only through the
interface of :class:`WorkerHandle`, so another executor's handle (jobs/ray/executor.py) plugs in.

:class:`Shape` keeps the local pool in the shape the held job's engine needs (jobs/runner/sizing.py):
the CPU plan's workers, or one worker pinned to each GPU.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from jobs.runner import sizing
from jobs.worker.core import DEPTH, worker_main

log = logging.getLogger(__name__)
_SPAWN = mp.get_context("spawn")


@dataclass
class InFlight:
    """One task sent to a worker. Its clock (``started``, monotonic) runs from when it became the
    worker's head task, or from when the engine finished loading; its deadline is ``timeout`` per item."""

    job_id: str
    task_id: int
    items: list[dict[str, Any]]
    epoch: int
    timeout: float
    started: float | None = None
    soft_sent: bool = False
    decoded: bool = False  # the worker has read its inputs (a crash now is not in decoding them)
    running: bool = False  # the engine is on it
    #: in flight when the job began to wind down (cancel, delete, pause, shutdown): a result other than
    #: ``done`` may be the wind-down's doing (a soft stop, a signal), so it is dropped (the item stays pending)
    drained: bool = False
    left: set[int] = field(default_factory=set)  # indices whose result has not come back
    engine_key: str = ""  # the job's engine and options (jobs/runner/held.py): what the worker loads for it

    def __post_init__(self) -> None:
        self.left = {int(i["index"]) for i in self.items}

    @property
    def deadline_s(self) -> float:
        return self.timeout * len(self.items)

    @property
    def item(self) -> dict[str, Any]:
        """The first item (what the dashboard shows as current)."""
        return self.items[0]


def depth(tasks: Iterable[InFlight]) -> int:
    """How many tasks (batches) a worker holds: the parts of a shared batch are one task."""
    return len({t.task_id for t in tasks})


def head_parts(tasks: Sequence[InFlight]) -> list[InFlight]:
    """The parts of the head task: one per job whose items ride in the batch the engine runs."""
    return [t for t in tasks if t.task_id == tasks[0].task_id] if tasks else []


def room(workers: Iterable[Any]) -> int:
    """Items the workers could take now: a free task slot holds a batch of its loaded engine's size."""
    return sum(max(1, w.max_batch) * (DEPTH - depth(w.tasks)) for w in workers if w.can_take())


class WorkerHandle:
    """One long-lived worker process. All times are monotonic (immune to wall-clock jumps).

    A task may carry the items of several jobs with the same engine (``shares_batches``): one
    :class:`InFlight` per job, all with the task's id, in ``tasks`` one after the other."""

    shares_batches = True

    def __init__(self, slot: int, device: str, hb_interval: float, env: dict[str, str] | None = None) -> None:
        self.slot, self.device, self.hb_interval = slot, device, hb_interval
        self.env = dict(env or {})  # on top of the runner's environment: a GPU worker's pin and threads
        self.proc: Any = None
        self.conn: Connection | None = None
        self.tasks: deque[InFlight] = deque()
        self.loading_since: float | None = None
        self.last_hb = 0.0
        self.engine_device: str | None = None
        self.engine_name: str | None = None
        self.max_batch = 1  # the engine's, once it is loaded
        self.loaded_key: str | None = None  # which engine (and options) max_batch is for; set by Items
        self.loaded_at: float | None = None
        self.load_s = 0.0
        self.start()

    def start(self) -> None:
        parent, child = _SPAWN.Pipe(duplex=True)
        self.proc = _SPAWN.Process(
            target=worker_main,
            args=(child, self.device, self.hb_interval, self.env),
            name=f"ocr-worker-{self.slot}",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.conn = parent
        self.tasks = deque()
        self.max_batch, self.loaded_key = 1, None  # a new process has no engine yet
        self.loaded_at: float | None = None  # when its engine finished loading, and how long that took:
        self.load_s = 0.0  # how long a worker keeps an engine before switching (jobs/runner/fairshare.py)
        self.loading_since = None
        self.last_hb = self.started_at = time.monotonic()
        self.heard = False  # nothing from this process yet: if it dies now, it never started (jobs/runner/respawn.py)
        pin = self.env.get("CUDA_VISIBLE_DEVICES")
        log.info("worker %d started (pid %d)%s", self.slot, self.proc.pid, f" on GPU {pin}" if pin else "")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def task(self) -> InFlight | None:
        """The head task: the one the engine runs (or loads for), None if idle."""
        return self.tasks[0] if self.tasks else None

    @property
    def exitcode(self) -> int | None:
        return self.proc.exitcode

    def alive(self) -> bool:
        return bool(self.proc.is_alive())

    def can_take(self) -> bool:
        return depth(self.tasks) < DEPTH and self.alive()

    def send_task(self, inflight: InFlight, payload: dict[str, Any], riders: Sequence[InFlight] = ()) -> None:
        """Hand over a task (``riders``: the other jobs' parts of a shared batch). A worker that died since
        it was last seen is noticed by the supervisor's liveness check, which treats the task as a crash."""
        assert self.conn is not None
        if not self.tasks:
            for part in (inflight, *riders):
                part.started = time.monotonic()
        self.tasks.extend((inflight, *riders))
        try:
            self.conn.send(("task", payload))
        except OSError:
            log.warning("worker %d: could not send task %d (worker gone)", self.slot, inflight.task_id)

    def _send(self, *msg: Any) -> None:
        try:
            assert self.conn is not None
            self.conn.send(msg)
        except OSError:
            pass

    def soft_stop(self) -> None:
        """Ask the engine to stop the head task early (``Engine.stop_requested``)."""
        task = self.task
        if task and not task.soft_sent:
            task.soft_sent = True
            self._send("stop_item", task.task_id)

    def drop(self, task_id: int) -> None:
        """Ask the worker to skip a task it has not started; it answers ``dropped`` (or runs it anyway)."""
        self._send("drop", task_id)

    def messages(self) -> list[tuple[Any, ...]]:
        """Drain whatever the worker has sent; updates the heartbeat clock."""
        out = []
        assert self.conn is not None
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                self.last_hb, self.heard = time.monotonic(), True
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


class Shape:
    """The local pool's plan: the CPU plan's ``cpu_workers``, or ``gpu``'s one worker per GPU.

    Workers start before any job says which engine they will run, in the CPU plan's shape. :meth:`fit`,
    called when a job is claimed (no worker holds a task then), reshapes the pool in place when the job
    needs the other plan: the idle workers stop and the other plan's start. Jobs of one kind in a row
    keep their workers (and loaded engines)."""

    def __init__(self, cpu_workers: int, gpu: sizing.GpuPlan | None, device: str, hb_interval: float) -> None:
        self.cpu_workers, self.gpu, self.device, self.hb_interval = cpu_workers, gpu, device, hb_interval
        self.kind = "cpu"
        self._uses_gpu: dict[str, bool] = {}  # plug-in engine name -> its class's uses_gpu
        self._forbidden: tuple[str, ...] = ()

    def start(self) -> list[WorkerHandle]:
        return [WorkerHandle(i, self.device, self.hb_interval) for i in range(self.cpu_workers)]

    def fit(self, workers: list[WorkerHandle], spec: dict[str, Any], state_root: Path) -> str | None:
        """Reshape ``workers`` (in place: Items and Drain hold the same list) for the job ``spec``;
        what changed, in words, or None if nothing did."""
        if self.gpu is None:
            return None
        self._forbidden = (str(state_root),)
        kind = self.kind_for(spec)
        if kind == self.kind:
            return None
        for w in workers:
            w.stop()
        if kind == "gpu":
            fresh = [WorkerHandle(i, self.device, self.hb_interval, self.gpu.env(i)) for i in range(self.gpu.workers)]
            said = self.gpu.describe(str(spec.get("engine")))
        else:
            fresh = self.start()
            said = f"{spec.get('engine')}: back to the CPU plan, {self.cpu_workers} worker(s)"
        workers[:] = fresh
        self.kind = kind
        return said

    def kind_for(self, spec: dict[str, Any]) -> str:
        """The plan a job needs: "gpu" (one worker per GPU) or "cpu"."""
        if self.gpu is None:
            return "cpu"
        return "gpu" if sizing.job_wants_gpu(spec, self.device, self.uses_gpu) else "cpu"

    def uses_gpu(self, name: str) -> bool:
        if name not in self._uses_gpu:
            self._uses_gpu[name] = engine_uses_gpu(name, self._forbidden)
        return self._uses_gpu[name]


#: Seconds a plug-in's import may take when the runner reads its ``uses_gpu``.
PROBE_TIMEOUT_S = 20.0


def engine_uses_gpu(name: str, forbidden: tuple[str, ...] = (), timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """A plug-in engine class's ``uses_gpu``, read in a spawned process that imports it as a worker would,
    so an engine that hangs or kills its process on import cannot take the runner down. Whatever goes
    wrong (the worker will report it when it loads the engine): False, the CPU plan."""
    parent, child = _SPAWN.Pipe(duplex=False)
    proc = _SPAWN.Process(target=_probe, args=(child, name, forbidden), name="ocr-engine-probe", daemon=True)
    proc.start()
    child.close()
    answer = False
    try:
        if parent.poll(timeout_s):
            answer = bool(parent.recv())
        else:
            log.warning("engine %s: importing it took over %.0f s; it gets the CPU plan", name, timeout_s)
    except (EOFError, OSError):
        log.warning("engine %s: its import ended the process; it gets the CPU plan", name)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    return answer


def _probe(conn: Connection, name: str, forbidden: tuple[str, ...]) -> None:
    from jobs.engines.registry import load_engine_class

    try:
        cls = load_engine_class(name, [Path(f) for f in forbidden])
        conn.send(bool(getattr(cls, "uses_gpu", False)))
    except Exception:  # noqa: BLE001 - the worker reports the real error when it loads the engine
        conn.send(False)
