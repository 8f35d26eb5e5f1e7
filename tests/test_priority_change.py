"""A waiting job's priority can be changed after submit (CLI, dashboard): the runner applies the request
and the job moves in the queue that every claimer reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.errors import SubmitError
from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from jobs.store.lease import claim_next
from jobs.store.requests import apply_requests
from tests.conftest import cli, make_png
from tests.test_dashboard import open_page, store  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SIZE = "tests.engines:SizeEngine"


def _two_jobs(folder: Store, tmp_path: Path) -> tuple[str, str]:
    png = make_png(tmp_path / "a.png")
    low = submit(folder, [png], JobSpec(engine=SIZE), priority=0)
    high = submit(folder, [png], JobSpec(engine=SIZE), priority=5)
    return low, high


def test_raising_a_waiting_jobs_priority_moves_it_to_the_front(store: Store, tmp_path: Path) -> None:  # noqa: F811
    low, high = _two_jobs(store, tmp_path)
    runner = Store(store.root)  # a runner's view of the folder
    store.request(low, "priority", priority=10)
    apply_requests(runner)
    assert store.get(low).priority == 10
    claim = claim_next(runner, "r1", 30, 5)
    assert claim is not None and claim.job_id == low, claim
    events = [e["event"] for e in store.events(low)]
    assert "request_priority" in events
    second = claim_next(runner, "r2", 30, 5)
    assert second is not None and second.job_id == high


def test_a_claimer_whose_heap_holds_the_old_priority_follows_the_change(store: Store, tmp_path: Path) -> None:  # noqa: F811
    low, high = _two_jobs(store, tmp_path)
    runner = Store(store.root)
    from jobs.store.lease import index_of

    index = index_of(runner)
    index.rescan()  # both jobs in this claimer's heap at their submitted priorities
    store.request(high, "priority", priority=-1)
    apply_requests(Store(store.root))  # another runner applies it; this one learns it from the journal
    first = claim_next(runner, "r1", 30, 5)
    assert first is not None and first.job_id == low


def test_bad_priorities_are_refused_with_the_range() -> None:
    with pytest.raises(SubmitError, match="a priority is a whole number from -1000000 to 1000000, got 'x'"):
        Store(Path("/tmp/never-made")).request("20260101-000000-abcdef", "priority", priority="x")


def test_the_cli_changes_a_priority_and_refuses_it_for_a_finished_job(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = Store(state)
    low, _ = _two_jobs(folder, tmp_path)
    out = json.loads(cli(state, "priority", low, "7", "--json").stdout)
    assert out == {"id": low, "requested": "priority", "priority": 7}
    apply_requests(Store(state))
    assert json.loads(cli(state, "show", low, "--json").stdout)["priority"] == 7
    cli(state, "cancel", low)
    apply_requests(Store(state))
    proc = cli(state, "priority", low, "9", check=False)
    assert proc.returncode == 1 and "cancelled: it waits in no queue" in proc.stderr


def test_the_job_page_shows_the_place_in_the_queue_and_changes_the_priority(store: Store, tmp_path: Path) -> None:  # noqa: F811
    low, high = _two_jobs(store, tmp_path)
    at = open_page("job_page", id=low)
    assert any(c.value == "#2 in the queue" for c in at.caption), [c.value for c in at.caption]
    box = next(n for n in at.number_input if n.label == "Priority (higher runs first)")
    box.set_value(10).run()
    at.button(key="act-priority").click().run()
    assert [(r["kind"], r.get("priority")) for _, r in store.pending_requests(low)] == [("priority", 10)]
    apply_requests(Store(store.root))
    at = open_page("job_page", id=low)
    assert any(c.value == "#1 in the queue" for c in at.caption)
