"""Text layer first: a PDF page that carries its own text is read from it, in milliseconds, not OCR'd.

A born-digital page (exported from Word or a browser) holds the exact text; rendering it and
running OCR takes seconds and makes mistakes. A scanned page holds a picture of text, maybe with an
invisible text layer some earlier OCR put on it. pypdfium2's text API (pdfium) tells them apart:

The page is taken from its text layer (``--pdf-text auto``) when all of these hold, measured inside
the page's crop box (what a render shows):

1. **Characters**: at least ``MIN_CHARS`` (1) visible non-space character. *Visible* means drawn:
   text render mode 3 (invisible) and 7 (clip only) do not count.
2. **Readable codes**: at most ``MAX_BAD_CHAR_SHARE`` (10 %) of them lack a Unicode mapping
   (pdfium's map error, U+FFFD, private-use or control codes): a font without ToUnicode gives
   garbage where OCR of its glyphs reads right.
3. **No large image left unread**: an image object (FPDF_PAGEOBJ_IMAGE, also inside form XObjects,
   clipped to the crop box) of at least ``SMALL_IMAGE_SHARE`` (2 %) of the page is *read* when the
   boxes of visible characters painted after it (over it, not hidden under it) cover at least
   ``MIN_TEXT_OVER_IMAGE`` (0.6 %) of its area, as a slide's text does its background picture
   (measured, tight character boxes: a 29-character 28 pt title 1.2 % of a 720x540 slide, six
   16 pt lines 2.5 % of A4; a page number or a scan's stamp 0.1-0.3 %). The unread
   images together must cover less than ``MAX_UNREAD_IMAGE_SHARE`` (15 %) of the page. So a scan
   (one page-sized image) is OCR'd, also with text hidden under it; a report with a logo is not;
   a report with a half-page photo of a document is.

A page that fails a rule is OCR'd whole. A page with no page objects and no annotations is blank:
its empty text layer is its result. Known limits: text drawn as vector outlines (paths) is not
seen, and the words inside a small image (under ``SMALL_IMAGE_SHARE``) are not read.

**An invisible text layer** (render mode 3, what OCRmyPDF and scanner software put over a scan)
does not count in ``auto``: it is an earlier OCR of unknown quality and engine, while the visible
page is the picture, which the job's own engine reads. ``--pdf-text text`` (never OCR) takes it,
visible or not, since it is the only text there is; such a result says so in ``warning``.

Line boxes are in the pixel frame OCR of the same page would use: the page rendered at the job's
dpi, shrunk to ``MAX_OCR_SIDE`` like :func:`jobs.intake.decode.render_pdf_page`, page rotation
applied (pdfium's own page-to-device mapping). Lines follow pdfium's character stream, read with
the page upright: the producer's order (columns stay whole), with pdfium's line breaks; a line is
split into boxes at gaps wider than ``SPLIT_GAP_EMS`` character heights (table cells), as a
detector splits it, and its text joins them with a space, as OCR's does.
"""

from __future__ import annotations

import math
import time
import unicodedata
from ctypes import c_double, c_void_p, cast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs import config

MODES = ("auto", "ocr", "text")
MIN_CHARS = 1
MAX_BAD_CHAR_SHARE = 0.10
SMALL_IMAGE_SHARE = 0.02
MIN_TEXT_OVER_IMAGE = 0.006
MAX_UNREAD_IMAGE_SHARE = 0.15
SPLIT_GAP_EMS = 3.0
_INVISIBLE = (3, 7)  # FPDF_TEXTRENDERMODE_INVISIBLE, FPDF_TEXTRENDERMODE_CLIP
_TOP = 1 << 30  # a character whose text object is not found: taken as painted last

Rect = tuple[float, float, float, float]  # left, bottom, right, top in PDF page units


@dataclass
class PageCheck:
    """What the rules measured on one page, and the verdict (``reason`` says which rule failed)."""

    visible_chars: int = 0
    invisible_chars: int = 0
    bad_chars: int = 0
    image_share: float = 0.0  # images of at least SMALL_IMAGE_SHARE, share of the page
    unread_image_share: float = 0.0
    objects: int = 0
    use_text: bool = False
    reason: str = ""
    lines: list[list[tuple[str, Rect | None]]] = field(default_factory=list)  # all chars, visible or not
    visible_lines: list[list[tuple[str, Rect | None]]] = field(default_factory=list)


def text_layer_result(job_dir: Path, item: dict[str, Any], dpi: int, mode: str = "auto") -> dict[str, Any] | None:
    """The finished result of a PDF item read from its text layer, or None when it must be OCR'd.

    None also for anything the OCR path reports better (not a PDF item, an unreadable file, no
    such page): the decode that follows gives that item its error."""
    if mode == "ocr" or item.get("kind") != "pdf" or item.get("error") or not isinstance(item.get("page"), int):
        return None
    import pypdfium2 as pdfium

    from jobs.errors import InputError
    from jobs.intake.decode import item_path

    t0 = time.monotonic()  # after the imports: a worker pays those once, not per page
    try:
        path = item_path(job_dir, item.get("path"))
        doc = pdfium.PdfDocument(str(path))
    except (InputError, pdfium.PdfiumError, OSError):
        return None
    try:
        if not 1 <= item["page"] <= len(doc):
            return None
        page = doc[item["page"] - 1]
        check = inspect_page(page)
        warning = None
        if mode == "text":  # never OCR: the best text there is, and what it lacks
            lines = check.visible_lines if check.use_text else check.lines
            if check.use_text:
                pass
            elif not check.lines:
                warning = "page has no text layer; not OCR'd (--pdf-text text)"
            elif not check.visible_chars:
                warning = "text from the page's invisible text layer (an earlier OCR); not OCR'd (--pdf-text text)"
            else:
                warning = f"text layer may be incomplete ({check.reason}); not OCR'd (--pdf-text text)"
        elif check.use_text:
            lines = check.visible_lines
        else:
            return None
        result = _result(page, lines, dpi)
    except pdfium.PdfiumError:
        return None
    finally:
        doc.close()
    if warning:
        result["warning"] = warning
    result["processing_time_ms"] = round((time.monotonic() - t0) * 1000, 1)
    return result


def inspect_page(page: Any) -> PageCheck:
    """Measure the rules of the module docstring on an open pypdfium2 page."""
    import pypdfium2.raw as raw

    check = PageCheck()
    crop = _norm(page.get_cropbox())
    page_area = max(_area(crop), 1e-6)
    check.objects = raw.FPDFPage_CountObjects(page)
    rotation = page.get_rotation()
    if rotation:  # pdfium orders a turned page's lines as they lie on screen (last first at 90): read it upright
        page.set_rotation(0)  # in memory only; the file is never saved
    images, text_z, hidden_text = _paint_order(page, crop)
    images = [(r, z) for r, z in images if _area(r) >= SMALL_IMAGE_SHARE * page_area]
    textpage = page.get_textpage()
    try:
        visible_boxes = _read_chars(raw, textpage, crop, text_z if images else None, hidden_text, check)
    finally:
        textpage.close()
        if rotation:
            page.set_rotation(rotation)
    check.image_share = min(1.0, sum(_area(r) for r, _ in images) / page_area)
    unread = 0.0
    for r, z in images:  # text painted before the image lies under it, hidden: it does not read it
        covered = sum(_area(_clip(b, r)) for b, bz in visible_boxes if bz > z)
        if covered < MIN_TEXT_OVER_IMAGE * _area(r):
            unread += _area(r)
    check.unread_image_share = min(1.0, unread / page_area)
    if check.objects == 0 and not raw.FPDFPage_GetAnnotCount(page):
        check.use_text, check.reason = True, "blank page"
    elif check.objects == 0:
        check.reason = "only annotations on the page"
    elif check.visible_chars < MIN_CHARS:
        check.reason = f"{check.visible_chars} visible characters (needs {MIN_CHARS})"
        if check.invisible_chars:
            check.reason += f"; {check.invisible_chars} invisible (an earlier OCR's layer)"
    elif check.bad_chars > MAX_BAD_CHAR_SHARE * check.visible_chars:
        check.reason = f"{check.bad_chars} of {check.visible_chars} characters have no Unicode mapping"
    elif check.unread_image_share >= MAX_UNREAD_IMAGE_SHARE:
        check.reason = f"images without text over them cover {check.unread_image_share:.0%} of the page"
    else:
        check.use_text, check.reason = True, "text layer covers the page"
    return check


def _read_chars(
    raw: Any, textpage: Any, crop: Rect, text_z: dict[int, int] | None, hidden_text: bool, check: PageCheck
) -> list[tuple[Rect, int]]:
    """Fill ``check``'s counts and lines from pdfium's character stream; the visible boxes, with
    their text object's place in the paint order (only asked for, ``text_z``, when images may hide text).
    Each character's text object is looked up only when it matters: for that place, or when some text
    object on the page is drawn invisible (``hidden_text``: an earlier OCR's layer).

    The characters come in one call when pdfium's text has one per index (almost always); else one by
    one. Each ctypes call costs about a microsecond, and a page has thousands of characters."""
    visible_boxes: list[tuple[Rect, int]] = []
    line: list[tuple[str, Rect | None, bool]] = []
    left, bottom, right, top = c_double(), c_double(), c_double(), c_double()

    def flush() -> None:
        if any(not ch.isspace() for ch, _, _ in line):
            check.lines.append([(ch, box) for ch, box, _ in line])
            visible = [(ch, box) for ch, box, v in line if v]
            if any(not ch.isspace() for ch, _ in visible):
                check.visible_lines.append(visible)
        line.clear()

    count = textpage.count_chars()
    bulk = textpage.get_text_range(0, count) if count > 0 else ""
    if len(bulk) != count:
        bulk = ""
    for i in range(count):
        ch = bulk[i] if bulk else chr(raw.FPDFText_GetUnicode(textpage, i) or 0xFFFD)
        if ch in "\r\n":
            flush()
            continue
        if ch.isspace():
            line.append((" ", None, True))
            continue
        obj = raw.FPDFText_GetTextObject(textpage, i) if hidden_text or text_z is not None else None
        visible = not (hidden_text and obj and raw.FPDFTextObj_GetTextRenderMode(obj) in _INVISIBLE)
        if not raw.FPDFText_GetCharBox(textpage, i, left, right, bottom, top):  # yes, l r b t
            continue
        box = (left.value, bottom.value, right.value, top.value)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not (crop[0] <= cx <= crop[2] and crop[1] <= cy <= crop[3]):
            continue  # outside the crop box: never shown
        if visible:
            check.visible_chars += 1
            if text_z is not None:
                visible_boxes.append((box, text_z.get(_address(obj), _TOP)))
            if raw.FPDFText_HasUnicodeMapError(textpage, i) or _bad(ch):
                check.bad_chars += 1
        else:
            check.invisible_chars += 1
        line.append((ch, box, visible))
    flush()
    return visible_boxes


def _bad(ch: str) -> bool:
    if " " < ch < "\x7f":  # printable ASCII: most characters, no lookup
        return False
    return ch == "\ufffd" or unicodedata.category(ch) in ("Co", "Cc", "Cs")


def _paint_order(page: Any, crop: Rect) -> tuple[list[tuple[Rect, int]], dict[int, int], bool]:
    """Image objects' bounds in page space (form XObjects' matrices applied), clipped to ``crop``,
    and each object's place in the paint order (later is on top); text objects' places by address;
    whether any text object is drawn invisible."""
    import pypdfium2.raw as raw

    images, text_z, hidden_text = [], {}, False
    for z, obj in enumerate(page.get_objects()):  # depth first: the order they are painted in
        if obj.type == raw.FPDF_PAGEOBJ_TEXT:
            text_z[_address(obj.raw)] = z
            hidden_text = hidden_text or raw.FPDFTextObj_GetTextRenderMode(obj.raw) in _INVISIBLE
        elif obj.type == raw.FPDF_PAGEOBJ_IMAGE:
            rect = _norm(obj.get_bounds())
            form = obj.container
            while form is not None:  # bounds are in the enclosing form's space
                rect = _norm(form.get_matrix().on_rect(*rect))
                form = form.container
            clipped = _clip(rect, crop)
            if _area(clipped) > 0:
                images.append((clipped, z))
    return images, text_z, hidden_text


def _address(obj: Any) -> int:
    return cast(obj, c_void_p).value or 0


def _result(page: Any, lines: list[list[tuple[str, Rect | None]]], dpi: int) -> dict[str, Any]:
    to_px = _page_to_pixels(page, dpi)
    texts, boxes = [], []
    for line in lines:
        parts = []
        for segment in _segments(line):
            text = "".join(ch for ch, _ in segment).strip()
            rects = [box for _, box in segment if box is not None]
            if not text or not rects:
                continue
            left, bottom = min(r[0] for r in rects), min(r[1] for r in rects)
            right, top = max(r[2] for r in rects), max(r[3] for r in rects)
            corners = [to_px(x, y) for x, y in ((left, top), (right, top), (right, bottom), (left, bottom))]
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]  # a rotated page: re-order corners
            x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
            boxes.append({"box": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "text": text, "confidence": 1.0})
            parts.append(text)
        if parts:
            texts.append(" ".join(parts))
    return {"text": "\n".join(texts), "boxes": boxes, "confidence": 1.0, "method": "text-layer"}


def _segments(line: list[tuple[str, Rect | None]]) -> list[list[tuple[str, Rect | None]]]:
    """Split a line at gaps wider than SPLIT_GAP_EMS character heights (table cells, columns)."""
    out: list[list[tuple[str, Rect | None]]] = [[]]
    last: Rect | None = None
    for ch, box in line:
        if box is not None and last is not None:
            a, b = last[3] - last[1], box[3] - box[1]  # per character: no max() call, the hot loop of a page
            height = a if a > b else b
            height = height if height > 1.0 else 1.0
            if box[0] - last[2] > SPLIT_GAP_EMS * height or box[2] < last[0] - height:
                out.append([])
        out[-1].append((ch, box))
        if box is not None:
            last = box
    return out


def render_size(width_pt: float, height_pt: float, dpi: int) -> tuple[float, int, int]:
    """Scale and pixel size of the OCR render (the rule of decode.render_pdf_page)."""
    scale = dpi / 72.0
    if max(width_pt, height_pt) * scale > config.MAX_OCR_SIDE:  # a poster-sized page: rendered smaller
        scale = config.MAX_OCR_SIDE / max(width_pt, height_pt)
    return scale, math.ceil(width_pt * scale), math.ceil(height_pt * scale)


def _page_to_pixels(page: Any, dpi: int) -> Any:
    """Page units -> render pixels: pdfium's device mapping (rotation, crop box), inverted exactly."""
    import pypdfium2.raw as raw

    _, w, h = render_size(*page.get_size(), dpi)
    px, py = c_double(), c_double()

    def device_to_page(dx: int, dy: int) -> tuple[float, float]:
        raw.FPDF_DeviceToPage(page, 0, 0, w, h, 0, dx, dy, px, py)
        return px.value, py.value

    (ox, oy), (ax, ay), (bx, by) = device_to_page(0, 0), device_to_page(w, 0), device_to_page(0, h)
    # page = o + u * (a - o) / w + v * (b - o) / h; solve for the device (u, v) of a page point
    m00, m01, m10, m11 = (ax - ox) / w, (bx - ox) / h, (ay - oy) / w, (by - oy) / h
    det = m00 * m11 - m01 * m10 or 1e-12

    def to_px(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - ox, y - oy
        u, v = (m11 * dx - m01 * dy) / det, (-m10 * dx + m00 * dy) / det
        return round(min(max(u, 0.0), w), 1), round(min(max(v, 0.0), h), 1)

    return to_px


def _norm(r: tuple[float, ...]) -> Rect:
    return (min(r[0], r[2]), min(r[1], r[3]), max(r[0], r[2]), max(r[1], r[3]))


def _clip(r: Rect, by: Rect) -> Rect:
    left, bottom, right, top = max(r[0], by[0]), max(r[1], by[1]), min(r[2], by[2]), min(r[3], by[3])
    return (left, bottom, max(left, right), max(bottom, top))


def _area(r: Rect) -> float:
    return max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])
