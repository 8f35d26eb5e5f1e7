"""The whole hostile corpus as one fixture (``python -m tests.hostile DIR``), through the real CLI and a real
runner: every command ends within its timeout with an answer, no traceback, and the planted engine never runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PY, REPO


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([PY, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c"
    proc = run("-m", "tests.hostile", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_every_hostile_upload_gets_an_answer_not_a_hang(corpus: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    answers = {}
    for upload in sorted((corpus / "uploads").iterdir()):
        if upload.suffix == ".xlsx":
            proc = run("-m", "jobs", "--state", str(state), "inspect", str(upload), timeout=60)
        elif upload.is_file():
            proc = run("-m", "jobs", "--state", str(state), "submit", str(upload), "--json", timeout=60)
        else:
            continue
        answers[upload.name] = proc.returncode
        if proc.returncode:
            assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert answers["shared-strings-1gib.xlsx"] == 1 and answers["billion-laughs.xlsx"] == 1
    assert answers["pages-1000.tif"] == 0 and answers["huge-119mp.png"] == 0


@pytest.mark.slow
def test_a_folder_full_of_planted_files_is_read_and_run_without_harm(corpus: Path) -> None:
    state = corpus / "state"
    assert run("-m", "jobs", "--state", str(state), "list", timeout=30).returncode == 0
    assert run("-m", "jobs", "--state", str(state), "health", "--json", timeout=30).returncode in (0, 1, 2)
    proc = run("runner.py", "--state", str(state), "--once", "--workers", "1", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (state / "EVIL-RAN").exists()
    jobs = json.loads(run("-m", "jobs", "--state", str(state), "list", "--json", timeout=30).stdout)
    assert "succeeded" in {j["status"] for j in jobs}
    assert "skipping job" in proc.stdout + proc.stderr  # the job whose job.lock is a FIFO, named once
