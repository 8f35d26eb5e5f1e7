"""Exports: the xlsx table, Excel's cell limit, partial exports, streaming at 10,000 items, and
inserted columns that carry formulas, merges, widths and rules with them.

Results are written straight into the job folder here, as a runner would commit them, so each
test controls exactly which items are done, failed or still missing.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from pathlib import Path

import openpyxl
import pytest
from openpyxl.formatting.rule import CellIsRule, FormulaRule
from openpyxl.styles import Font, PatternFill
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.table import Table

from jobs import config
from jobs.exports import cells, export
from jobs.exports.shift import insert_columns
from jobs.intake.submit import JobSpec, submit, submit_table
from jobs.store import Store
from jobs.store.atomic import atomic_write_json
from tests.conftest import PY, REPO, cli, cli_json, make_png
from tests.test_excel import make_book, make_zip, png_bytes


def commit(
    store: Store,
    job_id: str,
    index: int,
    status: str = "done",
    text: str = "",
    error: str | None = None,
    page: int | None = None,
) -> None:
    atomic_write_json(
        store.result_path(job_id, index),
        {
            "index": index,
            "source": "-",
            "page": page,
            "status": status,
            "text": text,
            "confidence": 0.9,
            "processing_time_ms": 5.0,
            "device": "cpu",
            "error": {"kind": "input", "message": error} if error else None,
        },
        durable=False,
    )


@pytest.fixture
def files_job(state: Path, tmp_path: Path) -> str:
    pngs = [make_png(tmp_path / f"s{i}.png", (20 + i, 10)) for i in range(3)]
    job_id = submit(Store(state), pngs, JobSpec(engine="tests.engines:SizeEngine"))
    (Store(state).results_dir(job_id)).mkdir()
    return job_id


def test_xlsx_table_respects_excel_cell_rules(state: Path, files_job: str, tmp_path: Path) -> None:
    store = Store(state)
    long = "x" * 40_000
    commit(store, files_job, 0, text="=SUM(A1) is what the scan says\x0c")
    commit(store, files_job, 1, text=long)
    commit(store, files_job, 2, status="failed", error="image is truncated or damaged")
    out = tmp_path / "t.xlsx"
    cli(state, "export", files_job, "--format", "xlsx", "-o", str(out))
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["OCR results"]
    ws = wb["OCR results"]
    assert [c.value for c in ws[1]] == list(export.COLUMNS)
    rows = [{k: c.value for k, c in zip(export.COLUMNS, r, strict=True)} for r in ws.iter_rows(min_row=2)]
    assert [(r["source"], r["status"]) for r in rows] == [("s0.png", "done"), ("s1.png", "done"), ("s2.png", "failed")]
    assert rows[0]["text"] == "=SUM(A1) is what the scan says" and ws["E2"].data_type == "s", "text, not a formula"
    cut = rows[1]["text"]
    assert len(cut) == config.EXCEL_CELL_MAX and cut.startswith("x" * 32_000)
    assert cut.endswith("[… truncated: 40,000 characters in all; the json and txt exports have the full text]")
    assert rows[2]["error"] == "image is truncated or damaged" and rows[2]["error_kind"] == "input"
    cli(state, "export", files_job, "--format", "json", "-o", str(tmp_path / "t.json"))
    assert json.loads((tmp_path / "t.json").read_text())[1]["text"] == long, "json keeps the full text"


def test_partial_export_of_a_cancelled_job_says_what_is_missing(state: Path, files_job: str, tmp_path: Path) -> None:
    store = Store(state)
    commit(store, files_job, 0, text="first")
    atomic_write_json(store.job_dir(files_job) / "state.json", {"status": "cancelled"})
    proc = cli(state, "export", files_job, "--format", "xlsx", "-o", str(tmp_path / "p.xlsx"))
    assert proc.stderr.strip() == (
        "note: partial export: job is cancelled; 2 of 3 items not processed yet (status 'pending': items 1, 2); "
        "export again when the job has finished"
    )
    info = openpyxl.load_workbook(tmp_path / "p.xlsx")["Export info"]
    values = [[c.value for c in r] for r in info.iter_rows()]
    assert values[0][:2] == ["Partial export", "2 of 3 items are not processed yet"]
    assert ["Job status", "cancelled"] == values[2][:2] and ["Missing (pending)", 2] == values[7][:2]
    assert [r[:3] for r in values[-2:]] == [[1, None, "s1.png"], [2, None, "s2.png"]]
    summary = cli_json(state, "export", files_job, "--format", "csv", "-o", str(tmp_path / "p.csv"))
    assert (summary["missing"], summary["missing_items"], summary["job_status"]) == (2, [1, 2], "cancelled")
    table = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text(encoding="utf-8-sig"))))
    assert [r["status"] for r in table] == ["done", "pending", "pending"]
    cli(state, "export", files_job, "--format", "txt", "-o", str(tmp_path / "p.txt"))
    txt = (tmp_path / "p.txt").read_text()
    assert "===== s1.png =====\n[pending: not processed yet]" in txt
    assert txt.endswith("===== incomplete: 2 of 3 items not processed yet =====\n")


def test_a_failed_export_leaves_no_file_behind(state: Path, files_job: str, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    proc = cli(state, "export", files_job, "--format", "xlsx", "-o", str(tmp_path / "taken"), check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: Is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0.png", "s1.png", "s2.png", "state", "taken"]


def test_rows_with_several_pages_join_them_in_order(state: Path, tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for w in (100, 110, 120):
        doc.new_page(w, 80)
    buf = io.BytesIO()
    doc.save(buf)
    book = make_book(tmp_path / "b.xlsx", {"S": [["file"], ["report.pdf"], ["one.png"]]})
    zpath = make_zip(tmp_path / "z.zip", {"report.pdf": buf.getvalue(), "one.png": png_bytes((5, 5))})
    store = Store(state)
    job_id = submit_table(store, book, column="file", images=zpath)
    assert [(i["row"], i["page"]) for i in store.manifest(job_id)] == [(2, 1), (2, 2), (2, 3), (3, None)]
    store.results_dir(job_id).mkdir()
    commit(store, job_id, 0, text="page one", page=1)
    commit(store, job_id, 1, status="failed", error="PDF page 2 could not be rendered", page=2)
    commit(store, job_id, 2, text="page three", page=3)
    out = tmp_path / "o.xlsx"
    cli(state, "export", job_id, "--format", "xlsx", "-o", str(out))
    ws = openpyxl.load_workbook(out)["S"]
    assert [c.value for c in ws[2]] == [
        "report.pdf",
        "--- page 1 ---\npage one\n\n--- page 3 ---\npage three",
        "failed",
        "page 2: PDF page 2 could not be rendered",
    ]
    assert [c.value for c in ws[3]] == ["one.png", None, "pending", None]
    assert openpyxl.load_workbook(out)["Export info"]["B1"].value == "1 of 4 items are not processed yet"


def _big_job(state: Path, n: int) -> tuple[str, int]:
    """A finished job of ``n`` items, each with its own 1,000-character text, written directly."""
    store = Store(state)
    job_id = "20260101-000000-abcdef"
    d = store.job_dir(job_id)
    (d / "results").mkdir(parents=True)
    atomic_write_json(
        d / "manifest.json",
        [
            {"index": i, "source": f"scan{i:05d}.png", "path": f"inputs/{i}.png", "page": None, "kind": "image"}
            for i in range(n)
        ],
        durable=False,
    )
    atomic_write_json(
        d / "job.json",
        {"id": job_id, "created_at": time.time(), "priority": 0, "spec": {"engine": "x"}, "total": n},
        durable=False,
    )
    words = "lorem ipsum dolor sit amet 文字 ".split()
    total = 0
    for i in range(n):
        text = " ".join(words[(i * k) % len(words)] + str(i * k) for k in range(120))[:1000]
        total += len(text.encode())
        commit(store, job_id, i, text=text)
    return job_id, total


@pytest.mark.slow
def test_10000_items_export_without_holding_the_job_in_memory(state: Path, tmp_path: Path) -> None:
    job_id, text_bytes = _big_job(state, 10_000)
    peaks: dict[str, float] = {}
    for fmt in ("json", "xlsx"):
        # in a process of its own: tracemalloc counts every thread, and this one has others' threads
        code = (
            "import json, sys, tracemalloc, openpyxl; from jobs.exports import export; from jobs.store import Store; "
            "export.write(Store(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] + '.warm'); "  # imports done
            "tracemalloc.start(); s = export.write(Store(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]); "
            "print(json.dumps([tracemalloc.get_traced_memory()[1], s.missing, s.counts]))"
        )
        out = subprocess.run(
            [PY, "-c", code, str(state), job_id, fmt, str(tmp_path / f"big.{fmt}")],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        peaks[fmt], missing, counts = json.loads(out.stdout.splitlines()[-1])
        assert missing == [] and counts == {"done": 10_000}
    assert text_bytes > 10_000_000
    # streamed: the peak is the manifest (item metadata), less than the texts even once
    assert peaks["json"] < text_bytes, f"json peak {peaks['json'] / 1e6:.1f} MB: must stream"
    assert peaks["xlsx"] < text_bytes, f"xlsx peak {peaks['xlsx'] / 1e6:.1f} MB: write-only mode must stream"
    assert len(json.loads((tmp_path / "big.json").read_text())) == 10_000
    ws = openpyxl.load_workbook(tmp_path / "big.xlsx", read_only=True)["OCR results"]
    assert sum(1 for _ in ws.iter_rows(min_row=2)) == 10_000


# -- inserting the result columns moves what refers to the columns after them ----------------------
def _rich_workbook(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["Name", "Scan", "Qty", "Total"])
    for r in range(2, 6):
        ws.append([f"n{r}", f"{r}.png", r, f"=C{r}*2+A{r}"])
    ws["F1"] = "=SUM(C2:D5)"
    ws["F2"] = "=SUM(C:C)"
    ws["F3"] = '=IF(A2="C3",$C$2,D2)'
    ws.merge_cells("C7:D7")
    ws.merge_cells("A8:C8")
    ws.column_dimensions["C"].width = 33
    ws.column_dimensions["A"].width = 11
    ws["C2"].font = Font(bold=True, color="FF0000")
    ws.conditional_formatting.add("C2:C5", CellIsRule(operator="greaterThan", formula=["3"], fill=PatternFill()))
    ws.conditional_formatting.add("D2:D5", FormulaRule(formula=["$C2>3"], fill=PatternFill()))
    dv = DataValidation(type="whole", formula1="=$C$2")
    dv.add("C2:C5")
    ws.add_data_validation(dv)
    ws.auto_filter.ref = "A1:D5"
    ws.freeze_panes = "C2"
    ws["D2"].hyperlink = "https://example.com"
    ws.print_area = "A1:D5"
    other = wb.create_sheet("Other")
    other["A1"] = "=Data!C2+Data!A2"
    other["A2"] = "='Data'!D3"
    other["A3"] = "=C2"  # its own sheet's C2: untouched
    wb.defined_names["qty"] = DefinedName("qty", attr_text="Data!$C$2:$C$5")
    wb.save(path)
    return path


def test_inserted_columns_carry_formulas_merges_widths_and_rules(tmp_path: Path) -> None:
    wb = openpyxl.load_workbook(_rich_workbook(tmp_path / "rich.xlsx"))
    insert_columns(wb, wb["Data"], 3, ["OCR text", "OCR status", "OCR error"])
    wb.save(tmp_path / "out.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "out.xlsx")
    ws = wb["Data"]
    assert [ws.cell(2, c).value for c in range(1, 8)] == ["n2", "2.png", None, None, None, 2, "=F2*2+A2"]
    assert [ws["I1"].value, ws["I2"].value, ws["I3"].value] == ["=SUM(F2:G5)", "=SUM(F:F)", '=IF(A2="C3",$F$2,G2)']
    assert sorted(str(r) for r in ws.merged_cells.ranges) == ["A8:F8", "F7:G7"]
    assert (ws.column_dimensions["A"].width, ws.column_dimensions["F"].width) == (11, 33)
    assert ws["F2"].font.b and ws["F2"].font.color.rgb == "00FF0000"
    assert [(str(cf.sqref), cf.rules[0].formula) for cf in ws.conditional_formatting] == [
        ("F2:F5", ["3"]),
        ("G2:G5", ["$F2>3"]),
    ]
    assert [(str(d.sqref), d.formula1) for d in ws.data_validations.dataValidation] == [("F2:F5", "=$F$2")]
    assert (ws.auto_filter.ref, ws.freeze_panes, ws.print_area) == ("A1:G5", "C2", "'Data'!$A$1:$G$5")
    assert ws["G2"].hyperlink.target == "https://example.com"
    assert [wb["Other"][c].value for c in ("A1", "A2", "A3")] == ["=Data!F2+Data!A2", "='Data'!G3", "=C2"]
    assert wb.defined_names["qty"].attr_text == "Data!$F$2:$F$5"


def test_columns_inserted_inside_a_table_become_its_columns(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Name", "Scan", "Qty"])
    for r in range(2, 5):
        ws.append([f"n{r}", f"{r}.png", r])
    ws.add_table(Table(displayName="Cases", ref="A1:C4"))
    wb.save(tmp_path / "t.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "t.xlsx")
    ws = wb.active
    insert_columns(wb, ws, 3, ["OCR text", "OCR status", "Qty"])
    wb.save(tmp_path / "t.xlsx")
    table = openpyxl.load_workbook(tmp_path / "t.xlsx").active.tables["Cases"]
    assert table.ref == "A1:F4"
    assert [c.name for c in table.tableColumns] == ["Name", "Scan", "OCR text", "OCR status", "Qty 2", "Qty"]


def test_excel_value_helper() -> None:
    assert cells.excel_value(3.5) == 3.5
    assert cells.excel_value("a\x00b\x1bc\n") == "abc\n"
    exact = "y" * config.EXCEL_CELL_MAX
    assert cells.excel_value(exact) == exact
