"""The installed command: `ocrjobs` from any folder (installed editable by `make setup`), `python -m jobs`
from the repository, and messages that say which job folder a command looked in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PY, REPO

OCRJOBS = Path(sys.executable).parent / "ocrjobs"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "OCRJOBS_STATE"}


def ocrjobs(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not OCRJOBS.is_file():
        pytest.fail(f"{OCRJOBS} is missing: `make setup` installs this project editable (pip install -e .)")
    return subprocess.run([str(OCRJOBS), *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60)


def test_ocrjobs_runs_from_any_folder(tmp_path: Path) -> None:
    proc = ocrjobs(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "submit" in proc.stdout and "health" in proc.stdout


def test_python_m_jobs_still_works_from_the_repository() -> None:
    proc = subprocess.run([PY, "-m", "jobs", "--help"], cwd=REPO, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and "submit" in proc.stdout, proc.stderr


def test_list_in_an_empty_folder_names_the_folder(tmp_path: Path) -> None:
    proc = ocrjobs(tmp_path, "list")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"no jobs in {tmp_path.resolve() / 'state'}"


def test_health_without_a_runner_names_the_folder(tmp_path: Path) -> None:
    state = tmp_path / "elsewhere"
    proc = ocrjobs(tmp_path, "--state", str(state), "health")
    assert proc.returncode == 2
    assert f"no runner is alive in {state.resolve()}" in proc.stdout


def test_an_unknown_job_names_the_folder(tmp_path: Path) -> None:
    proc = ocrjobs(tmp_path, "show", "20260101-000000-abcdef")
    assert proc.returncode == 1
    assert "no job with id" in proc.stderr and f"job folder: {tmp_path.resolve() / 'state'}" in proc.stderr


def test_the_package_holds_jobs_only() -> None:
    """Setuptools packages jobs and its sub-packages, never tests, bench, pages or the job folder."""
    text = (REPO / "pyproject.toml").read_text()
    assert 'ocrjobs = "jobs.cli:main"' in text
    assert re.search(r'include = \["jobs", "jobs\.\*"\]', text)


def test_make_run_exports_the_job_folder() -> None:
    """One job folder for the whole `make run`: the runner, the dashboard and what they start."""
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^run runner: export OCRJOBS_STATE := \$\(abspath \$\(STATE\)\)$", make, re.M)
    assert "--no-build-isolation --no-deps -e ." in make


def test_public_names_keep_working() -> None:
    """What a user may import, whatever the modules are called inside the sub-packages."""
    code = (
        "from jobs import InputError, ItemStatus, Job, JobNotFound, JobStatus, OcrJobsError, Store, StoreBusy, "
        "SubmitError; from jobs.engines import Engine, Recognition; from jobs.store import Job as J, Store as S; "
        "assert J is Job and S is Store; print('ok')"
    )
    proc = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr
