"""The job folder: where jobs, their items' results, requests and runner heartbeats live.

This is the only module both the clients (CLI, dashboard) and the runners import. Clients
only *add* files here (a new job folder, a request file); execution state is written by
runners alone, through :mod:`jobs.lease`. See docs/architecture.md for the layout.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from jobs import config
from jobs.atomic import TMP_PREFIX, Corrupt, atomic_write_json, quarantine, read_json
from jobs.errors import JobNotFound, StoreBusy, SubmitError
from jobs.status import ItemStatus, JobStatus

log = logging.getLogger(__name__)

REQUEST_KINDS = ("cancel", "pause", "resume", "retry", "delete")
#: What :func:`new_job_id` makes. Anything else is refused before it touches a path.
JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


@dataclass
class Job:
    """A job as readers see it: the immutable submission merged with the runner-written state."""

    id: str
    created_at: float
    priority: int
    spec: dict[str, Any]
    total: int
    state: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.state.get("status", JobStatus.QUEUED))

    @property
    def lease(self) -> dict[str, Any] | None:
        return self.state.get("lease")

    def lease_expired(self, now: float | None = None) -> bool:
        lease = self.lease
        return lease is None or lease["expires_at"] <= (now if now is not None else time.time())

    def progress(self) -> dict[str, Any]:
        p = self.state.get("progress", {})
        done, failed, timed_out = p.get("done", 0), p.get("failed", 0), p.get("timed_out", 0)
        committed = done + failed + timed_out
        run = self.state.get("run") or {}
        rate = eta = None
        if self.status == JobStatus.RUNNING and run.get("committed") and run.get("started_at"):
            elapsed = max(time.time() - run["started_at"], 1e-6)
            rate = run["committed"] / elapsed
            eta = (self.total - committed) / rate if rate > 0 else None
        return {
            "total": self.total,
            "done": done,
            "failed": failed,
            "timed_out": timed_out,
            "committed": committed,
            "percent": round(100.0 * committed / self.total, 1) if self.total else 100.0,
            "current": p.get("current"),
            "items_per_s": round(rate, 3) if rate else None,
            "eta_s": round(eta, 1) if eta is not None else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "created_at": self.created_at,
            "updated_at": self.state.get("updated_at", self.created_at),
            "priority": self.priority,
            "inputs": self.inputs,
            "spec": self.spec,
            "progress": self.progress(),
            "lease": self.lease,
            "attempts": self.state.get("attempts", 0),
            "error": self.state.get("error"),
            "started_at": self.state.get("started_at"),
            "finished_at": self.state.get("finished_at"),
        }


def new_job_id() -> str:
    """Sortable by creation time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class Store:
    """Paths and reads of one job folder, plus the client-side writes (new files only)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = config.state_dir(root)
        self.jobs_dir = self.root / "jobs"
        self.requests_dir = self.root / "requests"
        self.runners_dir = self.root / "runners"
        for d in (self.jobs_dir, self.requests_dir, self.runners_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, tuple[tuple[int, int, int] | None, Job]] = {}
        self._submissions: dict[str, Job] = {}
        self._jobs_prefix = f"{self.jobs_dir}/"

    # -- paths -------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """The job's folder. An id not of :data:`JOB_ID`'s form (``../x``, ``a/b``, a NUL) is refused
        here, so no caller can be led outside ``jobs/`` by a request file or a URL."""
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise JobNotFound(str(job_id)[:80])
        return self.jobs_dir / job_id

    def lock(self, job_id: str | None = None, timeout: float = config.LOCK_TIMEOUT_S) -> FileLock:
        """The store-wide claim lock, or one job's lock. Always with a timeout; never deleted."""
        path = self.root / "store.lock" if job_id is None else self.job_dir(job_id) / "job.lock"
        return FileLock(path, timeout=timeout, preserve_lock_file=True, thread_local=False)

    def locked(self, job_id: str | None = None) -> _Locked:
        return _Locked(self.lock(job_id), job_id)

    # -- reads -------------------------------------------------------------------------
    def _load(self, job_id: str) -> Job | None:
        """A job from its two small files. job.json never changes after submit, so it is parsed
        once; state.json is re-parsed only when its (mtime, size, inode) changed."""
        try:
            st = os.stat(f"{self._jobs_prefix}{job_id}/state.json")  # str, not Path: the hot path at 10k jobs
            key: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            key = None
        hit = self._cache.get(job_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        d = self.job_dir(job_id)
        sub = self._submissions.get(job_id)
        if sub is None:
            try:
                raw = read_json(d / "job.json")
                if raw is None:
                    return None
                if raw["id"] != job_id or not isinstance(raw["spec"], dict):
                    raise ValueError(f"id {raw['id']!r} or spec does not match the folder {job_id}")
                sub = Job(
                    id=raw["id"],
                    created_at=float(raw["created_at"]),
                    priority=int(raw.get("priority", 0)),
                    spec=dict(raw["spec"]),
                    total=int(raw["total"]),
                    inputs=[str(name) for name in raw.get("inputs", [])],
                )
            except (Corrupt, KeyError, TypeError, ValueError) as e:
                quarantine(self.root, d, f"job.json unreadable: {e}")
                return None
            self._submissions[job_id] = sub
        job = replace(sub, state=self.read_state(job_id))
        self._cache[job_id] = (key, job)
        return job

    def read_state(self, job_id: str) -> dict[str, Any]:
        """A job's runner-written state; {} (queued) if none. A corrupt one is quarantined:
        that loses nothing committed, the results stay and the job is simply re-queued."""
        path = self.job_dir(job_id) / "state.json"
        try:
            state = read_json(path) or {}
            JobStatus(state.get("status", "queued"))
        except (Corrupt, ValueError) as e:
            quarantine(self.root, path, f"state.json unreadable: {e}")
            return {}
        return state

    def get(self, job_id: str) -> Job:
        job = self._load(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def job_ids(self) -> list[str]:
        with os.scandir(self.jobs_dir) as it:
            return sorted(e.name for e in it if e.is_dir() and JOB_ID.fullmatch(e.name))

    def list_jobs(self, statuses: set[JobStatus] | None = None) -> list[Job]:
        """All jobs, newest first: one stat a job, re-parsing only what changed; never a result file."""
        ids = self.job_ids()
        out = []
        for job_id in ids:
            job = self._load(job_id)
            if job is not None and (statuses is None or job.status in statuses):
                out.append(job)
        if len(self._cache) > len(ids):
            alive = set(ids)
            for gone in set(self._cache) - alive:  # set(): a C-level copy, safe beside other threads
                self._cache.pop(gone, None)
                self._submissions.pop(gone, None)
        out.sort(key=lambda j: j.created_at, reverse=True)
        return out

    def manifest(self, job_id: str) -> list[dict[str, Any]]:
        path = self.job_dir(job_id) / "manifest.json"
        items = read_json(path, expect=list)
        if items is None:
            raise JobNotFound(job_id)
        for n, item in enumerate(items):
            if not _item_shape_ok(item, n):
                raise Corrupt(f"{path.name}: item {n} is not an item ({str(item)[:80]})")
        return items

    def results_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "results"

    def result_path(self, job_id: str, index: int) -> Path:
        return self.results_dir(job_id) / f"{index:06d}.json"

    def iter_results(self, job_id: str) -> Iterator[dict[str, Any]]:
        rdir = self.results_dir(job_id)
        if not rdir.is_dir():
            return
        for entry in sorted(os.scandir(rdir), key=lambda e: e.name):
            if not entry.name.endswith(".json") or entry.name.startswith(TMP_PREFIX):
                continue
            try:
                res = read_json(Path(entry.path))
            except Corrupt as e:
                quarantine(self.root, Path(entry.path), f"result unreadable, item will be redone: {e}")
                continue
            if res is not None and not (isinstance(res.get("index"), int) and isinstance(res.get("status"), str)):
                quarantine(self.root, Path(entry.path), "result lacks index/status, redone")
                continue
            if res is not None:
                yield res

    def items(self, job_id: str) -> list[dict[str, Any]]:
        """Every item of the job in order, with its result merged in (status 'pending' if none)."""
        results = {r["index"]: r for r in self.iter_results(job_id)}
        out = []
        for item in self.manifest(job_id):
            res = results.get(item["index"])
            row = {"index": item["index"], "source": item["source"], "page": item.get("page")}
            if res is None:
                row.update(status="pending", text="", confidence=None, error=None)
            else:
                row.update({k: v for k, v in res.items() if k not in row})
            out.append(row)
        return out

    def count_results(self, job_id: str) -> dict[str, int]:
        counts = {s.value: 0 for s in ItemStatus}
        for res in self.iter_results(job_id):
            counts[res["status"]] = counts.get(res["status"], 0) + 1
        return counts

    def events(self, job_id: str, tail: int | None = None) -> list[dict[str, Any]]:
        path = self.job_dir(job_id) / "events.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-tail:] if tail else lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line after a crash
        return out

    def runners(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.runners_dir.glob("*.json")):
            try:
                hb = read_json(path)
            except Corrupt:
                continue
            if hb:
                out.append(hb)
        return out

    # -- client writes: new files only ---------------------------------------------------
    def request(self, job_id: str, kind: str, **extra: Any) -> Path:
        """Ask the runners to cancel/pause/resume/retry/delete a job; applied at the next item boundary."""
        if kind not in REQUEST_KINDS:
            raise SubmitError(f"unknown request {kind!r}; use one of {', '.join(REQUEST_KINDS)}")
        self.get(job_id)
        name = f"{time.time_ns():020d}-{secrets.token_hex(3)}-{job_id}-{kind}.json"
        path = self.requests_dir / name
        atomic_write_json(path, {"job_id": job_id, "kind": kind, "at": time.time(), **extra})
        return path

    def pending_requests(self, job_id: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
        out = []
        for path in sorted(self.requests_dir.glob("*.json")):
            if path.name.startswith(TMP_PREFIX):
                continue
            try:
                req = read_json(path)
            except Corrupt as e:
                quarantine(self.root, path, f"request unreadable: {e}")
                continue
            if req and (job_id is None or req.get("job_id") == job_id):
                out.append((path, req))
        return out


def _item_shape_ok(item: Any, n: int) -> bool:
    """A manifest entry as submit writes it: the keys every reader indexes, with their types.
    A hand-edited manifest fails here as Corrupt rather than as a KeyError deep in a reader."""
    return (
        isinstance(item, dict)
        and item.get("index") == n
        and isinstance(item.get("source"), str)
        and isinstance(item.get("path", ""), str)
        and isinstance(item.get("page"), int | None)
    )


class _Locked:
    """``with store.locked(job_id):`` turning a lock timeout into a message a user can act on."""

    def __init__(self, lock: FileLock, job_id: str | None) -> None:
        self._lock, self._job_id = lock, job_id

    def __enter__(self) -> None:
        try:
            self._lock.acquire()
        except Timeout:
            what = f"job {self._job_id}" if self._job_id else "the job store"
            raise StoreBusy(
                f"{what} stayed locked for {self._lock.timeout:.0f} s: another process holds "
                f"{self._lock.lock_file}; check for a hung runner"
            ) from None

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
