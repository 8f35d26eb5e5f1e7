"""Batches and prefetch: an engine that takes several images per call, through the real runner.

The runner sends each worker tasks of up to the engine's ``max_batch`` items and keeps one task
queued behind the running one, which the worker decodes meanwhile. A failure inside a batch must
land on the item that caused it, never on its neighbours.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from jobs.runner.pool import InFlight, WorkerHandle
from tests.conftest import Runners, events, job, make_png
from tests.engines import BLUE, RED, YELLOW
from tests.test_runner import commits_per_index, exported, pngs, submit, text, wait_status

pytestmark = pytest.mark.slow

BATCH = "tests.engines:BatchEngine"


def test_items_go_to_the_engine_in_batches_and_each_gets_its_own_result(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 10), "--engine", BATCH, "--engine-option", "batch=4")
    runners.run_once(state, "--workers", "1")

    rows = exported(state, job_id, tmp_path)
    assert [r["text"] for r in rows] == [text(i) for i in range(10)]
    assert {r["status"] for r in rows} == {"done"}
    sizes = [r["batch_size"] for r in job_results(state, job_id)]
    # the first item goes alone (the engine's batch size is known once it is loaded), then batches of 4
    assert sizes == [1, 4, 4, 4, 4, 4, 4, 4, 4, 1], sizes
    assert commits_per_index(state, job_id) == Counter(range(10))


def test_an_exception_in_one_slot_fails_that_item_only(state: Path, tmp_path: Path, runners: Runners) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 6, {3: YELLOW}), "--engine", BATCH, "--engine-option", "batch=3")
    runners.run_once(state, "--workers", "1")

    rows = exported(state, job_id, tmp_path)
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed", "done", "done"]
    assert rows[3]["error_kind"] == "engine" and "out of memory on 23x13" in rows[3]["error"]
    assert job(state, job_id)["status"] == "completed_with_errors"


def test_a_crash_inside_a_batch_is_pinned_on_the_item_that_caused_it(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 8, {5: BLUE}), "--engine", BATCH, "--engine-option", "batch=4")
    runners.start(state, "--workers", "1")
    wait_status(state, job_id, "completed_with_errors", "succeeded", "failed", timeout=60)

    rows = exported(state, job_id, tmp_path)
    assert [r["status"] for r in rows] == ["done"] * 5 + ["failed"] + ["done"] * 2
    assert rows[5]["error_kind"] == "crash" and "poison" in rows[5]["error"]
    log = events(state, job_id)
    suspects = [e["indices"] for e in log if e["event"] == "batch_crash"]
    assert suspects and all(5 in s for s in suspects), suspects  # neighbours were suspects, never charged
    charged = [(e["index"], e["crashes"]) for e in log if e["event"] == "worker_crash"]
    assert charged == [(5, 1), (5, 2)]
    assert commits_per_index(state, job_id) == Counter(range(8))


def test_a_batch_past_its_deadline_is_tried_again_item_by_item(state: Path, tmp_path: Path, runners: Runners) -> None:
    files = pngs(tmp_path / "in", 6, {4: RED})
    job_id = submit(state, files, "--engine", BATCH, "--engine-option", "batch=3", "--item-timeout", "1")
    runners.start(state, "--workers", "1", "--grace-seconds", "1")
    wait_status(state, job_id, "completed_with_errors", "succeeded", "failed", timeout=60)

    rows = exported(state, job_id, tmp_path)
    assert [r["status"] for r in rows] == ["done"] * 4 + ["timed_out", "done"]
    assert [r["text"] for r in rows if r["status"] == "done"] == [text(i) for i in (0, 1, 2, 3, 5)]
    timed_out = [e["indices"] for e in events(state, job_id) if e["event"] == "batch_timed_out"]
    assert timed_out and 4 in timed_out[0]


def test_the_worker_decodes_the_next_task_while_the_engine_runs(tmp_path: Path) -> None:
    """Prefetch, seen on the wire: task 2's inputs are read before task 1's results come back."""
    job_dir = tmp_path / "job"
    (job_dir / "inputs").mkdir(parents=True)
    items = []
    for i in range(2):
        make_png(job_dir / "inputs" / f"{i}.png", (30 + i, 10))
        items.append({"index": i, "source": f"{i}.png", "path": f"inputs/{i}.png", "page": None, "kind": "image"})
    worker = WorkerHandle(0, "cpu", 0.5)
    try:
        for task_id, item in enumerate(items, 1):
            payload = {
                "task_id": task_id,
                "job_dir": str(job_dir),
                "items": [item],
                "engine": BATCH,
                "engine_options": {"delay": 1.0},
                "dpi": 150,
                "retries": 0,
            }
            worker.send_task(InFlight("job", task_id, [item], 1, 30.0), payload)
        seen: list[tuple[object, ...]] = []
        deadline = time.monotonic() + 60
        while sum(m[0] == "result" for m in seen) < 2 and time.monotonic() < deadline:
            seen += [(m[0], m[1] if m[0] != "result" else m[1]["index"]) for m in worker.messages()]
            time.sleep(0.02)
    finally:
        worker.stop()
    wire = [m for m in seen if m[0] in ("decoded", "started", "result")]
    assert wire.index(("decoded", 2)) < wire.index(("result", 0)), wire
    assert wire[-2:] == [("started", 2), ("result", 1)], wire


def job_results(state: Path, job_id: str) -> list[dict[str, object]]:
    from jobs.store import Store

    return list(Store(state).iter_results(job_id))
