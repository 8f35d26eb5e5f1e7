"""The benchmarks run (``--quick``: their smallest sizes) and print their markdown tables.

Speed is not checked here (the machine is shared); that the scripts still run, and still compare
ocrjobs with its reference, is. Slowest first (measured: 51 s in all on 2 lightly loaded cores,
about twice that when the machine is busy): recovery ~15 s (three SIGKILLs, 1.5 s lease), overhead
~10 s (four processes load the model), memory ~8 s (200 real OCR items), throughput ~8 s, quality
~6 s, report ~3 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CJK_FONT, PY, REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CJK_FONT.is_file(), reason=f"{CJK_FONT} is missing: `make setup` installs it"),
]
GOAL_HEADER = "| measure | ocrjobs | reference | ratio | goal | met? |"


def bench(module: str, *args: str, timeout: float = 180) -> str:
    proc = subprocess.run([PY, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_quality_prints_cer_per_engine_and_subset() -> None:
    out = bench("bench.quality", "--quick")
    assert "| engine | english | chinese | mixed | all |" in out, out
    for engine in ("rapid", "tesseract", "auto"):
        assert f"| `{engine}` | " in out, out
    assert "Goal (auto <= the better engine" in out, out


def test_throughput_prints_both_sides_and_the_ratio() -> None:
    out = bench("bench.throughput", "--quick")
    assert "| configuration | seconds | items/s | vs plain |" in out, out
    assert "| plain default `RapidOCR()` loop" in out and "| ocrjobs, default configuration |" in out, out
    assert "Goal (ocrjobs default >= 1.25x the plain loop):" in out, out


def test_overhead_compares_images_and_a_pdf_with_the_same_threads() -> None:
    out = bench("bench.overhead", "--quick")
    assert GOAL_HEADER in out, out
    assert "| 2 line images (quick): pages/s |" in out and "| >= 0.97x |" in out, out
    assert "| 2-page PDF at 72 dpi (quick): pages/s |" in out and "| > 1.0x |" in out, out
    threads = out.split("`runner.py --once --workers 1 --threads ")[1].split("`")[0]
    assert f"{threads} intra-op thread(s)" in out, out  # the plain loop was given the same count
    # Both sides read the same text: the comparison is of the job system, not of two OCR setups.
    cer_row = next(line for line in out.splitlines() if "(quick): CER" in line)
    assert cer_row.split(" | ")[1] == cer_row.split(" | ")[2], cer_row


def test_recovery_reports_takeover_time_and_redone_items() -> None:
    out = bench("bench.recovery", "--quick")
    assert GOAL_HEADER in out, out
    assert "| kill -> job claimed again (s), median |" in out and "| <= 3.5 s |" in out, out
    assert "| items redone per kill" in out, out
    assert "| jobs finished by the second runner | 3 of 3 |" in out, out


def test_memory_reports_drift_after_warm_up() -> None:
    out = bench("bench.memory", "--quick")
    assert GOAL_HEADER in out, out
    assert "| runner + worker: RSS at 90-100 % of the items (MB) vs at 10-20 % |" in out and "| <= +5% |" in out, out
    assert "One job of 200 items" in out, out


def test_report_writes_results_with_the_machine_and_each_part(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    out = bench("bench.report", "--quick", "--only", "dashboard", "-o", str(results))
    text = results.read_text()
    assert text == out
    assert text.startswith("# Benchmark results") and "Machine: " in text and " cores, " in text, text
    assert "| part | goals | seconds to run |" in text and "| dashboard | " in text, text
    assert GOAL_HEADER in text, text
    for page in ("jobs_page", "job_page", "submit_page", "health_page"):
        assert f"| {page}: one refresh (ms) with 100 jobs | " in text, text


def test_report_calls_other_parts_by_their_entry_points_and_survives_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """store_scale, batching and ray_bench are tested by their owners; here: report.py runs whatever
    entry point such a module has, and a part that fails is a "not available" row, not a crash."""
    import types

    from bench import report

    good = types.ModuleType("bench.fake_good")
    good.measure = lambda work, quick=False: {"n": 3 if quick else 9, "work": work}  # type: ignore[attr-defined]
    good.report = lambda m, quick=False: (f"## Fake\n\n| n |\n|---|\n| {m['n']} |", 1.0)  # type: ignore[attr-defined]
    bad = types.ModuleType("bench.fake_bad")
    bad.section = lambda work, quick: 1 / 0  # type: ignore[attr-defined]
    for mod in (good, bad):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(report.PARTS, "fake_good", ("Fake good", report.external("fake_good")))
    monkeypatch.setitem(report.PARTS, "fake_bad", ("Fake bad", report.external("fake_bad")))
    monkeypatch.setitem(report.PARTS, "missing", ("Not in this tree", report.external("no_such_bench")))
    out = tmp_path / "RESULTS.md"
    assert report.main(["--quick", "--only", "fake_good,fake_bad,missing", "-o", str(out)]) == 0
    text = out.read_text()
    assert "## Fake\n\n| n |\n|---|\n| 3 |" in text, text
    assert "## Fake bad" in text and "not available: ZeroDivisionError: division by zero" in text, text
    assert "## Not in this tree" in text and "No module named 'bench.no_such_bench'" in text, text
    assert "| fake_bad | not available |" in text and "| missing | not available |" in text, text
    # --update re-runs one part and keeps the others' sections as they were.
    monkeypatch.setattr(good, "measure", lambda work, quick=False: {"n": 7})
    assert report.main(["--quick", "--only", "fake_good", "-o", str(out), "--update"]) == 0
    text = out.read_text()
    assert "| 7 |" in text and "| 3 |" not in text, text
    assert "not available: ZeroDivisionError" in text and "(`--update`): fake_good, on " in text, text


def test_gpu_check_runs_families_through_the_real_runner_on_cpu() -> None:
    """bench/gpu_check.sh is what a person runs on the GPU box; --cpu proves the script itself here, on the
    family it must treat apart: DeepSeek-OCR v1 ships its own code (run only with --trust-remote-code)."""
    env = {**os.environ, "FAMILIES": "deepseek_ocr_remote", "ITEMS": "1", "PY": PY}
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--cpu"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| family | device | items done | items/s |" in proc.stdout, proc.stdout
    assert "| deepseek_ocr_remote | cpu | 1/1 | " in proc.stdout, proc.stdout
