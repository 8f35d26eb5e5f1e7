"""Hostile files in the job folder (issue 14: findings 3, 8, 9, 10 and 12).

Against every file kind the store reads: nothing hangs (every wait bounded), nothing prints a
traceback, readers (list, show, health, export, the dashboard's calls) move nothing, a runner sets
aside only the damaged file and carries on, committed results stay, and a damaged result is redone.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobs import cli as cli_mod
from jobs.errors import (
    Corrupt,
    JobNotFound,  # JobDamaged is one: matched by its message (runs on older trees)
)
from jobs.intake.submit import JobSpec, submit
from jobs.ops.liveness import runner_states
from jobs.store import Store
from jobs.store.lease import claim_next, commit_item, finish
from jobs.store.requests import apply_requests
from jobs.store.status import JobStatus
from tests.conftest import Runners, cli, cli_json, make_png, wait_for
from tests.hostile import store_files as hf

SPEC = JobSpec(engine="tests.engines:SizeEngine")
Zoo = dict[tuple[str, str], str]


def bounded(fn: Callable[[], Any], timeout: float = 30) -> Any:
    """``fn()`` in a thread: a call that blocks (an open of a FIFO) fails the test instead of hanging it."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test below
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"blocked for over {timeout} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def done_job(state: Path, pngs: list[Path]) -> str:
    """A job run to the end by the real lease code (in this process): results committed, succeeded."""
    store = Store(state)
    job_id = submit(store, pngs, SPEC)
    claim = claim_next(store, "seeder", 30, 5)
    assert claim is not None and claim.job_id == job_id
    for i, png in enumerate(pngs):
        commit_item(store, claim, {"index": i, "source": png.name, "status": "done", "text": f"text {i}"})
    finish(store, claim, JobStatus.SUCCEEDED)
    return job_id


def build_zoo(state: Path, png: Path) -> Zoo:
    """Every attack on every job file (one job each, run to the end first), two queued jobs whose
    job.lock is a symlink or a FIFO, and hostile requests, heartbeats, histories and journal lines."""
    zoo: Zoo = {(name, attack): done_job(state, [png, png]) for name in hf.JOB_FILES for attack in hf.ATTACKS}
    for (name, attack), job_id in zoo.items():  # after seeding: a seeding claim is a runner's, it would repair
        hf.damage_job_file(state / "jobs" / job_id, name, attack)
    for how in ("symlink", "fifo"):
        job_id = submit(Store(state), [png], SPEC)
        hf.lock_replaced(state / "jobs" / job_id, how)
        zoo[("job.lock", how)] = job_id
    some = zoo[("job.json", "deep")]
    hf.runner_files(state)
    hf.request_files(state, zoo[("state.json", "deep")])
    hf.append_journal_attack(state, some)
    return zoo


def planted(state: Path) -> set[str]:
    """Every path in the folder, links and FIFOs included (to see that readers moved nothing)."""
    out = set()
    for root, dirs, files in os.walk(state):
        out.update(os.path.relpath(os.path.join(root, n), state) for n in dirs + files)
    return out


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]


@pytest.fixture
def png(tmp_path: Path) -> Path:
    return make_png(tmp_path / "in" / "a.png")


# -- finding 3 and 8: readers -------------------------------------------------------------------


def test_the_cli_reads_a_folder_full_of_hostile_files_without_a_hang_a_traceback_or_a_move(
    state: Path, png: Path
) -> None:
    zoo = build_zoo(state, png)
    before = planted(state)

    listed = cli(state, "list", "--json", timeout=60)
    no_traceback(listed)
    ids = {j["id"] for j in json.loads(listed.stdout)}
    assert zoo[("state.json", "fifo")] in ids and zoo[("results/000000.json", "dev_zero")] in ids
    assert not ids & {zoo[("job.json", a)] for a in hf.ATTACKS}  # damaged: not listed as a job

    health = cli(state, "health", "--json", check=False, timeout=60)
    no_traceback(health)
    assert health.returncode in (0, 1, 2)
    assert json.loads(health.stdout)["status"] in ("ok", "degraded", "down")

    for (name, attack), job_id in zoo.items():
        if attack not in ("fifo", "deep", "wrong_types", "symlink"):
            continue
        shown = cli(state, "show", job_id, "--json", check=False, timeout=60)
        no_traceback(shown)
        assert shown.returncode in (0, 1), (name, attack, shown.stderr)
        if shown.returncode == 1:  # a damaged job.json: one line saying so
            assert shown.stderr.startswith("error: job ") and "damaged" in shown.stderr, shown.stderr
    assert not (state / "quarantine").exists()
    assert planted(state) == before  # readers moved nothing


@pytest.mark.parametrize("name", hf.JOB_FILES)
def test_every_reader_call_survives_every_attack_on_a_job_file(state: Path, png: Path, name: str) -> None:
    """The calls behind list, show, export, health and the Job page, in process, each bounded."""
    jobs = {attack: done_job(state, [png, png]) for attack in hf.ATTACKS}
    for attack, job_id in jobs.items():  # after seeding: a seeding claim is a runner's, it would repair
        hf.damage_job_file(state / "jobs" / job_id, name, attack)
    for attack, job_id in jobs.items():
        store = Store(state)
        bounded(store.list_jobs)
        try:
            job = bounded(lambda: store.get(job_id))  # noqa: B023 - called at once
        except JobNotFound as e:
            assert name == "job.json" and "damaged" in str(e), (name, attack)
            continue
        bounded(lambda: store.events(job_id))  # noqa: B023
        bounded(lambda: runner_states(store))  # noqa: B023
        try:
            rows = bounded(lambda: store.items(job_id))  # noqa: B023
        except Corrupt as e:  # a damaged manifest: an error a user can act on, not a crash
            assert name == "manifest.json", (name, attack, e)
        else:
            assert len(rows) == 2
            if name.startswith("results/"):
                assert rows[0]["status"] == "pending" and rows[1]["text"] == "text 1"
        job.to_dict()
        out = state.parent / f"export-{attack}.json"
        code = bounded(lambda: cli_mod.main(["--state", str(state), "export", job_id, "-o", str(out)]))  # noqa: B023
        assert code in (0, 1)
    assert not (state / "quarantine").exists()


def test_a_heartbeat_saying_yesterday_is_ignored_not_a_traceback(state: Path) -> None:
    hf.heartbeat_yesterday(state)
    proc = cli(state, "health", "--json", check=False, timeout=60)
    no_traceback(proc)
    assert json.loads(proc.stdout)["runners"] == []
    assert runner_states(Store(state)) == []


def test_a_damaged_job_json_keeps_its_results_and_only_a_runner_moves_only_that_file(state: Path, png: Path) -> None:
    job_id = done_job(state, [png, png])
    jdir = state / "jobs" / job_id
    (jdir / "job.json").write_text(json.dumps({"id": job_id, "epoch": "x"}))
    proc = cli(state, "show", job_id, check=False, timeout=60)
    assert proc.returncode == 1 and "damaged" in proc.stderr and "Traceback" not in proc.stderr
    assert not (state / "quarantine").exists()
    assert claim_next(Store(state), "r1", 30, 5) is None  # a runner: sets job.json aside, nothing to claim
    assert sorted(p.name for p in jdir.joinpath("results").iterdir()) == ["000000.json", "000001.json"]
    assert not jdir.joinpath("job.json").exists() and jdir.joinpath("manifest.json").exists()
    moved = sorted(p.name for p in (state / "quarantine").iterdir())
    assert len(moved) == 2 and moved[0].endswith(f"{job_id}__job.json"), moved
    with pytest.raises(JobNotFound, match="damaged: its job.json is missing"):
        Store(state).get(job_id)
    cli(state, "delete", job_id, timeout=60)  # a damaged job can still be deleted
    apply_requests(Store(state))
    assert not jdir.exists()


def test_a_job_lock_replaced_by_a_symlink_or_a_fifo_is_reported_not_followed(state: Path, png: Path) -> None:
    for how in ("symlink", "fifo"):
        job_id = submit(Store(state), [png], SPEC)
        hf.lock_replaced(state / "jobs" / job_id, how)
        with pytest.raises(JobNotFound, match="damaged: job.lock"):
            bounded(lambda: Store(state).locked(job_id).__enter__())  # noqa: B023
        assert bounded(lambda: claim_next(Store(state), "r1", 30, 5)) is None


# -- finding 3: runners ---------------------------------------------------------------------------


def test_a_runner_sets_aside_only_the_damaged_files_and_runs_the_rest(state: Path, png: Path, runners: Runners) -> None:
    zoo = build_zoo(state, png)
    good = submit(Store(state), [png, png], SPEC)
    log = runners.run_once(state, "--workers", "1", timeout=240)
    assert "Traceback" not in log, log[-3000:]
    assert cli_json(state, "show", good)["status"] == "succeeded"
    for how in ("symlink", "fifo"):
        assert f"skipping job {zoo[('job.lock', how)]}" in log
    moved = [p for p in (state / "quarantine").iterdir() if not p.name.endswith(".reason.txt")]
    assert not [p for p in moved if p.is_dir() and not p.is_symlink()]  # files only, never a job folder
    names = {p.name.split("-", 3)[3] for p in moved}  # after the time and a random tag
    for attack in hf.ATTACKS:
        assert f"jobs__{zoo[('job.json', attack)]}__job.json" in names
        assert f"jobs__{zoo[('state.json', attack)]}__state.json" in names
        job_dir = state / "jobs" / zoo[("job.json", attack)]
        assert len(list((job_dir / "results").iterdir())) == 2  # committed results stay with the job
        assert cli_json(state, "show", zoo[("state.json", attack)])["status"] == "succeeded"  # run again
    assert sum(1 for n in names if n.startswith("requests__")) == len(hf.ATTACKS)


def test_a_journal_line_with_infinity_does_not_kill_a_running_runner(state: Path, png: Path, runners: Runners) -> None:
    proc = runners.start(state, "--workers", "1")
    first = cli_json(state, "submit", str(png), "--engine", SPEC.engine)["id"]
    wait_for(lambda: cli_json(state, "show", first)["status"] == "succeeded", 120, what="the first job")
    hf.append_journal_attack(state, first)
    hf.runner_files(state)
    second = cli_json(state, "submit", str(png), "--engine", SPEC.engine)["id"]
    wait_for(lambda: cli_json(state, "show", second)["status"] == "succeeded", 120, what="the second job")
    assert proc.poll() is None, runners.log(proc)[-3000:]
    assert "Traceback" not in runners.log(proc)


# -- finding 9: damaged results are redone ----------------------------------------------------------


def _sizes(tmp: Path, n: int) -> list[Path]:
    """``n`` images of distinct sizes: SizeEngine's text for item i is its size, so a result shows its item."""
    return [make_png(tmp / "in" / f"p{i}.png", size=(20 + i, 30)) for i in range(n)]


def _export_texts(state: Path, job_id: str) -> list[str]:
    out = state.parent / "export.json"
    cli(state, "export", job_id, "-o", str(out), timeout=60)
    data = json.loads(out.read_text())
    rows = data["items"] if isinstance(data, dict) else data
    return [r.get("text") for r in rows]


def test_damaged_or_forged_results_are_redone_by_retry(state: Path, tmp_path: Path, runners: Runners) -> None:
    pngs = _sizes(tmp_path, 8)
    job_id = cli_json(state, "submit", *map(str, pngs), "--engine", SPEC.engine)["id"]
    runners.run_once(state, "--workers", "1")
    results = state / "jobs" / job_id / "results"
    for i in (0, 1, 2):
        hf.truncate_result(results / f"{i:06d}.json")
    hf.forge_result(results, 5, 3, text="FORGED")  # item 5's file says it is item 3
    hf.forge_result(results, 999_999, 999_999)  # out of range
    shown = cli_json(state, "show", job_id)
    assert shown["status"] == "succeeded"
    assert not (state / "quarantine").exists()
    cli(state, "retry", job_id, timeout=60)
    log = runners.run_once(state, "--workers", "1")
    assert "Traceback" not in log
    shown = cli_json(state, "show", job_id)
    assert shown["status"] == "succeeded", shown
    assert shown["progress"]["done"] == 8 and shown["progress"]["committed"] == 8
    assert _export_texts(state, job_id) == [f"{20 + i}x30" for i in range(8)]
    assert not (results / "999999.json").exists()


def test_results_damaged_while_the_job_runs_are_redone_before_it_ends(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    pngs = _sizes(tmp_path, 10)
    job_id = cli_json(state, "submit", *map(str, pngs), "--engine", SPEC.engine, "--engine-option", "delay=0.4")["id"]
    proc = runners.start(state, "--workers", "1")
    results = state / "jobs" / job_id / "results"
    wait_for(lambda: (results / "000003.json").exists(), 120, what="four results")
    hf.truncate_result(results / "000000.json")
    hf.forge_result(results, 1, 2, text="FORGED")
    wait_for(lambda: cli_json(state, "show", job_id)["status"] not in ("queued", "running"), 120, what="the end")
    shown = cli_json(state, "show", job_id)
    assert shown["status"] == "succeeded" and shown["progress"]["done"] == 10, shown
    assert _export_texts(state, job_id) == [f"{20 + i}x30" for i in range(10)]
    assert proc.poll() is None


# -- finding 10 and 12 ---------------------------------------------------------------------------


def test_a_huge_event_log_costs_a_page_view_only_its_tail(state: Path, png: Path) -> None:
    job_id = submit(Store(state), [png], SPEC)
    line = json.dumps({"at": 1.0, "event": "item_committed", "index": 0, "status": "done", "pad": "x" * 200})
    block = ((line + "\n") * 10_000).encode()
    with open(state / "jobs" / job_id / "events.jsonl", "ab") as f:
        for _ in range(25):  # ~55 MB
            f.write(block)
        f.write(b'{"at": 2.0, "event": "last"}\n')
    tracemalloc.start()
    try:
        t = time.monotonic()
        events = Store(state).events(job_id)
        took = time.monotonic() - t
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert events[-1]["event"] == "last"
    assert len(events) <= (1 << 20) // len(line) + 1  # one MB of the tail at most
    assert peak < 20 * 1024 * 1024, f"{peak / 1e6:.0f} MB for one page view ({took:.1f} s)"


def test_an_id_too_long_for_a_file_name_is_no_such_job(state: Path) -> None:
    with pytest.raises(JobNotFound, match="no job with id"):
        Store(state).get("9" * 300)
    with pytest.raises(JobNotFound):
        Store(state).fresh("9" * 300)
    proc = cli(state, "show", "9" * 300, check=False, timeout=60)
    assert proc.returncode == 1 and "no job with id" in proc.stderr and "Traceback" not in proc.stderr
