"""Items the runner stops to wind a job down (cancel, pause, shutdown) are never failed (issue 17, defect 3).

Real runner.py processes and the CLI. The engine (tests.engines:StopEngine) honours the runner's soft stop
the way the real ones do: it raises ``TimeoutError("stopped at the item timeout ...")``. Such an item must
stay pending: not committed, not counted in ``show``, exports, the runner's counters or the health
failure rate, and redone by a resume, a retry or the next runner.
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

import pytest

from jobs.store import Store
from tests.conftest import Runners, cli, cli_json, events, make_png, wait_for

pytestmark = pytest.mark.slow

STOP = "tests.engines:StopEngine"
FAST_HB = {"OCRJOBS_HEARTBEAT_S": "0.5"}
FAILED = ("failed", "timed_out")


def submit(state: Path, tmp_path: Path, n: int, delay: float, *args: str) -> str:
    files = [make_png(tmp_path / "in" / f"p{i:02d}.png", (20 + i, 10 + i)) for i in range(n)]
    return cli_json(
        state,
        "submit",
        *map(str, files),
        *("--engine", STOP, "--engine-option", f"delay={delay}", "--item-timeout", "60", *args),
    )["id"]


def status(state: Path, job_id: str) -> str:
    return Store(state).read_state(job_id).get("status", "queued")


def wait_status(state: Path, job_id: str, *wanted: str, timeout: float = 30) -> None:
    wait_for(lambda: status(state, job_id) in wanted, timeout, what=f"job {job_id} to become {'/'.join(wanted)}")


def heartbeats(state: Path) -> list[dict[str, Any]]:
    rdir = state / "runners"
    return [json.loads(p.read_text()) for p in rdir.glob("*.json")] if rdir.is_dir() else []


def in_flight(state: Path, n: int) -> None:
    """Wait until ``n`` workers have loaded the engine and hold an item, then let the engine get going."""

    def busy() -> bool:
        return any(
            sum(1 for w in hb["workers"] if w["engine"] and not w["loading_since"] and w["item"] is not None) >= n
            for hb in heartbeats(state)
        )

    wait_for(busy, 60, what=f"{n} item(s) in flight")
    time.sleep(0.7)


def results(state: Path, job_id: str) -> list[dict[str, Any]]:
    rdir = state / "jobs" / job_id / "results"
    return [json.loads(p.read_text()) for p in sorted(rdir.glob("[0-9]*.json"))]


def commits_per_index(state: Path, job_id: str) -> Counter[int]:
    return Counter(e["index"] for e in events(state, job_id) if e["event"] == "item_committed")


def assert_nothing_failed(state: Path, job_id: str, tmp_path: Path) -> dict[str, Any]:
    """What show, the result files, the export, the runners' counters and health say: no failure."""
    shown = cli_json(state, "show", job_id)
    assert shown["progress"].get("failed", 0) == 0 and shown["progress"].get("timed_out", 0) == 0, shown["progress"]
    bad = [r for r in results(state, job_id) if r["status"] in FAILED]
    assert not bad, bad
    out = tmp_path / f"{job_id}-{time.monotonic_ns()}.json"
    cli(state, "export", job_id, "--format", "json", "-o", str(out))
    rows = json.loads(out.read_text())
    assert not [r for r in rows if r.get("status") in FAILED], rows
    after = time.time()
    wait_for(lambda: all(hb["heartbeat_at"] > after for hb in heartbeats(state)), 10, what="fresh heartbeats")
    for hb in heartbeats(state):
        assert all(hb["counters"][k] == 0 for k in FAILED), hb["counters"]
        assert all(hb["recent"][k] == 0 for k in FAILED), hb["recent"]
    report = json.loads(cli(state, "health", "--json", check=False).stdout)
    assert report["failure_rate"]["failed"] == 0 and report["failure_rate"]["timed_out"] == 0, report["failure_rate"]
    assert not [r for r in report["reasons"] if "failed" in r], report["reasons"]
    return shown


def test_cancel_leaves_the_items_in_flight_pending(state: Path, tmp_path: Path, runners: Runners) -> None:
    job_id = submit(state, tmp_path, 4, delay=4)
    runner = runners.start(state, "--workers", "2", "--grace-seconds", "5", env=FAST_HB)
    in_flight(state, 2)
    cli(state, "cancel", job_id)
    wait_status(state, job_id, "cancelled", timeout=15)
    shown = assert_nothing_failed(state, job_id, tmp_path)
    assert shown["progress"].get("committed", 0) == 0, shown["progress"]  # both were stopped, none done
    assert "items_stopped" in [e["event"] for e in events(state, job_id)]
    assert runner.poll() is None

    cli(state, "retry", job_id)  # the stopped items were left pending: a retry runs them, once each
    wait_status(state, job_id, "succeeded", timeout=60)
    assert commits_per_index(state, job_id) == Counter(range(4))
    assert [r["text"] for r in results(state, job_id)] == [f"{20 + i}x{10 + i}" for i in range(4)]


def test_cancel_during_a_pause_leaves_the_items_pending(state: Path, tmp_path: Path, runners: Runners) -> None:
    job_id = submit(state, tmp_path, 2, delay=30)
    runners.start(state, "--workers", "1", "--grace-seconds", "5", env=FAST_HB)
    in_flight(state, 1)
    cli(state, "pause", job_id)  # waits for the item in flight (30 s)...
    time.sleep(1.5)
    assert status(state, job_id) == "running"
    cli(state, "cancel", job_id)  # ... which the cancel stops
    wait_status(state, job_id, "cancelled", timeout=15)
    shown = assert_nothing_failed(state, job_id, tmp_path)
    assert shown["progress"].get("committed", 0) == 0, shown["progress"]


def test_pause_then_resume_runs_every_item_once(state: Path, tmp_path: Path, runners: Runners) -> None:
    job_id = submit(state, tmp_path, 4, delay=2)
    runners.start(state, "--workers", "2", "--grace-seconds", "5", env=FAST_HB)
    in_flight(state, 2)
    cli(state, "pause", job_id)
    wait_status(state, job_id, "paused", timeout=15)
    assert_nothing_failed(state, job_id, tmp_path)
    cli(state, "resume", job_id)
    wait_status(state, job_id, "succeeded", timeout=60)
    assert commits_per_index(state, job_id) == Counter(range(4))
    assert_nothing_failed(state, job_id, tmp_path)


def test_sigterm_hands_the_job_back_and_the_next_runner_finishes_it(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    # signals=1: the SIGTERM to the process group also makes the engine's call fail (its subprocess killed)
    job_id = submit(state, tmp_path, 4, 8, "--engine-option", "signals=1", "--retries", "0")
    first = runners.start(state, "--workers", "2", "--grace-seconds", "2", env=FAST_HB)
    in_flight(state, 2)
    os.killpg(first.pid, signal.SIGTERM)  # as a service stop does: the runner and its workers
    try:
        assert first.wait(15) == 0
    except subprocess.TimeoutExpired:
        raise AssertionError(runners.log(first)) from None
    assert status(state, job_id) == "queued"
    shown = cli_json(state, "show", job_id)
    assert shown["progress"].get("failed", 0) == 0 and shown["progress"].get("timed_out", 0) == 0
    assert not [r for r in results(state, job_id) if r["status"] in FAILED]
    assert "items_stopped" in [e["event"] for e in events(state, job_id)]  # they did end in error

    runners.start(state, "--workers", "2", env=FAST_HB)
    wait_status(state, job_id, "succeeded", timeout=60)
    assert commits_per_index(state, job_id) == Counter(range(4))
    assert_nothing_failed(state, job_id, tmp_path)
