"""Checking an uploaded .xlsx/.xlsm before openpyxl reads any of it.

A workbook is a ZIP of XML parts, and a 1 MB upload can declare a 1 GiB sharedStrings.xml
that openpyxl would expand into memory whole. So every part's uncompressed size, the total,
the number of parts and the compression ratio are checked against limits first, then every
XML part is read once, streamed, with a byte budget: a document type declaration (the only
way to an entity-expansion "billion laughs") is refused, and the cells of every worksheet are
counted, so the paths that load a whole workbook (pictures, the xlsx write-back export) can
refuse one too large to hold in memory. ``zipfile`` never returns more than a member's
declared size (it stops there and fails the CRC), so a header that lies is caught too.
openpyxl parses with defusedxml as a second guard (``openpyxl.DEFUSEDXML``).
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import SubmitError
from jobs.intake.inputs import size_text

_MIB = 1024**2


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


#: A real worksheet part over 64 MiB is ~2 M cells, more than any sheet submit accepts
#: (OCRJOBS_MAX_TABLE_ROWS); sharedStrings over it would cost openpyxl several times that.
MAX_PART_BYTES = _env_int("OCRJOBS_MAX_XLSX_PART_BYTES", 64 * _MIB)
#: All parts together, uncompressed (pictures included).
MAX_TOTAL_BYTES = _env_int("OCRJOBS_MAX_XLSX_BYTES", 256 * _MIB)
MAX_PARTS = _env_int("OCRJOBS_MAX_XLSX_PARTS", 10_000)
#: Cells in all worksheets: openpyxl holds ~530 bytes a cell when it loads a whole workbook
#: (pictures, the xlsx write-back export: 1.6 M cells took 850 MB and 2 minutes), so 1 M cells
#: is about half a GB; a 100,000-row sheet of 10 columns still fits.
MAX_CELLS = _env_int("OCRJOBS_MAX_WORKBOOK_CELLS", 1_000_000)
#: Text Excel accepts in one cell; a longer value was not made by Excel.
MAX_CELL_CHARS = 32_767
#: A part this large that compressed more than this many times is repetition, not a workbook.
_RATIO_MIN_BYTES = 4 * _MIB
MAX_RATIO = 250

_XML_EXTS = (".xml", ".rels", ".vml")
_DTD = (b"<!DOCTYPE", b"<!ENTITY")
# A cell element, with or without a namespace prefix: <c r=..>, <c>, <x:c .../>.
_PREFIXED = re.compile(rb"<[A-Za-z_][\w.-]{0,15}:c[\s/>]")
_CARRY = 16  # a DTD keyword split across two chunks is still seen


@dataclass
class WorkbookStats:
    parts: int
    total_bytes: int
    cells: int


def check_workbook(path: Path) -> WorkbookStats:
    """Raise SubmitError (one line: the part and the limit) unless ``path`` is safe to open."""
    name = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_PARTS:
                raise SubmitError(
                    f"{name} has {len(infos):,} parts, above the limit of {MAX_PARTS:,} (OCRJOBS_MAX_XLSX_PARTS)"
                )
            total = 0
            for info in infos:
                _check_declared(name, info)
                total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise SubmitError(
                    f"{name} expands to {size_text(total)}, above the {size_text(MAX_TOTAL_BYTES)} limit for a "
                    "workbook (OCRJOBS_MAX_XLSX_BYTES); delete what the job does not need or save it as CSV"
                )
            cells = sum(_scan_part(zf, info, name) for info in infos if info.filename.lower().endswith(_XML_EXTS))
    except SubmitError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error) as e:
        raise SubmitError(
            f"cannot read {name} as an Excel workbook ({type(e).__name__}: {e}); "
            "is the file complete? Save it again from Excel as .xlsx"
        ) from None
    return WorkbookStats(parts=len(infos), total_bytes=total, cells=cells)


def check_cells(name: str, stats: WorkbookStats, what: str) -> None:
    """Refuse to load a workbook whole (``what`` needs that) when it has too many cells."""
    if stats.cells > MAX_CELLS:
        raise SubmitError(
            f"{name} has {stats.cells:,} cells in all its sheets, above the limit of {MAX_CELLS:,} for {what} "
            "(OCRJOBS_MAX_WORKBOOK_CELLS); copy the sheet you need into a new workbook, or use CSV"
        )


def _check_declared(name: str, info: zipfile.ZipInfo) -> None:
    size = info.file_size
    if size > MAX_PART_BYTES:
        raise SubmitError(
            f"{name}: part {info.filename!r} expands to {size_text(size)}, above the {size_text(MAX_PART_BYTES)} "
            "limit per part (OCRJOBS_MAX_XLSX_PART_BYTES); a decompression bomb, or a workbook too large to read"
        )
    if size >= _RATIO_MIN_BYTES and size > MAX_RATIO * max(info.compress_size, 1):
        raise SubmitError(
            f"{name}: part {info.filename!r} expands {size // max(info.compress_size, 1):,} times "
            f"({size_text(info.compress_size)} to {size_text(size)}), above the {MAX_RATIO}:1 limit; "
            "refused as a decompression bomb"
        )


def _scan_part(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> int:
    """Stream one XML part: refuse a DTD, count cells in a worksheet. Memory: one chunk."""
    count_cells = info.filename.startswith("xl/worksheets/")
    cells = 0
    tail = b""
    with zf.open(info) as src:
        while chunk := src.read(_MIB):
            buf = tail + chunk
            if any(d in buf for d in _DTD):
                raise SubmitError(
                    f"{name}: part {info.filename!r} declares a document type or entities, which a workbook "
                    "never does (an XML entity-expansion attack); refused"
                )
            if count_cells:  # a cell element holds one "<": none straddles the last one in the buffer
                last = buf.rfind(b"<")
                cells += _count_cells(buf, max(last, 0))
                tail = buf[last:] if last >= 0 else b""
            else:
                tail = buf[-_CARRY:]
    if count_cells:
        cells += _count_cells(tail, len(tail))
    return cells


def _count_cells(buf: bytes, end: int) -> int:
    """Cell elements in ``buf[:end]``: C-speed counts for the usual spelling, a regex only for a
    namespace prefix (``<x:c ...>``, rare), so millions of cells cost no per-cell Python objects."""
    n = sum(buf.count(b"<c" + t, 0, end) for t in (b" ", b">", b"/", b"\t", b"\n", b"\r"))
    if b":c" in buf:
        n += sum(1 for _ in _PREFIXED.finditer(buf, 0, end))
    return n
