"""Kill storm: SIGKILL runners and worker subprocesses at random moments while a job runs.

Two real ``runner.py`` processes share one job folder; a driver kills a random one of them (the
lease holder more often than the standby) or one of its worker subprocesses, and restarts what it
killed. Afterwards every item must be committed exactly once, the job must succeed, no JSON may be
corrupt and housekeeping must leave no temp file behind.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from jobs.store.housekeeping import TMP_MAX_AGE_S, housekeep
from tests.chaos.conftest import corrupt_json_files, exactly_once, record, scale, temp_files
from tests.conftest import Runners, make_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(scale(240, 1200))]

SIZE = "tests.engines:SizeEngine"
#: A worker still starting up is left alone (it has nothing to lose yet).
WORKER_MIN_AGE_S = 0.5


def size(i: int) -> tuple[int, int]:
    return (20 + i % 100, 10 + i // 100)


def holder_pid(store: Store, job_id: str) -> int | None:
    lease = store.read_state(job_id).get("lease") or {}
    try:
        return int(str(lease.get("runner", "")).split("-")[-2])
    except (IndexError, ValueError):
        return None


def retry_pending(store: Store, job_id: str) -> bool:
    """An item whose worker was killed once is not committed yet: a second kill of the worker running
    it would rightly make it a poison item (failed), so the driver kills no worker until it is in."""
    crashes = store.read_state(job_id).get("item_crashes") or {}
    return any(n and not store.result_path(job_id, int(i)).exists() for i, n in crashes.items())


def workers_of(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    out = []
    try:
        for child in psutil.Process(proc.pid).children():
            if "spawn_main" in " ".join(child.cmdline()) and time.time() - child.create_time() >= WORKER_MIN_AGE_S:
                out.append(child)
    except psutil.NoSuchProcess:
        pass
    return out


def test_kill_storm_loses_and_duplicates_nothing(state: Path, tmp_path: Path, runners: Runners) -> None:
    n_items, n_kills = scale(100, 500), scale(10, 50)
    gap = scale((0.3, 1.2), (0.5, 2.5))  # seconds between kills, uniform
    seed = int(os.environ.get("OCRJOBS_CHAOS_SEED") or time.time_ns() % 10**6)
    rng = random.Random(seed)
    store = Store(state)
    files = [make_png(tmp_path / "in" / f"p{i:04d}.png", size(i)) for i in range(n_items)]
    # items slow enough that the job outlives the storm; attempts enough for every runner kill
    spec = JobSpec(engine=SIZE, engine_options={"delay": scale(0.2, 0.4)}, max_attempts=100, item_timeout=30)
    job_id = submit(store, files, spec)
    args = ("--workers", "2", "--threads", "1", "--lease-seconds", "1")
    slots = [runners.start(state, *args), runners.start(state, *args)]

    kills = {"runner_holding": 0, "runner_standby": 0, "worker": 0}
    started = time.monotonic()
    while sum(kills.values()) < n_kills:
        time.sleep(rng.uniform(*gap))
        assert store.read_state(job_id).get("status") in (None, "queued", "running"), (
            f"the job ended after {kills} kills (seed {seed}); make the items slower"
        )
        holder = holder_pid(store, job_id)
        by_holder = [n for n, p in enumerate(slots) if p.pid == holder]
        slot = by_holder[0] if by_holder and rng.random() < 0.7 else rng.randrange(len(slots))
        victims: list[psutil.Process] = []
        if rng.random() < 0.5:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not victims:
                victims = [] if retry_pending(store, job_id) else workers_of(slots[slot])
                time.sleep(0 if victims else 0.1)
        if victims:
            rng.choice(victims).kill()
            kills["worker"] += 1
            continue
        kills["runner_holding" if slots[slot].pid == holder else "runner_standby"] += 1
        os.kill(slots[slot].pid, signal.SIGKILL)
        slots[slot].wait(10)
        slots[slot] = runners.start(state, *args)
    storm_s = time.monotonic() - started

    wait_for(
        lambda: store.read_state(job_id).get("status") not in (None, "queued", "running"),
        scale(120, 600),
        interval=0.5,
        what="the job to finish after the storm",
    )
    for p in slots:
        p.send_signal(signal.SIGTERM)
    for p in slots:
        p.wait(15)

    final = store.read_state(job_id)
    proof = exactly_once(state, job_id, n_items)
    texts_ok = all(proof["results"][i]["text"] == "{}x{}".format(*size(i)) for i in proof["results"])
    corrupt = corrupt_json_files(state)
    leftovers = temp_files(state)
    housekeep(store, retention_days=365, now=time.time() + TMP_MAX_AGE_S + 1)
    after_housekeeping = temp_files(state)
    claims = [e for e in proof["events"] if e["event"] == "claimed"]
    record(
        "kill_storm",
        seed=seed,
        items=n_items,
        kills=sum(kills.values()),
        kills_by_target=kills,
        storm_s=round(storm_s, 1),
        claims=len(claims),
        takeovers=sum(1 for c in claims if "reclaimed_from" in c),
        worker_crash_events=sum(1 for e in proof["events"] if e["event"] == "worker_crash"),
        status=final.get("status"),
        items_lost=len(proof["missing"]),
        duplicates=len(proof["committed_twice"]) + proof["duplicates_ignored"],
        commit_events=proof["commit_events"],
        corrupt_json=len(corrupt),
        quarantined=len(list((state / "quarantine").glob("*"))) if (state / "quarantine").exists() else 0,
        temp_files_before_housekeeping=len(leftovers),
        temp_files_after_housekeeping=len(after_housekeeping),
    )
    assert final["status"] == "succeeded", (seed, final.get("error"), final.get("item_crashes"))
    assert proof["missing"] == [] and proof["extra"] == [], seed
    assert proof["committed_twice"] == [] and proof["duplicates_ignored"] == 0, seed
    assert proof["commit_events"] >= n_items - kills["runner_holding"], seed  # one can drop per kill at most
    assert texts_ok, seed
    assert final["progress"]["done"] == n_items, final["progress"]
    assert corrupt == [], corrupt
    assert not (state / "quarantine").exists() or not any((state / "quarantine").iterdir())
    assert after_housekeeping == [], after_housekeeping
