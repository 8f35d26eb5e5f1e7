"""The benchmarks run (``--quick``: a few line images) and print their markdown tables."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import CJK_FONT, PY, REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CJK_FONT.is_file(), reason=f"{CJK_FONT} is missing: `make setup` installs it"),
]


def bench(module: str) -> str:
    proc = subprocess.run([PY, "-m", module, "--quick"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_quality_prints_cer_per_engine_and_subset() -> None:
    out = bench("bench.quality")
    assert "| engine | english | chinese | mixed | all |" in out, out
    for engine in ("rapid", "tesseract", "auto"):
        assert f"| `{engine}` | " in out, out
    assert "Goal (auto <= the better engine" in out, out


def test_throughput_prints_both_sides_and_the_ratio() -> None:
    out = bench("bench.throughput")
    assert "| configuration | seconds | items/s | vs plain |" in out, out
    assert "| plain default `RapidOCR()` loop" in out and "| ocrjobs, default configuration |" in out, out
    assert "Goal (ocrjobs default >= 1.25x the plain loop):" in out, out


def test_dashboard_refresh_prints_each_page_side_by_side() -> None:
    out = bench("bench.dashboard_refresh")
    assert "| page | 1 job (ms) | 100 jobs (ms)" in out, out
    for page in ("jobs_page", "job_page", "submit_page", "health_page"):
        assert f"| {page} | " in out, out
