"""The shape the users asked for: data flows one way, and the dashboard never loads an engine."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PY, REPO

HEAVY = ("torch", "transformers", "rapidocr_onnxruntime", "onnxruntime", "streamlit")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_top_level_layout() -> None:
    for name in (
        "dashboard.py",
        "runner.py",
        "requirements.txt",
        "Makefile",
        "README.md",
        ".ci/run",
        "pyproject.toml",
        "docs/architecture.md",
    ):
        assert (REPO / name).is_file(), name
    for name in ("pages", "jobs", "tests", "state"):
        assert (REPO / name).is_dir(), name


def test_client_side_modules_import_no_engine_or_ui_library() -> None:
    code = (
        "import sys, jobs, jobs.cli, jobs.store.store, jobs.intake.submit, jobs.exports.export, jobs.ops.health, "
        "jobs.store.requests; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("page", sorted(p.name for p in (REPO / "pages").glob("*.py")) + ["../dashboard.py"])
def test_dashboard_pages_never_import_engines_or_workers(page: str) -> None:
    imported = _imports(REPO / "pages" / page)
    runner_side = ("jobs.engines.", "jobs.worker", "jobs.ray", "jobs.runner", "jobs.intake.decode")
    policy = ("jobs.engines.registry", "jobs.engines.allow")  # light: names and the allow-list, no engine code
    bad = {m for m in imported if m.startswith(runner_side) and m not in policy}
    assert not bad | (imported & {"torch", "transformers", "rapidocr_onnxruntime"})


def test_dashboard_renders_the_job_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from jobs.intake.submit import submit
    from jobs.store import Store
    from tests.conftest import make_png

    monkeypatch.setenv("OCRJOBS_STATE", str(tmp_path / "state"))
    job_id = submit(Store(tmp_path / "state"), [make_png(tmp_path / "a.png")])
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30).run()
    assert not at.exception
    assert at.dataframe[0].value["id"].tolist() == [f"job?id={job_id}"]  # a link to the job's page
