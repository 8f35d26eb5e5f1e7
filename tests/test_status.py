"""The job lifecycle table: every allowed move works, every other one is refused."""

from __future__ import annotations

import itertools

import pytest

from jobs.errors import InvalidTransition
from jobs.store.status import TERMINAL, TRANSITIONS, JobStatus, transition

ALLOWED = {
    ("queued", "running"), ("queued", "paused"), ("queued", "cancelled"),
    ("running", "running"), ("running", "queued"), ("running", "paused"), ("running", "cancelled"),
    ("running", "succeeded"), ("running", "failed"), ("running", "completed_with_errors"),
    ("paused", "queued"), ("paused", "cancelled"),
    ("failed", "queued"), ("completed_with_errors", "queued"), ("cancelled", "queued"),
    ("succeeded", "queued"),
}  # fmt: skip


@pytest.mark.parametrize("current,target", list(itertools.product([s.value for s in JobStatus], repeat=2)))
def test_transition_follows_the_table(current: str, target: str) -> None:
    if (current, target) in ALLOWED:
        assert transition(current, target) == JobStatus(target)
    else:
        with pytest.raises(InvalidTransition, match=f"a {current} job cannot become {target}"):
            transition(current, target)


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(JobStatus)


def test_no_terminal_status_goes_straight_back_to_running() -> None:
    for status in TERMINAL:
        assert JobStatus.RUNNING not in TRANSITIONS[status]


def test_statuses_serialise_as_plain_strings() -> None:
    import json

    assert json.dumps({"s": JobStatus.COMPLETED_WITH_ERRORS}) == '{"s": "completed_with_errors"}'
