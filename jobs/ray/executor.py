"""The Ray executor: the runner's workers are Ray actors, possibly on other machines.

The runner on the head node stays the only owner of the job folder (claims, commits, events); an
actor gets a task's input files as bytes through Ray's object store and sends back results as
messages, so no node needs a shared filesystem. ``RayWorkerHandle`` has the interface of
jobs/runner/pool.py's ``WorkerHandle``, so jobs/runner/items.py's dispatch, timeout, crash and poison rules apply
unchanged: an actor or node that dies turns into ``alive() == False`` (a crash: the task's items go
back to pending, an item that crashed twice is set aside), and a hard timeout ``ray.kill``s the
actor and lets Ray restart it (``max_restarts``).

ray is optional: nothing here imports it until a Ray executor is asked for.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import OcrJobsError
from jobs.ray.actor import read_inputs
from jobs.ray.wakeup import Wakeup
from jobs.worker.core import DEPTH  # tasks per actor, as for a local worker: one running, one decoding

log = logging.getLogger("ocrjobs.runner")
INSTALL_HINT = "the Ray executor needs ray, which is not installed: pip install -r requirements-ray.txt"
#: How long an actor's poll waits for a message; a poll answered is the actor's heartbeat.
POLL_WAIT_S = 1.0  # as often as a local worker heartbeats (each answer wakes the supervisor)
#: Warn when an actor is not up this long after its start or restart (no room for it in the cluster?).
WAIT_WARN_S = 60.0
#: Ray restarts of one actor (after a node death or a hard timeout) before the handle makes a new one.
MAX_RESTARTS = 20


def require_ray() -> Any:
    """The ray module, or an error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise OcrJobsError(INSTALL_HINT) from None
    return ray


_ACTOR_CLS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLS
    if _ACTOR_CLS is None:
        ray = require_ray()
        from jobs.ray.actor import OcrActor

        # run in "work", DEPTH at a time (one decodes while one recognises); poll, soft_stop, drop in "ctl"
        for name in ("run", "poll", "soft_stop", "drop", "stats"):
            ray.method(concurrency_group="work" if name == "run" else "ctl")(getattr(OcrActor, name))
        _ACTOR_CLS = ray.remote(concurrency_groups={"work": DEPTH, "ctl": 3})(OcrActor)
    return _ACTOR_CLS


@dataclass
class ActorSpec:
    """How to start one actor: where it runs and with what."""

    device: str  # "cpu" or "cuda"
    options: dict[str, Any] = field(default_factory=dict)  # for ActorClass.options()
    threads: int | None = None


class RayWorkerHandle:
    """One actor, seen by the supervisor as a worker. Never blocks: every Ray call here is
    submitted and its answer picked up on a later ``messages()`` with ``ray.wait(timeout=0)``."""

    shares_batches = False  # its files are read from one job's folder and keyed by manifest path

    def __init__(self, slot: int, spec: ActorSpec, poll_wait_s: float = POLL_WAIT_S) -> None:
        self.ray = require_ray()
        self.slot, self.spec, self.poll_wait_s = slot, spec, poll_wait_s
        self.tasks: deque[Any] = deque()
        self.actor: Any = None
        self.actor_id = ""
        self.pid = 0  # the actor's process id on its node (see ``node_id``)
        self.info: dict[str, Any] = {}
        self.death: str | None = None
        self._poll: Any = None
        self.conn = Wakeup(self.ray)  # the supervisor's wait() wakes when the outstanding poll is answered
        self._create()

    @property
    def task(self) -> Any:
        return self.tasks[0] if self.tasks else None

    @property
    def node_id(self) -> str | None:
        return self.info.get("node_id")

    # -- lifecycle ----------------------------------------------------------------------------
    def _create(self) -> None:
        self.actor = _actor_class().options(**self.spec.options).remote(self.spec.device, self.spec.threads)
        self.actor_id = self.actor._actor_id.hex()
        self._old_instance: str | None = None
        self._begin()

    def _begin(self) -> None:
        """Wait for the actor (new, or being restarted by Ray) before giving it tasks."""
        self.tasks.clear()
        self._runs: dict[Any, int] = {}
        self._seq = 0  # tasks sent to this actor instance: it runs them in this order
        self._poll: Any = None
        self._ready = False
        self._retry_at = 0.0
        self._waiting_since = time.monotonic()
        self.death = None
        self.loading_since: float | None = None
        self.last_hb = time.monotonic()
        self.engine_device: str | None = None
        self.engine_name: str | None = None
        self.max_batch, self.loaded_key = 1, None  # a new instance has no engine yet (loaded_key: Items')
        self.loaded_at: float | None = None  # when, and how long, its engine loaded (jobs/runner/fairshare.py)
        self.load_s = 0.0

    @property
    def exitcode(self) -> str | None:
        """Why the actor is gone (Items puts this where a process's exit code would go)."""
        return self.death

    def alive(self) -> bool:
        return self.death is None

    def can_take(self) -> bool:
        return self._ready and self.death is None and len(self.tasks) < DEPTH

    def kill(self) -> None:
        """Kill the actor's process (a wedged engine); Ray restarts it, as a new instance."""
        if self.death is None and self.actor is not None:
            self._old_instance = self.info.get("instance")
            try:
                self.ray.kill(self.actor, no_restart=False)
            except Exception as e:  # noqa: BLE001 - already gone: the restart wait finds out
                log.debug("ray.kill of actor %s: %s", self.actor_id, e)

    def restart(self) -> None:
        """Kill even an actor that looks dead (it may only have been unreachable): the tasks it holds
        are given up, and the next ones must go to a fresh instance, counting from seq 0."""
        self.death = None
        self.kill()
        self._begin()

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.ray.kill(self.actor, no_restart=True)
        except Exception as e:  # noqa: BLE001
            log.debug("ray.kill of actor %s: %s", self.actor_id, e)
        self.tasks.clear()
        self._runs = {}
        self.conn.close()

    # -- tasks ----------------------------------------------------------------------------------
    def send_task(self, inflight: Any, payload: dict[str, Any], riders: Any = ()) -> None:
        """Queue a task on the actor, with its items' input files read here on the head."""
        assert not riders, "a Ray task carries one job's items (its files are read from one job folder)"
        if not self.tasks:
            inflight.started = time.monotonic()
        self.tasks.append(inflight)
        files = read_inputs(Path(payload["job_dir"]), payload["items"])
        try:
            ref = self.actor.run.remote(payload, self.ray.put(files), self._seq)
        except self.ray.exceptions.RayError as e:
            self._died(e)
            return
        self._seq += 1
        self._runs[ref] = int(payload["task_id"])

    def soft_stop(self) -> None:
        task = self.task
        if task is not None and not task.soft_sent:
            task.soft_sent = True
            self.actor.soft_stop.remote(task.task_id)

    def drop(self, task_id: int) -> None:
        self.actor.drop.remote(task_id)

    def messages(self) -> list[tuple[Any, ...]]:
        """What the actor said since the last call; notices its death (``alive()`` turns False)."""
        self.conn.drain()
        if self.death is not None:
            return []
        now = time.monotonic()
        if self._poll is None:
            if now < self._retry_at:
                self.last_hb = now
                return []
            self._poll = self.actor.poll.remote(self.poll_wait_s if self._ready else 0.0)
            self.conn.watch(self._poll)
        done, _ = self.ray.wait([self._poll], timeout=0)
        out: list[tuple[Any, ...]] = []
        if done:
            ref, self._poll = self._poll, None
            try:
                msgs, info = self.ray.get(ref)
            except self.ray.exceptions.ActorUnavailableError as e:
                if not self._ready:  # still (re)starting: ask again shortly
                    self._retry_at = now + 0.25
                    self.last_hb = now
                    return []
                self._died(e)
                return []
            except self.ray.exceptions.RayError as e:
                if not self._ready and isinstance(e, self.ray.exceptions.ActorDiedError):
                    log.warning("worker %d: actor %s is gone for good (%s); a new one", self.slot, self.actor_id, e)
                    self._create()
                    return []
                self._died(e)
                return []
            if not self._ready:
                if info.get("instance") == self._old_instance:
                    self._retry_at = now + 0.1  # the killed instance, answering before it went
                    self.last_hb = now
                    return []
                self._ready = True
                node = str(info.get("node_id"))[:12]
                log.info("worker %d: Ray actor %s ready on node %s", self.slot, self.actor_id[:12], node)
            self.info, self.pid, self.last_hb = info, int(info.get("pid") or 0), now
            out.extend(msgs)
            self._poll = self.actor.poll.remote(self.poll_wait_s)  # at once: the next answer is a tick nearer
            self.conn.watch(self._poll)
        elif not self._ready:
            self.last_hb = now  # not up yet: Ray, not our heartbeat clock, judges a (re)starting actor
            if now - self._waiting_since > WAIT_WARN_S:
                self._waiting_since = now
                log.warning(
                    "worker %d: Ray has not (re)started actor %s for %.0f s; the cluster may lack a free %s "
                    "(see `ray status`); its tasks go to the other actors meanwhile",
                    self.slot,
                    self.actor_id[:12],
                    WAIT_WARN_S,
                    "GPU" if self.spec.device == "cuda" else "CPU",
                )
        self._check_runs()
        return out

    def _check_runs(self) -> None:
        """A finished ``run`` carries no results (they come by poll) but does carry the actor's death."""
        if not self._runs:
            return
        done, _ = self.ray.wait(list(self._runs), num_returns=len(self._runs), timeout=0)
        for ref in done:
            self._runs.pop(ref, None)
            try:
                self.ray.get(ref)
            except self.ray.exceptions.RayError as e:
                self._died(e)
                return

    def _died(self, e: BaseException) -> None:
        node = str(self.info.get("node_id", "?"))[:12]
        self.death = f"Ray actor {self.actor_id[:12]} on node {node}: {type(e).__name__}"
        log.warning("worker %d: %s: %s", self.slot, self.death, str(e).strip()[:300])
        self._poll, self._runs = None, {}
