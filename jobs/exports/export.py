"""Exports of a job's results: json (a list of items), csv and xlsx (a table), txt (pages in order).

A job submitted from a workbook or CSV exports csv/xlsx as the user's own sheet with three result
columns right of the chosen one (:mod:`jobs.exports.writeback`). Every export streams items one at a time
from the job folder, so a 10,000-item job is never held in memory twice, and is written to a
temporary file renamed into place: a failed export never leaves half a file. Exports of running
or cancelled jobs work; their missing items are marked ``pending`` and counted in the summary.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TextIO

from jobs.errors import OcrJobsError
from jobs.exports import writeback
from jobs.exports.cells import csv_safe, info_sheet, write_only_cell
from jobs.exports.results import Summary, Tracker, rows
from jobs.ops.terminal import safe
from jobs.store.atomic import TMP_PREFIX
from jobs.store.store import Store

__all__ = ["COLUMNS", "DOCUMENT_FORMATS", "FORMATS", "Summary", "export", "render", "rows", "write"]

FORMATS = ("json", "csv", "txt", "xlsx")
#: The documents (issue 19): a searchable PDF, hOCR and ALTO XML. Apart from FORMATS, the dashboard's
#: download row, until it offers them by name (an ALTO file ends in .xml: ``FILE_EXTENSIONS``).
DOCUMENT_FORMATS = ("pdf", "hocr", "alto")
FILE_EXTENSIONS = {"alto": "xml"}
COLUMNS = (
    "index",
    "source",
    "page",
    "status",
    "text",
    "confidence",
    "truncated",
    "error",
    "error_kind",
    "processing_time_ms",
    "device",
    "method",
)
_WIDTHS = {"source": 40, "text": 80, "error": 50}


def export(store: Store, job_id: str, fmt: str, dest: Path) -> Path:
    return write(store, job_id, fmt, dest).path


def render(store: Store, job_id: str, fmt: str) -> bytes:
    """The export as bytes (the dashboard's download button)."""
    with tempfile.TemporaryDirectory(prefix="ocrjobs-export-") as tmp:
        return write(store, job_id, fmt, Path(tmp) / f"export.{fmt}").path.read_bytes()


def write(store: Store, job_id: str, fmt: str, dest: Path, split: bool = False) -> Summary:
    """Write the export to ``dest`` (renamed into place when complete) and say what it holds. ``split``
    (pdf: one file per source; hocr, alto: one per item) makes ``dest`` a new folder of them."""
    if fmt not in FORMATS + DOCUMENT_FORMATS:
        raise OcrJobsError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS + DOCUMENT_FORMATS)}")
    if split and fmt not in DOCUMENT_FORMATS:
        raise OcrJobsError(f"--split is for pdf, hocr and alto exports, not {fmt} (name the format: --format pdf)")
    dest = Path(dest)
    if split and dest.exists():
        raise OcrJobsError(f"{dest} exists; --split writes a new folder: name one that does not exist yet")
    items = Tracker(store, job_id)
    table = items.job.spec.get("table")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{TMP_PREFIX}{dest.name}.{secrets.token_hex(3)}")
    try:
        if fmt == "pdf":
            from jobs.exports import pdf

            pdf.write(items, tmp, split)
        elif fmt in ("hocr", "alto"):
            from jobs.exports import hocr

            hocr.write(items, fmt, tmp, split)
        elif table and fmt in ("csv", "xlsx"):
            writeback.write(store.job_dir(job_id), table, items, fmt, tmp, dest.suffix.lower())
        elif fmt == "xlsx":
            _xlsx(items, tmp)
        else:
            with open(tmp, "w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline="") as f:
                {"json": _json, "csv": _csv, "txt": _txt}[fmt](items, f)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():  # a --split folder
            shutil.rmtree(tmp)
        tmp.unlink(missing_ok=True)
        raise
    return items.summary(dest, fmt)


def _json(items: Tracker, f: TextIO) -> None:
    f.write("[")
    for n, row in enumerate(items):
        f.write(",\n " if n else "\n ")
        f.write(json.dumps(row, ensure_ascii=False))
    f.write("\n]\n")


def _csv(items: Tracker, f: TextIO) -> None:
    # utf-8-sig (a BOM): Excel opens Chinese text correctly
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in items:
        writer.writerow({c: csv_safe(row.get(c)) for c in COLUMNS})


def _txt(items: Tracker, f: TextIO) -> None:
    for n, r in enumerate(items):
        # a name is one line of its header: a newline in it must not forge a section of its own
        where = (
            safe(r["source"])
            + (f" (row {r['row']})" if r.get("row") else "")
            + (f" — page {r['page']}" if r["page"] else "")
        )
        body = r["text"] if r["status"] == "done" else f"[{r['status']}: {safe(r['error'] or 'not processed yet')}]"
        f.write(("\n" if n else "") + f"===== {where} =====\n{body}\n")
    if items.missing:
        f.write(f"\n===== incomplete: {len(items.missing)} of {items.job.total} items not processed yet =====\n")


def _xlsx(items: Tracker, path: Path) -> None:
    """A table, streamed with openpyxl's write-only mode: rows go to disk as they come."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("OCR results")
    ws.freeze_panes = "A2"
    for n, name in enumerate(COLUMNS, 1):
        ws.column_dimensions[get_column_letter(n)].width = _WIDTHS.get(name, 12)
    header = []
    for name in COLUMNS:
        cell = WriteOnlyCell(ws, name)
        cell.font = Font(bold=True)
        header.append(cell)
    ws.append(header)
    for row in items:
        ws.append([write_only_cell(ws, row[c]) for c in COLUMNS])
    info_sheet(wb, items)
    wb.save(path)
