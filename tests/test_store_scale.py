"""``python -m bench.store_scale --quick`` still runs and prints its side-by-side table (not its speed)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import PY, REPO

pytestmark = pytest.mark.slow


def test_store_scale_quick_prints_the_table_with_both_sides() -> None:
    proc = subprocess.run(
        [PY, "-m", "bench.store_scale", "--quick"], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith("## Store at scale"), out
    assert "| measure | ocrjobs | reference | ratio | goal | met? |" in out, out
    for measure in (
        "submit rate",
        "claim p50, 300 queued",
        "per-item durable commit p50",
        "list 301 job summaries, warm p50",
        "one poll of an idle runner",
    ):
        assert f"| {measure}" in out, out
    assert "RQ durable" in out or "RQ skipped" in out, out
