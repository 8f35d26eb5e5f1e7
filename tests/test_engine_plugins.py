"""Engine plug-ins through the real runner: only the documented interface is required, and an engine that
breaks after loading fails its job with one message instead of failing (or poisoning) its items one by one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from jobs.worker.core import WorkerCore
from tests.conftest import Runners, cli, cli_json, events, job, make_png
from tests.engines import BLUE


def _images(folder: Path, n: int) -> list[str]:
    return [str(make_png(folder / f"p{i}.png", (20 + i, 10 + i))) for i in range(n)]


@pytest.mark.slow
def test_a_duck_typed_engine_runs_and_a_worker_can_move_on_from_it(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    """DuckEngine has no device, max_batch, set_stop_check or close: its job succeeds, and the same worker
    then loads another engine for the next job (closing the duck engine, which has no close())."""
    duck = cli_json(state, "submit", *_images(tmp_path / "a", 3), "--engine", "tests.engines:DuckEngine")["id"]
    size = cli_json(state, "submit", *_images(tmp_path / "b", 2), "--engine", "tests.engines:SizeEngine")["id"]
    log = runners.run_once(state, "--workers", "1")
    shown = job(state, duck)
    assert shown["status"] == "succeeded", log
    out = tmp_path / "duck.json"
    cli(state, "export", duck, "-o", str(out))
    assert [r["text"] for r in json.loads(out.read_text())] == ["duck 20x10", "duck 21x11", "duck 22x12"]
    assert job(state, size)["status"] == "succeeded", log
    assert "has no attribute" not in log


@pytest.mark.slow
@pytest.mark.parametrize(
    ("engine", "says"),
    [
        ("tests.engines:TypeErrorEngine", "recognize() raised TypeError: recognize() missing 1 required"),
        ("tests.engines:WrongCountEngine", "recognize() returned 0 results for 1 images"),
    ],
)
def test_an_engine_broken_after_loading_fails_its_job_with_one_message(
    state: Path, tmp_path: Path, runners: Runners, engine: str, says: str
) -> None:
    job_id = cli_json(state, "submit", *_images(tmp_path / "in", 4), "--engine", engine)["id"]
    log = runners.run_once(state, "--workers", "2")
    shown = job(state, job_id)
    assert shown["status"] == "failed", log
    assert shown["error"].startswith(f"engine {engine!r} is broken: {says}"), shown["error"]
    assert "retry" in shown["error"]
    assert shown["progress"]["committed"] == 0  # no item carries the engine's fault
    names = [e["event"] for e in events(state, job_id)]
    assert "worker_crash" not in names and "item_committed" not in names
    assert "poison" not in log


def _task(task_id: int) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "engine": "tests.engines:TypeErrorOnBlueEngine",
        "engine_options": {},
        "items": [{"index": task_id, "source": f"p{task_id}.png"}],
        "retries": 0,
    }


def test_a_type_error_fails_the_job_only_before_the_engine_has_worked() -> None:
    """The same TypeError is the engine's fault on its first call (the job fails, no result) and the item's
    once the engine has read something (that item fails, the job goes on)."""
    white, blue = Image.new("RGB", (20, 10), "white"), Image.new("RGB", (21, 11), BLUE)
    sent: list[tuple[Any, ...]] = []
    core = WorkerCore("cpu")
    core.run_task(_task(1), lambda *m: sent.append(m), lambda: False, [white])
    core.run_task(_task(2), lambda *m: sent.append(m), lambda: False, [blue])
    results = [m[1] for m in sent if m[0] == "result"]
    assert [(r["status"], r["text"]) for r in results] == [("done", "20x10"), ("failed", "")]
    assert results[1]["error"] == {
        "kind": "engine",
        "message": "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'",
    }
    assert not [m for m in sent if m[0] == "load_error"]
    sent.clear()
    WorkerCore("cpu").run_task(_task(3), lambda *m: sent.append(m), lambda: False, [blue])
    assert [m[0] for m in sent if m[0] != "attempt"] == ["loading", "loaded", "started", "load_error"]
    assert sent[-1][1].startswith(
        "engine 'tests.engines:TypeErrorOnBlueEngine' is broken: recognize() raised TypeError"
    )


@pytest.mark.slow
def test_the_prefetch_thread_lets_the_engine_prepare_the_next_task(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    """An engine with the optional ``prepare(images)`` gets each next task's images on the worker's prefetch
    thread while it still recognises the task before; the first task (engine not loaded yet) goes without."""
    job_id = cli_json(
        state,
        "submit",
        *_images(tmp_path / "in", 10),
        "--engine",
        "tests.engines:PrepareEngine",
        "--engine-option",
        "batch=2",
        "--engine-option",
        "delay=0.4",
    )["id"]
    log = runners.run_once(state, "--workers", "1")
    assert job(state, job_id)["status"] == "succeeded", log
    out = tmp_path / "out.json"
    cli(state, "export", job_id, "-o", str(out))
    texts = [r["text"] for r in json.loads(out.read_text())]
    assert texts[0] == "not prepared" and set(texts) == {"not prepared", "prepared on prefetch"}, texts
    assert texts.count("prepared on prefetch") >= 6 and set(texts[-4:]) == {"prepared on prefetch"}, texts
