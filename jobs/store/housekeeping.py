"""Retention and clean-up: old terminal jobs, temp files left by crashed writers."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from jobs.errors import Corrupt, JobNotFound
from jobs.store import queue_journal, search
from jobs.store.atomic import TMP_PREFIX, read_json, remove_tree
from jobs.store.status import JobStatus
from jobs.store.store import Store

log = logging.getLogger(__name__)

TMP_MAX_AGE_S = 3600.0
RUNNER_KEEP_S = 86400.0
SWEEP_ROUNDS = 10
SWEEP_MIN = 500
#: job folder root -> where the rotating sweep of job folders stands
_SWEEP_AT: dict[str, int] = {}


def housekeep(store: Store, retention_days: float, now: float | None = None) -> dict[str, int]:
    """Delete terminal jobs finished more than ``retention_days`` ago, and stale temp files.

    Never touches a job that is not terminal. Returns counts of what was removed.
    """
    now = now if now is not None else time.time()
    removed = {"jobs": 0, "temp": 0, "runners": 0}
    cutoff = now - retention_days * 86400
    for job in store.list_jobs():
        finished = job.state.get("finished_at") or job.state.get("updated_at") or job.created_at
        try:
            if job.status.is_terminal and finished < cutoff and delete_job(store, job.id, terminal_only=True):
                removed["jobs"] += 1
        except JobNotFound as e:  # gone meanwhile, or damaged (a job.lock that is a symlink): left alone
            log.warning("housekeeping skipped job %s: %s", job.id, e)
    removed["temp"] += _sweep_jobs(store, now)
    removed["temp"] += _sweep_tmp(store.requests_dir, now, depth=1)
    removed["temp"] += _sweep_tmp(store.runners_dir, now, depth=2)  # and runners/history/
    removed["runners"] += _prune_runners(store, now)
    try:
        with store.locked():
            queue_journal.compact(store)
    except OSError as e:
        log.warning("could not compact the queue journal: %s", e)
    if any(removed.values()):
        log.info(
            "housekeeping removed %(jobs)d old jobs, %(temp)d temp files and %(runners)d dead runners' files", removed
        )
    return removed


def delete_job(store: Store, job_id: str, *, terminal_only: bool = False) -> bool:
    """Remove a job that is not running (or not terminal), with all its files; False if it was."""
    trash = store.root / "trash"
    trash.mkdir(exist_ok=True)
    with store.locked(), store.locked(job_id):
        state = store.read_state(job_id)
        status = JobStatus(state.get("status", "queued"))
        if status == JobStatus.RUNNING or (terminal_only and not status.is_terminal):
            return False
        os.replace(store.job_dir(job_id), trash / f"{job_id}-{time.time_ns()}")
    search.forget_job(store, job_id)  # the derived search index; never raises
    for leftover in trash.iterdir():
        remove_tree(leftover)
    return True


def _prune_runners(store: Store, now: float) -> int:
    """Forget runners silent for a day (SIGKILLed ones never remove their heartbeat and history)."""
    n = 0
    for path in store.runners_dir.glob("*.json"):
        try:
            beat = float((read_json(path, kind="heartbeat") or {}).get("heartbeat_at", 0))
        except (Corrupt, OSError):  # a bad record: its age is its file's
            try:
                beat = path.lstat().st_mtime
            except FileNotFoundError:
                continue
        if now - beat > RUNNER_KEEP_S:
            path.unlink(missing_ok=True)
            (store.runners_dir / "history" / path.name).unlink(missing_ok=True)
            n += 1
    return n


def _sweep_jobs(store: Store, now: float) -> int:
    """Temp files in ``jobs/`` itself (half-built submits) at every pass; inside the job folders a
    rotating 1/:data:`SWEEP_ROUNDS` of them (all below :data:`SWEEP_MIN`), so a pass stays cheap at
    10,000 jobs and every folder is still swept within SWEEP_ROUNDS passes (~10 min)."""
    n = 0
    folders = []
    with os.scandir(store.jobs_dir) as it:
        for entry in it:
            if entry.name.startswith(TMP_PREFIX):
                n += _sweep_entry(entry, now)
            else:
                folders.append(entry.path)
    folders.sort()
    if len(folders) > SWEEP_MIN:
        size = max(SWEEP_MIN, len(folders) // SWEEP_ROUNDS)
        start = _SWEEP_AT.get(str(store.root), 0) % len(folders)
        _SWEEP_AT[str(store.root)] = start + size
        folders = folders[start : start + size]
    for folder in folders:
        n += _sweep_tmp(folder, now, depth=2)
    return n


def _sweep_entry(entry: os.DirEntry[str], now: float) -> int:
    try:
        if now - entry.stat(follow_symlinks=False).st_mtime <= TMP_MAX_AGE_S:
            return 0
        if entry.is_dir(follow_symlinks=False):
            remove_tree(Path(entry.path))
        else:
            os.unlink(entry.path)
    except (FileNotFoundError, PermissionError):  # another user's, in a shared folder (jobs/store/perms.py)
        return 0
    return 1


def _sweep_tmp(root: str | Path, now: float, depth: int) -> int:
    """Remove ``.tmp-*`` entries older than an hour: writers that died before their rename."""
    n = 0
    try:
        it = os.scandir(root)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return 0
    with it:
        for entry in it:
            if entry.name.startswith(TMP_PREFIX):
                n += _sweep_entry(entry, now)
            elif depth > 1:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        n += _sweep_tmp(entry.path, now, depth - 1)
                except FileNotFoundError:
                    continue
    return n
