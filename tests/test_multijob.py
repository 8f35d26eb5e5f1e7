"""One runner, several jobs at once (issue 18): a small job never waits behind a big one, priorities
share the workers, and every per-job guarantee (takeover, cancel, pause) holds job by job.

Real ``runner.py`` processes; the engine sleeps per item (tests/engines.py's SizeEngine)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from jobs.store import Store
from tests.conftest import Runners, cli, events, make_png, wait_for
from tests.test_runner import SIZE, commits_per_index, committed, status, submit, wait_status

pytestmark = pytest.mark.slow


def images(folder: Path, n: int, base: int = 0) -> list[Path]:
    """``n`` distinct small images (each one's text is its size)."""
    return [make_png(folder / f"p{i:03d}.png", (20 + base + i, 10 + i)) for i in range(n)]


def sleepy(state: Path, files: list[Path], delay: float, *args: str) -> str:
    return submit(state, files, "--engine", SIZE, "--engine-option", f"delay={delay}", *args)


def held_jobs(state: Path) -> list[str]:
    """The jobs the (one) live runner's heartbeat says it holds."""
    for hb in (state / "runners").glob("*.json"):
        try:
            return json.loads(hb.read_text()).get("jobs") or []
        except (OSError, ValueError):
            return []
    return []


def test_a_one_item_job_is_done_within_2_s_while_a_300_item_job_runs(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    big = sleepy(state, images(tmp_path / "big", 300), 0.2)
    runners.start(state, "--workers", "2")
    wait_status(state, big, "running")
    time.sleep(5)
    small = sleepy(state, images(tmp_path / "small", 1, base=500), 0.2)
    wait_status(state, small, "succeeded", timeout=20)

    s = Store(state)
    took = s.read_state(small)["finished_at"] - s.get(small).created_at
    assert took <= 2.0, f"the one-item job took {took:.1f} s from submit to done"
    assert status(state, big) == "running" and committed(state, big) < 300  # it did not wait for the big one
    wait_status(state, big, "succeeded", timeout=120)
    assert commits_per_index(state, big) == Counter(range(300))  # every item exactly once
    assert commits_per_index(state, small) == Counter([0])


def test_a_job_at_priority_10_gets_at_least_two_thirds_of_the_items_while_both_run(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    low = sleepy(state, images(tmp_path / "low", 60), 0.1)
    high = sleepy(state, images(tmp_path / "high", 60, base=100), 0.1, "--priority", "10")
    runners.start(state, "--workers", "2")
    wait_status(state, low, "succeeded", timeout=60)
    wait_status(state, high, "succeeded", timeout=60)

    s = Store(state)
    claimed = [next(e["at"] for e in events(state, j) if e["event"] == "claimed") for j in (low, high)]
    both_from = max(claimed)
    both_until = min(s.read_state(j)["finished_at"] for j in (low, high))
    during = {j: sum(both_from <= r["committed_at"] <= both_until for r in s.iter_results(j)) for j in (low, high)}
    assert during[high] + during[low] >= 20, during  # they did run side by side
    assert during[high] >= 2 / 3 * (during[high] + during[low]), during


def test_a_killed_runner_holding_3_jobs_hands_all_3_over_after_one_lease(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    jobs = [sleepy(state, images(tmp_path / f"j{n}", 20, base=100 * n), 0.3) for n in range(3)]
    first = runners.start(state, "--workers", "2", "--lease-seconds", "3")
    wait_for(lambda: sorted(held_jobs(state)) == sorted(jobs), 30, what="the runner to hold all 3 jobs")
    wait_for(lambda: all(committed(state, j) >= 1 for j in jobs), 60, what="a commit in each job")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    killed_at = time.time()
    assert all(status(state, j) == "running" for j in jobs)  # orphaned: their leases name the dead runner

    runners.start(state, "--workers", "2", "--lease-seconds", "3")
    for j in jobs:
        wait_status(state, j, "succeeded", timeout=90)
    for j in jobs:
        assert commits_per_index(state, j) == Counter(range(20)), j  # nothing lost, nothing twice
        claims = [e for e in events(state, j) if e["event"] == "claimed"]
        assert [c["epoch"] for c in claims] == [1, 2] and claims[0]["runner"] != claims[1]["runner"]
        assert claims[1]["reclaimed_from"]["expires_at"] <= claims[1]["at"]  # only once its lease expired
        assert claims[1]["at"] - killed_at <= 3 + 2 + 5


def test_cancel_and_pause_wind_down_only_their_own_job(state: Path, tmp_path: Path, runners: Runners) -> None:
    cancelled, paused, other = (sleepy(state, images(tmp_path / f"j{n}", 40, base=100 * n), 0.2) for n in range(3))
    runner = runners.start(state, "--workers", "2", "--grace-seconds", "1")
    wait_for(lambda: all(committed(state, j) >= 1 for j in (cancelled, paused, other)), 60, what="all 3 running")
    cli(state, "cancel", cancelled)
    cli(state, "pause", paused)
    wait_status(state, cancelled, "cancelled", timeout=10)
    wait_status(state, paused, "paused", timeout=10)
    stopped = {j: committed(state, j) for j in (cancelled, paused)}
    assert status(state, other) == "running"  # still held and worked on

    wait_status(state, other, "succeeded", timeout=60)
    assert commits_per_index(state, other) == Counter(range(40))
    assert {j: committed(state, j) for j in stopped} == stopped  # nothing of theirs ran since
    assert all(n < 40 for n in stopped.values())
    s = Store(state)
    assert s.read_state(cancelled)["progress"]["failed"] == 0  # stopped items are not failures
    cli(state, "resume", paused)
    wait_status(state, paused, "succeeded", timeout=60)
    assert commits_per_index(state, paused) == Counter(range(40))
    assert runner.poll() is None


def test_jobs_of_two_engines_share_one_worker_without_thrashing_model_loads(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    first = sleepy(state, images(tmp_path / "a", 30), 0.1)
    second = submit(state, images(tmp_path / "b", 30, base=100), "--engine", "tests.engines:DictEngine")
    runner = runners.start(state, "--workers", "1")
    wait_status(state, first, "succeeded", timeout=60)
    wait_status(state, second, "succeeded", timeout=60)
    assert commits_per_index(state, first) == Counter(range(30))
    assert commits_per_index(state, second) == Counter(range(30))
    loads = runners.log(runner).count(" loaded ")
    assert 2 <= loads <= 4, runners.log(runner)  # each engine at least once; a switch only every >= 5 s


def test_a_busy_runner_leaves_a_new_job_to_an_idle_runner_on_the_same_folder(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    big = sleepy(state, images(tmp_path / "big", 100), 0.2)
    busy = runners.start(state, "--workers", "1")
    wait_status(state, big, "running")
    runners.start(state, "--workers", "1")
    wait_for(lambda: len(list((state / "runners").glob("*.json"))) == 2, 30, what="the second runner's heartbeat")
    time.sleep(1)  # the busy runner has read the idle one's heartbeat
    small = sleepy(state, images(tmp_path / "small", 1, base=500), 0.2)
    wait_status(state, small, "succeeded", timeout=20)
    by = {e["runner"] for j in (big, small) for e in events(state, j) if e["event"] == "claimed"}
    assert len(by) == 2, by  # each job on its own runner: the idle one took the small job
    assert busy.poll() is None
