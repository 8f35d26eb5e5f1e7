"""The runner's heartbeat file, its last hour of history, and the per-item bookkeeping behind both.

``state/runners/<id>.json`` (every ``interval_s``) says what the runner is doing right now: its jobs,
items in flight and since when, each job's recent per-item time and last commit (what stuck-job
diagnosis needs), counters, CPU/RSS of the runner and its workers, GPU, disk, last error.
``state/runners/history/<id>.json`` holds one sample every 10 s for the last hour (a ring buffer),
for charts and the 5-minute failure rate. Sampling psutil, NVML and the disk is cached for a few
seconds, so a heartbeat costs about a millisecond of the runner's loop every 2 s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import psutil

from jobs import config
from jobs.ops import mounts
from jobs.ops.gpu import gpu_stats
from jobs.ops.liveness import history_path
from jobs.store.atomic import atomic_write_bytes, atomic_write_json
from jobs.store.store import Store

log = logging.getLogger("ocrjobs.runner")

SAMPLE_EVERY_S = 5.0
HISTORY_EVERY_S = 10.0
HISTORY_LEN = 360  # one hour at one sample per 10 s
RECENT_WINDOW_S = 300.0
RECENT_ITEMS = 20
STATUSES = ("done", "failed", "timed_out")


class RunnerView(Protocol):
    """What a heartbeat reads of its runner. The runner (jobs/runner/supervisor.py) owns the
    :class:`Telemetry` and passes itself in, so this module never imports it back."""

    opts: Any  # RunnerOptions: executor, device, grace_s
    workers: list[Any]  # WorkerHandle or RayWorkerHandle
    held: dict[str, Any]  # job id -> jobs.runner.held.Held, the jobs it holds
    started_at: float
    stopping: bool
    last_error: str | None

    @property
    def counters(self) -> dict[str, int]: ...


class Resources:
    """CPU and RSS of the runner and its workers, GPU and disk; re-sampled at most every ``every_s``."""

    def __init__(self, root: Path, every_s: float = SAMPLE_EVERY_S) -> None:
        self.root, self.every_s = root, every_s
        self._procs: dict[int, psutil.Process] = {}
        self._at = float("-inf")
        self.last: dict[str, Any] = {}

    def _proc(self, pid: int) -> dict[str, Any]:
        """cpu_percent needs the same Process object across calls (it measures since the last one)."""
        try:
            proc = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
            with proc.oneshot():
                return {"pid": pid, "cpu_percent": proc.cpu_percent(None), "rss_bytes": proc.memory_info().rss}
        except psutil.Error:
            self._procs.pop(pid, None)
            return {"pid": pid, "cpu_percent": None, "rss_bytes": None}

    def _disk(self) -> dict[str, Any]:
        try:
            du = shutil.disk_usage(self.root)
        except OSError as e:
            return {"error": str(e)}
        free_pct = round(100.0 * du.free / du.total, 2) if du.total else None
        return {"free_bytes": du.free, "total_bytes": du.total, "free_percent": free_pct}

    def sample(self, worker_pids: list[int]) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._at < self.every_s and self.last:
            return self.last
        self._at = now
        for gone in set(self._procs) - {os.getpid(), *worker_pids}:
            del self._procs[gone]
        runner = self._proc(os.getpid())
        workers = [self._proc(pid) for pid in worker_pids]
        both = [runner, *workers]
        self.last = {
            "sampled_at": time.time(),
            "runner": runner,
            "workers": workers,
            "cpu_percent": round(sum(p["cpu_percent"] or 0.0 for p in both), 1),
            "rss_bytes": sum(p["rss_bytes"] or 0 for p in both),
            "gpu": gpu_stats(),
            "disk": self._disk(),
        }
        return self.last


def _wall(mono: float | None) -> float | None:
    """A monotonic instant as wall-clock time (heartbeats are read by other processes and hosts)."""
    return None if mono is None else time.time() - (time.monotonic() - mono)


class Telemetry:
    """What a runner reports about itself: heartbeat, history, metrics and one log line per item."""

    def __init__(
        self, store: Store, runner_id: str, interval_s: float, metrics_at: tuple[str, int] | None = None
    ) -> None:
        self.store, self.id, self.interval_s = store, runner_id, interval_s
        self.resources = Resources(store.root)
        self.fs = mounts.filesystem(store.root)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LEN)
        self._next_sample = 0.0
        #: per held job: its claim time, last commit, recent per-item time (what stall diagnosis reads)
        self.current: dict[str, dict[str, Any]] = {}
        self._durations: dict[str, deque[float]] = {}
        self.latest: dict[str, Any] = {}
        self.metrics: Any = None
        if metrics_at is not None:
            from jobs.ops.metrics import RunnerMetrics  # prometheus-client only when metrics are on

            self.metrics = RunnerMetrics(store.root, lambda: self.latest)
            self.metrics.serve(*metrics_at)
            log.info("metrics on http://%s:%d/metrics", metrics_at[0], self.metrics.endpoint["port"])
        warning = mounts.network_warning(self.fs, store.root)
        if warning:
            log.warning("%s", warning, extra={"event": "network_filesystem", "fstype": self.fs["fstype"]})

    # -- events from the runner's loop ---------------------------------------------------
    def on_claim(self, job_id: str, item_timeout: float) -> None:
        self.current[job_id] = {
            "job": job_id,
            "claimed_at": time.time(),
            "item_timeout_s": item_timeout,
            "last_commit_at": None,
            "last_item": None,
            "committed": 0,
            "recent_item_s": None,
        }
        self._durations[job_id] = deque(maxlen=RECENT_ITEMS)

    def on_commit(self, job_id: str, result: dict[str, Any]) -> None:
        """One committed item: per-item time for stall detection, metrics, and a structured log line."""
        ms = result.get("processing_time_ms")
        status = result["status"]
        if (cur := self.current.get(job_id)) is not None:
            cur.update(last_commit_at=time.time(), last_item=result["index"], committed=cur["committed"] + 1)
            if ms is not None and status != "timed_out":
                durations = self._durations[job_id]
                durations.append(ms / 1000)
                cur["recent_item_s"] = round(statistics.median(durations), 3)
        if self.metrics is not None:
            self.metrics.observe(status, None if ms is None else ms / 1000)
        error = result.get("error") or {}
        log.info(
            "job %s item %d %s%s%s",
            job_id,
            result["index"],
            status,
            f" in {ms / 1000:.2f} s" if ms is not None else "",
            f": {error.get('message')}" if error else "",
            extra={
                "event": "item_committed",
                "job_id": job_id,
                "index": result["index"],
                "source": result.get("source"),
                "page": result.get("page"),
                "status": status,
                "duration_s": None if ms is None else round(ms / 1000, 3),
                "error_kind": error.get("kind"),
                "error": error.get("message"),
            },
        )

    # -- the files ----------------------------------------------------------------------
    def build(self, runner: RunnerView) -> dict[str, Any]:
        now = time.time()
        on_ray = getattr(runner.opts, "executor", "local") == "ray"
        # a Ray actor's pid is a process on its own node: its figures come with its polls instead
        res = self.resources.sample([] if on_ray else [w.pid for w in runner.workers])
        held = list(runner.held)
        for gone in set(self.current) - set(held):
            self.current.pop(gone, None)
            self._durations.pop(gone, None)
        per_job = {job_id: dict(self.current[job_id]) for job_id in held if job_id in self.current}
        per_pid = {p["pid"]: p for p in res["workers"]}
        if on_ray:
            per_pid = {w.pid: getattr(w, "info", {}) for w in runner.workers}
        workers = []
        for w in runner.workers:
            task = w.task
            workers.append(
                {
                    "slot": w.slot,
                    "pid": w.pid,
                    "engine": w.engine_name,
                    "engine_device": w.engine_device,
                    "loading_since": _wall(w.loading_since),
                    "job": task.job_id if task else None,
                    "item": task.item["index"] if task else None,
                    "source": task.item.get("source") if task else None,
                    "page": task.item.get("page") if task else None,
                    "item_started_at": _wall(task.started) if task else None,
                    "cpu_percent": per_pid.get(w.pid, {}).get("cpu_percent"),
                    "rss_bytes": per_pid.get(w.pid, {}).get("rss_bytes"),
                }
            )
        counters = {s: int(runner.counters.get(s, 0)) for s in STATUSES}
        return {
            "id": self.id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "version": config.VERSION,
            "started_at": runner.started_at,
            "heartbeat_at": now,
            "interval_s": self.interval_s,
            "device": runner.opts.device,
            "grace_s": runner.opts.grace_s,
            "job": held[0] if held else None,  # the first held job (as when a runner held one at a time)
            "jobs": held,
            "current": per_job.get(held[0]) if held else None,
            "per_job": per_job,
            "stopping": runner.stopping,
            "workers": workers,
            "backlog": _backlog(runner),
            "counters": counters,
            "recent": self._recent(now, counters),
            "resources": {k: res[k] for k in ("sampled_at", "runner", "cpu_percent", "rss_bytes")},
            "gpu": res["gpu"],
            "executor": "ray" if on_ray else "local",
            "ray": _ray_info(runner.workers) if on_ray else None,
            "disk": {**res["disk"], "fstype": self.fs["fstype"], "network": self.fs["network"]},
            "metrics": self.metrics.endpoint if self.metrics is not None else None,
            "last_error": runner.last_error,
        }

    def _recent(self, now: float, counters: dict[str, int]) -> dict[str, Any]:
        """Items committed over the last ~5 minutes: counters now minus the oldest sample in the window."""
        base = next((s for s in self.history if s["t"] >= now - RECENT_WINDOW_S), None)
        if base is None:
            base = {"t": now, **{s: 0 for s in STATUSES}} if not self.history else self.history[-1]
        return {"window_s": round(now - base["t"], 1), **{s: counters[s] - int(base.get(s, 0)) for s in STATUSES}}

    def write(self, runner: RunnerView) -> None:
        """Write the heartbeat (not fsync'd: it is rewritten every few seconds) and, every 10 s, the history."""
        hb = self.build(runner)
        mono = time.monotonic()
        if mono >= self._next_sample:
            self._next_sample = mono + HISTORY_EVERY_S
            self._sample(hb)
        self.latest = hb
        try:
            atomic_write_json(self.store.runners_dir / f"{self.id}.json", hb, durable=False)
        except OSError as e:
            log.warning("could not write the runner heartbeat: %s", e)

    def _sample(self, hb: dict[str, Any]) -> None:
        gpus = (hb["gpu"] or {}).get("gpus") or []
        self.history.append(
            {
                "t": hb["heartbeat_at"],
                **hb["counters"],
                "job": hb["job"],
                "in_flight": sum(1 for w in hb["workers"] if w["item"] is not None),
                **(hb.get("backlog") or {}),
                "cpu_percent": hb["resources"]["cpu_percent"],
                "rss_bytes": hb["resources"]["rss_bytes"],
                "gpu_memory_used_bytes": sum(g["memory_used_bytes"] for g in gpus) if gpus else None,
                "disk_free_percent": hb["disk"].get("free_percent"),
            }
        )
        path = history_path(self.store, self.id)
        data = {"runner": self.id, "every_s": HISTORY_EVERY_S, "samples": list(self.history)}
        try:
            path.parent.mkdir(exist_ok=True)
            atomic_write_bytes(path, json.dumps(data, separators=(",", ":")).encode(), durable=False)  # compact: ~50 KB
        except OSError as e:
            log.warning("could not write the runner history: %s", e)

    def close(self) -> None:
        """On a clean exit: no heartbeat (the runner is gone, not dead), no history, no metrics server."""
        (self.store.runners_dir / f"{self.id}.json").unlink(missing_ok=True)
        history = history_path(self.store, self.id)
        history.unlink(missing_ok=True)
        try:
            history.parent.rmdir()  # only if no other runner keeps a history there
        except OSError:
            pass
        if self.metrics is not None:
            self.metrics.close()


def _backlog(runner: RunnerView) -> dict[str, int]:
    """Items of this runner's held jobs without a result yet (queued or in flight): the Health page's
    backlog chart, counted from what the runner holds, without a scan of the folder."""
    held = sum(len(h.pending) for h in runner.held.values())
    return {"held_items": held + sum(len(t.left) for w in runner.workers for t in w.tasks)}


def _ray_info(handles: list[Any]) -> dict[str, Any] | None:
    """The Ray cluster as the runner sees it (nodes, actors, their GPUs); None if Ray cannot say."""
    from jobs.ray.cluster import ray_cluster_info

    try:
        return ray_cluster_info(handles)
    except Exception as e:  # noqa: BLE001 - the heartbeat must be written whatever Ray is doing
        log.warning("ray cluster info: %s", e)
        return None
