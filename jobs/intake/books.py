"""Reading a workbook or a CSV row by row, the same way for both: its sheets, each sheet's
rows of values (a formula's cached value, what Excel last computed) and the pictures anchored
to its cells. A file that cannot be read is a SubmitError saying what to do about it."""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.errors import SubmitError
from jobs.intake.workbook_limits import MAX_CELL_CHARS, check_cells, check_workbook

WORKBOOK_EXTS = {".xlsx", ".xlsm"}
CSV_EXTS = {".csv"}
TABLE_EXTS = WORKBOOK_EXTS | CSV_EXTS
_OLD_FORMATS = {".xls", ".xlsb", ".ods", ".numbers"}


@dataclass
class Embedded:
    """A picture placed over the cells, tied to the cell its top-left corner is anchored to."""

    row: int  # 1-based, like the sheet
    col: int
    data: bytes
    ext: str  # ".png", ".jpeg", ...


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_EXTS | _OLD_FORMATS


class Book:
    """A workbook or a CSV: its sheet names, each sheet's rows, the pictures on a sheet."""

    sheets: list[str]

    def rows(self, sheet: str, formulas: bool = False) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def images(self, sheet: str) -> list[Embedded]:
        return []

    def close(self) -> None:
        pass


class XlsxBook(Book):
    def __init__(self, path: Path) -> None:
        import openpyxl

        self.path = path
        self._images: dict[str, list[Embedded]] | None = None
        self.stats = check_workbook(path)  # sizes, parts, DTDs, cells: before openpyxl reads a byte
        try:
            self.wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            self.sheets = list(self.wb.sheetnames)
            with zipfile.ZipFile(path) as zf:
                self.has_drawings = any(n.startswith("xl/drawings/") for n in zf.namelist())
        except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds on a damaged file
            raise SubmitError(
                f"cannot read {path.name} as an Excel workbook ({type(e).__name__}: {e}); "
                "is the file complete? Save it again from Excel as .xlsx"
            ) from None

    def rows(self, sheet: str, formulas: bool = False) -> Iterator[tuple[Any, ...]]:
        wb = self.wb
        if formulas:
            import openpyxl

            wb = openpyxl.load_workbook(self.path, read_only=True, data_only=False)
        try:
            ws = wb[sheet]
            if not hasattr(ws, "reset_dimensions"):
                raise SubmitError(f"{sheet!r} is a chart sheet, not a worksheet; choose a sheet with cells")
            ws.reset_dimensions()  # some writers record a wrong used range; read what is there
            yield from capped(ws.iter_rows(values_only=True))
        finally:
            if formulas:
                wb.close()

    def images(self, sheet: str) -> list[Embedded]:
        """Pictures anchored to cells. Needs a full load, so only done (once) if the file has drawings."""
        if not self.has_drawings:
            return []
        if self._images is None:
            import openpyxl

            check_cells(self.path.name, self.stats, "reading the pictures placed in it")
            wb = openpyxl.load_workbook(self.path, data_only=True)
            self._images = {ws.title: _anchored(ws) for ws in wb.worksheets}
            wb.close()
        return self._images.get(sheet, [])

    def close(self) -> None:
        self.wb.close()


def capped(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Rows with any text cut at Excel's own cell limit. A shared string repeated in many cells
    is one object; its cut copy is made once too, so 100,000 rows naming it cost one copy."""
    cut: dict[int, tuple[str, str]] = {}
    for values in rows:
        if any(isinstance(v, str) and len(v) > MAX_CELL_CHARS for v in values):
            values = tuple(_cut(v, cut) for v in values)
        yield values


def _cut(value: Any, cache: dict[int, tuple[str, str]]) -> Any:
    if not isinstance(value, str) or len(value) <= MAX_CELL_CHARS:
        return value
    hit = cache.get(id(value))
    if hit is None or hit[0] is not value:
        hit = cache[id(value)] = (value, value[:MAX_CELL_CHARS])
    return hit[1]


def _anchored(ws: Any) -> list[Embedded]:
    out = []
    for im in getattr(ws, "_images", []):
        start = getattr(im.anchor, "_from", None)
        if start is None:  # an absolute anchor: placed on the page, not in a cell
            continue
        out.append(Embedded(start.row + 1, start.col + 1, im._data(), "." + (im.format or "png").lower()))
    return sorted(out, key=lambda e: (e.row, e.col))


class CsvBook(Book):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sheets = [path.stem]
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                sample = f.read(1 << 16)
        except UnicodeDecodeError:
            raise SubmitError(
                f"{path.name} is not UTF-8 text; in Excel use Save As › 'CSV UTF-8 (Comma delimited)'"
            ) from None
        try:
            self.delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            self.delimiter = ","

    def rows(self, sheet: str, formulas: bool = False) -> Iterator[tuple[Any, ...]]:
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as f:
                for rec in csv.reader(f, delimiter=self.delimiter):
                    yield tuple(v[:MAX_CELL_CHARS] if v.strip() else None for v in rec)
        except (UnicodeDecodeError, csv.Error) as e:
            raise SubmitError(f"cannot read {self.path.name} as CSV: {e}; save it as 'CSV UTF-8'") from None


def open_book(path: Path) -> Book:
    ext = path.suffix.lower()
    if ext in _OLD_FORMATS:
        raise SubmitError(f"{path.name}: {ext} files are not supported; open it in Excel and save it as .xlsx")
    if ext not in TABLE_EXTS:
        raise SubmitError(f"{path.name} is not a workbook; use .xlsx, .xlsm or .csv")
    if not path.is_file():
        raise SubmitError(f"cannot read {path}: no such file")
    return CsvBook(path) if ext in CSV_EXTS else XlsxBook(path)
