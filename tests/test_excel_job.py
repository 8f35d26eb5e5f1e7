"""The seed users' workflow end to end: a 1000-row workbook whose column names 1000 images in a
ZIP, a runner SIGKILLed mid-way and a second one finishing the job, and the workbook back with
exactly one result in each row, everything else in it as it was."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import openpyxl
import pytest
from openpyxl.styles import Font, PatternFill

from jobs.store import Store
from tests.conftest import Runners, cli, cli_json, events, wait_for
from tests.test_excel import make_zip, png_bytes

pytestmark = pytest.mark.slow

N = 1000


def size(i: int) -> tuple[int, int]:
    """Image ``i``'s size, unique per row, so the SizeEngine's text names the image."""
    return 20 + i % 50, 10 + i // 50


def make_workbook(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Scans"
    ws.append(["Case", "Scan", "Pages", "Double"])
    for c in ws[1]:
        c.font = Font(bold=True)
        c.fill = PatternFill("solid", fgColor="DDEEFF")
    for i in range(N):
        r = i + 2
        ws.append([f"case-{i:04d}", f"batch/{i:04d}.png", i % 7, f"=C{r}*2"])
    ws.column_dimensions["A"].width = 14
    ws.column_dimensions["C"].width = 9
    summary = wb.create_sheet("Summary")
    summary["A1"] = "Total pages"
    summary["B1"] = f"=SUM(Scans!C2:C{N + 1})"
    summary["A1"].font = Font(italic=True, color="FF0000")
    summary.merge_cells("A3:C3")
    summary["A3"] = "merged note"
    notes = wb.create_sheet("Notes")
    notes["A1"] = "left alone"
    notes["A1"].number_format = "@"
    wb.save(path)
    return path


def committed(state: Path, job_id: str) -> int:
    rdir = state / "jobs" / job_id / "results"
    return len(list(rdir.glob("[0-9]*.json"))) if rdir.is_dir() else 0


def test_a_1000_row_workbook_survives_a_killed_runner_and_comes_back_filled(
    state: Path, tmp_path: Path, runners: Runners
) -> None:
    book = make_workbook(tmp_path / "cases.xlsx")
    zpath = make_zip(tmp_path / "scans.zip", {f"batch/{i:04d}.png": png_bytes(size(i)) for i in range(N)})
    out = cli_json(
        state,
        "submit",
        str(book),
        "--sheet",
        "Scans",
        "--column",
        "Scan",
        "--images",
        str(zpath),
        "--engine",
        "tests.engines:SizeEngine",
        "--engine-option",
        "delay=0",
    )
    job_id = out["id"]
    assert out["total"] == N

    first = runners.start(state, "--workers", "2", "--lease-seconds", "3")
    wait_for(lambda: committed(state, job_id) >= 150, 60, interval=0.02, what="150 committed items")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    at_kill = committed(state, job_id)
    assert at_kill < N, "the kill must land mid-way"
    partial = cli(state, "export", job_id, "--format", "xlsx", "-o", str(tmp_path / "partial.xlsx"))
    assert "partial export: job is running" in partial.stderr
    info = openpyxl.load_workbook(tmp_path / "partial.xlsx")["Export info"]
    assert info["A1"].value == "Partial export" and f"of {N} items are not processed yet" in info["B1"].value

    runners.start(state, "--workers", "2", "--lease-seconds", "3")
    wait_for(lambda: Store(state).read_state(job_id).get("status") == "succeeded", 90, what="the job to succeed")
    shown = cli_json(state, "show", job_id)
    assert (shown["progress"]["done"], shown["progress"]["percent"]) == (N, 100.0)
    commits = Counter(e["index"] for e in events(state, job_id) if e["event"] == "item_committed")
    # the event log is best-effort (no fsync), so the kill may cost an event, never a second commit
    assert set(commits) <= set(range(N)) and max(commits.values()) == 1 and len(commits) >= N - 4
    assert committed(state, job_id) == N
    claims = [e for e in events(state, job_id) if e["event"] == "claimed"]
    assert [c["epoch"] for c in claims] == [1, 2] and claims[1]["resume_from"] >= at_kill - 2

    result = tmp_path / "cases-ocr.xlsx"
    done = cli(state, "export", job_id, "--format", "xlsx", "-o", str(result))
    assert "partial" not in done.stderr
    wb = openpyxl.load_workbook(result)
    assert wb.sheetnames == ["Scans", "Summary", "Notes"], "no Export info sheet on a complete export"
    ws = wb["Scans"]
    assert [c.value for c in ws[1]] == ["Case", "Scan", "OCR text", "OCR status", "OCR error", "Pages", "Double"]
    assert ws["C1"].font.b and ws["C1"].fill.fgColor.rgb == "00DDEEFF", "new headers look like the old ones"
    texts = {r: ws.cell(r, 3).value for r in range(1, ws.max_row + 1) if ws.cell(r, 3).value is not None}
    assert len(texts) == N + 1  # the header and exactly 1000 filled result cells
    assert all(texts[i + 2] == "{}x{}".format(*size(i)) for i in range(N)), "each result sits in its own row"
    assert all(ws.cell(i + 2, 4).value == "done" and ws.cell(i + 2, 5).value is None for i in range(N))
    assert [ws.cell(r, c).value for r, c in ((2, 1), (2, 2), (2, 6), (2, 7), (N + 1, 7))] == [
        "case-0000",
        "batch/0000.png",
        0,
        "=F2*2",
        f"=F{N + 1}*2",
    ]
    assert ws.column_dimensions["A"].width == 14 and ws.column_dimensions["F"].width == 9
    summary = wb["Summary"]
    assert summary["B1"].value == f"=SUM(Scans!F2:F{N + 1})", "a formula in another sheet follows its column"
    assert summary["A1"].font.i and summary["A1"].font.color.rgb == "00FF0000"
    assert [str(r) for r in summary.merged_cells.ranges] == ["A3:C3"]
    assert wb["Notes"]["A1"].value == "left alone" and wb["Notes"]["A1"].number_format == "@"
