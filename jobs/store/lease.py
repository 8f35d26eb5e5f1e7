"""Runner-side writes: claims, leases with fencing epochs, per-item commits.

Only runners write ``state.json`` and ``results/``. Each write happens under the job's
lock after checking that the writer's epoch is still the job's current one (the fencing
token), so a runner that was stopped or partitioned past its lease can never commit over
the runner that took the job over.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import JobDamaged, JobNotFound, LeaseLost, StoreBusy
from jobs.store import perms, queue_journal, search
from jobs.store.atomic import TMP_PREFIX, append_line, atomic_write_json
from jobs.store.clock import wall
from jobs.store.lease_watch import LeaseWatch, watch_of
from jobs.store.queue_journal import QueueIndex
from jobs.store.status import ItemStatus, JobStatus, transition
from jobs.store.store import Job, Store

log = logging.getLogger("ocrjobs.runner")

#: How often a commit rewrites state.json's progress, at most (seconds, monotonic).
PROGRESS_EVERY_S = 0.5
#: How often an idle claimer re-reads the running jobs' leases, at most (seconds, monotonic).
WATCH_EVERY_S = 0.1


@dataclass
class Claim:
    """A runner's hold on one job. ``state`` is the runner's copy of ``state.json``."""

    job_id: str
    runner_id: str
    epoch: int
    lease_s: float
    state: dict[str, Any] = field(default_factory=dict)
    renewed: float = field(default_factory=time.monotonic)  # monotonic: when the lease was last written
    written: float = field(default_factory=time.monotonic)  # monotonic: when state.json was last written

    @property
    def expires_at(self) -> float:
        return self.state["lease"]["expires_at"]


def log_event(store: Store, job_id: str, event: str, **data: Any) -> None:
    try:
        append_line(store.job_dir(job_id) / "events.jsonl", {"at": wall(), "event": event, **data})
    except OSError:
        pass  # the event log is for people; never fail work over it


def write_state(store: Store, job_id: str, state: dict[str, Any], *, durable: bool = True) -> None:
    """Replace state.json, then say so in the journal (a queued job with its priority, so claimers
    need not read it). ``durable=False`` skips the fsyncs: see docs/architecture.md, *Durability*."""
    state["updated_at"] = wall()
    atomic_write_json(store.job_dir(job_id) / "state.json", state, durable=durable)
    status = state.get("status", JobStatus.QUEUED.value)
    if status == JobStatus.QUEUED.value:
        try:
            job = store.get(job_id)
            queue_journal.append_quietly(store.root, job_id, status, job.priority, job.created_at)
        except JobNotFound:
            pass  # its job.json just went to quarantine: nothing left to claim
    else:
        queue_journal.append_quietly(store.root, job_id, status)


def _fresh(store: Store, job_id: str) -> Job:
    """The job with its state re-read from disk under its lock (never from a cache)."""
    return store.fresh(job_id)


def is_claimable(job: Job, watch: LeaseWatch, lease_s: float) -> bool:
    """Queued, or running under a lease that ``watch`` has seen stand unchanged for its lease period."""
    if job.status == JobStatus.QUEUED:
        return True
    return job.status == JobStatus.RUNNING and (job.lease is None or watch.expired(job.id, job.lease, lease_s))


_INDEXES: weakref.WeakKeyDictionary[Store, QueueIndex] = weakref.WeakKeyDictionary()


def index_of(store: Store) -> QueueIndex:
    """This process's queue heap for one store (see jobs/store/queue_journal.py). Whoever claims is a
    runner: its store sets damaged files aside from now on (see :meth:`Store.as_runner`)."""
    index = _INDEXES.get(store)
    if index is None:
        index = _INDEXES[store] = QueueIndex(store.as_runner())
    return index


def claim_next(
    store: Store, runner_id: str, lease_s: float, max_attempts: int, accept: Callable[[Job], bool] | None = None
) -> Claim | None:
    """Claim the highest-priority, oldest claimable job: queued, or running with an expired lease
    (see :class:`LeaseWatch`: a lease first seen now is only taken over one lease period later).
    ``accept``: a runner's own say (a job for the other kind of worker pool waits for a later claim).

    Candidates come from the journal-fed heap and the watched running jobs, never from a listing
    of every job; each is re-read under its lock before it is taken."""
    watch, index = watch_of(store), index_of(store)
    passed: list[tuple[int, float, str]] = []  # candidates ``accept`` declined: back in the heap after
    with index.mutex:
        index.rescan_if_due()
        with store.locked():
            index.follow()
            _watch_running(store, index, watch, lease_s)
            try:
                while (top := index.pop()) is not None:
                    job_id = top[2]
                    try:
                        with store.locked(job_id):
                            job = _fresh(store, job_id)
                            if job.status == JobStatus.RUNNING:
                                index.running.add(job_id)
                            if not is_claimable(job, watch, lease_s):
                                continue
                            if accept is not None and not accept(job):
                                passed.append(top)
                                continue
                            claim = _take(store, job, runner_id, lease_s, max_attempts, wall())
                    except JobDamaged as e:  # a job.lock that is a symlink or a FIFO, a damaged job.json
                        if job_id not in index.damaged:
                            index.damaged.add(job_id)
                            log.warning(
                                "skipping job %s: %s", job_id, e, extra={"event": "job_skipped", "job_id": job_id}
                            )
                        continue
                    except JobNotFound:
                        continue
                    except PermissionError as e:  # another user's job this runner cannot open (jobs/store/perms.py)
                        perms.warn_once("claim", job_id, "cannot claim job %s, skipped: %s", job_id, e)
                        continue
                    except StoreBusy:
                        passed.append(top)  # still a candidate for the next poll
                        raise
                    if claim is not None:
                        return claim
            finally:
                for priority, created, job_id in passed:
                    index.push(job_id, -priority, created)
    return None


def _watch_running(store: Store, index: QueueIndex, watch: LeaseWatch, lease_s: float) -> None:
    """Sight every running job's lease (a takeover needs it seen unchanged for a lease period);
    an expired one, or a job no longer running but queued, becomes a candidate. At most every
    :data:`WATCH_EVERY_S`: sightings that often are plenty against a lease of seconds."""
    now = time.monotonic()
    if now < index.next_watch:
        return
    index.next_watch = now + WATCH_EVERY_S
    for job_id in list(index.running):
        job = store._load(job_id)
        status = job.state.get("status", "queued") if job is not None else None
        if job is None or status != JobStatus.RUNNING.value:
            index.running.discard(job_id)
            if job is not None and status == JobStatus.QUEUED.value:
                index.push(job_id, job.priority, job.created_at)
        elif job.lease is None or watch.expired(job_id, job.lease, lease_s):
            index.push(job_id, job.priority, job.created_at)
    watch.keep_only(index.running)


def _take(store: Store, job: Job, runner_id: str, lease_s: float, max_attempts: int, now: float) -> Claim | None:
    state = dict(job.state)
    previous = state.get("lease")
    max_attempts = int(job.spec.get("max_attempts", max_attempts))
    if job.status == JobStatus.RUNNING:
        state["lost_runners"] = state.get("lost_runners", 0) + 1
        if state["lost_runners"] >= max_attempts:
            state.update(
                status=transition(job.status, JobStatus.FAILED).value,
                lease=None,
                finished_at=now,
                error=f"the job lost its runner {state['lost_runners']} times (max_attempts={max_attempts}); "
                "check the runner logs, then `retry` it",
            )
            write_state(store, job.id, state)
            log_event(store, job.id, "failed", reason=state["error"])
            return None
    epoch = int(state.get("epoch", 0)) + 1
    counts = store.count_results(job.id)
    state.update(
        status=transition(job.status, JobStatus.RUNNING).value,
        epoch=epoch,
        lease={"runner": runner_id, "epoch": epoch, "expires_at": now + lease_s, "lease_s": lease_s},
        attempts=state.get("attempts", 0) + 1,
        started_at=state.get("started_at") or now,
        finished_at=None,
        progress={**counts, "current": None},
        run={"started_at": now, "committed": 0},
    )
    state.setdefault("item_crashes", {})
    write_state(store, job.id, state, durable=False)
    watch_of(store).note(job.id, state["lease"], lease_s, live=True)
    info: dict[str, Any] = {"runner": runner_id, "epoch": epoch, "resume_from": sum(counts.values())}
    if previous and job.status == JobStatus.RUNNING:
        info["reclaimed_from"] = previous
    log_event(store, job.id, "claimed", **info)
    return Claim(job.id, runner_id, epoch, lease_s, state)


def _check_fence(store: Store, claim: Claim) -> dict[str, Any]:
    disk = store.read_state(claim.job_id)
    lease = disk.get("lease") or {}
    if (
        disk.get("status") != JobStatus.RUNNING.value
        or lease.get("runner") != claim.runner_id
        or lease.get("epoch") != claim.epoch
    ):
        raise LeaseLost(
            f"job {claim.job_id}: lease epoch {claim.epoch} of {claim.runner_id} is no longer current "
            f"(now {disk.get('status')}, epoch {lease.get('epoch', disk.get('epoch'))})",
            claim.job_id,
        )
    return disk


def save(store: Store, claim: Claim, *, renew: bool = False) -> None:
    """Write the runner's copy of the state (and extend the lease), if still the owner."""
    with store.locked(claim.job_id):
        _check_fence(store, claim)
        if renew:
            claim.state["lease"]["expires_at"] = wall() + claim.lease_s
            claim.renewed = time.monotonic()
        # A renewal is a lease for live processes only, like the claim: no fsync (see write_state).
        write_state(store, claim.job_id, claim.state, durable=not renew)
        claim.written = time.monotonic()
        watch_of(store).note(claim.job_id, claim.state["lease"], claim.lease_s, live=True)


def commit_item(store: Store, claim: Claim, result: dict[str, Any]) -> bool:
    """Durably store one item's result, once. Returns False if that index was already committed.

    The result file is the durable record. The progress in state.json is only a display (a claim
    recounts it from the result files), so it is rewritten at most every :data:`PROGRESS_EVERY_S`,
    without fsync; ``claim.state`` always holds the exact counts, and finish writes them."""
    index = int(result["index"])
    path = store.result_path(claim.job_id, index)
    with store.locked(claim.job_id):
        _check_fence(store, claim)
        if path.exists():
            log_event(store, claim.job_id, "duplicate_ignored", index=index, epoch=claim.epoch)
            return False
        path.parent.mkdir(exist_ok=True)
        result = {**result, "runner": claim.runner_id, "epoch": claim.epoch, "committed_at": wall()}
        _write_result(path, result)
        # Logged at once, still under the lock: a kill can only fall in the microseconds between.
        log_event(store, claim.job_id, "item_committed", index=index, status=result["status"], epoch=claim.epoch)
        progress = claim.state["progress"]
        progress[result["status"]] = progress.get(result["status"], 0) + 1
        if progress.get("current") and progress["current"].get("index") == index:
            progress["current"] = None
        claim.state["run"]["committed"] += 1
        now = time.monotonic()
        if now - claim.written >= PROGRESS_EVERY_S:
            claim.state["lease"]["expires_at"] = max(claim.expires_at, wall() + claim.lease_s / 2)
            write_state(store, claim.job_id, claim.state, durable=False)
            claim.written = now
            watch_of(store).note(claim.job_id, claim.state["lease"], claim.lease_s, live=True)
    search.note_commit(store, claim.job_id, result, claim.state["progress"])  # derived search index; never raises
    return True


def _write_result(path: Path, result: dict[str, Any]) -> None:
    """A new result file for one fsync, not two: written under a temp name, renamed into place,
    then fsync'd. Linux's journaling filesystems (ext4, XFS) commit the rename with that fsync
    (the rename is in the same journal transaction), so the folder needs no fsync of its own. A
    crash before it returns leaves no file, or an empty one that readers quarantine as corrupt:
    either way the item is pending again and is redone; a reader never sees a partial file."""
    data = json.dumps(result, ensure_ascii=False, indent=1, sort_keys=True).encode()
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.replace(tmp, path)
        os.fsync(fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def finish(store: Store, claim: Claim, status: JobStatus, error: str | None = None, **extra: Any) -> None:
    """End the runner's hold: a final status, or QUEUED to hand the job back, or PAUSED."""
    previous = claim.state["status"]
    claim.state.update(
        status=transition(previous, status).value,
        lease=None,
        error=error,
        **extra,
    )
    claim.state["progress"]["current"] = None
    if status.is_terminal:
        claim.state["finished_at"] = wall()
    with store.locked(claim.job_id):
        _check_fence(store, claim)
        write_state(store, claim.job_id, claim.state)
    log_event(store, claim.job_id, status.value, epoch=claim.epoch, error=error)


def settle(store: Store, claim: Claim) -> JobStatus | None:
    """The held job's final status, from its valid result files: never from the counts kept while it
    ran, nor from the names in results/ (a file may have been truncated or forged since). None while
    an item has no valid result: the runner's store has set the bad file aside, so reloading the
    pending items (jobs/runner/items.py) redoes it. The recount becomes the job's progress."""
    counts = store.count_results(claim.job_id)
    claim.state["progress"] = {**counts, "current": None}
    if sum(counts.values()) < store.get(claim.job_id).total:
        log_event(store, claim.job_id, "results_missing", valid=sum(counts.values()), epoch=claim.epoch)
        return None
    return final_status(counts)


def final_status(progress: dict[str, Any]) -> JobStatus:
    if progress.get(ItemStatus.FAILED.value, 0) == 0 and progress.get(ItemStatus.TIMED_OUT.value, 0) == 0:
        return JobStatus.SUCCEEDED
    if progress.get(ItemStatus.DONE.value, 0) == 0:
        return JobStatus.FAILED
    return JobStatus.COMPLETED_WITH_ERRORS
