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
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from jobs import config
from jobs.errors import OcrJobsError
from jobs.ops.terminal import safe
from jobs.store.atomic import TMP_PREFIX
from jobs.store.store import Store

FORMATS = ("json", "csv", "txt", "xlsx")
COLUMNS = (
    "index",
    "source",
    "page",
    "status",
    "text",
    "confidence",
    "error",
    "error_kind",
    "processing_time_ms",
    "device",
)
_WIDTHS = {"source": 40, "text": 80, "error": 50}


@dataclass
class Summary:
    """What an export wrote, and what it could not: the items not processed yet."""

    path: Path
    format: str
    job_status: str
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[dict[str, Any]] = field(default_factory=list)  # index, row, source, page

    def note(self) -> str | None:
        """One line for a person when the export is partial, else None."""
        if not self.missing:
            return None
        first = ", ".join(str(m["index"]) for m in self.missing[:10]) + (", ..." if len(self.missing) > 10 else "")
        return (
            f"partial export: job is {self.job_status}; {len(self.missing)} of {self.total} items not processed "
            f"yet (status 'pending': items {first}); export again when the job has finished"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "job_status": self.job_status,
            "total": self.total,
            "counts": self.counts,
            "missing": len(self.missing),
            "missing_items": [m["index"] for m in self.missing],
        }


class Tracker:
    """Streams a job's items in order (manifest merged with results) and counts them on the way."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self.job = store.get(job_id)
        self.counts: dict[str, int] = {}
        self.missing: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in self.store.manifest(self.job_id):
            row = _merge(item, self._result(item["index"]))
            self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
            if row["status"] == "pending":
                self.missing.append({k: row.get(k) for k in ("index", "row", "source", "page")})
            yield row

    def _result(self, index: int) -> dict[str, Any] | None:
        # None if damaged or forged: the runner quarantines it and redoes the item; until then it is pending
        return self.store.result(self.job_id, index)

    def summary(self, path: Path, fmt: str) -> Summary:
        status = self.store.get(self.job_id).status.value
        return Summary(path, fmt, status, self.job.total, dict(self.counts), self.missing)


def _merge(item: dict[str, Any], res: dict[str, Any] | None) -> dict[str, Any]:
    res = res or {"status": "pending"}
    err = res.get("error") or {}
    out = {
        "index": item["index"],
        "source": item["source"],
        "page": item.get("page"),
        "status": res["status"],
        "text": res.get("text") or "",
        "confidence": res.get("confidence"),
        "error": err.get("message") if isinstance(err, dict) else err,
        "error_kind": err.get("kind") if isinstance(err, dict) else None,
        "processing_time_ms": res.get("processing_time_ms"),
        "device": res.get("device"),
    }
    if "row" in item:
        out["row"] = item["row"]
    return out


def rows(store: Store, job_id: str) -> list[dict[str, Any]]:
    """Every item with its result, in order (the json export as Python objects)."""
    return list(Tracker(store, job_id))


def export(store: Store, job_id: str, fmt: str, dest: Path) -> Path:
    return write(store, job_id, fmt, dest).path


def render(store: Store, job_id: str, fmt: str) -> bytes:
    """The export as bytes (the dashboard's download button)."""
    with tempfile.TemporaryDirectory(prefix="ocrjobs-export-") as tmp:
        return write(store, job_id, fmt, Path(tmp) / f"export.{fmt}").path.read_bytes()


def write(store: Store, job_id: str, fmt: str, dest: Path) -> Summary:
    """Write the export to ``dest`` (renamed into place when complete) and say what it holds."""
    if fmt not in FORMATS:
        raise OcrJobsError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    items = Tracker(store, job_id)
    table = items.job.spec.get("table")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{TMP_PREFIX}{dest.name}.{secrets.token_hex(3)}")
    try:
        if table and fmt in ("csv", "xlsx"):
            from jobs.exports import writeback

            writeback.write(store.job_dir(job_id), table, items, fmt, tmp, dest.suffix.lower())
        elif fmt == "xlsx":
            _xlsx(items, tmp)
        else:
            with open(tmp, "w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline="") as f:
                {"json": _json, "csv": _csv, "txt": _txt}[fmt](items, f)
        os.replace(tmp, dest)
    except BaseException:
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


def excel_value(value: Any) -> Any:
    """A value Excel accepts: control characters dropped, text cut at the cell limit with a
    visible mark (the json and txt exports keep the full text)."""
    if not isinstance(value, str):
        return value
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    text = ILLEGAL_CHARACTERS_RE.sub("", value)
    if len(text) > config.EXCEL_CELL_MAX:
        mark = f"\n[… truncated: {len(text):,} characters in all; the json and txt exports have the full text]"
        text = text[: config.EXCEL_CELL_MAX - len(mark)] + mark
    return text


#: A text cell starting with one of these is run as a formula by Excel, LibreOffice or Sheets
#: (CSV/formula injection: ``=HYPERLINK(...)``, ``+cmd|...``, ``@SUM(...)``).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def formula_like(value: Any) -> bool:
    """Text a spreadsheet would evaluate; a plain number such as ``-12.5`` is not."""
    return isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.match(value)


def csv_safe(value: Any) -> Any:
    """A CSV field that opens as text: formula-like text gets a leading ``'`` (OWASP's advice;
    the json and txt exports keep the text unchanged)."""
    return "'" + value if formula_like(value) else value


def neutralise(cell: Any) -> None:
    """Make an openpyxl text cell inert: a string, shown with Excel's quote prefix (as if typed
    with a leading ``'``), so editing it never turns it into a formula. Its text is unchanged."""
    if formula_like(cell.value):
        cell.data_type = "s"
        cell.quotePrefix = True


def write_only_cell(ws: Any, value: Any) -> Any:
    """A write-only cell; formula-like text stays text, never a formula."""
    value = excel_value(value)
    if formula_like(value):
        from openpyxl.cell import WriteOnlyCell

        cell = WriteOnlyCell(ws, value)
        neutralise(cell)
        return cell
    return value


def info_sheet(wb: Any, items: Tracker) -> None:
    """An "Export info" sheet, only when items are missing: which ones, and why the export is partial."""
    if not items.missing:
        return
    ws = wb.create_sheet("Export info")
    c = items.counts
    lines: list[list[Any]] = [
        ["Partial export", f"{len(items.missing)} of {items.job.total} items are not processed yet"],
        ["Job", items.job_id],
        ["Job status", items.store.get(items.job_id).status.value],
        ["Exported at", time.strftime("%Y-%m-%d %H:%M:%S %Z")],
        ["Done", c.get("done", 0)],
        ["Failed", c.get("failed", 0)],
        ["Timed out", c.get("timed_out", 0)],
        ["Missing (pending)", len(items.missing)],
        [],
        ["Missing items: index", "row", "source", "page"],
    ]
    for line in lines:
        ws.append(line)
    for m in items.missing:  # a source is the user's text (a file name, a cell): never a formula
        ws.append([m["index"], m.get("row"), write_only_cell(ws, m["source"]), m.get("page")])
