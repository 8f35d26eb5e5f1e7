"""Results back into the user's own sheet: three columns right of the chosen one.

For a workbook, xlsx is a copy of the original (formulas, styles, other sheets kept; see
:mod:`jobs.exports.shift` for what moves with the inserted columns). csv is the chosen sheet's values
(a CSV keeps its own delimiter) with the three columns inserted. A row whose cell named a
multi-page PDF, or held several pictures, gets its pages' texts joined in order.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from copy import copy
from pathlib import Path
from typing import Any

from jobs.errors import OcrJobsError, SubmitError
from jobs.exports.cells import csv_safe, excel_value, info_sheet, neutralise, write_only_cell
from jobs.exports.results import Tracker, truncation_advice
from jobs.intake.workbook_limits import check_cells, check_workbook

RESULT_HEADERS = ("OCR text", "OCR status", "OCR error")
_WIDTHS = (60, 12, 40)
Result = tuple[str | None, str | None, str | None]


def write(job_dir: Path, table: dict[str, Any], items: Tracker, fmt: str, tmp: Path, suffix: str) -> None:
    results = by_row(items)
    if fmt == "xlsx" and table["format"] == "xlsx":
        _workbook(job_dir / table["workbook"], table, results, items, tmp, keep_vba=suffix == ".xlsm")
    elif fmt == "xlsx":
        _new_workbook(_sheet_rows(job_dir, table, results), items, tmp)
    else:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f, delimiter=table.get("delimiter") or ",")
            for values in _sheet_rows(job_dir, table, results):
                writer.writerow("" if v is None else csv_safe(v) for v in values)


def by_row(items: Iterable[dict[str, Any]]) -> Iterator[tuple[int, Result]]:
    """(row, (text, status, error)) in row order. Items come in row order, a row's items next to
    each other, so each row is combined as soon as it is complete and nothing else is kept."""
    current: list[dict[str, Any]] = []
    for item in items:
        if current and item["row"] != current[0]["row"]:
            yield current[0]["row"], _combine(current)
            current = []
        part = {k: item.get(k) for k in ("row", "page", "source", "status", "text", "error")}
        if item.get("truncated") and not part["error"]:  # done, but the text is incomplete: say so in its row
            part["error"] = truncation_advice(item.get("truncated_by"))
        current.append(part)
    if current:
        yield current[0]["row"], _combine(current)


def _combine(parts: list[dict[str, Any]]) -> Result:
    if len(parts) == 1:
        p = parts[0]
        return p["text"] or None, p["status"], p["error"] or None
    labels = [f"page {p['page']}" if p["page"] else p["source"] for p in parts]
    text = "\n\n".join(f"--- {label} ---\n{p['text']}" for label, p in zip(labels, parts, strict=True) if p["text"])
    error = "; ".join(f"{label}: {p['error']}" for label, p in zip(labels, parts, strict=True) if p["error"])
    statuses = {p["status"] for p in parts}
    status = next((s for s in ("failed", "timed_out", "pending") if s in statuses), "done")
    return text or None, status, error or None


def _workbook(
    src: Path, table: dict[str, Any], results: Iterator[tuple[int, Result]], items: Tracker, dest: Path, keep_vba: bool
) -> None:
    import openpyxl
    from openpyxl.cell.cell import MergedCell
    from openpyxl.utils import get_column_letter

    from jobs.exports.shift import insert_columns

    if not src.is_file():
        raise OcrJobsError(f"the job's copy of the workbook is missing ({src}); export as json or txt instead")
    try:  # the copy keeps every sheet, so the whole workbook is loaded: bound what that costs
        check_cells(table.get("file") or src.name, check_workbook(src), "the xlsx export")
    except SubmitError as e:
        raise OcrJobsError(f"{e}; export as csv (the chosen sheet only) or json instead") from None
    wb = openpyxl.load_workbook(src, keep_vba=keep_vba, rich_text=True)  # formulas kept, not cached values
    ws = wb[table["sheet"]]
    col = int(table["column_index"])
    at = col + 1
    insert_columns(wb, ws, at, list(RESULT_HEADERS))
    if table["header_row"]:
        head = ws.cell(table["header_row"], col)
        for k, name in enumerate(RESULT_HEADERS):
            cell = ws.cell(table["header_row"], at + k)
            if not isinstance(cell, MergedCell):
                cell.value = name
                if head.has_style:
                    cell._style = copy(head._style)
    for row, values in results:
        for k, value in enumerate(values):
            cell = ws.cell(row, at + k)
            if isinstance(cell, MergedCell):
                continue  # covered by a merge: Excel would not show it
            cell.value = excel_value(value)
            neutralise(cell)  # OCR text, never a formula
    for k, width in enumerate(_WIDTHS):
        ws.column_dimensions[get_column_letter(at + k)].width = width
    info_sheet(wb, items)
    wb.save(dest)


def _new_workbook(rows: Iterator[list[Any]], items: Tracker, dest: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("OCR results")
    for values in rows:
        ws.append([write_only_cell(ws, v) for v in values])
    info_sheet(wb, items)
    wb.save(dest)


def _sheet_rows(job_dir: Path, table: dict[str, Any], results: Iterator[tuple[int, Result]]) -> Iterator[list[Any]]:
    """The chosen sheet's values, row by row, with the three result columns inserted: a merge of
    two streams in row order, the sheet's rows and the results."""
    from jobs.intake.books import open_book

    book = open_book(job_dir / table["workbook"])
    col, header_row = int(table["column_index"]), int(table["header_row"])
    pending = next(results, None)
    try:
        for n, values in enumerate(book.rows(table["sheet"]), 1):
            padded = list(values) + [None] * (col - len(values))
            extra: list[Any] = [None, None, None]
            if n == header_row:
                extra = list(RESULT_HEADERS)
            elif pending is not None and pending[0] == n:
                extra = list(pending[1])
                pending = next(results, None)
            yield padded[:col] + extra + padded[col:]
    finally:
        book.close()
