"""Hostile uploads for intake (issue 14, findings 4, 10, 12, 13), made by code at test time:
workbook bombs, ZIPs whose members lie about being images, multi-page TIFFs, huge images,
symlink mazes and file names with control characters. Large parts are streamed into the ZIP,
so making a 1 GiB bomb costs seconds of CPU and no memory.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import openpyxl
from PIL import Image

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_CHUNK = 1 << 20


def png_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, 255).save(buf, "PNG")
    return buf.getvalue()


def _replace_parts(path: Path, parts: dict[str, Callable[[], Iterator[bytes]]]) -> Path:
    """Rewrite the workbook at ``path`` with ``parts`` (name -> chunk generator) streamed in."""
    with zipfile.ZipFile(path) as zf:
        keep = {n: zf.read(n) for n in zf.namelist() if n not in parts}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in keep.items():
            zf.writestr(name, data)
        for name, chunks in parts.items():
            with zf.open(name, "w", force_zip64=True) as out:
                for chunk in chunks():
                    out.write(chunk)
    return path


def _book(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def _shared_strings_book(path: Path, rows: int, strings: Callable[[], Iterator[bytes]]) -> Path:
    """Sheet "Data": A1 is shared string 0, A2.. A(rows+1) are shared string 1; ``strings``
    streams the sharedStrings part (openpyxl itself writes inline strings, so it is added here)."""
    _book(path, {"Data": [["name"]]})
    with zipfile.ZipFile(path) as zf:
        types = zf.read("[Content_Types].xml").decode()
        rels = zf.read("xl/_rels/workbook.xml.rels").decode()
    types = types.replace(
        "</Types>",
        '<Override PartName="/xl/sharedStrings.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
    )
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdStrings" Target="sharedStrings.xml" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/></Relationships>',
    )
    cells = "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>1</v></c></row>' for r in range(2, rows + 2))
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_MAIN}"><sheetData>'
        f'<row r="1"><c r="A1" t="s"><v>0</v></c></row>{cells}</sheetData></worksheet>'
    ).encode()
    return _replace_parts(
        path,
        {
            "[Content_Types].xml": lambda: iter([types.encode()]),
            "xl/_rels/workbook.xml.rels": lambda: iter([rels.encode()]),
            "xl/worksheets/sheet1.xml": lambda: iter([sheet]),
            "xl/sharedStrings.xml": strings,
        },
    )


def shared_strings_bomb(path: Path, expanded: int) -> Path:
    """A workbook whose first shared string (the header of column A) is ``expanded`` bytes of 'A':
    ~1 MB on disk for 1 GiB, which openpyxl would read into memory whole."""
    head = f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}" count="2" uniqueCount="2"><si><t>'.encode()

    def chunks() -> Iterator[bytes]:
        yield head
        block = b"A" * _CHUNK
        left = expanded
        while left > 0:
            yield block[: min(left, _CHUNK)]
            left -= _CHUNK
        yield b"</t></si><si><t>a.png</t></si></sst>"

    return _shared_strings_book(path, 1, chunks)


def billion_laughs(path: Path) -> Path:
    """A sharedStrings part with nested XML entities: 10 levels of 10 make 10^9 'lol's if expanded."""
    ents = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE sst [{ents}]>'
        f'<sst xmlns="{_MAIN}" count="2" uniqueCount="2"><si><t>&lol9;</t></si><si><t>a.png</t></si></sst>'
    ).encode()
    return _shared_strings_book(path, 1, lambda: iter([xml]))


def long_cell_rows(path: Path, chars: int, rows: int) -> Path:
    """Column A names the same ``chars``-long shared string in ``rows`` rows (one string, many cells)."""
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}" count="2" uniqueCount="2">'
        f"<si><t>name</t></si><si><t>{'B' * chars}</t></si></sst>"
    ).encode()
    return _shared_strings_book(path, rows, lambda: iter([xml]))


def big_other_sheet(path: Path, rows: int, cols: int = 20) -> Path:
    """Sheet "Data" (a header and one row naming a.png) and sheet "Big" of ``rows`` x ``cols``
    numbers, its XML streamed straight into the ZIP (openpyxl would take minutes to write it)."""
    _book(path, {"Data": [["name"], ["a.png"]], "Big": [[0]]})
    letters = [openpyxl.utils.get_column_letter(c) for c in range(1, cols + 1)]

    def chunks() -> Iterator[bytes]:
        yield f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_MAIN}"><sheetData>'.encode()
        batch: list[str] = []
        for r in range(1, rows + 1):
            cells = "".join(f'<c r="{c}{r}" t="n"><v>{r}</v></c>' for c in letters)
            batch.append(f'<row r="{r}">{cells}</row>')
            if len(batch) == 2000:
                yield "".join(batch).encode()
                batch = []
        yield ("".join(batch) + "</sheetData></worksheet>").encode()

    return _replace_parts(path, {"xl/worksheets/sheet2.xml": chunks})


def images_zip(path: Path, members: dict[str, bytes], dirs: int = 0) -> Path:
    """A ZIP of ``members`` plus ``dirs`` empty folder entries."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k in range(dirs):
            zf.writestr(f"d{k}/", b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def zip_with_fake_image(path: Path, name: str, expanded: int, real: dict[str, bytes] | None = None) -> Path:
    """A ZIP whose member ``name`` (a .png by its name) is ``expanded`` zero bytes: not an image."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in (real or {}).items():
            zf.writestr(n, data)
        with zf.open(name, "w", force_zip64=True) as out:
            block = bytes(_CHUNK)
            left = expanded
            while left > 0:
                out.write(block[: min(left, _CHUNK)])
                left -= _CHUNK
    return path


def multipage_tiff(path: Path, pages: int, size: tuple[int, int] = (64, 32)) -> Path:
    frames = [Image.new("L", size, 255) for _ in range(pages)]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_deflate")
    return path


def huge_png(path: Path, size: tuple[int, int]) -> Path:
    """A large white PNG (compresses to almost nothing; decodes to width x height x 3 bytes)."""
    Image.new("L", size, 255).save(path, optimize=False)
    return path


def symlink_diamond(root: Path, depth: int) -> Path:
    """``depth`` levels, each folder linking twice to the next: 2^depth paths to one file."""
    levels = [root / f"l{i}" for i in range(depth + 1)]
    for d in levels:
        d.mkdir(parents=True)
    (levels[-1] / "page.png").write_bytes(png_bytes())
    for i in range(depth):
        os.symlink(levels[i + 1], levels[i] / "a")
        os.symlink(levels[i + 1], levels[i] / "b")
    return levels[0]
