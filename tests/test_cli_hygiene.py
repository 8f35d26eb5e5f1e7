"""Issue 17 defect 14: the CLI's small lies (export format/stdout, closed pipes, no-op requests, timeout rule)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from tests.conftest import PY, REPO, cli, cli_json, make_png

ENGINE = "tests.engines:SizeEngine"


def _run_once(state: Path) -> None:
    subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once"], cwd=REPO, check=True, capture_output=True, timeout=120
    )


@pytest.fixture
def done_job(state: Path, tmp_path: Path) -> str:
    images = [make_png(tmp_path / f"img{i}.png", (40 + i, 30)) for i in range(3)]
    job_id = cli_json(state, "submit", *map(str, images), "--engine", ENGINE)["id"]
    _run_once(state)
    assert cli_json(state, "show", job_id)["status"] == "succeeded"
    return job_id


def test_export_takes_the_format_from_the_extension(state: Path, done_job: str, tmp_path: Path) -> None:
    cli(state, "export", done_job, "-o", str(tmp_path / "book.xlsx"))
    assert zipfile.is_zipfile(tmp_path / "book.xlsx")
    cli(state, "export", done_job, "-o", str(tmp_path / "rows.csv"))
    assert (tmp_path / "rows.csv").read_text(encoding="utf-8-sig").startswith("index,")
    cli(state, "export", done_job, "-o", str(tmp_path / "noext"))  # no known extension: json, as before
    assert len(json.loads((tmp_path / "noext").read_text())) == 3


def test_export_format_disagreeing_with_the_extension_is_an_error(state: Path, done_job: str, tmp_path: Path) -> None:
    proc = cli(state, "export", done_job, "--format", "csv", "-o", str(tmp_path / "book.xlsx"), check=False)
    assert proc.returncode == 1
    assert "csv" in proc.stderr and ".xlsx" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "book.xlsx").exists()


def test_export_dash_writes_to_stdout(state: Path, done_job: str, tmp_path: Path) -> None:
    proc = cli(state, "export", done_job, "-o", "-")
    assert [r["index"] for r in json.loads(proc.stdout)] == [0, 1, 2]
    assert not (REPO / "-").exists()
    raw = subprocess.run(
        [PY, "-m", "jobs", "--state", str(state), "export", done_job, "--format", "xlsx", "-o", "-"],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert zipfile.is_zipfile(BytesIO(raw.stdout))


@pytest.mark.parametrize("args", [("list", "--json"), ("export", "{id}", "-o", "-")])
def test_a_closed_pipe_ends_quietly(state: Path, done_job: str, args: tuple[str, ...]) -> None:
    argv = " ".join(a.format(id=done_job) for a in args)
    proc = subprocess.run(
        f"set -o pipefail; {PY} -m jobs --state {state} {argv} | head -c 0",  # head leaves before the CLI writes
        shell=True,
        executable="/bin/bash",
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 141), proc.stderr
    assert proc.stdout == ""


def test_requests_that_would_do_nothing_say_so(state: Path, done_job: str, tmp_path: Path) -> None:
    for verb in ("cancel", "pause", "resume"):
        proc = cli(state, verb, done_job, check=False)
        assert proc.returncode == 1 and "requested" not in proc.stdout, (verb, proc.stdout)
        assert f"is succeeded: nothing to {verb}" in proc.stderr
    queued = cli_json(state, "submit", str(make_png(tmp_path / "q.png")), "--engine", ENGINE)["id"]
    proc = cli(state, "resume", queued, check=False)
    assert proc.returncode == 1 and "is queued: nothing to resume" in proc.stderr
    assert cli(state, "pause", queued).returncode == 0  # a real request still goes through


def test_pause_on_a_paused_job_says_it_is_paused_already(state: Path, tmp_path: Path) -> None:
    from jobs.store import Store
    from jobs.store.lease import claim_next, finish
    from jobs.store.status import JobStatus

    job_id = cli_json(state, "submit", str(make_png(tmp_path / "p.png")), "--engine", ENGINE)["id"]
    store = Store(state)
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None and claim.job_id == job_id
    finish(store, claim, JobStatus.PAUSED)  # as a runner ends a pause
    proc = cli(state, "pause", job_id, check=False)
    assert proc.returncode == 1 and "is paused: nothing to pause" in proc.stderr and "requested" not in proc.stdout
    assert store.pending_requests(job_id) == []


def test_item_timeout_zero_states_the_real_rule(state: Path, tmp_path: Path) -> None:
    img = make_png(tmp_path / "a.png")
    proc = cli(state, "submit", str(img), "--engine", ENGINE, "--item-timeout", "0", check=False)
    assert proc.returncode == 1
    assert "more than 0 and at most 86400 s, got 0" in proc.stderr
    assert "between" not in proc.stderr
