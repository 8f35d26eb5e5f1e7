"""A job as readers see it: the immutable submission (job.json) merged with the runner-written state."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jobs.store import safejson
from jobs.store.status import JobStatus

#: What :func:`new_job_id` makes. Anything else is refused before it touches a path.
JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


def new_job_id() -> str:
    """Sortable by creation time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


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
    def name(self) -> str:
        """What the submitter called the job ("" if nothing): shown beside its id, searchable."""
        return str(self.spec.get("name") or "")

    @property
    def submitted_by(self) -> str:
        """Who submitted it, as they gave it: the OS user for the CLI, the name typed at the dashboard
        (not proof of identity: ``owner`` in job.json, the submitting uid, is what permissions check)."""
        return str(self.spec.get("submitted_by") or "")

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
            # workers on it now: its runner shares them among the jobs it holds (jobs/runner/fairshare.py)
            "workers": run.get("workers") if self.status == JobStatus.RUNNING else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "submitted_by": self.submitted_by,
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


def read_json_at(path: str, kind: str = "job") -> dict[str, Any] | None:
    """A job.json (or another ``kind``) on a str path, through :func:`jobs.store.safejson.read_json`:
    10,000 of these on a cold listing. None if absent; :class:`Corrupt` with why if damaged."""
    return safejson.read_json(path, kind)


def item_shape_ok(item: Any, n: int) -> bool:
    """A manifest entry as submit writes it: the keys every reader indexes, with their types.
    A hand-edited manifest fails here as Corrupt rather than as a KeyError deep in a reader."""
    return (
        isinstance(item, dict)
        and item.get("index") == n
        and isinstance(item.get("source"), str)
        and isinstance(item.get("path", ""), str)
        and isinstance(item.get("page"), int | None)
    )


def queue_places(jobs: Iterable[Job]) -> dict[str, int]:
    """Each queued job's place in line (1 = next): runners claim by priority (higher first), then the oldest."""
    waiting = sorted((j for j in jobs if j.status == JobStatus.QUEUED), key=lambda j: (-j.priority, j.created_at))
    return {j.id: n for n, j in enumerate(waiting, 1)}
