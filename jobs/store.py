"""The job folder: where jobs, their items' results, requests and runner heartbeats live.

This is the only module both the clients (CLI, dashboard) and the runners import. Clients
only *add* files here (a new job folder, a request file); execution state is written by
runners alone, through :mod:`jobs.lease`. See docs/architecture.md for the layout.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from jobs import config, queue_journal
from jobs.atomic import TMP_PREFIX, Corrupt, atomic_write_json, quarantine, read_json
from jobs.errors import JobNotFound, SubmitError
from jobs.flock import Locked
from jobs.job import JOB_ID, Job, item_shape_ok, read_json_at
from jobs.status import ItemStatus, JobStatus

log = logging.getLogger(__name__)

#: list_jobs re-checks 1/CHECK_ROUNDS of the jobs by stat at each listing (all of them below CHECK_MIN).
CHECK_ROUNDS = 20
CHECK_MIN = 256
_Locked = Locked  # its old name here: tests/chaos/test_claimers.py times the store lock through it
REQUEST_KINDS = ("cancel", "pause", "resume", "retry", "delete")


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
        # list_jobs' view: the journal's tail, the jobs folder's (mtime, inode), the job ids newest
        # first, and where the rotating stat check stands; one lister at a time (dashboard threads).
        self._sync_mutex = threading.Lock()
        self._tail = queue_journal.Tail(self.root)
        self._dir_key: tuple[int, int] | None = None
        self._names: set[str] = set()
        self._pending: set[str] = set()
        self._order: list[str] = []
        self._check_at = 0

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

    def locked(self, job_id: str | None = None) -> Locked:
        if job_id is None:
            return Locked(f"{self.root}/store.lock", config.LOCK_TIMEOUT_S, None)
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise JobNotFound(str(job_id)[:80])
        return Locked(f"{self._jobs_prefix}{job_id}/job.lock", config.LOCK_TIMEOUT_S, job_id)

    # -- reads -------------------------------------------------------------------------
    def _load(self, job_id: str, force: bool = False) -> Job | None:
        """A job from its two small files. job.json never changes after submit, so it is parsed
        once; state.json is re-parsed only when its (mtime, size, inode) changed, or ``force``."""
        base = f"{self._jobs_prefix}{job_id}/"  # str, not Path: the hot path at 10k jobs
        try:
            st = os.stat(base + "state.json")
            key: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            key = None
        hit = self._cache.get(job_id)
        if hit is not None and hit[0] == key and not force:
            return hit[1]
        sub = self._submissions.get(job_id)
        if sub is None:
            try:
                raw = read_json_at(base + "job.json")
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
                quarantine(self.root, self.job_dir(job_id), f"job.json unreadable: {e}")
                return None
            self._submissions[job_id] = sub
        state = self._read_state(job_id, Path(base + "state.json")) if key is not None or force else {}
        job = Job(sub.id, sub.created_at, sub.priority, sub.spec, sub.total, state, sub.inputs)
        self._cache[job_id] = (key, job)
        return job

    def read_state(self, job_id: str) -> dict[str, Any]:
        """A job's runner-written state; {} (queued) if none. A corrupt one is quarantined:
        that loses nothing committed, the results stay and the job is simply re-queued."""
        return self._read_state(job_id, self.job_dir(job_id) / "state.json")

    def _read_state(self, job_id: str, path: Path) -> dict[str, Any]:
        try:
            state = read_json(path) or {}
            JobStatus(state.get("status", "queued"))
        except (Corrupt, ValueError) as e:
            if quarantine(self.root, path, f"state.json unreadable: {e}") is not None:
                sub = self._submissions.get(job_id)
                prio, created = (sub.priority, sub.created_at) if sub else (None, None)
                queue_journal.append_quietly(self.root, job_id, JobStatus.QUEUED.value, prio, created)
            return {}
        return state

    def get(self, job_id: str) -> Job:
        job = self._load(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def fresh(self, job_id: str) -> Job:
        """The job with its state read from disk now, never from a cache (for writers under its lock)."""
        job = self._load(job_id, force=True) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise JobNotFound(job_id)
        return job

    def job_ids(self) -> list[str]:
        with os.scandir(self.jobs_dir) as it:
            return sorted(e.name for e in it if e.is_dir() and JOB_ID.fullmatch(e.name))

    def list_jobs(self, statuses: set[JobStatus] | None = None) -> list[Job]:
        """All jobs, newest first, never reading a result file. Warm, it re-reads only the jobs the
        journal (jobs/queue_journal.py) names as changed, plus a rotating slice it re-checks by stat
        (a change whose journal line was lost shows within :data:`CHECK_ROUNDS` listings)."""
        with self._sync_mutex:
            self._sync()
            cache = self._cache
            jobs = [hit[1] for job_id in self._order if (hit := cache.get(job_id)) is not None]
        if statuses is None:
            return jobs
        wanted = {s.value for s in statuses}
        return [j for j in jobs if j.state.get("status", "queued") in wanted]

    def _sync(self) -> None:
        if self._dir_key is None:
            self._tail.skip_to_end()  # before the first full load: changes during it are followed
        changes, rotated = self._tail.read()
        st = os.stat(self.jobs_dir)
        dir_key = (st.st_mtime_ns, st.st_ino)
        # A folder's mtime ticks coarsely: a change in the same tick as the last look keeps it.
        if dir_key != self._dir_key or time.time_ns() - st.st_mtime_ns < 2_000_000_000 or self._unloaded():
            self._dir_key = dir_key
            self._rescan_names()
        for entry in changes:
            if entry["id"] in self._cache:
                self._load(entry["id"], force=True)
        order = self._order
        if rotated or len(order) <= CHECK_MIN:
            check = order
        else:
            n = max(CHECK_MIN, len(order) // CHECK_ROUNDS)
            start = self._check_at % len(order)
            check = order[start : start + n]
            self._check_at = start + n
        for job_id in check:
            self._load(job_id)

    def _unloaded(self) -> bool:
        """Whether the last look found a job folder that did not load (see :meth:`_rescan_names`)."""
        return bool(self._pending)

    def _rescan_names(self) -> None:
        """The job folders now. One that would not load yet (a hand-made job whose job.json is still
        being written) is tried again at every listing until it loads or goes away."""
        with os.scandir(self.jobs_dir) as it:
            names = {e.name for e in it if len(e.name) == 22 and e.name[0] != "." and e.is_dir()}
        if names == self._names:
            return
        for job_id in names - self._names:
            if JOB_ID.fullmatch(job_id):
                self._load(job_id)
        for gone in set(self._cache) - names:  # set(): a C-level copy, safe beside other threads
            self._cache.pop(gone, None)
            self._submissions.pop(gone, None)
        cache = self._cache
        self._pending = {i for i in names if i not in cache and JOB_ID.fullmatch(i)}
        self._names = names - self._pending
        self._order = sorted((i for i in self._names if i in cache), key=lambda i: cache[i][1].created_at, reverse=True)

    def manifest(self, job_id: str) -> list[dict[str, Any]]:
        path = self.job_dir(job_id) / "manifest.json"
        items = read_json(path, expect=list)
        if items is None:
            raise JobNotFound(job_id)
        for n, item in enumerate(items):
            if not item_shape_ok(item, n):
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

    def committed_count(self, job_id: str) -> int:
        """Items with a result file, without reading them (one scandir)."""
        try:
            with os.scandir(self.results_dir(job_id)) as it:
                return sum(1 for e in it if e.name.endswith(".json") and e.name[:6].isdigit())
        except FileNotFoundError:
            return 0

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
