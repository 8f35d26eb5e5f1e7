"""Issue 14, finding 10 (part): a worker that cannot start is respawned with a growing pause, and a job
whose workers keep failing to start fails with the reason, instead of a respawn loop that burns a core.

Real runner processes; every worker start is counted in a log file the dying code appends to.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from jobs.store import Store
from tests.conftest import PY, REPO, Runners, make_png, wait_for
from tests.hostile.engine_code import dying_worker_site

ENGINE = "tests.hostile.engine_code:ExitOnLoadEngine"
ALLOW = {"OCRJOBS_ALLOWED_ENGINES": "tests.engines:*,tests.hostile.engine_code:*"}


def submit(state: Path, files: list[Path], *args: str) -> str:
    proc = subprocess.run(
        [PY, "-m", "jobs", "--state", str(state), "submit", *map(str, files), "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ALLOW},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


def starts(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def ended(state: Path, job_id: str) -> dict[str, object] | None:
    shown = Store(state).read_state(job_id)
    return shown if shown.get("status") in ("failed", "succeeded", "completed_with_errors") else None


def test_an_engine_that_kills_its_worker_while_loading_fails_the_job_after_a_few_tries(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    """No item is to blame: the job fails with the reason after 5 tries (not two crashes per item,
    each a fresh process loading the engine), and the runner lives on."""
    log = tmp_path / "loads.log"
    files = [make_png(tmp_path / "in" / f"p{i}.png", (20 + i, 10)) for i in range(8)]
    job_id = submit(state, files, "--engine", ENGINE, "--engine-option", f"log={log}")
    runner = runners.start(state, "--workers", "1", env=ALLOW)
    shown = wait_for(lambda: ended(state, job_id), timeout=120, what="the job to end")
    assert shown["status"] == "failed", shown
    error = str(shown["error"])
    assert error.startswith("the worker process died while loading the engine (exit code 3), 5 times in a row"), error
    assert starts(log) == 5, starts(log)
    progress = shown["progress"]
    assert [progress.get(k, 0) for k in ("done", "failed", "timed_out")] == [0, 0, 0], progress  # no item blamed
    assert runner.poll() is None, runners.log(runner)


def test_a_worker_that_cannot_start_is_respawned_with_a_pause_and_its_job_fails(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    """Every worker process exits at once (a broken environment). Idle, the runner tries again after
    0.5, 1, 2, 4... s, not as fast as its loop turns; a job it claims fails with the reason."""
    log = tmp_path / "worker-starts.log"
    site = dying_worker_site(tmp_path / "site", log, code=1)
    runner = runners.start(state, "--workers", "1", env={**ALLOW, "PYTHONPATH": str(site)})
    wait_for(lambda: starts(log) >= 1, timeout=60, what="the first worker start")
    time.sleep(6)
    idle_starts = starts(log)
    assert 2 <= idle_starts <= 6, f"{idle_starts} worker starts in 6 s idle"
    assert runner.poll() is None, runners.log(runner)

    job_id = submit(state, [make_png(tmp_path / "in" / "p.png")], "--engine", "tests.engines:SizeEngine")
    shown = wait_for(lambda: ended(state, job_id), timeout=120, what="the job to end")
    assert shown["status"] == "failed", shown
    assert str(shown["error"]).startswith(
        "the worker process exited before it started (exit code 1), 5 times in a row, so the job was failed"
    ), shown["error"]
    assert starts(log) - idle_starts <= 6
    assert runner.poll() is None, runners.log(runner)
