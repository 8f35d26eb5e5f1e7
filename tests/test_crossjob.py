"""Same-engine batching across jobs (issue 18): items of several held jobs with the same engine share one
call of a batching engine, and every result still lands in its own job, once, fenced by its own epoch.

Real ``runner.py`` processes; tests/engines.py's BatchEngine answers each image with its size, so a
result routed to the wrong job (or the wrong index) shows up as the wrong text."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Runners, events, make_png
from tests.engines import BLUE
from tests.test_batching import job_results
from tests.test_runner import commits_per_index, exported, submit, wait_status

pytestmark = pytest.mark.slow

BATCH = "tests.engines:BatchEngine"


def sized(folder: Path, job: int, n: int, markers: dict[int, tuple[int, int, int]] | None = None) -> list[Path]:
    """Job ``job``'s ``n`` images, each sized so that its text names the job and the index."""
    return [make_png(folder / f"p{i}.png", size(job, i), (markers or {}).get(i)) for i in range(n)]


def size(job: int, i: int) -> tuple[int, int]:
    return (20 + 10 * job + i, 10 + i)


def texts(job: int, n: int) -> list[str]:
    return ["{}x{}".format(*size(job, i)) for i in range(n)]


def test_small_jobs_with_the_same_engine_share_a_batch_and_each_result_lands_in_its_own_job(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    ids = [
        submit(state, sized(tmp_path / f"j{k}", k, 3), "--engine", BATCH, "--engine-option", "batch=8")
        for k in range(4)
    ]
    runners.run_once(state, "--workers", "1")

    sizes = []
    for k, job_id in enumerate(ids):
        rows = exported(state, job_id, tmp_path)
        assert [r["text"] for r in rows] == texts(k, 3), (k, rows)
        assert {r["status"] for r in rows} == {"done"}
        assert commits_per_index(state, job_id) == Counter(range(3))
        sizes += [r["batch_size"] for r in job_results(state, job_id)]
    # no job has more than 3 items: a call of more than 3 images held items of several jobs
    assert max(sizes) > 3, sizes


def test_jobs_with_other_engine_options_never_share_a_batch(state: Path, tmp_path: Path, runners: Runners) -> None:
    a = submit(state, sized(tmp_path / "a", 0, 3), "--engine", BATCH, "--engine-option", "batch=8")
    b = submit(state, sized(tmp_path / "b", 1, 3), "--engine", BATCH, "--engine-option", "batch=8",
               "--engine-option", "delay=0.01")
    runners.run_once(state, "--workers", "1")

    for k, job_id in enumerate((a, b)):
        assert [r["text"] for r in exported(state, job_id, tmp_path)] == texts(k, 3)
        assert max(r["batch_size"] for r in job_results(state, job_id)) <= 3


def test_a_crash_in_a_shared_batch_is_charged_to_the_item_that_caused_it_in_its_own_job(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    good = submit(state, sized(tmp_path / "good", 0, 4), "--engine", BATCH, "--engine-option", "batch=8")
    bad = submit(state, sized(tmp_path / "bad", 1, 4, {2: BLUE}), "--engine", BATCH, "--engine-option", "batch=8")
    runners.start(state, "--workers", "1")
    for job_id in (good, bad):
        wait_status(state, job_id, "completed_with_errors", "succeeded", "failed", timeout=90)

    assert [r["status"] for r in exported(state, good, tmp_path)] == ["done"] * 4
    assert [r["text"] for r in exported(state, good, tmp_path)] == texts(0, 4)
    rows = exported(state, bad, tmp_path)
    assert [r["status"] for r in rows] == ["done", "done", "failed", "done"]
    assert rows[2]["error_kind"] == "crash" and "poison" in rows[2]["error"]
    assert not [e for e in events(state, good) if e["event"] == "worker_crash"]  # never charged to the other job
    for job_id in (good, bad):
        assert commits_per_index(state, job_id) == Counter(range(4))


def test_a_shared_task_reads_each_item_from_the_job_folder_the_runner_named() -> None:
    from jobs.worker.batch import item_jobs

    items = [{"index": 0, "source": "a.png", "job_dir": "/etc"}, {"index": 0, "source": "b.png"}]
    parts = [{"job_id": "j1", "job_dir": "/s/j1", "count": 1}, {"job_id": "j2", "job_dir": "/s/j2", "count": 1}]
    assert item_jobs({"items": items, "parts": parts}) == [("j1", Path("/s/j1")), ("j2", Path("/s/j2"))]
    assert item_jobs({"items": items[:1], "job_dir": "/s/j1"}) == [(None, Path("/s/j1"))]
    with pytest.raises(ValueError, match="parts count 2 items, it has 1"):
        item_jobs({"items": items[:1], "parts": parts, "task_id": 7})
