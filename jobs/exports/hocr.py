"""hOCR and ALTO XML exports: the formats archives, viewers and other OCR tools read, from the
same line boxes as the searchable PDF.

One file per job (a page element per item, in item order: hOCR's ``ocr_page`` divs, ALTO's
``Page`` elements, both allow many), or with ``--split`` a folder of one file per item (what
archives that pair one ALTO file with one image expect). Coordinates are in the pixels of the
picture the engine read (:mod:`jobs.exports.pageframe`): hOCR's ``bbox x0 y0 x1 y1``, ALTO's
``HPOS VPOS WIDTH HEIGHT`` with ``MeasurementUnit`` pixel.

Results hold line boxes, not word boxes: each line becomes ``ocr_line`` / ``TextLine`` on its box,
and its words ``ocrx_word`` / ``String`` boxes that share the line's width by character count (an
estimate, as a glyphless PDF layer does). A line box that is turned is given as its bounding box.

Items not done (pending, failed, timed out) keep their page, with no lines: hOCR says why in a
comment inside the page, ALTO with ``QUALITY="Missing"`` and ``QUALITY_DETAIL``. Text is escaped
and characters XML 1.0 cannot hold are dropped, so every file parses.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from jobs import config
from jobs.exports.pageframe import Frame, bbox, clean, file_name, item_frame, lines
from jobs.exports.results import Tracker

_HOCR_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>{title}</title>
  <meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
  <meta name="ocr-system" content="ocrjobs"/>
  <meta name="ocr-capabilities" content="ocr_page ocr_carea ocr_par ocr_line ocrx_word"/>
 </head>
 <body>
"""
_HOCR_TAIL = " </body>\n</html>\n"
_ALTO_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://www.loc.gov/standards/alto/ns-v4# http://www.loc.gov/alto/v4/alto-4-2.xsd">
 <Description>
  <MeasurementUnit>pixel</MeasurementUnit>
  <sourceImageInformation><fileName>{title}</fileName></sourceImageInformation>
  <OCRProcessing ID="OCR_0"><ocrProcessingStep><processingSoftware>
   <softwareName>ocrjobs</softwareName>
  </processingSoftware></ocrProcessingStep></OCRProcessing>
 </Description>
 <Layout>
"""
_ALTO_TAIL = " </Layout>\n</alto>\n"
EXTENSIONS = {"hocr": "hocr", "alto": "xml"}


def write(items: Tracker, fmt: str, out: Path, split: bool = False) -> None:
    """The job's hOCR or ALTO at ``out``; with ``split``, ``out`` is a new folder of one file per item."""
    head, tail = (_HOCR_HEAD, _HOCR_TAIL) if fmt == "hocr" else (_ALTO_HEAD, _ALTO_TAIL)
    page = _hocr_page if fmt == "hocr" else _alto_page
    if split:
        out.mkdir()
    f: TextIO | None = None if split else open(out, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        if f:
            f.write(head.format(title=_attr_text(f"ocrjobs job {items.job_id}")))
        for n, (row, frame) in enumerate(_pages(items), 1):
            body = ET.tostring(page(n if f else 1, row, frame), encoding="unicode")
            if f:
                f.write(body + "\n")
                continue
            name = f"{row['index'] + 1:06d}-{file_name(row['source'])}" + (f"-p{row['page']}" if row["page"] else "")
            with open(out / f"{name}.{EXTENSIONS[fmt]}", "w", encoding="utf-8") as one:
                one.write(head.format(title=_attr_text(row["source"])) + body + "\n" + tail)
        if f:
            f.write(tail)
    finally:
        if f:
            f.close()


def _pages(items: Tracker) -> Iterator[tuple[dict[str, Any], Frame | None]]:
    job_dir = items.store.job_dir(items.job_id)
    dpi = int(items.job.spec.get("dpi") or config.DEFAULT_DPI)
    for item, row in zip(items.store.manifest(items.job_id), items, strict=True):
        yield row, (None if item.get("error") else item_frame(job_dir, item, dpi))


def _attr_text(text: Any) -> str:
    """Text for the templates' title and fileName: escaped, one line."""
    from xml.sax.saxutils import escape

    return escape(re.sub(r"\s+", " ", clean(text)))


def _why(row: dict[str, Any]) -> str | None:
    if row["status"] == "done":
        return None
    if row["status"] == "pending":
        return "pending: not processed yet; export again when the job has finished"
    return f"{row['status']}: {clean(row.get('error') or 'no text')}"


def _words(quad: list[list[float]], text: str) -> Iterator[tuple[str, tuple[int, int, int, int]]]:
    """The line's words, each with the share of the line's box its characters take."""
    x0, y0, x1, y1 = bbox(quad)
    per_char = (x1 - x0) / max(len(text), 1)
    for m in re.finditer(r"\S+", text):
        yield m.group(), (round(x0 + m.start() * per_char), y0, round(x0 + m.end() * per_char), y1)


def _hocr_page(n: int, row: dict[str, Any], frame: Frame | None) -> ET.Element:
    w, h = (round(frame.width), round(frame.height)) if frame else (0, 0)
    source = re.sub(r'[";\s]+', "_", clean(row["source"]))  # a title property's value: no quotes, no ';'
    page = ET.Element(
        "div", {"class": "ocr_page", "id": f"page_{n}", "title": f'image "{source}"; bbox 0 0 {w} {h}; ppageno {n - 1}'}
    )
    why = _why(row)
    if why or frame is None:
        page.append(ET.Comment(f" ocrjobs: {(why or 'input could not be read').replace('--', '- -')} "))
        return page
    conf = round(100 * float(row.get("confidence") or 0))
    area = ET.SubElement(page, "div", {"class": "ocr_carea", "id": f"block_{n}_1", "title": f"bbox 0 0 {w} {h}"})
    par = ET.SubElement(area, "p", {"class": "ocr_par", "id": f"par_{n}_1", "title": f"bbox 0 0 {w} {h}"})
    for k, (quad, text) in enumerate(lines(row, frame), 1):
        x0, y0, x1, y1 = bbox(quad)
        line = ET.SubElement(
            par, "span", {"class": "ocr_line", "id": f"line_{n}_{k}", "title": f"bbox {x0} {y0} {x1} {y1}"}
        )
        for j, (word, (a, b, c, d)) in enumerate(_words(quad, text), 1):
            span = ET.SubElement(
                line,
                "span",
                {"class": "ocrx_word", "id": f"word_{n}_{k}_{j}", "title": f"bbox {a} {b} {c} {d}; x_wconf {conf}"},
            )
            span.text, span.tail = word, " "  # words apart in the page's text, as Tesseract's hOCR has them
    return page


def _alto_page(n: int, row: dict[str, Any], frame: Frame | None) -> ET.Element:
    w, h = (round(frame.width), round(frame.height)) if frame else (0, 0)
    page = ET.Element("Page", {"ID": f"page_{n}", "PHYSICAL_IMG_NR": str(n), "WIDTH": str(w), "HEIGHT": str(h)})
    why = _why(row) or (None if frame else "input could not be read")
    space = ET.SubElement(page, "PrintSpace", {"HPOS": "0", "VPOS": "0", "WIDTH": str(w), "HEIGHT": str(h)})
    if why:
        page.set("QUALITY", "Missing")
        page.set("QUALITY_DETAIL", f"ocrjobs: {why}")
        return page
    found = lines(row, frame)
    if not found:
        return page
    boxes = [bbox(q) for q, _ in found]
    bx0, by0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    bx1, by1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    block = ET.SubElement(space, "TextBlock", {"ID": f"block_{n}_1", **_pos(bx0, by0, bx1, by1)})
    wc = f"{float(row.get('confidence') or 0):.3f}"
    for k, ((quad, text), box) in enumerate(zip(found, boxes, strict=True), 1):
        line = ET.SubElement(block, "TextLine", {"ID": f"line_{n}_{k}", **_pos(*box)})
        for j, (word, wbox) in enumerate(_words(quad, text), 1):
            if j > 1:
                ET.SubElement(line, "SP")
            ET.SubElement(line, "String", {"ID": f"string_{n}_{k}_{j}", "CONTENT": word, **_pos(*wbox), "WC": wc})
    return page


def _pos(x0: int, y0: int, x1: int, y1: int) -> dict[str, str]:
    return {"HPOS": str(x0), "VPOS": str(y0), "WIDTH": str(x1 - x0), "HEIGHT": str(y1 - y0)}
