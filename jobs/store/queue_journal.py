"""The job journal, ``state/queue.jsonl``: one line per change of a job's state.

It is only an accelerator, never the truth: the job folders are. Submit appends a line once the
job folder is in place, and every ``state.json`` write (:func:`jobs.store.lease.write_state`) appends
one after the write, so a reader that tails the file learns which jobs changed without
stat-ing 10,000 folders:

- a runner keeps the queued jobs in a heap (:class:`QueueIndex`) fed from it, so a claim costs
  the same at 10,000 queued jobs as at 10;
- :meth:`jobs.store.store.Store.list_jobs` re-reads only the jobs named since its last look.

A line can be missing (a process killed between its write and its append, a hand edit, a line
torn by a power loss): claimers rescan the folders every :data:`RESCAN_S` and listers re-check
a rotating slice of the jobs at every listing, so a missed line costs latency, never a job.
Appends are not fsync'd for the same reason: after a power loss every runner starts with a
full rescan. :func:`compact` rewrites the file with only the still-queued jobs.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from jobs.errors import Corrupt
from jobs.store import safejson
from jobs.store.job import Job


class Folder(Protocol):
    """What the queue index and :func:`compact` need of a :class:`jobs.store.store.Store` (which
    appends to the journal, so it cannot be imported from here): its root, its jobs, one job."""

    root: Path

    def list_jobs(self) -> list[Job]: ...

    def get(self, job_id: str) -> Job: ...


log = logging.getLogger(__name__)

NAME = "queue.jsonl"
#: How often a claimer re-lists every job folder (catches a line that never made it).
RESCAN_S = 30.0
#: Compact once the file is this big and at least twice what the queued jobs need.
COMPACT_MIN_BYTES = 1 << 20
#: At most this much of the journal is read per look (a flood is taken in over several looks).
READ_MAX_BYTES = 16 << 20


def journal_path(root: Path) -> Path:
    return root / NAME


def append(root: Path, job_id: str, status: str, priority: int | None = None, created_at: float | None = None) -> None:
    """Append one line with a single O_APPEND write. If :func:`compact` replaced the file while we
    wrote, write the line again to the new one (a duplicate is harmless, a loss only costs time)."""
    entry: dict[str, Any] = {"id": job_id, "status": status}
    if priority is not None:
        entry.update(priority=priority, created_at=created_at)
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    path = str(journal_path(root))
    for _ in range(3):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            ino = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        try:
            if os.stat(path).st_ino == ino:
                return
        except FileNotFoundError:
            pass


def append_quietly(
    root: Path, job_id: str, status: str, priority: int | None = None, created_at: float | None = None
) -> None:
    """:func:`append` for callers whose real write already happened: a failure is only logged."""
    try:
        append(root, job_id, status, priority, created_at)
    except OSError as e:
        log.warning("could not append to %s (%s); runners find job %s at their next rescan", NAME, e, job_id)


class Tail:
    """Reads the lines appended since its last call; notices when :func:`compact` replaced the file."""

    def __init__(self, root: Path) -> None:
        self.path = str(journal_path(root))
        self.ino: int | None = None
        self.offset = 0

    def skip_to_end(self) -> None:
        try:
            st = os.stat(self.path)
            self.ino, self.offset = st.st_ino, st.st_size
        except FileNotFoundError:
            self.ino, self.offset = None, 0

    def read(self) -> tuple[list[dict[str, Any]], bool]:
        """(new complete lines, whether the file was replaced since the last call)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], False
        if st.st_ino == self.ino and st.st_size == self.offset:
            return [], False
        try:  # a regular file only: a FIFO or a symlink to /dev/zero put here is not followed
            fd = safejson.open_regular(self.path)
        except (FileNotFoundError, Corrupt) as e:
            if isinstance(e, Corrupt):
                log.warning("%s ignored: %s; runners find jobs by their rescans", NAME, e)
            return [], False
        try:
            ino = os.fstat(fd).st_ino
            rotated = self.ino is not None and ino != self.ino
            if ino != self.ino:
                self.ino, self.offset = ino, 0
            data = os.pread(fd, READ_MAX_BYTES, self.offset)  # the rest at the next call
        finally:
            os.close(fd)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= READ_MAX_BYTES:
                self.offset += len(data)  # one giant line: skip it, it is no journal line
            return [], rotated
        self.offset += end + 1
        # empty, torn, glued or hostile lines are skipped: a rescan makes up for them
        entries = (safejson.parse_line(raw, "journal") for raw in data[: end + 1].split(b"\n"))
        return [e for e in entries if e is not None], rotated


class QueueIndex:
    """One process's view of the queue: a heap of (-priority, created_at, id) fed by the journal,
    and the running jobs whose leases it watches. Every entry is re-checked under the job's lock
    before it is acted on, so a stale one is merely dropped."""

    def __init__(self, store: Folder) -> None:
        self.store = store
        self.tail = Tail(store.root)
        self.heap: list[tuple[int, float, str]] = []
        self.queued: dict[str, int] = {}  # job -> the priority its live heap entry has
        self.running: set[str] = set()
        self.damaged: set[str] = set()  # jobs skipped as damaged, logged once
        self.next_rescan = 0.0
        self.next_watch = 0.0
        self.mutex = threading.RLock()

    def push(self, job_id: str, priority: int, created_at: float) -> None:
        """A candidate; pushed again with a changed priority, the older entry goes stale (skipped by pop)."""
        if self.queued.get(job_id) != priority:
            self.queued[job_id] = priority
            heapq.heappush(self.heap, (-priority, created_at, job_id))

    def pop(self) -> tuple[int, float, str] | None:
        """The best candidate as (-priority, created_at, id), taken off the heap."""
        while self.heap:
            top = heapq.heappop(self.heap)
            if self.queued.get(top[2]) == -top[0]:
                del self.queued[top[2]]
                return top
        return None

    def rescan_if_due(self) -> None:
        if time.monotonic() >= self.next_rescan:
            self.rescan()

    def rescan(self) -> None:
        """Every job folder, at start and every :data:`RESCAN_S`: queued ones into the heap, running ones
        watched. Done outside the store lock (it only reads), so other claimers are not held up."""
        if self.next_rescan == 0.0:
            self.tail.skip_to_end()  # before listing: whatever changes during the listing is followed
        for job in self.store.list_jobs():
            status = job.state.get("status", "queued")
            if status == "queued":
                self.push(job.id, job.priority, job.created_at)
            elif status == "running":
                self.running.add(job.id)
        self.next_rescan = time.monotonic() + RESCAN_S

    def follow(self) -> None:
        """Take in the journal's new lines (call under the store lock, just before popping)."""
        lines, _rotated = self.tail.read()  # after a compaction: read again from the top; duplicates are skipped
        for entry in lines:
            status = entry.get("status")
            if status == "queued":
                try:
                    self.push(entry["id"], int(entry["priority"]), float(entry["created_at"]))
                except (KeyError, TypeError, ValueError):
                    self._push_from_folder(entry["id"])
            elif status == "running":
                self.running.add(entry["id"])

    def _push_from_folder(self, job_id: str) -> None:
        from jobs.errors import JobNotFound

        try:
            job = self.store.get(job_id)
        except JobNotFound:
            return
        self.push(job.id, job.priority, job.created_at)


def compact(store: Folder) -> bool:
    """Rewrite the journal with one line per still-queued job, once it is over
    :data:`COMPACT_MIN_BYTES` and twice that. Call under the store lock (one compactor at a time).

    Appenders never wait: lines written to the old file after it was read are copied over after
    the rename, and a line written later still is re-appended by its writer (see :func:`append`)."""
    path = journal_path(store.root)
    try:
        old = os.fdopen(safejson.open_regular(path), "rb")
    except (FileNotFoundError, Corrupt):
        return False
    with old:
        head = old.read()
        end = head.rfind(b"\n") + 1
        if end < COMPACT_MIN_BYTES:
            return False
        keep = "".join(
            json.dumps(
                {"id": job.id, "status": "queued", "priority": job.priority, "created_at": job.created_at},
                separators=(",", ":"),
            )
            + "\n"
            for job in store.list_jobs()
            if job.state.get("status", "queued") == "queued"
        ).encode()
        if len(keep) * 2 > end:
            return False
        old.seek(end)
        mid = old.read()
        mid = mid[: mid.rfind(b"\n") + 1]  # changes since the listing began: kept as they are
        tmp = store.root / f".tmp-{NAME}.{os.getpid()}"
        tmp.write_bytes(keep + mid)
        os.replace(tmp, path)
        old.seek(end + len(mid))
        late = old.read()
    late = late[: late.rfind(b"\n") + 1]
    if late:
        with open(path, "ab") as new:
            new.write(late)
    log.info("compacted %s from %d to %d bytes", NAME, end, len(keep) + len(mid) + len(late))
    return True
