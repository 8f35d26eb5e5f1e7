"""Which column of a workbook names the files: checked before a table job is made.

A workbook usually has an id column first and the file names further right; a job made from the
wrong column fails every row ("file not found in the images ZIP: 'CL-1001'") after it was queued.
So the first rows of each column are tried against the images ZIP (or the allowed folders, for
absolute paths) without extracting anything: the dashboard preselects the column that resolves,
and a submit whose column resolves in none of its first rows is refused, naming one that does.
"""

from __future__ import annotations

from pathlib import Path

from jobs.errors import InputError, SubmitError
from jobs.intake import excel
from jobs.intake.books import open_book
from jobs.intake.excel import EXCEL_ERRORS, cell_text
from jobs.intake.sources import Resolver, under_roots

#: Rows tried per column: enough to tell the file-name column from an id column, cheap on 100,000 rows.
SAMPLE_ROWS = 200


def unresolved(resolver: Resolver, ref: str) -> str | None:
    """Why ``ref`` names no file the job could read (None when it does: a ZIP entry, or a file under
    an allowed root). Nothing is extracted or copied."""
    ref = ref.strip().strip('"').strip()
    if not ref or ref in EXCEL_ERRORS or len(ref) > excel.MAX_REF_CHARS or "://" in ref:
        return "not a file name"
    try:
        if ref.startswith("/"):
            return None if under_roots(Path(ref), resolver.roots).is_file() else f"file not found: {ref}"
        if resolver.zip is None:
            return "a relative path, and no images ZIP was given"
        resolver._member(ref)  # the very lookup the job's build does
    except (InputError, OSError, ValueError) as e:
        return str(e)
    return None


def column_hits(path: Path, sheet: str, header_row: int, resolver: Resolver) -> dict[int, tuple[int, int]]:
    """Column number -> (rows that resolve, non-empty rows tried), over the first data rows."""
    book = open_book(path)
    hits: dict[int, list[int]] = {}
    try:
        for n, values in enumerate(book.rows(sheet), 1):
            if n <= header_row:
                continue
            if n > header_row + SAMPLE_ROWS:
                break
            for col, value in enumerate(values, 1):
                if value is None or (text := cell_text(value).strip()) == "":
                    continue
                seen = hits.setdefault(col, [0, 0])
                seen[0] += unresolved(resolver, text) is None
                seen[1] += 1
    finally:
        book.close()
    return {col: (h, t) for col, (h, t) in hits.items()}


def best_column(path: Path, sheet: str, header_row: int, images: Path | None) -> str | None:
    """The letter of the column whose first rows resolve most often (None if none resolves)."""
    resolver = Resolver(images)
    try:
        hits = column_hits(path, sheet, header_row, resolver)
    finally:
        resolver.close()
    ranked = sorted(((h, -col) for col, (h, _) in hits.items() if h), reverse=True)
    return excel.letter(-ranked[0][1]) if ranked else None


def check_column(selection: excel.Selection, resolver: Resolver) -> None:
    """Refuse a column none of whose first rows names a readable file (its pictures count as files)."""
    if any(r.images for r in selection.rows):
        return
    refs = [cell_text(r.value).strip() for r in selection.rows[:SAMPLE_ROWS] if r.value is not None]
    refs = [r for r in refs if r]
    if not refs or any(unresolved(resolver, r) is None for r in refs):
        return
    first = unresolved(resolver, refs[0])
    shown = refs[0] if len(refs[0]) <= 80 else refs[0][:80] + "…"
    where = f"the images ZIP {resolver.zip_name}" if resolver.zip is not None else "the allowed folders"
    header = f" ({selection.header})" if selection.header else ""
    rows = "no row" if len(selection.rows) <= SAMPLE_ROWS else f"none of the first {SAMPLE_ROWS} rows"
    hits = column_hits(selection.path, selection.sheet, selection.header_row, resolver)
    better = sorted(((h, -col) for col, (h, _) in hits.items() if h and col != selection.column), reverse=True)
    if better:
        col = -better[0][1]
        tip = f"column {excel.letter(col)} does ({better[0][0]} of its first {hits[col][1]} rows): choose that column"
    else:
        tip = "no column does: check that the ZIP holds the files the workbook names"
    raise SubmitError(
        f"{rows} of column {selection.letter}{header} names a file in {where} (the first, {shown!r}: {first}); {tip}"
    )
