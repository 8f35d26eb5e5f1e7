"""Claims, leases and commits on a real job folder: many processes, one owner per job, fencing."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from jobs.errors import LeaseLost
from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from jobs.store.lease import claim_next, commit_item, finish, save
from jobs.store.status import JobStatus
from tests.conftest import make_png

SPEC = JobSpec(engine="tests.engines:SizeEngine")


@pytest.fixture
def png(tmp_path: Path) -> Path:
    return make_png(tmp_path / "in" / "a.png", (8, 8))


def _result(index: int, text: str) -> dict[str, object]:
    return {"index": index, "source": "a.png", "page": None, "status": "done", "text": text, "error": None}


def _claim_all(state: str, runner_id: str, go: object, out: str) -> None:
    """One claiming process: take jobs until none is left, and record which."""
    store = Store(state)
    go.wait(60)  # type: ignore[attr-defined]  # a barrier: all four start claiming together
    claimed = []
    while (claim := claim_next(store, runner_id, lease_s=600, max_attempts=5)) is not None:
        claimed.append(claim.job_id)
        time.sleep(0.002)  # a runner works between claims, which lets the others in
    Path(out).write_text(json.dumps(claimed))


@pytest.mark.slow
def test_four_processes_claim_each_of_200_jobs_exactly_once(state: Path, png: Path, tmp_path: Path) -> None:
    store = Store(state)
    ids = {submit(store, [png], SPEC) for _ in range(200)}
    ctx = mp.get_context("spawn")
    go = ctx.Barrier(4)
    outs = [tmp_path / f"claimed-{n}.json" for n in range(4)]
    procs = [ctx.Process(target=_claim_all, args=(str(state), f"runner-{n}", go, str(outs[n]))) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    claimed = [json.loads(o.read_text()) for o in outs]
    flat = [job_id for c in claimed for job_id in c]
    assert len(flat) == len(set(flat)) == 200
    assert set(flat) == ids
    assert all(claimed), [len(c) for c in claimed]  # the four really competed
    for n, c in enumerate(claimed):
        for job_id in c:
            job = store.get(job_id)
            assert job.status == JobStatus.RUNNING
            assert job.lease is not None and job.lease["runner"] == f"runner-{n}" and job.lease["epoch"] == 1
            assert [e["event"] for e in store.events(job_id)] == ["submitted", "claimed"]


def test_claims_take_the_highest_priority_first_then_the_oldest(state: Path, png: Path) -> None:
    store = Store(state)
    low_old = submit(store, [png], SPEC, priority=0)
    high_old = submit(store, [png], SPEC, priority=5)
    low_new = submit(store, [png], SPEC, priority=0)
    high_new = submit(store, [png], SPEC, priority=5)
    urgent = submit(store, [png], SPEC, priority=9)
    order = [claim_next(store, "r1", 60, 5) for _ in range(5)]
    assert [c.job_id for c in order if c] == [urgent, high_old, high_new, low_old, low_new]
    assert claim_next(store, "r1", 60, 5) is None


def test_an_expired_lease_is_reclaimed_with_the_next_epoch(state: Path, png: Path) -> None:
    store = Store(state)
    job_id = submit(store, [png], SPEC)
    first = claim_next(store, "old", lease_s=0.5, max_attempts=5)
    assert first is not None and first.epoch == 1
    assert claim_next(store, "new", lease_s=60, max_attempts=5) is None  # lease still live
    time.sleep(0.6)
    second = claim_next(store, "new", lease_s=60, max_attempts=5)
    assert second is not None and (second.job_id, second.epoch) == (job_id, 2)
    claimed = [e for e in store.events(job_id) if e["event"] == "claimed"]
    assert [e["epoch"] for e in claimed] == [1, 2]
    taken_over = claimed[1]["reclaimed_from"]
    assert taken_over["runner"] == "old" and taken_over["epoch"] == 1
    assert taken_over["expires_at"] <= claimed[1]["at"]
    assert store.get(job_id).lease["runner"] == "new"  # type: ignore[index]


def test_a_stale_lease_holder_can_no_longer_write(state: Path, png: Path) -> None:
    store = Store(state)
    job_id = submit(store, [png], SPEC)
    stale = claim_next(store, "old", lease_s=0.2, max_attempts=5)
    assert stale is not None
    time.sleep(0.3)
    current = claim_next(store, "new", lease_s=60, max_attempts=5)
    assert current is not None
    with pytest.raises(LeaseLost, match="epoch 1 of old is no longer current"):
        commit_item(store, stale, _result(0, "from the stale runner"))
    assert not store.result_path(job_id, 0).exists()
    with pytest.raises(LeaseLost):
        save(store, stale, renew=True)
    with pytest.raises(LeaseLost):
        finish(store, stale, JobStatus.SUCCEEDED)
    assert commit_item(store, current, _result(0, "from the current runner"))
    assert store.items(job_id)[0]["text"] == "from the current runner"
    state_now = store.read_state(job_id)
    assert state_now["status"] == "running" and state_now["lease"]["runner"] == "new"


def test_committing_an_index_twice_keeps_the_first_result(state: Path, png: Path) -> None:
    store = Store(state)
    job_id = submit(store, [png], SPEC)
    claim = claim_next(store, "r1", lease_s=60, max_attempts=5)
    assert claim is not None
    assert commit_item(store, claim, _result(0, "first")) is True
    assert commit_item(store, claim, _result(0, "second")) is False
    assert store.items(job_id)[0]["text"] == "first"
    assert claim.state["progress"]["done"] == 1  # state.json's copy is throttled; finish writes it exactly
    finish(store, claim, JobStatus.SUCCEEDED)
    assert store.read_state(job_id)["progress"]["done"] == 1
    names = [e["event"] for e in store.events(job_id)]
    assert names.count("item_committed") == 1 and names.count("duplicate_ignored") == 1
