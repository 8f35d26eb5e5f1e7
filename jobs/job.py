"""A job as readers see it: the immutable submission (job.json) merged with the runner-written state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jobs.status import JobStatus


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
