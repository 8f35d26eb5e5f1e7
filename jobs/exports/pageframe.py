"""Where an item's line boxes live: the pixel frame OCR saw, and how it maps onto a PDF page.

A result's ``boxes`` are in pixels of the picture the engine read: a PDF page rendered at the job's
dpi, shrunk to ``MAX_OCR_SIDE`` (:func:`jobs.intake.decode.render_pdf_page`, page rotation applied),
or the decoded image (shrunk the same way). The searchable PDF (jobs/exports/pdf.py) needs them in
the page's own user space (points, y up, before /Rotate), hOCR and ALTO (jobs/exports/hocr.py) need
the frame's size. Shared here so both read the same geometry as the worker did.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from jobs import config
from jobs.intake.decode import item_path, load_image

Quad = list[list[float]]  # four corners, clockwise from the top left, in frame pixels
Affine = tuple[float, float, float, float, float, float]  # a b c d e f: x = a*u + c*v + e, y = b*u + d*v + f

#: Characters XML 1.0 cannot hold (and a PDF text layer has no use for): controls, surrogates, U+FFFE/F.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Frame:
    """The pixel frame of one item, and the affine map from it to PDF user space."""

    width: float
    height: float
    to_user: Affine

    def point(self, u: float, v: float) -> tuple[float, float]:
        a, b, c, d, e, f = self.to_user
        return a * u + c * v + e, b * u + d * v + f


def clean(text: Any) -> str:
    """Text safe in XML and in a text layer: control characters become spaces."""
    return _UNSAFE.sub(" ", str(text or ""))


def pdf_frame(page: Any, dpi: int) -> Frame:
    """The frame of a pypdfium2 page rendered as the worker renders it, mapped to user space.

    pdfium shows the page's bbox (crop box within media box) turned by /Rotate clockwise; a pixel
    (u, v) is the display point (u/s, v/s) from the top left, and each rotation puts that corner
    at a different corner of the unrotated box."""
    x0, y0, x1, y1 = page.get_bbox()
    w_pt, h_pt = page.get_size()  # rotated already, as rendered
    scale = dpi / 72.0
    if max(w_pt, h_pt) * scale > config.MAX_OCR_SIDE:
        scale = config.MAX_OCR_SIDE / max(w_pt, h_pt)
    k = 1.0 / scale
    rotation = page.get_rotation() % 360
    to_user = {
        0: (k, 0.0, 0.0, -k, x0, y1),
        90: (0.0, k, k, 0.0, x0, y0),
        180: (-k, 0.0, 0.0, k, x1, y0),
        270: (0.0, -k, -k, 0.0, x1, y1),
    }[rotation]
    return Frame(math.ceil(w_pt * scale), math.ceil(h_pt * scale), to_user)


def image_frame(size: tuple[float, float], decoded: tuple[int, int]) -> Frame:
    """An image placed on a page of ``size`` points (origin bottom left); its boxes are in pixels of
    ``decoded`` (the picture the engine read: smaller than the file when over MAX_OCR_SIDE)."""
    w_pt, h_pt = size
    w, h = decoded
    return Frame(w, h, (w_pt / w, 0.0, 0.0, -h_pt / h, 0.0, h_pt))


def decoded_size(path: Path, page: int | None, im: Image.Image) -> tuple[int, int]:
    """The size of the picture the worker read: the file's own, unless over MAX_OCR_SIDE, where the
    worker's decode shrank it (JPEG draft scaling makes that size hard to predict, so decode it)."""
    if max(im.size) <= config.MAX_OCR_SIDE:
        return im.size
    return load_image(path, page).size


def item_frame(job_dir: Path, item: dict[str, Any], dpi: int) -> Frame | None:
    """The item's frame read from its file; None when the file cannot be read (then it has no page)."""
    try:
        path = item_path(job_dir, item.get("path"))
        if item.get("kind") == "pdf":
            import pypdfium2 as pdfium

            doc = pdfium.PdfDocument(str(path))
            try:
                return pdf_frame(doc[int(item["page"]) - 1], dpi)
            finally:
                doc.close()
        with Image.open(path) as im:
            if item.get("page"):
                im.seek(int(item["page"]) - 1)
            w, h = decoded_size(path, item.get("page"), im)
            return image_frame((w, h), (w, h))
    except Exception:  # noqa: BLE001 - a missing or damaged input: the item is listed without a frame
        return None


def lines(row: dict[str, Any], frame: Frame) -> list[tuple[Quad, str]]:
    """The item's text lines with their quads: the result's ``boxes``; for a result with text but no
    boxes (an engine that gives none), its lines stacked full width down the page, so its text is
    still found by a search, though not on the ink."""
    out = []
    for b in row.get("boxes") or []:
        box, text = b.get("box"), clean(b.get("text")).strip()
        if text and isinstance(box, list) and len(box) == 4:
            try:
                quad = [[float(p[0]), float(p[1])] for p in box]
            except (TypeError, ValueError, IndexError):
                continue
            out.append((quad, text))
    if out or row.get("boxes"):
        return out
    texts = [t.strip() for t in clean(row.get("text")).splitlines() if t.strip()]
    step = frame.height / max(len(texts), 40)
    w = frame.width
    return [([[0, n * step], [w, n * step], [w, (n + 1) * step], [0, (n + 1) * step]], t) for n, t in enumerate(texts)]


def bbox(quad: Quad) -> tuple[int, int, int, int]:
    """The quad's axis-aligned box in whole pixels: x0 y0 x1 y1 (hOCR's and ALTO's)."""
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    return math.floor(min(xs)), math.floor(min(ys)), math.ceil(max(xs)), math.ceil(max(ys))


def file_name(source: str) -> str:
    """A source's name as a safe file name stem (a --split export's files): its last part, odd characters ``_``."""
    stem = Path(str(source).replace("\\", "/")).stem or "source"
    return re.sub(r"[^\w.-]+", "_", stem)[:80] or "source"
