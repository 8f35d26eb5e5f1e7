"""The queue journal (jobs/store/queue_journal.py): claims and listings follow it, and lose nothing without it."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store, lease, queue_journal
from jobs.store.housekeeping import housekeep
from jobs.store.lease import claim_next, commit_item, finish
from jobs.store.requests import apply_requests
from jobs.store.status import JobStatus
from tests.conftest import make_png

SPEC = JobSpec(engine="tests.engines:SizeEngine")


@pytest.fixture
def png(tmp_path: Path) -> Path:
    return make_png(tmp_path / "in" / "a.png", (8, 8))


def _result(index: int) -> dict[str, object]:
    return {"index": index, "source": "a.png", "page": None, "status": "done", "text": "t", "error": None}


def _journal(state: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (state / queue_journal.NAME).read_text().splitlines()]


def test_jobs_submitted_after_the_runner_started_are_claimed_by_priority(state: Path, png: Path) -> None:
    runner = Store(state)
    assert claim_next(runner, "r1", 60, 5) is None  # the runner's first look: nothing queued
    low = submit(Store(state), [png], SPEC, priority=0)
    high = submit(Store(state), [png], SPEC, priority=5)
    urgent = submit(Store(state), [png], SPEC, priority=9)
    assert [e["id"] for e in _journal(state)] == [low, high, urgent]
    order = [claim_next(runner, "r1", 60, 5) for _ in range(3)]
    assert [c.job_id for c in order if c] == [urgent, high, low]
    assert claim_next(runner, "r1", 60, 5) is None


def test_retried_and_handed_back_jobs_are_claimed_again_without_a_rescan(state: Path, png: Path) -> None:
    other = Store(state)
    assert claim_next(other, "r2", 60, 5) is None  # a runner started first: its next rescan is 30 s away
    store = Store(state)
    failed, handed = submit(store, [png], SPEC), submit(store, [png], SPEC)
    claims = {c.job_id: c for c in (claim_next(store, "r1", 60, 5), claim_next(store, "r1", 60, 5)) if c}
    assert set(claims) == {failed, handed}
    assert claim_next(other, "r2", 60, 5) is None  # both running under a live lease
    finish(store, claims[failed], JobStatus.FAILED, "boom")
    assert claim_next(other, "r2", 60, 5) is None
    finish(store, claims[handed], JobStatus.QUEUED)  # a runner shutting down hands its job back
    back = claim_next(other, "r2", 60, 5)
    assert back is not None and (back.job_id, back.epoch) == (handed, 2)
    store.request(failed, "retry")
    apply_requests(store)
    again = claim_next(other, "r2", 60, 5)
    assert again is not None and (again.job_id, again.epoch) == (failed, 2)


def test_a_job_whose_journal_line_is_missing_is_claimed_at_the_next_rescan(
    state: Path, png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_journal, "RESCAN_S", 0.5)
    runner = Store(state)
    assert claim_next(runner, "r1", 60, 5) is None
    job_id = submit(Store(state), [png], SPEC)
    (state / queue_journal.NAME).unlink()  # as if the submit died between its rename and its append
    assert claim_next(runner, "r1", 60, 5) is None  # not followed: the folder is rescanned later
    time.sleep(0.6)
    claim = claim_next(runner, "r1", 60, 5)
    assert claim is not None and claim.job_id == job_id


def test_compaction_keeps_only_queued_jobs_and_runners_follow_the_new_file(
    state: Path, png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_journal, "COMPACT_MIN_BYTES", 1000)
    store = Store(state)
    ids = [submit(store, [png], SPEC) for _ in range(12)]
    runner, dashboard = Store(state), Store(state)
    assert len(dashboard.list_jobs()) == 12
    for _ in range(10):
        claim = claim_next(runner, "r1", 60, 5)
        assert claim is not None
        finish(runner, claim, JobStatus.SUCCEEDED)
    before = (state / queue_journal.NAME).stat().st_size
    housekeep(Store(state), retention_days=7)
    assert (state / queue_journal.NAME).stat().st_size < before
    assert {e["id"] for e in _journal(state)} == set(ids[10:])  # the two still queued
    late = submit(store, [png], SPEC)  # appended to the new file; the runner notices the replacement
    claimed = {c.job_id for c in (claim_next(runner, "r1", 60, 5) for _ in range(4)) if c}
    assert claimed == {*ids[10:], late}
    listed = {j.id: j.status for j in dashboard.list_jobs()}
    assert listed[late] == JobStatus.RUNNING and listed[ids[0]] == JobStatus.SUCCEEDED


def test_listing_shows_a_change_at_once_and_an_unjournaled_one_within_its_rounds(state: Path, png: Path) -> None:
    store = Store(state)
    ids = [submit(store, [png], SPEC) for _ in range(3)]
    dashboard = Store(state)
    assert {j.status for j in dashboard.list_jobs()} == {JobStatus.QUEUED}
    claim = claim_next(Store(state), "r1", 60, 5)
    assert claim is not None
    assert dashboard.get(claim.job_id).status == JobStatus.RUNNING
    assert {j.id for j in dashboard.list_jobs({JobStatus.RUNNING})} == {claim.job_id}
    # A hand edit (no journal line) is found by the rotating stat check.
    other = next(i for i in ids if i != claim.job_id)
    (state / "jobs" / other / "state.json").write_text(json.dumps({"status": "paused"}))
    assert dashboard.list_jobs({JobStatus.PAUSED})[0].id == other


def test_progress_on_disk_is_throttled_but_exact_at_finish(state: Path, png: Path) -> None:
    store = Store(state)
    job_id = submit(store, [png] * 6, SPEC)
    claim = claim_next(store, "r1", 60, 5)
    assert claim is not None
    for i in range(3):
        assert commit_item(store, claim, _result(i))
    time.sleep(lease.PROGRESS_EVERY_S + 0.05)
    assert commit_item(store, claim, _result(3))  # the first commit after the interval writes state.json
    assert store.read_state(job_id)["progress"]["done"] == 4
    assert commit_item(store, claim, _result(4)) and commit_item(store, claim, _result(5))
    finish(store, claim, lease.final_status(claim.state["progress"]))
    shown = store.get(job_id).progress()
    assert (shown["done"], shown["committed"], store.get(job_id).status) == (6, 6, JobStatus.SUCCEEDED)
    assert [r["index"] for r in store.iter_results(job_id)] == list(range(6))


def _claim_until_stopped(state: str, runner_id: str, stop: str, out: str) -> None:
    """A claiming process started before any job exists: everything it gets comes through the journal."""
    store = Store(state)
    claimed = []
    while True:
        stopping = Path(stop).exists()  # looked at first: every job was submitted before it appeared
        claim = claim_next(store, runner_id, lease_s=600, max_attempts=5)
        if claim is not None:
            claimed.append(claim.job_id)
            finish(store, claim, JobStatus.SUCCEEDED)
        elif stopping:
            break
        else:
            time.sleep(0.005)
    Path(out).write_text(json.dumps(claimed))


@pytest.mark.slow
def test_two_runner_processes_claim_each_journaled_job_exactly_once(state: Path, png: Path, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    stop, outs = tmp_path / "stop", [tmp_path / f"claimed-{n}.json" for n in range(2)]
    procs = [
        ctx.Process(target=_claim_until_stopped, args=(str(state), f"r{n}", str(stop), str(outs[n]))) for n in range(2)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # both are polling an empty queue
    store = Store(state)
    ids = {submit(store, [png], SPEC) for _ in range(60)}
    stop.touch()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    claimed = [json.loads(o.read_text()) for o in outs]
    flat = [job_id for c in claimed for job_id in c]
    assert sorted(flat) == sorted(ids)  # each once, none lost
    assert {j.status for j in store.list_jobs()} == {JobStatus.SUCCEEDED}


def test_a_lock_held_elsewhere_times_out_with_a_message_naming_it(
    state: Path, png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs import config
    from jobs.errors import StoreBusy

    store = Store(state)
    job_id = submit(store, [png], SPEC)
    monkeypatch.setattr(config, "LOCK_TIMEOUT_S", 0.3)
    with store.lock(job_id, timeout=5):  # filelock's FileLock, as another process would hold it
        started = time.monotonic()
        with pytest.raises(StoreBusy, match=f"job {job_id} stayed locked .*job.lock; check for a hung runner"):
            with store.locked(job_id):
                pass
        assert 0.3 <= time.monotonic() - started < 2
    with store.locked(job_id):  # free again
        assert store.get(job_id).status == JobStatus.QUEUED
