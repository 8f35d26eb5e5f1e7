"""Spreadsheet cells made safe: text Excel accepts (cut at its cell limit), formula-like text kept
as text (CSV/formula injection), and the "Export info" sheet of a partial export. Shared by the
exports (jobs/exports/export.py) and the write-back (jobs/exports/writeback.py), below both."""

from __future__ import annotations

import re
import time
from typing import Any

from jobs import config
from jobs.exports.results import Tracker


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
