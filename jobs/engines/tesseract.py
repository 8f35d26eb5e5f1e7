"""Tesseract 5 in process (tesserocr): keeps the spaces between English words, and is 5-10x
faster than RapidOCR on English (measured in bench/RESULTS.md).

Options: ``lang`` (``en``, ``zh``, ``auto`` = chi_sim+eng, or Tesseract codes like ``eng+deu``),
``psm`` (a Tesseract page segmentation mode; by default automatic layout, retried as one
uniform block when layout analysis finds nothing, is unsure, or, with a CJK language, cuts lines
into side-by-side pieces, as it does on Chinese pages; Latin-only languages keep side-by-side
lines, which are columns), ``min_confidence`` (0-100, below it the retry runs; default 60) and
``variables`` (Tesseract parameters, e.g. ``{"tessedit_char_whitelist": "0123456789"}``).

Page layout analysis gives blocks and paragraphs in reading order (a column is read to its end
before the next); the text keeps a paragraph break as a blank line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from jobs.engines.base import Engine, Recognition
from jobs.engines.script import tidy_cjk
from jobs.engines.tessdata import check_langs, find_tessdata, tesseract_langs
from jobs.errors import EngineError

PSM_AUTO, PSM_BLOCK, PSM_LINE = 3, 6, 7


class TessReader:
    """One tesserocr API for one set of languages: creating it loads the traineddata, so keep it."""

    def __init__(self, langs: str, tessdata: Path | None = None, variables: dict[str, Any] | None = None) -> None:
        # Tesseract's OpenMP threads only slow batch work down (~7x with the CLI); it reads this at load.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        import tesserocr

        tessdata = tessdata or find_tessdata()
        check_langs(langs, tessdata)
        self.langs = langs
        self._api = tesserocr.PyTessBaseAPI(path=f"{tessdata}{os.sep}", lang=langs)
        for key, value in (variables or {}).items():
            if not self._api.SetVariable(str(key), str(value)):
                raise EngineError(f"tesseract: unknown Tesseract variable {key!r}")

    def page(self, image: Image.Image, psm: int = PSM_AUTO) -> tuple[list[dict[str, Any]], float]:
        """Lines in Tesseract's reading order, each with its box, and the mean word confidence (0-1).

        A line that starts a paragraph (or a block: a column, a header, a code block) carries
        ``"para": True``; :func:`page_text` turns that into a blank line, and drops the key."""
        from tesserocr import RIL, iterate_level

        self._api.SetPageSegMode(psm)
        self._api.SetImage(_plain(image))
        self._api.Recognize()
        lines = []
        pending = False  # a paragraph began on a line that read as nothing: the next line opens it
        it = self._api.GetIterator()
        for r in iterate_level(it, RIL.TEXTLINE) if it is not None else ():
            text = tidy_cjk(" ".join((r.GetUTF8Text(RIL.TEXTLINE) or "").split()))
            box = r.BoundingBox(RIL.TEXTLINE)
            pending = pending or r.IsAtBeginningOf(RIL.PARA) or r.IsAtBeginningOf(RIL.BLOCK)
            if text and box:
                x1, y1, x2, y2 = (float(v) for v in box)
                quad = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
                conf = r.Confidence(RIL.TEXTLINE) / 100
                lines.append({"box": quad, "text": text, "confidence": conf, "para": pending})
                pending = False
        return lines, (self._api.MeanTextConf() / 100 if lines else 0.0)

    def word_confidences(self) -> list[int]:
        """The last reading's word confidences (0-100), in reading order."""
        return list(self._api.AllWordConfidences())

    def line(self, image: Image.Image) -> tuple[str, float]:
        """One text line (a crop): its text and mean word confidence (0-1)."""
        self._api.SetPageSegMode(PSM_LINE)
        self._api.SetImage(_plain(image))
        text = tidy_cjk(" ".join(self._api.GetUTF8Text().split()))
        return text, (self._api.MeanTextConf() / 100 if text else 0.0)

    def close(self) -> None:
        self._api.End()


def page_text(lines: list[dict[str, Any]]) -> str:
    """Lines one per row, a blank line before each paragraph; removes the ``para`` marks from ``lines``."""
    out: list[str] = []
    for line in lines:
        if line.pop("para", False) and out:
            out.append("")
        out.append(line["text"])
    return "\n".join(out)


def has_cjk_lang(langs: str) -> bool:
    return any(code.startswith(("chi_", "jpn", "kor")) for code in langs.split("+"))


def _plain(image: Image.Image) -> Image.Image:
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def side_by_side(lines: list[dict[str, Any]]) -> float:
    """Share of lines that sit beside another on the same row: columns, or a layout that cut lines up."""

    def spans(b: dict[str, Any]) -> tuple[float, float, float, float]:
        (x1, y1), _, (x2, y2), _ = b["box"]
        return x1, y1, x2, y2

    boxes = [spans(b) for b in lines]
    beside = 0
    for i, (ax1, ay1, ax2, ay2) in enumerate(boxes):
        for j, (bx1, by1, bx2, by2) in enumerate(boxes):
            overlap_y = min(ay2, by2) - max(ay1, by1)
            if i != j and overlap_y > 0.5 * min(ay2 - ay1, by2 - by1) and (bx1 >= ax2 or ax1 >= bx2):
                beside += 1
                break
    return beside / len(boxes) if boxes else 0.0


class TesseractEngine(Engine):
    name = "tesseract"
    OPTIONS = ("lang", "psm", "min_confidence", "variables")

    def load(self, device: str = "auto") -> None:
        unknown = sorted(set(self.options) - set(self.OPTIONS))
        if unknown:
            raise EngineError(f"tesseract: unknown option(s) {', '.join(unknown)}; it takes {', '.join(self.OPTIONS)}")
        psm = self.options.get("psm")
        if psm not in (None, "auto") and not (isinstance(psm, int) and 0 <= psm <= 13):
            raise EngineError(f"tesseract: psm must be auto or a page segmentation mode 0-13, got {psm!r}")
        self.psm: int | None = None if psm in (None, "auto") else int(psm)
        variables = self.options.get("variables") or {}
        if not isinstance(variables, dict):
            raise EngineError(f"tesseract: variables must be a JSON object of Tesseract parameters, got {variables!r}")
        self.min_confidence = float(self.options.get("min_confidence", 60)) / 100
        self.reader = TessReader(tesseract_langs(self.options.get("lang")), variables=variables)
        self.device = "cpu"  # Tesseract has no GPU path

    def recognize(self, images: list[Image.Image]) -> list[Recognition]:
        return [self.read_page(im) for im in images]

    def read_page(self, image: Image.Image) -> Recognition:
        if self.psm is not None:
            lines, conf = self.reader.page(image, self.psm)
        else:
            lines, conf = self.reader.page(image, PSM_AUTO)
            cut = has_cjk_lang(self.reader.langs) and side_by_side(lines) > 0.25
            if not lines or conf < self.min_confidence or cut:
                block, block_conf = self.reader.page(image, PSM_BLOCK)
                if block and (block_conf > conf or not lines):
                    lines, conf = block, block_conf
        return Recognition(text=page_text(lines), confidence=conf if lines else None, boxes=lines)

    def close(self) -> None:
        if getattr(self, "reader", None) is not None:
            self.reader.close()
