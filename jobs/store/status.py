"""Job and item statuses, and the one table that says which job transitions are allowed.

Every status change in the system goes through :func:`transition`, so the lifecycle is
written down exactly once (see docs/architecture.md for the same table in prose).
"""

from __future__ import annotations

from enum import StrEnum

from jobs.errors import InvalidTransition


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)


TERMINAL = frozenset({JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.COMPLETED_WITH_ERRORS})

#: The whole lifecycle. RUNNING -> RUNNING is a reclaim of an expired lease (epoch + 1);
#: RUNNING -> QUEUED is a runner handing its job back on shutdown; terminal -> QUEUED is a retry.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.RUNNING,
            JobStatus.QUEUED,
            JobStatus.PAUSED,
            JobStatus.CANCELLED,
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.COMPLETED_WITH_ERRORS,
        }
    ),
    JobStatus.PAUSED: frozenset({JobStatus.QUEUED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset({JobStatus.QUEUED}),  # retry, only when a result went bad (jobs/store/requests.py)
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.COMPLETED_WITH_ERRORS: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def transition(current: JobStatus | str, target: JobStatus | str) -> JobStatus:
    """Return ``target`` if the table allows ``current -> target``; raise otherwise."""
    current, target = JobStatus(current), JobStatus(target)
    if not can_transition(current, target):
        raise InvalidTransition(f"a {current.value} job cannot become {target.value}")
    return target


class ItemStatus(StrEnum):
    """Status of one committed item. An item with no result file is pending."""

    DONE = "done"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class ErrorKind(StrEnum):
    INPUT = "input"  # the file itself is bad: never retried
    ENGINE = "engine"  # recognize() raised: retried with backoff
    TIMEOUT = "timeout"  # hard item timeout: worker killed
    CRASH = "crash"  # worker died or stopped heartbeating: poison after 2
    LOAD = "load"  # the engine could not be loaded at all
