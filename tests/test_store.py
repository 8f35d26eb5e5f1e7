"""The job folder: atomic writes, client-only-adds, quarantine, cheap listing, housekeeping."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store, atomic
from jobs.store import store as store_mod
from jobs.store.housekeeping import housekeep
from jobs.store.lease import claim_next, commit_item, finish
from jobs.store.status import JobStatus
from tests.conftest import cli, cli_json, make_png


@pytest.fixture
def png(tmp_path: Path) -> Path:
    return make_png(tmp_path / "in" / "a.png")


def test_atomic_write_leaves_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic.atomic_write_json(target, {"a": 1})
    atomic.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["x.json"]


def test_atomic_write_failure_keeps_the_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic.atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic.atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_submit_writes_a_complete_job_and_no_execution_state(state: Path, png: Path) -> None:
    s = Store(state)
    job_id = submit(s, [png], JobSpec(engine="tests.engines:SizeEngine"))
    d = state / "jobs" / job_id
    assert sorted(p.name for p in d.iterdir()) == ["events.jsonl", "inputs", "job.json", "job.lock", "manifest.json"]
    assert [e["event"] for e in s.events(job_id)] == ["submitted"]
    assert s.get(job_id).status == JobStatus.QUEUED
    assert not [p for p in (state / "jobs").iterdir() if p.name.startswith(".tmp-")]


def test_failed_submit_leaves_nothing_behind(state: Path, png: Path) -> None:
    proc = cli(state, "submit", str(png), str(png.parent / "missing.png"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: cannot read {png.parent / 'missing.png'}: no such file"]
    assert list((state / "jobs").iterdir()) == []


def test_corrupt_job_json_is_quarantined_and_list_still_works(state: Path, png: Path) -> None:
    good = cli_json(state, "submit", str(png))["id"]
    bad = cli_json(state, "submit", str(png))["id"]
    (state / "jobs" / bad / "job.json").write_text("{ half written")
    listed = cli_json(state, "list")
    assert [j["id"] for j in listed] == [good]
    assert not (state / "quarantine").exists()  # a reader moves nothing
    Store(state).as_runner().list_jobs()  # a runner sets the damaged file aside, only that file
    moved = [p.name for p in (state / "quarantine").iterdir()]
    assert any(name.endswith(f"{bad}__job.json") for name in moved)
    assert (state / "jobs" / bad / "manifest.json").exists()
    reason = next((state / "quarantine").glob("*.reason.txt")).read_text()
    assert "job.json unreadable" in reason


def test_corrupt_state_json_requeues_the_job_and_keeps_results(state: Path, png: Path) -> None:
    s = Store(state)
    job_id = submit(s, [png, png], JobSpec(engine="tests.engines:SizeEngine"))
    claim = claim_next(s, "r1", 30, 5)
    assert claim is not None
    commit_item(s, claim, {"index": 0, "source": "a.png", "status": "done", "text": "hi"})
    (state / "jobs" / job_id / "state.json").write_text("[1, 2")
    job = Store(state).get(job_id)
    assert job.status == JobStatus.QUEUED
    assert [r["index"] for r in s.iter_results(job_id)] == [0]
    again = claim_next(s, "r2", 30, 5)
    assert again is not None and again.state["progress"]["done"] == 1


def test_corrupt_result_is_quarantined_and_the_item_becomes_pending(state: Path, png: Path) -> None:
    s = Store(state)
    job_id = submit(s, [png], JobSpec(engine="tests.engines:SizeEngine"))
    claim = claim_next(s, "r1", 30, 5)
    assert claim is not None
    commit_item(s, claim, {"index": 0, "source": "a.png", "status": "done", "text": "hi"})
    s.result_path(job_id, 0).write_text("garbage")
    assert [i["status"] for i in Store(state).items(job_id)] == ["pending"]
    assert not (state / "quarantine").exists()  # a reader moves nothing
    assert [i["status"] for i in s.items(job_id)] == ["pending"]  # s claimed: a runner's store
    assert any("000000.json" in p.name for p in (state / "quarantine").iterdir())


def test_listing_reparses_only_files_that_changed(state: Path, png: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store(state)
    ids = [submit(s, [png]) for _ in range(20)]
    s.list_jobs()
    parsed: list[Path] = []
    real = store_mod.read_json

    def counting(path: Path, **kw: object) -> object:
        parsed.append(path)
        return real(path, **kw)

    monkeypatch.setattr(store_mod, "read_json", counting)
    assert len(s.list_jobs()) == 20
    assert parsed == []
    claim = claim_next(Store(state), "r1", 30, 5)
    assert claim is not None
    parsed.clear()
    s.list_jobs()
    assert parsed == [state / "jobs" / claim.job_id / "state.json"]
    assert claim.job_id == ids[0]


def test_requests_are_new_files_and_never_touch_job_state(state: Path, png: Path) -> None:
    job_id = cli_json(state, "submit", str(png))["id"]
    out = cli_json(state, "cancel", job_id)
    assert out == {"id": job_id, "requested": "cancel"}
    assert not (state / "jobs" / job_id / "state.json").exists()
    shown = cli_json(state, "show", job_id)
    assert shown["status"] == "queued" and shown["requests_pending"] == ["cancel"]


def test_unknown_job_is_one_clear_line(state: Path) -> None:
    proc = cli(state, "show", "nope", check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"error: no job with id 'nope' (see `ocrjobs list`); job folder: {state.resolve()}\n"


def _finish(s: Store, status: JobStatus) -> str:
    claim = claim_next(s, "r1", 30, 5)
    assert claim is not None
    finish(s, claim, status)
    return claim.job_id


def test_housekeeping_deletes_old_terminal_jobs_only(state: Path, png: Path) -> None:
    s = Store(state)
    done_id = submit(s, [png])
    _finish(s, JobStatus.SUCCEEDED)
    queued_id = submit(s, [png])
    running_id = submit(s, [png])
    claim_next(s, "r1", 30, 5)  # claims queued_id (oldest); leave it running
    later = time.time() + 8 * 86400
    removed = housekeep(s, retention_days=7, now=later)
    assert removed["jobs"] == 1
    assert sorted(s.job_ids()) == sorted([queued_id, running_id])
    assert not (state / "jobs" / done_id).exists()


def test_housekeeping_keeps_recent_terminal_jobs_and_sweeps_stale_temp(state: Path, png: Path) -> None:
    s = Store(state)
    job_id = submit(s, [png])
    _finish(s, JobStatus.CANCELLED)
    stale = state / "jobs" / ".tmp-20200101-000000-abc"
    stale.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    fresh = state / "jobs" / ".tmp-fresh"
    fresh.mkdir()
    removed = housekeep(s, retention_days=7)
    assert removed == {"jobs": 0, "temp": 1, "runners": 0}
    assert (state / "jobs" / job_id).exists() and fresh.exists() and not stale.exists()


def test_housekeeping_forgets_runners_silent_for_a_day(state: Path) -> None:
    s = Store(state)
    (s.runners_dir / "history").mkdir()
    for name, age in (("dead", 2 * 86400), ("recent", 60)):
        (s.runners_dir / f"{name}.json").write_text(json.dumps({"id": name, "heartbeat_at": time.time() - age}))
        (s.runners_dir / "history" / f"{name}.json").write_text("{}")
    assert housekeep(s, retention_days=7)["runners"] == 1
    assert [r["id"] for r in s.runners()] == ["recent"]
    assert [p.name for p in (s.runners_dir / "history").iterdir()] == ["recent.json"]
