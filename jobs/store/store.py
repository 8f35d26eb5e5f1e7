"""The job folder: where jobs, their items' results, requests and runner heartbeats live.

This is the only module both the clients (CLI, dashboard) and the runners import. Clients
only *add* files here (a new job folder, a request file); execution state is written by
runners alone, through :mod:`jobs.store.lease`. See docs/architecture.md for the layout.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from jobs import config
from jobs.errors import Corrupt, JobDamaged, JobNotFound, SubmitError
from jobs.store import perms, queue_journal, safejson
from jobs.store.atomic import TMP_PREFIX, append_line, atomic_write_json, quarantine, read_json
from jobs.store.flock import Locked
from jobs.store.job import JOB_ID, Job, item_shape_ok, read_json_at
from jobs.store.status import ItemStatus, JobStatus

log = logging.getLogger(__name__)

#: list_jobs re-checks 1/CHECK_ROUNDS of the jobs by stat at each listing (all of them below CHECK_MIN).
CHECK_ROUNDS = 20
CHECK_MIN = 256
_Locked = Locked  # its old name here: tests/chaos/test_claimers.py times the store lock through it
REQUEST_KINDS = ("cancel", "pause", "resume", "retry", "delete", "priority")
#: A job's priority, at submit or changed later: higher runs first.
PRIORITY_RANGE = (-1_000_000, 1_000_000)
#: How much of a job's events.jsonl a page view or a diagnosis reads, from its end.
EVENTS_TAIL_BYTES = 1 << 20


class Store:
    """Paths and reads of one job folder, plus the client-side writes (new files only)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, repair: bool = False) -> None:
        self.root = config.state_dir(root)
        #: A runner's store moves a damaged file (only that file) to quarantine/; a reader's never
        #: moves anything, it reports (see :attr:`damaged`). See :meth:`as_runner`.
        self.repair = repair
        #: job id -> why its folder does not load (a damaged job.json); readers show these
        self.damaged: dict[str, str] = {}
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

    def as_runner(self) -> Store:
        """Mark this store as a runner's: from now on it quarantines the damaged files it meets."""
        self.repair = True
        return self

    def _set_aside(self, path: Path | str, reason: str, job_id: str | None = None) -> bool:
        """A runner moves one damaged file to quarantine/ (with its reason) and says so in the job's
        event log; a reader leaves it where it is. True if it was moved."""
        if not self.repair:
            return False
        try:
            moved = quarantine(self.root, Path(path), reason) is not None
        except OSError as e:
            log.warning("could not quarantine %s (%s): %s", path, reason, e)
            return False
        if moved and job_id is not None:
            try:
                append_line(
                    Path(f"{self._jobs_prefix}{job_id}/events.jsonl"),
                    {"at": time.time(), "event": "quarantined", "file": Path(path).name, "reason": reason},
                )
            except OSError:
                pass  # the event log is for people
        return moved

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
        except PermissionError:  # another user's job (jobs/store/perms.py): skipped, never damaged
            perms.unreadable(self, job_id)
            return None
        hit = self._cache.get(job_id)
        if hit is not None and hit[0] == key and not force:
            return hit[1]
        sub = self._submissions.get(job_id)
        if sub is None:
            try:
                raw = read_json_at(base + "job.json")
                if raw is None:
                    if os.path.isdir(base):  # a folder without its job.json (set aside by a runner?)
                        self.damaged[job_id] = "its job.json is missing"
                    return None
                if raw["id"] != job_id:
                    raise Corrupt(f"job.json: its id {raw['id'][:40]!r} is not the folder's {job_id}")
                sub = Job(
                    id=raw["id"],
                    created_at=float(raw["created_at"]),
                    priority=int(raw.get("priority", 0)),
                    spec=dict(raw["spec"]),
                    total=int(raw["total"]),
                    inputs=[str(name) for name in raw.get("inputs", [])],
                )
            except PermissionError:  # not damaged: another user's (jobs/store/perms.py); never set aside
                perms.unreadable(self, job_id)
                return None
            except (Corrupt, OSError) as e:
                self.damaged[job_id] = str(e)
                self._set_aside(base + "job.json", f"job.json unreadable, the job cannot run: {e}", job_id)
                return None
            self.damaged.pop(job_id, None)
            self._submissions[job_id] = sub
        state = self._read_state(job_id, Path(base + "state.json")) if key is not None or force else {}
        changed = state.get("priority")  # set by a priority request (jobs/store/requests.py)
        priority = changed if type(changed) is int else sub.priority
        job = Job(sub.id, sub.created_at, priority, sub.spec, sub.total, state, sub.inputs)
        self._cache[job_id] = (key, job)
        return job

    def read_state(self, job_id: str) -> dict[str, Any]:
        """A job's runner-written state; {} (queued) if none. A damaged one reads as queued, with an
        error saying so; a runner's store quarantines it (that loses nothing committed: the results
        stay and the job is simply re-queued)."""
        return self._read_state(job_id, self.job_dir(job_id) / "state.json")

    def _read_state(self, job_id: str, path: Path) -> dict[str, Any]:
        try:
            return read_json(path, kind="state") or {}
        except PermissionError as e:  # not damaged: never set aside (jobs/store/perms.py)
            return {"error": f"cannot read state.json: {e.strerror}"}
        except (Corrupt, OSError) as e:
            if self._set_aside(path, f"state.json unreadable, the job is queued again: {e}", job_id):
                sub = self._submissions.get(job_id)
                prio, created = (sub.priority, sub.created_at) if sub else (None, None)
                queue_journal.append_quietly(self.root, job_id, JobStatus.QUEUED.value, prio, created)
                return {}
            return {"error": f"{e}; a runner will set it aside and run the job again, keeping its results"}

    def get(self, job_id: str) -> Job:
        """The job; :class:`JobNotFound` for an id that is not one (checked before any path is built),
        :class:`JobDamaged` for a folder whose job.json cannot be trusted."""
        self.job_dir(job_id)
        job = self._load(job_id)
        if job is None:
            raise self._missing(job_id)
        return job

    def fresh(self, job_id: str) -> Job:
        """The job with its state read from disk now, never from a cache (for writers under its lock)."""
        self.job_dir(job_id)
        job = self._load(job_id, force=True)
        if job is None:
            raise self._missing(job_id)
        return job

    def _missing(self, job_id: str) -> JobNotFound:
        reason = self.damaged.get(job_id)  # first: a damaged job.json may be a FIFO, never to be opened again
        if reason:
            return JobDamaged(job_id, reason)
        if perms.cannot_open(self, job_id):
            return perms.unreadable(self, job_id)
        return JobNotFound(job_id)

    def job_ids(self) -> list[str]:
        with os.scandir(self.jobs_dir) as it:
            return sorted(e.name for e in it if e.is_dir() and JOB_ID.fullmatch(e.name))

    def list_jobs(self, statuses: set[JobStatus] | None = None) -> list[Job]:
        """All jobs, newest first, never reading a result file. Warm, it re-reads only the jobs the
        journal (jobs/store/queue_journal.py) names as changed, plus a rotating slice it re-checks by stat
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
        items = read_json(path, expect=list, kind="manifest")
        if items is None:
            raise JobNotFound(job_id)
        for n, item in enumerate(items):
            if not item_shape_ok(item, n):
                raise Corrupt(f"{path.name}: item {n} is not an item ({str(item)[:80]})")
        total = self.get(job_id).total
        if len(items) != total:  # results beyond job.json's total are refused: they could never count
            raise Corrupt(f"{path.name}: {len(items)} items, but job.json says the job has {total}")
        return items

    def results_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "results"

    def result_path(self, job_id: str, index: int) -> Path:
        return self.results_dir(job_id) / f"{index:06d}.json"

    def iter_results(self, job_id: str) -> Iterator[dict[str, Any]]:
        """The job's valid results, in index order: only these count as committed. A result is valid
        if it parses, has its schema, and its ``index`` is the number in its file name and within the
        job. Readers skip an invalid one (the item shows as pending); a runner's store quarantines it,
        so the item is redone."""
        try:
            with os.scandir(self.results_dir(job_id)) as it:
                names = sorted(e.name for e in it if e.name.endswith(".json") and e.name[:-5].isdigit())
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            total: int | None = self.get(job_id).total
        except JobNotFound:
            total = None
        rdir = f"{self._jobs_prefix}{job_id}/results/"
        for name in names:
            try:
                res = read_json_at(rdir + name, "result")
                if res is None:
                    continue
                if res["index"] != int(name[:-5]):
                    raise Corrupt(f"{name}: holds item {res['index']}, not item {int(name[:-5])}")
                if total is not None and res["index"] >= total:
                    raise Corrupt(f"{name}: item {res['index']} is out of range (the job has {total})")
            except (Corrupt, OSError) as e:
                self._set_aside(rdir + name, f"result refused, the item is redone: {e}", job_id)
                continue
            yield res

    def result(self, job_id: str, index: int) -> dict[str, Any] | None:
        """One item's valid result (see :meth:`iter_results`), or None: none yet, or damaged or forged
        (another item's index in it), so the item counts as pending. Never moves anything."""
        self.job_dir(job_id)
        try:
            res = read_json_at(f"{self._jobs_prefix}{job_id}/results/{index:06d}.json", "result")
        except (Corrupt, OSError):
            return None
        return res if res is not None and res["index"] == index else None

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
        """Items with a result file, without reading them (one scandir): for display only (a damaged or
        forged file counts here); progress and final statuses come from :meth:`iter_results`."""
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
        """The job's latest events (the last :data:`EVENTS_TAIL_BYTES` of its log at most, so a huge
        log costs a page view no more than a small one); bad or torn lines are skipped."""
        data, whole = safejson.read_tail(self.job_dir(job_id) / "events.jsonl", EVENTS_TAIL_BYTES)
        lines = data.split(b"\n")
        if not whole:
            lines = lines[1:]  # the first one is most likely cut
        out = [ev for line in lines if isinstance(ev := safejson.parse_line(line, "event"), dict)]
        return out[-tail:] if tail else out

    def runners(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.runners_dir.glob("*.json")):
            if path.name.startswith(TMP_PREFIX):
                continue
            try:
                hb = read_json(path, kind="heartbeat")
            except (Corrupt, OSError) as e:
                log.debug("runner heartbeat %s ignored: %s", path.name, e)  # a bad record, not a runner
                continue
            if hb:
                out.append(hb)
        return out

    # -- client writes: new files only ---------------------------------------------------
    def request(self, job_id: str, kind: str, **extra: Any) -> Path:
        """Ask the runners to cancel/pause/resume/retry/delete a job; applied at the next item boundary."""
        if kind not in REQUEST_KINDS:
            raise SubmitError(f"unknown request {kind!r}; use one of {', '.join(REQUEST_KINDS)}")
        if kind == "priority":
            value = extra.get("priority")
            low, high = PRIORITY_RANGE
            if type(value) is not int or not low <= value <= high:
                raise SubmitError(f"a priority is a whole number from {low} to {high}, got {value!r}")
        perms.check_may_request(self, job_id, kind)
        try:
            self.get(job_id)
        except JobDamaged:
            if kind != "delete":  # a damaged job can still be deleted, with its files
                raise
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
                req = read_json(path, kind="request")
            except (Corrupt, OSError) as e:
                self._set_aside(path, f"request unreadable, not applied: {e}")
                continue
            if req and (job_id is None or req.get("job_id") == job_id):
                out.append((path, req))
        return out
