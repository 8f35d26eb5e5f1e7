"""Runner-side application of the requests clients leave in ``state/requests/``.

A request for a job that another runner holds under a live lease is left for that runner,
which applies it at its next item boundary; any runner applies the rest. A request is
deleted once applied, so applying is idempotent: a crash before the delete re-applies a
no-op.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from jobs import config
from jobs.errors import JobNotFound
from jobs.store import perms
from jobs.store.housekeeping import delete_job
from jobs.store.lease import log_event, watch_of, write_state
from jobs.store.status import ItemStatus, JobStatus, can_transition
from jobs.store.store import Store

log = logging.getLogger(__name__)

TARGET = {
    "cancel": JobStatus.CANCELLED,
    "pause": JobStatus.PAUSED,
    "resume": JobStatus.QUEUED,
    "retry": JobStatus.QUEUED,
}


def apply_requests(store: Store, own_jobs: Collection[str] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """Apply every request that is ours to apply; return (unapplied) requests for the jobs we hold."""
    mine = []
    watch = watch_of(store)
    for path, req in store.as_runner().pending_requests():  # a runner's: sets bad request files aside
        job_id = req.get("job_id", "")
        if _refused(store, path, job_id, req):
            continue
        if job_id in own_jobs:
            mine.append((path, req))
            continue
        try:
            with store.locked(job_id):
                state = store.read_state(job_id)
                lease = state.get("lease")
                if (
                    state.get("status") == JobStatus.RUNNING.value
                    and lease
                    and not watch.expired(job_id, lease, config.DEFAULT_LEASE_S)
                ):
                    continue  # its owner applies it (a delete: it cancels first, then any runner deletes)
                if req.get("kind") != "delete":
                    apply_one(store, job_id, state, req)
            if req.get("kind") == "delete":
                delete_job(store, job_id)  # takes the store lock first: never inside the job lock
        except JobNotFound:
            pass
        except PermissionError as e:  # another user's job this runner cannot open: left to one that can
            perms.warn_once("request", path.name, "cannot apply %s to job %s: %s", req.get("kind"), job_id, e)
            continue
        path.unlink(missing_ok=True)
    return mine


def _refused(store: Store, path: Path, job_id: str, req: dict[str, Any]) -> bool:
    """Drop a request whose file was written by a user who may not change the job (jobs/store/perms.py)."""
    why = perms.request_refusal(store, path, job_id)
    if why is None:
        return False
    if perms.warn_once("refused", path.name, "request %s refused: %s", path.name, why):
        log_event(store, job_id, "request_refused", kind=req.get("kind"), reason=why)
    try:
        path.unlink(missing_ok=True)
    except OSError as e:  # requests/ not set up (no sticky folder of ours): never applied all the same
        perms.warn_once("unremoved", path.name, "cannot remove refused request %s: %s", path.name, e)
    return True


def apply_one(store: Store, job_id: str, state: dict[str, Any], req: dict[str, Any]) -> bool:
    """Apply one request to a job nobody is running. Caller holds the job lock."""
    kind = req.get("kind")
    if kind == "priority":
        return _reprioritise(store, job_id, state, req)
    target = TARGET.get(str(kind))
    current = JobStatus(state.get("status", JobStatus.QUEUED))
    if target is None or not can_transition(current, target) or (kind == "resume" and current != JobStatus.PAUSED):
        log_event(store, job_id, "request_ignored", kind=kind, status=current.value)
        return False
    if kind == "retry":
        if current == JobStatus.SUCCEEDED and sum(store.count_results(job_id).values()) >= store.get(job_id).total:
            return False  # nothing to redo; a succeeded job whose result went bad is redone
        retired = retire_failed(store, job_id, state)
        state.update(error=None, lost_runners=0, finished_at=None, reason=None)
        log_event(store, job_id, "retry", items=retired)
    state.update(status=target.value, lease=None)
    if target.is_terminal:
        state["finished_at"] = time.time()
    if kind == "resume":
        state.update(reason=None, error=None)
        if req.get("accept_engine_change"):  # jobs/runner/pinning.py records the new engine at the next claim
            state["engine_change_accepted"] = True
    write_state(store, job_id, state)
    log_event(store, job_id, f"request_{kind}", status=target.value)
    return True


def _reprioritise(store: Store, job_id: str, state: dict[str, Any], req: dict[str, Any]) -> bool:
    """A new priority: where the job now waits in the queue (the journal carries it to every claimer)."""
    current = JobStatus(state.get("status", JobStatus.QUEUED))
    value = req.get("priority")
    if current.is_terminal or type(value) is not int:
        log_event(store, job_id, "request_ignored", kind="priority", status=current.value)
        return False
    state["priority"] = value
    write_state(store, job_id, state)
    log_event(store, job_id, "request_priority", priority=value)
    return True


def retire_failed(store: Store, job_id: str, state: dict[str, Any]) -> int:
    """Move failed/timed-out results aside (kept, not deleted) so those items run again."""
    rdir = store.results_dir(job_id)
    retired_dir = rdir / "retired"
    round_no = int(state.get("round", 0)) + 1
    n = 0
    crashes = state.get("item_crashes", {})
    for res in list(store.iter_results(job_id)):
        if res.get("status") in (ItemStatus.FAILED.value, ItemStatus.TIMED_OUT.value):
            retired_dir.mkdir(exist_ok=True)
            src = store.result_path(job_id, res["index"])
            os.replace(src, retired_dir / f"r{round_no}-{src.name}")
            crashes.pop(str(res["index"]), None)
            n += 1
    state["round"] = round_no
    state["progress"] = {**store.count_results(job_id), "current": None}
    return n
