"""Concurrent claimers: many processes claim jobs from one folder; each job is claimed exactly once.

Each claiming process times how long it waits for the store-wide claim lock; the campaign reports
the wait percentiles. Short form 4 x 100 jobs; ``OCRJOBS_CHAOS=long``: 8 x 2000.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from jobs.store.lease import claim_next
from tests.chaos.conftest import percentile, record, scale
from tests.conftest import make_png

pytestmark = [pytest.mark.slow, pytest.mark.timeout(scale(240, 1800))]


def _claimer(state: str, runner_id: str, go: object, out: str) -> None:
    """Claim until nothing is left; record the jobs taken and every wait for the store lock."""
    import jobs.store.store as store_mod

    waits: list[float] = []
    enter = store_mod._Locked.__enter__

    def timed_enter(self: store_mod._Locked) -> None:
        t0 = time.perf_counter()
        enter(self)
        if self._job_id is None:
            waits.append(time.perf_counter() - t0)

    store_mod._Locked.__enter__ = timed_enter  # type: ignore[method-assign]
    store = Store(state)
    store.list_jobs()  # parse the folder once before the race, as a long-running runner would have
    go.wait(120)  # type: ignore[attr-defined]
    claimed = []
    t0 = time.monotonic()
    while (claim := claim_next(store, runner_id, lease_s=3600, max_attempts=5)) is not None:
        claimed.append(claim.job_id)
        time.sleep(0.002)  # a runner works between claims; back to back, one process keeps the lock
    Path(out).write_text(json.dumps({"claimed": claimed, "waits": waits, "elapsed": time.monotonic() - t0}))


def test_concurrent_claimers_take_each_job_exactly_once(state: Path, tmp_path: Path) -> None:
    n_procs, n_jobs = scale((4, 100), (8, 2000))
    store = Store(state)
    png = make_png(tmp_path / "a.png", (8, 8))
    spec = JobSpec(engine="tests.engines:SizeEngine")
    ids = {submit(store, [png], spec) for _ in range(n_jobs)}
    ctx = mp.get_context("spawn")
    go = ctx.Barrier(n_procs)
    outs = [tmp_path / f"claimer-{n}.json" for n in range(n_procs)]
    procs = [ctx.Process(target=_claimer, args=(str(state), f"runner-{n}", go, str(outs[n]))) for n in range(n_procs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(scale(180, 1500))
        assert p.exitcode == 0
    results = [json.loads(o.read_text()) for o in outs]
    flat = [job_id for r in results for job_id in r["claimed"]]
    waits_ms = [w * 1000 for r in results for w in r["waits"]]
    record(
        "claimers",
        processes=n_procs,
        jobs=n_jobs,
        claims=len(flat),
        claimed_twice=len(flat) - len(set(flat)),
        unclaimed=len(ids - set(flat)),
        per_process=[len(r["claimed"]) for r in results],
        seconds=round(max(r["elapsed"] for r in results), 1),
        lock_waits=len(waits_ms),
        lock_wait_ms_p50=round(percentile(waits_ms, 50), 1),
        lock_wait_ms_p99=round(percentile(waits_ms, 99), 1),
        lock_wait_ms_max=round(max(waits_ms), 1),
    )
    assert len(flat) == len(set(flat)) == n_jobs
    assert set(flat) == ids
    assert sum(1 for r in results if r["claimed"]) >= 2, [len(r["claimed"]) for r in results]  # they competed
    for job in store.list_jobs():
        claimed = [e for e in store.events(job.id) if e["event"] == "claimed"]
        assert len(claimed) == 1 and job.lease is not None and job.lease["epoch"] == 1, job.id
