"""The runner daemon end to end: real runner.py processes, real worker subprocesses, test engines.

Each test submits through the CLI, runs one or two runners, and checks what a user sees:
``show --json``, the export, and the job's event log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from jobs.store import Store
from tests.conftest import Runners, cli, cli_json, events, job, make_png, wait_for
from tests.engines import BLUE, RED

pytestmark = pytest.mark.slow

SIZE = "tests.engines:SizeEngine"


def pngs(folder: Path, n: int, markers: dict[int, tuple[int, int, int]] | None = None) -> list[Path]:
    """``n`` images, image ``i`` sized (20+i)x(10+i) so its text names it, some colour-marked."""
    markers = markers or {}
    return [make_png(folder / f"p{i:02d}.png", size(i), markers.get(i)) for i in range(n)]


def size(i: int) -> tuple[int, int]:
    return (20 + i, 10 + i)


def text(i: int) -> str:
    return "{}x{}".format(*size(i))


def submit(state: Path, files: list[Path], *args: str) -> str:
    return cli_json(state, "submit", *map(str, files), *args)["id"]


def status(state: Path, job_id: str) -> str:
    """The job's status read straight from the store (cheaper than a CLI process while polling)."""
    return Store(state).read_state(job_id).get("status", "queued")


def wait_status(state: Path, job_id: str, *wanted: str, timeout: float = 30) -> None:
    wait_for(lambda: status(state, job_id) in wanted, timeout, what=f"job {job_id} to become {'/'.join(wanted)}")


def committed(state: Path, job_id: str) -> int:
    rdir = state / "jobs" / job_id / "results"
    return len(list(rdir.glob("[0-9]*.json"))) if rdir.is_dir() else 0


def exported(state: Path, job_id: str, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / f"{job_id}.json"
    cli(state, "export", job_id, "--format", "json", "-o", str(out))
    return json.loads(out.read_text())


def commits_per_index(state: Path, job_id: str) -> Counter[int]:
    return Counter(e["index"] for e in events(state, job_id) if e["event"] == "item_committed")


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def exit_within(runners: Runners, proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"runner still running after {timeout} s:\n{runners.log(proc)}") from None


def test_a_killed_runners_job_is_taken_over_after_its_lease_expires(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 30), "--engine", SIZE, "--engine-option", "delay=0.3")
    first = runners.start(state, "--lease-seconds", "3")
    wait_for(lambda: committed(state, job_id) >= 10, 60, what="10 committed items")
    heartbeat = json.loads(next((state / "runners").glob("*.json")).read_text())
    os.kill(first.pid, signal.SIGKILL)  # the runner only: its workers notice on their own
    first.wait(10)
    killed_at = time.time()
    assert status(state, job_id) == "running"  # orphaned: its lease still names the dead runner
    second = runners.start(state, "--lease-seconds", "3")
    wait_status(state, job_id, "succeeded", timeout=60)

    shown = job(state, job_id)
    assert shown["status"] == "succeeded" and shown["lease"] is None
    assert (shown["progress"]["done"], shown["progress"]["committed"]) == (30, 30)
    assert commits_per_index(state, job_id) == Counter(range(30))
    assert [r["text"] for r in exported(state, job_id, tmp_path)] == [text(i) for i in range(30)]

    claims = [e for e in events(state, job_id) if e["event"] == "claimed"]
    assert [c["epoch"] for c in claims] == [1, 2]
    takeover = claims[1]
    assert takeover["runner"] != claims[0]["runner"] and takeover["resume_from"] >= 10
    assert takeover["reclaimed_from"]["runner"] == claims[0]["runner"]
    assert takeover["reclaimed_from"]["expires_at"] <= takeover["at"]  # only once the lease had expired
    assert takeover["at"] - killed_at <= 3 + 2 + 5  # ... and soon after (lease + idle poll + slack)
    assert second.poll() is None  # still serving
    orphans = [psutil.Process(w["pid"]) for w in heartbeat["workers"] if psutil.pid_exists(w["pid"])]
    wait_for(lambda: all(gone(p) for p in orphans), 10, what="the killed runner's workers to exit")


def test_a_hung_item_times_out_and_the_rest_of_the_job_goes_on(state: Path, tmp_path: Path, runners: Runners) -> None:
    files = pngs(tmp_path / "in", 4, {1: RED})
    job_id = submit(state, files, "--engine", "tests.engines:HangEngine", "--item-timeout", "2")
    runners.start(state)
    wait_status(state, job_id, "completed_with_errors", "succeeded", "failed", timeout=40)

    shown = job(state, job_id)
    assert shown["status"] == "completed_with_errors"
    assert (shown["progress"]["done"], shown["progress"]["timed_out"]) == (3, 1)
    rows = exported(state, job_id, tmp_path)
    assert [r["status"] for r in rows] == ["done", "timed_out", "done", "done"]
    assert rows[1]["error_kind"] == "timeout" and "item timeout" in rows[1]["error"]
    assert [rows[i]["text"] for i in (0, 2, 3)] == [text(0), text(2), text(3)]
    # decided at item_timeout + grace (3 s by default): after the timeout, well within timeout + 5 s
    assert 2000 <= rows[1]["processing_time_ms"] <= 7000
    at = {e["index"]: e["at"] for e in events(state, job_id) if e["event"] == "item_committed"}
    assert 2 <= at[1] - at[0] <= 2 + 5  # item 1 started when item 0 was committed


def test_an_item_that_crashes_its_worker_twice_is_set_aside_as_poison(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 3, {1: BLUE}), "--engine", "tests.engines:CrashEngine")
    runners.start(state)
    wait_status(state, job_id, "completed_with_errors", "succeeded", "failed", timeout=40)

    shown = job(state, job_id)
    assert shown["status"] == "completed_with_errors"
    assert (shown["progress"]["done"], shown["progress"]["failed"]) == (2, 1)
    rows = exported(state, job_id, tmp_path)
    assert [r["status"] for r in rows] == ["done", "failed", "done"]
    assert rows[1]["error_kind"] == "crash" and "poison" in rows[1]["error"]
    crashes = [e for e in events(state, job_id) if e["event"] == "worker_crash"]
    assert [(e["index"], e["crashes"]) for e in crashes] == [(1, 1), (1, 2)]
    assert commits_per_index(state, job_id) == Counter(range(3))


def test_sigterm_hands_the_job_back_and_another_runner_finishes_it(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 20), "--engine", SIZE, "--engine-option", "delay=0.3")
    first = runners.start(state)
    wait_for(lambda: committed(state, job_id) >= 3, 30, what="3 committed items")
    os.kill(first.pid, signal.SIGTERM)
    assert exit_within(runners, first, 6) == 0
    shown = job(state, job_id)
    assert shown["status"] == "queued" and shown["lease"] is None
    assert 3 <= shown["progress"]["committed"] < 20
    assert events(state, job_id)[-1]["event"] == "queued"

    runners.start(state)
    wait_status(state, job_id, "succeeded", timeout=30)
    assert commits_per_index(state, job_id) == Counter(range(20))
    assert [r["text"] for r in exported(state, job_id, tmp_path)] == [text(i) for i in range(20)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "systemd-stop"])
def test_a_stop_signal_to_the_process_group_does_not_blame_the_item(
    state: Path, tmp_path: Path, runners: Runners, sig: signal.Signals
) -> None:
    """Ctrl-C in a terminal, or systemd stopping the service, signals the workers too."""
    job_id = submit(state, pngs(tmp_path / "in", 10), "--engine", SIZE, "--engine-option", "delay=1")
    first = runners.start(state)
    wait_for(lambda: committed(state, job_id) >= 1, 30, what="a committed item")
    os.killpg(first.pid, sig)
    assert exit_within(runners, first, 6) == 0
    assert status(state, job_id) == "queued"
    names = [e["event"] for e in events(state, job_id)]
    assert "worker_crash" not in names and "item_retry" not in names, names
    assert not Store(state).read_state(job_id).get("item_crashes")


def test_cancel_stops_a_running_job_within_the_grace(state: Path, tmp_path: Path, runners: Runners) -> None:
    files = pngs(tmp_path / "in", 2)
    job_id = submit(state, files, "--engine", SIZE, "--engine-option", "delay=30", "--item-timeout", "60")
    runner = runners.start(state, "--grace-seconds", "1")
    wait_status(state, job_id, "running")
    time.sleep(1)  # the first item is in its worker now
    asked = time.monotonic()
    cli(state, "cancel", job_id)
    wait_status(state, job_id, "cancelled", timeout=1 + 5)
    assert time.monotonic() - asked <= 1 + 5
    shown = job(state, job_id)
    assert shown["lease"] is None and shown["progress"]["committed"] == 0
    assert shown["requests_pending"] == []
    assert "request_ignored" not in [e["event"] for e in events(state, job_id)]
    assert runner.poll() is None  # the runner itself goes on


def test_pause_stops_at_an_item_boundary_and_resume_completes_the_job(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 12), "--engine", SIZE, "--engine-option", "delay=0.3")
    runners.start(state)
    wait_for(lambda: committed(state, job_id) >= 2, 30, what="2 committed items")
    cli(state, "pause", job_id)
    wait_status(state, job_id, "paused", timeout=10)
    held = job(state, job_id)
    assert held["lease"] is None and held["progress"]["committed"] < 12
    time.sleep(1)
    assert committed(state, job_id) == held["progress"]["committed"]  # nothing runs while paused

    cli(state, "resume", job_id)
    wait_status(state, job_id, "succeeded", timeout=30)
    assert commits_per_index(state, job_id) == Counter(range(12))
    log = events(state, job_id)
    assert [e["epoch"] for e in log if e["event"] == "claimed"] == [1, 2]
    assert [e["event"] for e in log if e["event"].startswith("request")] == ["request_resume"]


def test_retry_reruns_only_the_failed_items(state: Path, tmp_path: Path, runners: Runners) -> None:
    counters, calls = tmp_path / "counters", tmp_path / "calls.log"
    counters.mkdir()
    for i in (0, 2):  # these images already had their one failure: they succeed at once
        (counters / text(i)).write_text("1")
    job_id = submit(
        state,
        pngs(tmp_path / "in", 4),
        *("--engine", "tests.engines:FlakyEngine", "--retries", "0"),
        *("--engine-option", f"counter_dir={counters}", "--engine-option", f"log={calls}"),
    )
    runners.start(state)
    wait_status(state, job_id, "completed_with_errors", "succeeded", "failed", timeout=30)
    assert job(state, job_id)["status"] == "completed_with_errors"
    assert [r["status"] for r in exported(state, job_id, tmp_path)] == ["done", "failed", "done", "failed"]

    cli(state, "retry", job_id)
    wait_status(state, job_id, "succeeded", timeout=30)
    shown = job(state, job_id)
    assert shown["progress"]["done"] == 4 and shown["error"] is None
    assert [r["text"] for r in exported(state, job_id, tmp_path)] == [text(i) for i in range(4)]
    ran = [line.split()[1] for line in calls.read_text().splitlines()]
    assert sorted(ran) == sorted(text(i) for i in range(4))  # items 0 and 2 were not run again
    epochs = {r["index"]: r["epoch"] for r in Store(state).items(job_id)}
    assert epochs == {0: 1, 1: 2, 2: 1, 3: 2}
    assert len(list((state / "jobs" / job_id / "results" / "retired").iterdir())) == 2  # kept, not deleted


def test_two_workers_share_one_job(state: Path, tmp_path: Path, runners: Runners) -> None:
    calls = tmp_path / "calls.log"
    job_id = submit(
        state,
        pngs(tmp_path / "in", 8),
        "--engine",
        SIZE,
        "--engine-option",
        "delay=0.5",
        "--engine-option",
        f"log={calls}",
    )
    runners.start(state, "--workers", "2")
    wait_status(state, job_id, "succeeded", timeout=30)
    lines = [line.split() for line in calls.read_text().splitlines()]
    assert len({pid for pid, _ in lines}) == 2
    assert sorted(t for _, t in lines) == sorted(text(i) for i in range(8))
    assert [r["text"] for r in exported(state, job_id, tmp_path)] == [text(i) for i in range(8)]


def test_an_engine_that_cannot_load_fails_the_job_with_its_message(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 3), "--engine", "tests.engines:BrokenLoadEngine")
    runner = runners.start(state)
    wait_status(state, job_id, "failed", "succeeded", "completed_with_errors", timeout=30)
    shown = job(state, job_id)
    assert shown["status"] == "failed" and shown["lease"] is None
    assert "could not be loaded" in shown["error"] and "model weights not found in /models/missing" in shown["error"]
    assert shown["progress"]["committed"] == 0  # nothing is blamed on the items
    assert runner.poll() is None


def test_transient_engine_errors_are_retried_inside_the_worker(state: Path, tmp_path: Path, runners: Runners) -> None:
    counters = tmp_path / "counters"
    counters.mkdir()
    job_id = submit(
        state,
        pngs(tmp_path / "in", 3),
        *("--engine", "tests.engines:FlakyEngine", "--engine-option", f"counter_dir={counters}"),
        *("--engine-option", "fail_times=1"),
    )
    runners.start(state)
    wait_status(state, job_id, "succeeded", "completed_with_errors", "failed", timeout=30)
    assert job(state, job_id)["status"] == "succeeded"
    items = Store(state).items(job_id)
    assert [(it["status"], it["attempts"], it["text"]) for it in items] == [("done", 2, text(i)) for i in range(3)]
    assert Counter(e["event"] for e in events(state, job_id))["item_retry"] == 3


def test_once_exits_when_the_queue_is_empty(state: Path, runners: Runners) -> None:
    proc = runners.start(state, "--once")
    assert exit_within(runners, proc, 20) == 0
    assert list((state / "runners").iterdir()) == []  # its heartbeat is removed on the way out
