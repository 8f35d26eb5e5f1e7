"""Reading a workbook or CSV the way a user points at it: a sheet, a column (header text or
letter) and a header row.

Submit validates here, before anything is queued, so a wrong sheet or column is one clear
error listing what there is; ``python -m jobs inspect`` and the dashboard preview use
:func:`inspect`. Formula cells give their cached value (what Excel last computed). Nothing
here knows about jobs; rows are streamed, so a large sheet costs memory for one column only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs import config
from jobs.errors import SubmitError
from jobs.intake.books import TABLE_EXTS, Book, CsvBook, Embedded, XlsxBook, is_table, open_book
from jobs.intake.workbook_limits import check_cells
from jobs.ops.terminal import safe

__all__ = [
    "EXCEL_ERRORS",
    "MAX_REF_CHARS",
    "TABLE_EXTS",
    "Embedded",
    "Row",
    "Selection",
    "cell_text",
    "describe",
    "inspect",
    "is_table",
    "letter",
    "open_book",
    "select",
]

_LETTERS = re.compile(r"^[A-Za-z]{1,3}$")
_MAX_LISTED = 30
#: What ``inspect`` (the upload preview) reads of a sheet: it stops counting rows past the
#: submit limit (OCRJOBS_MAX_TABLE_ROWS) or a number of cells read, and shows at most this many
#: columns and characters a cell.
_MAX_COLUMNS = 256
_MAX_PREVIEW_CHARS = 200
_MAX_INSPECT_CELLS = 500_000  # ~5 s of openpyxl: past it a sheet's rows are "more than N"
#: A cell naming a file: longer text (PATH_MAX is 4096) is that row's error, not an item's name.
MAX_REF_CHARS = 4096
#: What a formula cell caches when Excel could not compute it.
EXCEL_ERRORS = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA", "#SPILL!", "#CALC!"}
)


@dataclass
class Row:
    """One non-empty data row: the chosen cell's value and any pictures anchored in that cell."""

    row: int
    value: Any
    images: list[Embedded] = field(default_factory=list)
    formula: str | None = None  # set when the cell is a formula Excel never computed


@dataclass
class Selection:
    """A validated choice of sheet and column, with the rows to turn into items."""

    path: Path
    format: str  # "xlsx" or "csv"
    sheet: str
    column: int  # 1-based
    header: str | None
    header_row: int
    rows: list[Row]
    delimiter: str | None = None  # csv only

    @property
    def letter(self) -> str:
        return letter(self.column)

    def spec(self) -> dict[str, Any]:
        """What job.json records so an export can write results back next to the column."""
        return {
            "format": self.format,
            "sheet": self.sheet,
            "column": self.letter,
            "column_index": self.column,
            "header": self.header,
            "header_row": self.header_row,
            "delimiter": self.delimiter,
        }


def letter(col: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(col)


# -- inspect: what the user chooses from -----------------------------------------------------------
def inspect(path: str | Path, header_row: int = 1, preview: int = 5) -> dict[str, Any]:
    """Sheets, their columns (letter, header, pictures) and first data rows, as plain data."""
    path = Path(path)
    book = open_book(path)
    try:
        sheets = [_inspect_sheet(book, name, header_row, preview) for name in book.sheets]
    finally:
        book.close()
    return {"file": path.name, "format": "csv" if isinstance(book, CsvBook) else "xlsx", "sheets": sheets}


def _inspect_sheet(book: Book, sheet: str, header_row: int, preview: int) -> dict[str, Any]:
    headers: tuple[Any, ...] = ()
    first: list[list[str]] = []
    width = count = read = 0
    more = False
    try:
        for n, values in enumerate(book.rows(sheet), 1):
            if n == header_row:
                headers = values[:_MAX_COLUMNS]
            elif n > header_row and _nonempty(values):
                read += len(values)
                if count == config.MAX_TABLE_ROWS or read > _MAX_INSPECT_CELLS:  # a preview counts this far
                    more = True
                    break
                count += 1
                width = max(width, _width(values))
                if len(first) < preview:
                    first.append([cell_text(v)[:_MAX_PREVIEW_CHARS] for v in values[:_MAX_COLUMNS]])
    except SubmitError as e:
        return {"name": sheet, "error": str(e), "rows": 0, "columns": [], "preview": [], "images": 0}
    pictures: dict[int, int] = {}
    for im in book.images(sheet):
        if im.row > header_row:
            pictures[im.col] = pictures.get(im.col, 0) + 1
    width = min(max(width, _width(headers), max(pictures, default=0)), _MAX_COLUMNS)
    columns = [
        {
            "letter": letter(c),
            "header": cell_text(headers[c - 1])[:_MAX_PREVIEW_CHARS] if c <= len(headers) else "",
            "images": pictures.get(c, 0),
        }
        for c in range(1, width + 1)
    ]
    return {
        "name": sheet,
        "rows": count,
        "more_rows": more,
        "columns": columns,
        "preview": [r[:width] + [""] * (width - len(r)) for r in first],
        "images": sum(pictures.values()),
    }


def describe(data: dict[str, Any]) -> str:
    """:func:`inspect`'s answer for a terminal: names and cells from the file, control characters escaped."""
    lines = [f"{safe(data['file'])} ({data['format']}), {len(data['sheets'])} sheet(s)"]
    for sh in data["sheets"]:
        lines.append("")
        name = safe(repr(sh["name"]))
        if sh.get("error"):
            lines.append(f"sheet {name}: {safe(sh['error'])}")
            continue
        pics = f", {sh['images']} picture(s)" if sh["images"] else ""
        rows = f"more than {sh['rows']:,}" if sh.get("more_rows") else str(sh["rows"])
        lines.append(f"sheet {name}: {rows} data row(s), {len(sh['columns'])} column(s){pics}")
        for c in sh["columns"][:_MAX_LISTED]:
            note = f"  [{c['images']} picture(s)]" if c["images"] else ""
            lines.append(f"  {c['letter']:>3}  {safe(c['header']) or '-'}{note}")
        for row in sh["preview"]:
            lines.append("       | " + " | ".join(safe(v[:30]) for v in row[:_MAX_LISTED]))
    return "\n".join(lines)


# -- select: the validated rows of one column ------------------------------------------------------
def select(path: str | Path, sheet: str | None, column: str | None, header_row: int = 1) -> Selection:
    """Validate the choice and read the chosen column. Raises SubmitError naming what exists."""
    path = Path(path)
    if header_row < 0:
        raise SubmitError(f"header row must be 0 (no header) or a row number, got {header_row}")
    book = open_book(path)
    try:
        if isinstance(book, XlsxBook):  # refused now, not after hours of OCR when its export loads it whole
            check_cells(path.name, book.stats, "a job (its xlsx export loads the whole workbook)")
        name = _pick_sheet(book, path, sheet)
        return _select(book, path, name, column, header_row)
    finally:
        book.close()


def _pick_sheet(book: Book, path: Path, sheet: str | None) -> str:
    names = book.sheets
    if sheet is None or sheet == "":
        if len(names) == 1:
            return names[0]
        raise SubmitError(f"{path.name} has {len(names)} sheets; choose one with --sheet: {_quoted(names)}")
    if sheet in names:
        return sheet
    folded = [n for n in names if n.strip().casefold() == sheet.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    raise SubmitError(f"no sheet {sheet!r} in {path.name}; sheets: {_quoted(names)}")


def _select(book: Book, path: Path, sheet: str, column: str | None, header_row: int) -> Selection:
    headers: tuple[Any, ...] = ()
    col = None if header_row else _find_column(headers, column, sheet)
    cells: list[Row] = []
    width = nonempty = 0
    above = False
    for n, values in enumerate(book.rows(sheet), 1):
        if n <= header_row:
            above = above or _nonempty(values)
            if n == header_row:
                headers = values
                col = _find_column(headers, column, sheet)
            continue
        width = max(width, _width(values))
        if _nonempty(values):
            nonempty += 1
            if nonempty > config.MAX_TABLE_ROWS:
                raise SubmitError(
                    f"sheet {sheet!r} of {path.name} has more than {config.MAX_TABLE_ROWS:,} data rows "
                    "(OCRJOBS_MAX_TABLE_ROWS); split it into smaller workbooks"
                )
            if col is not None:
                cells.append(Row(n, _ref_value(values[col - 1]) if col <= len(values) else None))
    pictures = [im for im in book.images(sheet) if im.row > header_row]
    width = max(width, _width(headers), max((im.col for im in pictures), default=0))
    if width == 0 and not above:
        raise SubmitError(f"sheet {sheet!r} of {path.name} is empty; sheets: {_quoted(book.sheets)}")
    listing = _columns(headers, max(width, _width(headers)))
    if column is None or not str(column).strip():
        raise SubmitError(f"choose a column of sheet {sheet!r} with --column (header text or letter): {listing}")
    if col is None or col > width:
        raise SubmitError(f"no column {str(column).strip()!r} in sheet {sheet!r} of {path.name}; columns: {listing}")
    images = [im for im in pictures if im.col == col]
    if not nonempty and not images:
        below = f" below the header row {header_row}" if header_row else ""
        raise SubmitError(f"sheet {sheet!r} of {path.name} has no data rows{below}; nothing to OCR")
    _attach_images(cells, images)
    if not any(r.value is not None or r.images for r in cells):
        raise SubmitError(
            f"column {letter(col)} {_header_note(headers, col)}of sheet {sheet!r} is empty in every data row; "
            f"columns: {listing}"
        )
    if any(r.value is None and not r.images for r in cells):
        _find_uncomputed_formulas(book, sheet, col, cells)
    header = cell_text(headers[col - 1]) if col <= len(headers) else ""
    return Selection(
        path=path,
        format="csv" if isinstance(book, CsvBook) else "xlsx",
        sheet=sheet,
        column=col,
        header=header or None,
        header_row=header_row,
        rows=cells,
        delimiter=getattr(book, "delimiter", None),
    )


def _attach_images(cells: list[Row], images: list[Embedded]) -> None:
    by_row = {r.row: r for r in cells}
    for im in images:
        row = by_row.get(im.row)
        if row is None:  # a picture in an otherwise empty row is still a row
            row = by_row[im.row] = Row(im.row, None)
            cells.append(row)
        row.images.append(im)
    cells.sort(key=lambda r: r.row)


def _find_uncomputed_formulas(book: Book, sheet: str, col: int, cells: list[Row]) -> None:
    """An empty cached value may be a formula never computed (a file written by a script)."""
    if not isinstance(book, XlsxBook):
        return
    empty = {r.row: r for r in cells if r.value is None and not r.images}
    for n, values in enumerate(book.rows(sheet, formulas=True), 1):
        if n in empty and col <= len(values) and isinstance(values[col - 1], str) and values[col - 1].startswith("="):
            empty[n].formula = values[col - 1]


def _find_column(headers: tuple[Any, ...], column: str | None, sheet: str) -> int | None:
    """Header text first (exact, then ignoring case), then a column letter; None if neither."""
    from openpyxl.utils import column_index_from_string

    if column is None or not str(column).strip():
        return None
    want = str(column).strip()
    for same in (lambda h: h == want, lambda h: h.casefold() == want.casefold()):
        hits = [i for i, h in enumerate(headers, 1) if same(cell_text(h).strip())]
        if len(hits) > 1:
            raise SubmitError(
                f"header {want!r} is in columns {', '.join(letter(i) for i in hits)} of sheet {sheet!r}; "
                "give the column letter instead"
            )
        if hits:
            return hits[0]
    return column_index_from_string(want.upper()) if _LETTERS.match(want) else None


# -- small helpers ---------------------------------------------------------------------------------
def _nonempty(values: tuple[Any, ...]) -> bool:
    return any(_clean(v) is not None for v in values)


def _width(values: tuple[Any, ...]) -> int:
    n = len(values)
    while n and _clean(values[n - 1]) is None:
        n -= 1
    return n


def _ref_value(value: Any) -> Any:
    """The chosen cell's value; text too long to name a file is kept as read (one object shared by
    every row that repeats it, not a stripped copy each) for submit to refuse as that row's error."""
    if isinstance(value, str) and len(value) > MAX_REF_CHARS:
        return value
    return _clean(value)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def cell_text(value: Any) -> str:
    """A cell value as the user sees it: ``12`` not ``12.0``, ``""`` for empty."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _header_note(headers: tuple[Any, ...], col: int) -> str:
    h = cell_text(headers[col - 1]) if col <= len(headers) else ""
    return f"({h!r}) " if h else ""


def _columns(headers: tuple[Any, ...], width: int) -> str:
    if width == 0:
        return "(the sheet is empty)"
    parts = [
        f"{letter(c)} {cell_text(headers[c - 1])!r}" if c <= len(headers) and cell_text(headers[c - 1]) else letter(c)
        for c in range(1, min(width, _MAX_LISTED) + 1)
    ]
    more = f", ... ({width - _MAX_LISTED} more)" if width > _MAX_LISTED else ""
    return ", ".join(parts) + more


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
