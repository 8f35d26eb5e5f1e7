"""The default engine: each page is routed by its script (jobs/engines/route.py) before it is read.

- Latin-only pages: Tesseract (``eng``) with its own page layout analysis: columns, headers, code
  and lists in reading order, a blank line between paragraphs. Tesseract is the better and 3-5x
  faster reader of Latin script, and this first pass doubles as the routing test.
- CJK and mixed pages: RapidOCR finds the text lines and reads Chinese; Tesseract re-reads the lines
  in Latin script, which RapidOCR's Chinese recogniser runs together without spaces.

Each result says which way its page went: ``route`` is ``latin``, ``cjk`` or ``mixed``.

Per line of a CJK or mixed page, from RapidOCR's reading: no CJK at all -> Tesseract (``eng``) on the line crop replaces
it; CJK and Latin mixed -> Tesseract (``chi_sim+eng``) reads the crop too, and the two readings
are merged (CJK characters from RapidOCR, Latin text and spaces from Tesseract); CJK only -> kept.
A crop costs Tesseract ~0.03 s. ``lang=en`` skips routing and RapidOCR (Tesseract on the page),
``lang=zh`` skips routing and Tesseract. Other options go to RapidOCR.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from jobs.engines.base import Engine
from jobs.engines.rapid import RapidEngine, compose
from jobs.engines.route import Ink, confident_latin, script_of
from jobs.engines.script import has_cjk, has_latin, merge_line
from jobs.engines.tesseract import PSM_AUTO, PSM_BLOCK, TesseractEngine, TessReader, page_text
from jobs.errors import EngineError

#: White margin around a line crop: Tesseract misreads glyphs that touch the image edge.
PAD = 10
#: Below this Tesseract confidence (0-1) on a Latin line, RapidOCR's reading is kept.
MIN_LINE_CONFIDENCE = 0.4


class AutoEngine(Engine):
    name = "auto"

    def load(self, device: str = "auto") -> None:
        self.lang = self.options.get("lang") or "auto"
        if self.lang not in ("en", "zh", "auto"):
            raise EngineError(f"auto: lang must be en, zh or auto, got {self.lang!r} (or use --engine tesseract)")
        rapid_options = {k: v for k, v in self.options.items() if k != "lang"}
        self._page: TesseractEngine | None = None
        self._rapid: RapidEngine | None = None
        self._latin: TessReader | None = None
        self._mixed: TessReader | None = None
        if self.lang == "en":
            if rapid_options:
                raise EngineError(f"auto: lang=en runs Tesseract alone; drop {', '.join(rapid_options)}")
            self._page = TesseractEngine(lang="en")
            self._page.load(device)
        else:
            self._rapid = RapidEngine(**rapid_options)
            self._rapid.load(device)
            if self.lang == "auto":
                self._latin = TessReader("eng")
        #: The last page's route: after a CJK or mixed page, RapidOCR goes first (route.py says why).
        self._last = "latin"
        self.device = "cpu"

    def recognize(self, images: list[Image.Image]) -> list[dict[str, Any]]:
        if self._page is not None:
            return [{**asdict(r), "route": "latin"} for r in self._page.recognize(images)]
        if self._latin is None:  # lang=zh
            return [{**asdict(compose(self._rapid_read(im)[1])), "route": "cjk"} for im in images]
        return [self._routed(im) for im in images]

    def _rapid_read(self, image: Image.Image) -> tuple[np.ndarray, list[dict[str, Any]]]:
        assert self._rapid is not None
        return self._rapid.read(image)

    def _routed(self, image: Image.Image) -> dict[str, Any]:
        assert self._latin is not None
        first = None
        if self._last == "latin":  # the ink is looked at only here: after a CJK page, RapidOCR goes first
            ink = Ink(image)
            if not ink.looks_cjk():
                clean = ink.despeckled()
                first = self._latin.page(clean, PSM_AUTO)
                if confident_latin(*first, self._latin.word_confidences()):
                    return self._latin_result(clean, first)
                if self.stop_requested():
                    raise TimeoutError("stopped at the item timeout after the first (Latin) pass")
        rgb, boxes = self._rapid_read(image)
        route = script_of([b["text"] for b in boxes])
        self._last = route
        if route == "latin":  # RapidOCR found no CJK: Tesseract's page layout reads it
            if first is None:
                clean = Ink(image).despeckled()
                first = self._latin.page(clean, PSM_AUTO)
            return self._latin_result(clean, first)
        for b in boxes:
            if self.stop_requested():
                raise TimeoutError("stopped at the item timeout while re-reading Latin lines")
            self._reread(rgb, b)
        return {**asdict(compose(boxes)), "route": route}

    def _latin_result(self, image: Image.Image, first: tuple[list[dict[str, Any]], float]) -> dict[str, Any]:
        """Tesseract's page layout reading; read again as one block if layout analysis found nothing."""
        assert self._latin is not None
        lines, conf = first
        if not lines:
            lines, conf = self._latin.page(image, PSM_BLOCK)
        self._last = "latin"
        text = page_text(lines)
        return {"text": text, "confidence": conf if lines else None, "boxes": lines, "route": "latin"}

    def _reread(self, rgb: np.ndarray, b: dict[str, Any]) -> None:
        """Replace a box's text with Tesseract's reading (Latin) or the merge of both (mixed)."""
        if has_cjk(b["text"]):
            if not has_latin(b["text"]):
                return
            if self._mixed is None:  # loaded on the first mixed line: chi_sim costs ~0.3 s and 40 MB
                self._mixed = TessReader("chi_sim+eng")
            text, _conf = self._mixed.line(crop(rgb, b["box"]))
            if text:
                b["text"] = merge_line(b["text"], text)
            return
        assert self._latin is not None
        text, conf = self._latin.line(crop(rgb, b["box"]))
        if text and conf >= MIN_LINE_CONFIDENCE:
            b["text"] = text

    def close(self) -> None:
        for part in (self._page, self._rapid, self._latin, self._mixed):
            if part is not None:
                part.close()


def crop(rgb: np.ndarray, quad: list[list[float]]) -> Image.Image:
    """The line inside a (possibly slightly rotated) box, straightened, with a white margin."""
    import cv2

    pts = np.array(quad, dtype=np.float32)
    w = max(1, int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3]))))
    h = max(1, int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))))
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(pts, target)
    line = cv2.warpPerspective(rgb, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return ImageOps.expand(Image.fromarray(line), PAD, fill="white")
