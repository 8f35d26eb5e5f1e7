"""Requests as any runner applies them to jobs nobody is running (the owner handles its own)."""

from __future__ import annotations

from pathlib import Path

from jobs.intake.submit import submit
from jobs.store import Store
from jobs.store.lease import claim_next, finish
from jobs.store.requests import apply_requests
from jobs.store.status import JobStatus
from tests.conftest import make_png


def test_delete_removes_a_queued_job_and_its_files(state: Path, tmp_path: Path) -> None:
    s = Store(state)
    job_id = submit(s, [make_png(tmp_path / "a.png")])
    s.request(job_id, "delete")
    assert apply_requests(s) == []
    assert s.job_ids() == [] and s.pending_requests() == []


def test_delete_of_a_running_job_waits_until_it_stops(state: Path, tmp_path: Path) -> None:
    s = Store(state)
    job_id = submit(s, [make_png(tmp_path / "a.png")])
    claim = claim_next(s, "r1", 30, 5)
    assert claim is not None
    s.request(job_id, "delete")
    mine = apply_requests(s, own_jobs={job_id})
    assert [r["kind"] for _, r in mine] == ["delete"]
    assert s.job_ids() == [job_id]  # the owner cancels first
    finish(s, claim, JobStatus.CANCELLED)
    apply_requests(s)
    assert s.job_ids() == []


def test_pause_then_resume_of_a_queued_job(state: Path, tmp_path: Path) -> None:
    s = Store(state)
    job_id = submit(s, [make_png(tmp_path / "a.png")])
    s.request(job_id, "pause")
    apply_requests(s)
    assert s.get(job_id).status == JobStatus.PAUSED
    assert claim_next(s, "r1", 30, 5) is None
    s.request(job_id, "resume")
    apply_requests(s)
    assert s.get(job_id).status == JobStatus.QUEUED


def test_an_impossible_request_is_dropped_with_an_event(state: Path, tmp_path: Path) -> None:
    s = Store(state)
    job_id = submit(s, [make_png(tmp_path / "a.png")])
    s.request(job_id, "resume")  # not paused
    apply_requests(s)
    assert s.get(job_id).status == JobStatus.QUEUED and s.pending_requests() == []
    assert [e["event"] for e in s.events(job_id)] == ["submitted", "request_ignored"]
