"""The CLI contract: JSON shapes, exports, exit codes, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PY, REPO, Runners, cli, cli_json, make_png, wait_for

ENGINE = "tests.engines:SizeEngine"


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [make_png(tmp_path / f"img{i}.png", (40 + i, 30)) for i in range(3)]


def _run_once(state: Path) -> None:
    subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once"], cwd=REPO, check=True, capture_output=True, timeout=120
    )


def test_submit_json_prints_the_id(state: Path, images: list[Path]) -> None:
    out = cli_json(state, "submit", *map(str, images), "--engine", ENGINE)
    assert set(out) == {"id", "total"} and out["total"] == 3
    assert (state / "jobs" / out["id"] / "job.json").is_file()


def test_show_json_reports_status_and_progress(state: Path, images: list[Path]) -> None:
    job_id = cli_json(state, "submit", *map(str, images), "--engine", ENGINE)["id"]
    before = cli_json(state, "show", job_id)
    assert before["status"] == "queued"
    assert {k: before["progress"][k] for k in ("total", "done", "failed", "timed_out")} == {
        "total": 3,
        "done": 0,
        "failed": 0,
        "timed_out": 0,
    }
    _run_once(state)
    after = cli_json(state, "show", job_id)
    assert after["status"] == "succeeded"
    assert after["progress"]["done"] == 3 and after["progress"]["percent"] == 100.0


def test_exports_in_every_format(state: Path, images: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    job_id = cli_json(state, "submit", str(images[0]), str(bad), "--engine", ENGINE)["id"]
    _run_once(state)
    cli(state, "export", job_id, "--format", "json", "-o", str(tmp_path / "r.json"))
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [(r["index"], r["source"], r["status"], r["text"]) for r in rows] == [
        (0, "img0.png", "done", "40x30"),
        (1, "broken.png", "failed", ""),
    ]
    assert {"index", "source", "page", "status", "text", "confidence", "error"} <= set(rows[0])
    assert rows[1]["error"] and rows[1]["error_kind"] == "input"

    cli(state, "export", job_id, "--format", "csv", "-o", str(tmp_path / "r.csv"))
    table = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text(encoding="utf-8-sig"))))
    assert [(r["source"], r["status"], r["text"]) for r in table] == [
        ("img0.png", "done", "40x30"),
        ("broken.png", "failed", ""),
    ]

    cli(state, "export", job_id, "--format", "txt", "-o", str(tmp_path / "r.txt"))
    txt = (tmp_path / "r.txt").read_text()
    assert txt.index("===== img0.png =====\n40x30") < txt.index("===== broken.png =====\n[failed:")


def test_health_is_down_without_a_runner_and_not_down_with_one(state: Path, runners: Runners) -> None:
    proc = cli(state, "health", check=False)
    assert proc.returncode == 2 and "no runner is alive" in proc.stdout
    runners.start(state)

    def runner_alive() -> dict | None:
        report = json.loads(cli(state, "health", "--json", check=False).stdout)
        return report if [r["state"] for r in report["runners"]] == ["alive"] else None

    report = wait_for(runner_alive, timeout=30, what="the runner's heartbeat")
    assert report["status"] != "down"  # "degraded" only if this machine's disk is nearly full
    assert not any("runner" in reason for reason in report["reasons"])


@pytest.mark.slow
def test_wait_exits_zero_only_on_success(state: Path, images: list[Path], tmp_path: Path, runners: Runners) -> None:
    runners.start(state)
    ok = cli(state, "submit", str(images[0]), "--engine", ENGINE, "--wait", check=False, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    failed = cli(state, "submit", str(images[0]), str(bad), "--engine", ENGINE, "--wait", check=False, timeout=60)
    assert failed.returncode == 1
    assert "completed_with_errors: 1 item(s) failed" in failed.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--engine", "no such engine"], "error: unknown engine 'no such engine'"),
        (["--dpi", "5"], "error: dpi must be between 36 and 1200, got 5"),
        (["--item-timeout", "0"], "error: --item-timeout must be more than 0 and at most 86400 s, got 0"),
        (["--engine-option", "novalue"], "error: engine option 'novalue' must look like KEY=VALUE"),
    ],
)
def test_bad_submit_options_are_one_line_errors(state: Path, images: list[Path], args: list[str], message: str) -> None:
    proc = cli(state, "submit", str(images[0]), *args, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_runner_rejects_bad_arguments_clearly(state: Path) -> None:
    proc = subprocess.run(
        [PY, "runner.py", "--state", str(state), "--workers", "0"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "--workers must be at least 1" in proc.stderr
