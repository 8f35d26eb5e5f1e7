"""Search across every job's results: a *derived* SQLite FTS5 index in ``state/search/index.sqlite``.

The result files stay the truth; this index is only a copy made to find them fast, so it may be
dropped at any time (``ocrjobs reindex``) and is never a reason to fail a commit or a delete.

This module is what the rest calls (the CLI, the dashboard, the runner's and delete's hooks): it keeps
the index up to the result files and answers :func:`search`. The file itself (schema, permissions,
damage) is jobs/store/search_index.py; matching, ranking and snippets are jobs/store/search_query.py.
Their public names are re-exported here, so callers import from this module alone; to monkeypatch
one (``RANK_CAP``, ``_prepare_dir``), patch the module that defines it: the name here is a copy.

* Freshness: the index records, per job, a *mark* of its ``results/`` folder (mtime_ns and inode,
  which change whenever a result file is added, replaced or removed). Each search stats every job's
  ``results/`` (one stat per job) and re-reads only the jobs whose mark changed, or that are new;
  jobs whose folder is gone are dropped. The runner's commit hook (:func:`note_commit`) adds the one
  result and refreshes the mark only when the job's indexed count equals its result files (else it
  forgets the mark, so the next search re-reads that job): a missed or failed hook is caught either way.
* Several users: a user who cannot open the index searches an in-memory index of the jobs they can
  read instead (slower, same answers for them).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import JobNotFound
from jobs.store.job import JOB_ID
from jobs.store.search_index import (
    BUSY_MS,
    SCHEMA_VERSION,
    Damaged,
    SearchIndex,
    _set_aside,
    index_dir,
    is_corruption,
    open_index,
)
from jobs.store.search_query import MARK_END, MARK_START, RANK_CAP, SNIPPET_TOKENS, Hit, SearchError
from jobs.store.store import Store

__all__ = [
    "BUSY_MS",
    "MARK_END",
    "MARK_START",
    "MAX_LIMIT",
    "RANK_CAP",
    "SCHEMA_VERSION",
    "SNIPPET_TOKENS",
    "Damaged",
    "Found",
    "Hit",
    "SearchError",
    "SearchIndex",
    "forget_job",
    "index_dir",
    "is_corruption",
    "note_commit",
    "open_index",
    "refresh",
    "reindex",
    "search",
]

log = logging.getLogger(__name__)

MAX_LIMIT = 1000


@dataclass
class Found:
    """What :func:`search` returns: ranked hits and notes for the user (a rebuild, a fallback)."""

    query: str
    hits: list[Hit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "hits": [h.to_dict() for h in self.hits], "notes": self.notes}


def _mark(store: Store, job_id: str) -> str | None:
    """What changes when a result file comes or goes; None if the job is gone or not ours to read."""
    try:
        st = os.stat(f"{store.jobs_dir}/{job_id}/results")
        return f"{st.st_mtime_ns}:{st.st_ino}"
    except FileNotFoundError:
        return "none" if os.path.isdir(f"{store.jobs_dir}/{job_id}") else None
    except (PermissionError, NotADirectoryError):
        return None


def refresh(store: Store, idx: SearchIndex) -> int:
    """Bring the index up to the result files: re-read new and changed jobs, drop deleted ones.
    One stat per job; returns how many jobs were re-read."""
    known = idx.marks()
    with os.scandir(store.jobs_dir) as it:
        names = sorted(e.name for e in it if JOB_ID.fullmatch(e.name))  # oldest first: rowids follow time
    changed = 0
    for job_id in names:
        mark = _mark(store, job_id)
        old = known.pop(job_id, None)
        if mark is None or mark == old:
            continue
        try:
            results = list(store.iter_results(job_id))  # read before the write lock is taken
        except (JobNotFound, OSError) as e:
            log.debug("search index skips job %s: %s", job_id, e)
            continue
        idx.replace_job(job_id, results, mark)
        changed += 1
    for gone in set(known) - set(names):  # every job with documents has a row in jobs (see add)
        idx.remove_job(gone)
    return changed


def reindex(store: Store) -> dict[str, Any]:
    """Rebuild the index from scratch from the result files (``ocrjobs reindex``)."""
    idx = open_index(store.root)
    try:
        idx.clear()
        jobs = refresh(store, idx)
        return {"jobs": jobs, "items": idx.count(), "path": str(idx.path), "notes": idx.notes}
    finally:
        idx.close()


def search(store: Store, query: str, job_id: str | None = None, limit: int = 20) -> Found:
    """What the CLI and the dashboard's search box call: ranked hits across all jobs (or one), after
    bringing the index up to date. Hits of jobs this user cannot open are left out."""
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"the limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if job_id is not None:
        store.get(job_id)  # JobNotFound with its usual message
    found = Found(query)
    for attempt in (1, 2):
        try:
            idx = open_index(store.root)
        except (PermissionError, sqlite3.OperationalError) as e:
            if isinstance(e, sqlite3.OperationalError) and "unable to open" not in str(e):
                raise SearchError(f"the search index is busy or unusable ({e}); try again") from None
            found.notes.append(f"you cannot open the search index ({e}); searched the jobs you can read without it")
            idx = SearchIndex(None)
        try:
            try:
                refresh(store, idx)
            except sqlite3.OperationalError as e:  # read-only to this user, or locked past the timeout
                if is_corruption(e):
                    raise
                found.notes.append(f"the search index could not be updated ({e}); recent items may be missing")
            hits = idx.query(query, job_id, limit)
            found.notes += idx.notes
            break
        except sqlite3.DatabaseError as e:
            if attempt == 2 or not is_corruption(e) or idx.path is None:
                raise SearchError(f"the search index cannot be read ({e}); run `ocrjobs reindex`") from None
            idx.close()
            _set_aside(store.root, idx.path, str(e))
            found.notes.append(f"the search index was damaged ({e}); it was set aside and rebuilt")
        finally:
            idx.close()
    for hit in hits:
        try:
            if not os.access(store.job_dir(hit.job_id), os.R_OK | os.X_OK):
                continue
            hit.job_name = store.get(hit.job_id).spec.get("name") or None
        except JobNotFound:
            continue  # deleted since, or a name that is no job id (a hand-made index)
        hit.link = f"job?id={hit.job_id}"
        found.hits.append(hit)
    return found


# -- hooks: a failure here never fails the commit or the delete ----------------------------------
_LOCK = threading.Lock()
_OPEN: dict[str, SearchIndex] = {}
_warned: set[str] = set()


def _cached(root: Path) -> SearchIndex | None:
    """This process's open index for the folder, reopened if the file was replaced (a rebuild);
    None while no index exists: the first search builds it whole, so runners never create it."""
    idx = _OPEN.pop(str(root), None)
    if idx is not None:
        try:
            if idx.path is not None and os.stat(idx.path).st_ino == idx.ino:
                _OPEN[str(root)] = idx
                return idx
        except FileNotFoundError:
            pass
        idx.close()
    if not (index_dir(root) / "index.sqlite").exists():
        return None
    idx = _OPEN[str(root)] = open_index(root)
    return idx


def _quietly(what: str, root: Path, fn: Any) -> None:
    try:
        with _LOCK:
            idx = _cached(root)
            if idx is not None:
                fn(idx)
    except Exception as e:  # noqa: BLE001 - the index is derived: log, the next search re-reads the job
        stale = _OPEN.pop(str(root), None)
        if stale is not None:
            stale.close()
        level = logging.DEBUG if what in _warned else logging.WARNING
        _warned.add(what)
        log.log(level, "search index not updated (%s): %s; the next search re-reads the results", what, e)


def note_commit(store: Store, job_id: str, result: dict[str, Any], progress: dict[str, Any] | None = None) -> None:
    """Runner hook, after an item's result file is in place. ``progress`` (the claim's exact counts of
    valid results) saves listing results/ at every commit; without it the files are counted."""

    def run(idx: SearchIndex) -> None:
        mark = _mark(store, job_id)
        if progress is not None:
            files = sum(v for k, v in progress.items() if k != "current" and type(v) is int)
        else:
            files = store.committed_count(job_id)
        idx.add(job_id, result, files, mark)

    _quietly("commit", store.root, run)


def forget_job(store: Store, job_id: str) -> None:
    """Hook after a job's folder is deleted."""
    _quietly("delete", store.root, lambda idx: idx.remove_job(job_id))
