"""The fair-share rules (jobs/runner/fairshare.py), each on its own: which held job a free worker serves."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from jobs.runner import fairshare
from jobs.runner.drain import Drain
from jobs.runner.held import Held, engine_key, weight_of
from jobs.runner.pool import InFlight
from jobs.store.lease import Claim


def held(job_id: str, engine: str = "a", *, items: int = 10, priority: int = 0, owner: str = "", **spec: Any) -> Held:
    full = {"engine": engine, "submitted_by": owner, **spec}
    h = Held(Claim(job_id, "r", 1, 30.0, {"progress": {}}), full, Drain(None, [], 1.0, job_id))  # type: ignore[arg-type]
    h.base_priority = priority
    h.pending = deque({"index": i, "source": "x"} for i in range(items))
    return h


@dataclass
class Worker:
    loaded_key: str | None = None
    loaded_at: float | None = None
    load_s: float = 0.0
    tasks: deque[InFlight] = field(default_factory=deque)

    @property
    def task(self) -> InFlight | None:
        return self.tasks[0] if self.tasks else None

    def busy_with(self, h: Held) -> Worker:
        self.tasks.append(InFlight(h.job_id, 1, [{"index": 0}], 1, 30.0, engine_key=h.engine_key))
        return self


def warm(engine: str, since_s: float = 600.0, load_s: float = 1.0) -> Worker:
    return Worker(engine_key({"engine": engine}), time.monotonic() - since_s, load_s)


def test_the_job_with_the_lowest_pass_is_served_first() -> None:
    a, b = held("a"), held("b")
    a.pass_, b.pass_ = 3.0, 1.0
    assert fairshare.pick(Worker(), [a, b], []) is b


def test_a_job_that_joins_starts_at_the_lowest_pass_and_wins_the_tie_with_no_workers_on_it() -> None:
    big, small = held("big"), held("small", items=1)
    big.pass_ = 40.0
    fairshare.join(small, [big, small])
    assert small.pass_ == 40.0
    w = Worker()
    assert fairshare.pick(w, [big, small], [Worker().busy_with(big), w]) is small


def test_ten_priority_points_weigh_four_times_as_much() -> None:
    assert weight_of(10) / weight_of(0) == 4.0
    low, high = held("low"), held("high", priority=10)
    sent = {"low": 0, "high": 0}
    for _ in range(100):
        h = fairshare.pick(Worker(), [low, high], [])
        assert h is not None
        sent[h.job_id] += 1
        fairshare.charge(h, 1, [low, high])
    assert sent == {"low": 20, "high": 80}


def test_one_owners_many_jobs_share_what_one_job_of_another_owner_gets() -> None:
    many = [held(f"m{n}", owner="ann") for n in range(4)]
    one = held("one", owner="bob")
    everyone = [*many, one]
    sent = {h.job_id: 0 for h in everyone}
    for _ in range(80):
        h = fairshare.pick(Worker(), everyone, [])
        assert h is not None
        sent[h.job_id] += 1
        fairshare.charge(h, 1, everyone)
    assert sent["one"] == sum(sent[h.job_id] for h in many) == 40


def test_a_worker_keeps_its_engine_while_another_worker_serves_the_other_engine() -> None:
    a, b = held("a", "a"), held("b", "b")
    b.pass_ = -5.0  # b is owed more, but a worker already has b's engine
    w, other = warm("a"), warm("b")
    assert fairshare.pick(w, [a, b], [w, other]) is a


def test_a_worker_switches_when_no_worker_has_the_other_jobs_engine() -> None:
    a, b = held("a", "a"), held("b", "b")
    b.pass_ = -5.0
    w = warm("a")
    assert fairshare.pick(w, [a, b], [w]) is b


def test_a_worker_that_just_switched_keeps_its_engine_for_three_times_its_load_time() -> None:
    a, b = held("a", "a"), held("b", "b")
    b.pass_ = -5.0
    w = warm("a", since_s=20.0, load_s=10.0)  # loaded 20 s ago, took 10 s: keeps it until 30 s
    assert fairshare.pick(w, [a, b], [w]) is a
    w.loaded_at = time.monotonic() - 31.0
    assert fairshare.pick(w, [a, b], [w]) is b


def test_a_worker_whose_engine_has_no_work_left_switches_at_once() -> None:
    a, b = held("a", "a", items=0), held("b", "b")
    w = warm("a", since_s=0.0, load_s=100.0)
    assert fairshare.pick(w, [a, b], [w]) is b


def test_max_workers_caps_a_job_and_the_others_get_the_worker() -> None:
    capped, other = held("capped", max_workers=1), held("other")
    capped.pass_, other.pass_ = 0.0, 10.0
    w = Worker()
    assert fairshare.pick(w, [capped, other], [Worker().busy_with(capped), w]) is other
    assert fairshare.pick(w, [capped], [Worker().busy_with(capped), w]) is None


def test_a_draining_job_gets_no_worker() -> None:
    stopping = held("stopping")
    stopping.drain.state = ("cancelled", 0.0, [])  # type: ignore[assignment]
    assert fairshare.pick(Worker(), [stopping], []) is None


def test_riders_are_the_other_jobs_of_the_same_engine_and_reading_options_lowest_pass_first() -> None:
    lead, late, early = held("lead"), held("late"), held("early")
    late.pass_, early.pass_ = 5.0, 1.0
    other_engine, other_dpi, empty = held("e", engine="b"), held("d", dpi=150), held("empty", items=0)
    jobs = [lead, late, early, other_engine, other_dpi, empty]
    assert fairshare.riders(Worker(), lead, jobs, []) == [early, late]


def test_a_job_at_its_worker_cap_rides_only_on_a_worker_it_is_already_on() -> None:
    lead, capped = held("lead"), held("capped", max_workers=1)
    elsewhere, here = Worker().busy_with(capped), Worker().busy_with(capped)
    assert fairshare.riders(Worker(), lead, [lead, capped], [elsewhere, Worker()]) == []
    assert fairshare.riders(here, lead, [lead, capped], [here]) == [capped]
