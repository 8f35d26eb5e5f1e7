"""Disk full: the job folder on a small tmpfs runs out of space while a job runs. The job must pause
with a "disk full" reason, nothing committed may be damaged, and after space is freed and `resume`
is requested the job must finish. Needs root (to mount a tmpfs); skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from tests.chaos.conftest import corrupt_json_files, exactly_once, record
from tests.conftest import Runners, cli, make_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt / "state"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path, leave_bytes: int) -> Path:
    """Take all free space but ``leave_bytes`` with one file."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler.bin"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))
    return filler


def test_disk_full_pauses_the_job_and_resume_finishes_it(small_state: Path, tmp_path: Path, runners: Runners) -> None:
    n_items = 60
    small_state.mkdir()
    store = Store(small_state)
    files = [make_png(tmp_path / "in" / f"p{i:03d}.png", (20 + i, 10)) for i in range(n_items)]
    job_id = submit(store, files, JobSpec(engine="tests.engines:SizeEngine", engine_options={"delay": 0.1}))
    runner = runners.start(small_state, "--workers", "1", "--lease-seconds", "2")
    wait_for(lambda: len(list(store.results_dir(job_id).glob("[0-9]*.json"))) >= 5, 30, what="5 committed items")
    filler = fill(small_state.parent, leave_bytes=40 * 1024)
    wait_for(lambda: store.read_state(job_id).get("status") == "paused", 60, what="the job to pause on disk full")
    paused = store.read_state(job_id)
    before = {p.name: p.read_bytes() for p in store.results_dir(job_id).glob("[0-9]*.json")}
    filler.unlink()
    cli(small_state, "resume", job_id)
    wait_for(lambda: store.read_state(job_id).get("status") == "succeeded", 60, what="the job to finish after resume")
    proof = exactly_once(small_state, job_id, n_items)
    unchanged = all((store.results_dir(job_id) / n).read_bytes() == b for n, b in before.items())
    record(
        "disk_full",
        items=n_items,
        committed_before_pause=len(before),
        reason=paused.get("error"),
        committed_results_unchanged=unchanged,
        items_lost=len(proof["missing"]),
        duplicates=len(proof["committed_twice"]) + proof["duplicates_ignored"],
        corrupt_json=len(corrupt_json_files(small_state)),
    )
    assert paused.get("reason") == "disk_full" and "disk full" in paused["error"], paused
    assert unchanged
    assert proof["missing"] == [] and proof["committed_twice"] == [] and proof["duplicates_ignored"] == 0
    assert corrupt_json_files(small_state) == []
    assert runner.poll() is None, runners.log(runner)[-3000:]  # a full disk never kills the runner
