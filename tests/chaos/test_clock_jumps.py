"""Clock jumps: runners whose wall clocks are wrong, or jump, neither steal a live lease nor leave a
dead runner's job orphaned.

The wall clock of a runner is shifted through ``jobs/store/clock.py``'s test hook (a file holding the
offset, re-read when it changes). Runner A works a job; runner B's clock is an hour ahead, so by
wall-clock arithmetic A's lease looks long expired to B. Then A's clock jumps back an hour (its
leases now look expired to everybody), then two hours forward (its lease looks valid for hours),
and A is killed: B must take the job over one lease period later, not hours later.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from tests.chaos.conftest import exactly_once, record, scale
from tests.conftest import Runners, make_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(scale(120, 300))]

LEASE_S = 2.0


def test_wrong_or_jumping_wall_clocks_neither_steal_nor_lose_a_lease(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    n_items = scale(60, 300)
    watch_s = scale(3 * LEASE_S, 10 * LEASE_S)  # how long each "must not steal" phase is watched
    store = Store(state)
    files = [make_png(tmp_path / "in" / f"p{i:03d}.png", (20 + i, 10)) for i in range(n_items)]
    # 0.3 s an item: the job must outlast both watch phases (commits cost one fsync each, not four)
    job_id = submit(store, files, JobSpec(engine="tests.engines:SizeEngine", engine_options={"delay": 0.3}))
    args = ("--workers", "1", "--lease-seconds", str(LEASE_S))
    offset_a = tmp_path / "offset-a"
    offset_a.write_text("0")
    a = runners.start(state, *args, env={"OCRJOBS_CLOCK_OFFSET_FILE": str(offset_a)})
    wait_for(lambda: store.read_state(job_id).get("lease"), 30, what="runner A to claim the job")
    b = runners.start(state, *args, env={"OCRJOBS_CLOCK_OFFSET_S": "3600"})  # an hour ahead

    def claims() -> list[dict[str, object]]:
        return [e for e in store.events(job_id) if e["event"] == "claimed"]

    time.sleep(watch_s)  # B sees A's lease as an hour expired by its clock
    stolen_by_fast_clock = len(claims()) - 1
    offset_a.write_text("-3600")  # A's clock jumps back an hour: its leases expire "an hour ago"
    time.sleep(watch_s)
    stolen_after_jump_back = len(claims()) - 1
    assert store.read_state(job_id)["status"] == "running", "the job finished too soon; make it longer"
    offset_a.write_text("7200")  # ... and forward two hours: its lease now looks valid for two hours
    wait_for(
        lambda: store.read_state(job_id)["lease"]["expires_at"] > time.time() + 3600,
        10,
        what="A to renew with its jumped clock",
    )
    os.kill(a.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: len(claims()) == 2, LEASE_S + 15, interval=0.05, what="B to take over A's job")
    takeover_s = time.monotonic() - killed
    wait_for(lambda: store.read_state(job_id)["status"] == "succeeded", 60, what="the job to succeed")

    proof = exactly_once(state, job_id, n_items)
    record(
        "clock_jumps",
        lease_s=LEASE_S,
        watched_s=watch_s,
        steals_by_a_clock_1h_ahead=stolen_by_fast_clock,
        steals_after_owner_jumped_back_1h=stolen_after_jump_back,
        takeover_after_owner_jumped_forward_2h_and_died_s=round(takeover_s, 1),
        items_lost=len(proof["missing"]),
        duplicates=len(proof["committed_twice"]) + proof["duplicates_ignored"],
    )
    assert stolen_by_fast_clock == 0 and stolen_after_jump_back == 0, claims()
    assert takeover_s <= LEASE_S + 5, takeover_s
    assert [c["epoch"] for c in claims()] == [1, 2]
    assert proof["missing"] == [] and proof["committed_twice"] == [] and proof["duplicates_ignored"] == 0
    assert b.poll() is None
