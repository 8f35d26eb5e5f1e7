"""Runner-side writes: claims, leases with fencing epochs, per-item commits.

Only runners write ``state.json`` and ``results/``. Each write happens under the job's
lock after checking that the writer's epoch is still the job's current one (the fencing
token), so a runner that was stopped or partitioned past its lease can never commit over
the runner that took the job over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from jobs.atomic import append_line, atomic_write_json
from jobs.errors import LeaseLost
from jobs.status import ItemStatus, JobStatus, transition
from jobs.store import Job, Store


@dataclass
class Claim:
    """A runner's hold on one job. ``state`` is the runner's copy of ``state.json``."""

    job_id: str
    runner_id: str
    epoch: int
    lease_s: float
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def expires_at(self) -> float:
        return self.state["lease"]["expires_at"]


def log_event(store: Store, job_id: str, event: str, **data: Any) -> None:
    try:
        append_line(store.job_dir(job_id) / "events.jsonl", {"at": time.time(), "event": event, **data})
    except OSError:
        pass  # the event log is for people; never fail work over it


def write_state(store: Store, job_id: str, state: dict[str, Any]) -> None:
    state["updated_at"] = time.time()
    atomic_write_json(store.job_dir(job_id) / "state.json", state)


def _fresh(store: Store, job_id: str) -> Job:
    """The job with its state re-read from disk under its lock (never from a cache)."""
    return replace(store.get(job_id), state=store.read_state(job_id))


def is_claimable(job: Job, now: float) -> bool:
    return job.status == JobStatus.QUEUED or (job.status == JobStatus.RUNNING and job.lease_expired(now))


def claim_next(store: Store, runner_id: str, lease_s: float, max_attempts: int) -> Claim | None:
    """Claim the highest-priority, oldest claimable job: queued, or running with an expired lease."""
    with store.locked():
        now = time.time()
        candidates = [j for j in store.list_jobs() if is_claimable(j, now)]
        candidates.sort(key=lambda j: (-j.priority, j.created_at))
        for cand in candidates:
            with store.locked(cand.id):
                job = _fresh(store, cand.id)
                now = time.time()
                if not is_claimable(job, now):
                    continue
                claim = _take(store, job, runner_id, lease_s, max_attempts, now)
                if claim is not None:
                    return claim
    return None


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
        lease={"runner": runner_id, "epoch": epoch, "expires_at": now + lease_s},
        attempts=state.get("attempts", 0) + 1,
        started_at=state.get("started_at") or now,
        finished_at=None,
        progress={**counts, "current": None},
        run={"started_at": now, "committed": 0},
    )
    state.setdefault("item_crashes", {})
    write_state(store, job.id, state)
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
            f"(now {disk.get('status')}, epoch {lease.get('epoch', disk.get('epoch'))})"
        )
    return disk


def save(store: Store, claim: Claim, *, renew: bool = False) -> None:
    """Write the runner's copy of the state (and extend the lease), if still the owner."""
    with store.locked(claim.job_id):
        _check_fence(store, claim)
        if renew:
            claim.state["lease"]["expires_at"] = time.time() + claim.lease_s
        write_state(store, claim.job_id, claim.state)


def commit_item(store: Store, claim: Claim, result: dict[str, Any]) -> bool:
    """Durably store one item's result, once. Returns False if that index was already committed."""
    index = int(result["index"])
    path = store.result_path(claim.job_id, index)
    with store.locked(claim.job_id):
        _check_fence(store, claim)
        if path.exists():
            log_event(store, claim.job_id, "duplicate_ignored", index=index, epoch=claim.epoch)
            return False
        path.parent.mkdir(exist_ok=True)
        result = {**result, "runner": claim.runner_id, "epoch": claim.epoch, "committed_at": time.time()}
        atomic_write_json(path, result)
        progress = claim.state["progress"]
        progress[result["status"]] = progress.get(result["status"], 0) + 1
        if progress.get("current") and progress["current"].get("index") == index:
            progress["current"] = None
        claim.state["run"]["committed"] += 1
        claim.state["lease"]["expires_at"] = max(claim.expires_at, time.time() + claim.lease_s / 2)
        write_state(store, claim.job_id, claim.state)
    log_event(store, claim.job_id, "item_committed", index=index, status=result["status"], epoch=claim.epoch)
    return True


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
        claim.state["finished_at"] = time.time()
    with store.locked(claim.job_id):
        _check_fence(store, claim)
        write_state(store, claim.job_id, claim.state)
    log_event(store, claim.job_id, status.value, epoch=claim.epoch, error=error)


def final_status(progress: dict[str, Any]) -> JobStatus:
    if progress.get(ItemStatus.FAILED.value, 0) == 0 and progress.get(ItemStatus.TIMED_OUT.value, 0) == 0:
        return JobStatus.SUCCEEDED
    if progress.get(ItemStatus.DONE.value, 0) == 0:
        return JobStatus.FAILED
    return JobStatus.COMPLETED_WITH_ERRORS
