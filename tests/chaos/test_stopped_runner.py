"""A runner frozen past its lease (SIGSTOP: a long GC pause, a swapped-out VM, a laptop lid) loses
its job to another runner; when it wakes up (SIGCONT) it notices its stale epoch and stops working
on the job without committing anything.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from filelock import Timeout

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from tests.chaos.conftest import exactly_once, record, scale
from tests.conftest import Runners, make_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(scale(120, 600))]

LEASE_S = 2.0


def locks_free(store: Store, job_id: str) -> bool:
    """Whether the store lock and the job's lock can be taken now (taken and released at once)."""
    for lock in (store.lock(None, timeout=0), store.lock(job_id, timeout=0)):
        try:
            lock.acquire()
        except Timeout:
            return False
        lock.release()
    return True


def test_a_stopped_runner_is_fenced_off_when_it_wakes_up(state: Path, tmp_path: Path, runners: Runners) -> None:
    rounds = scale(1, 5)
    n_items = 20 * rounds
    store = Store(state)
    files = [make_png(tmp_path / "in" / f"p{i:03d}.png", (20 + i, 10)) for i in range(n_items)]
    spec = JobSpec(engine="tests.engines:SizeEngine", engine_options={"delay": 0.3}, max_attempts=100)
    job_id = submit(store, files, spec)
    args = ("--workers", "1", "--lease-seconds", str(LEASE_S))
    procs = [runners.start(state, *args)]
    frozen: list[dict[str, object]] = []
    inside_lock = 0
    for n in range(rounds):
        wait_for(
            lambda n=n: (s := store.read_state(job_id)).get("lease") and s["progress"].get("done", 0) >= 3 * n + 2,
            30,
            what="a runner holding the job with items committed",
        )
        lease = store.read_state(job_id)["lease"]
        holder = next(p for p in procs if f"-{p.pid}-" in lease["runner"])
        while True:
            holder.send_signal(signal.SIGSTOP)
            stopped_at = time.time()
            if locks_free(store, job_id):
                break
            # Frozen inside a write under the job's lock: nobody can take over until it wakes (a flock
            # cannot be broken while its holder lives; see docs/reliability.md). Freeze it elsewhere.
            inside_lock += 1
            holder.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        if len(procs) < 2:
            procs.append(runners.start(state, *args))
        epoch = lease["epoch"]
        taken = wait_for(
            lambda e0=epoch: next(
                (e for e in store.events(job_id) if e["event"] == "claimed" and e["epoch"] > e0), None
            ),
            LEASE_S + 10,
            what="another runner to take the job over",
        )
        fenced_before = runners.log(holder).count("no longer current")
        holder.send_signal(signal.SIGCONT)
        woke_at = time.time()
        wait_for(
            lambda h=holder, n=fenced_before: runners.log(h).count("no longer current") > n,
            15,
            what="the woken runner to notice its stale epoch",
        )
        frozen.append(
            {
                "runner": lease["runner"],
                "epoch": lease["epoch"],
                "stopped_at": stopped_at,
                "takeover_s": taken["at"] - stopped_at,
                "woke_at": woke_at,
                "after_expiry_s": taken["at"] - taken["reclaimed_from"]["expires_at"],
            }
        )
    wait_for(lambda: store.read_state(job_id)["status"] == "succeeded", 60, what="the job to succeed")

    proof = exactly_once(state, job_id, n_items)
    late = [
        r
        for r in proof["results"].values()
        for f in frozen
        if r["runner"] == f["runner"] and r["epoch"] == f["epoch"] and r["committed_at"] > f["woke_at"]
    ]
    fenced = sum(runners.log(p).count("no longer current") for p in procs)
    record(
        "stopped_runner",
        freezes=rounds,
        items=n_items,
        lease_s=LEASE_S,
        takeover_s=[round(f["takeover_s"], 1) for f in frozen],  # type: ignore[call-overload]
        fenced_off=fenced,
        freezes_retried_because_inside_the_job_lock=inside_lock,
        commits_after_waking=len(late),
        items_lost=len(proof["missing"]),
        duplicates=len(proof["committed_twice"]) + proof["duplicates_ignored"],
    )
    assert late == [], json.dumps(late)[:500]
    assert proof["missing"] == [] and proof["committed_twice"] == [] and proof["duplicates_ignored"] == 0
    assert fenced >= rounds, [runners.log(p)[-2000:] for p in procs]
    # only once the frozen runner's lease had run out, and soon after
    assert all(0 <= f["after_expiry_s"] and f["takeover_s"] <= LEASE_S + 6 for f in frozen), frozen  # type: ignore[operator]
    assert all(p.poll() is None for p in procs)  # the woken runner goes on serving
