"""Which reader a page goes to, decided before the expensive one runs: Latin-only pages to
Tesseract's page layout analysis, CJK pages to RapidOCR, mixed pages to the line-level merge.

Measured on bench/real_docs.py's pages (10 real manual pages, 3 CJK, 3 mixed; 2-core box, loaded):

- Tesseract OSD script detection: 0.26-0.53 s a page (a third to a half of reading a Latin page),
  and it calls every mixed page "Latin" or "Han": it cannot see a mix.
- RapidOCR detection alone: 0.7-5 s a page, more than Tesseract's whole reading of a Latin page.
- Tesseract layout + 6 sampled lines: 0.2-0.5 s, as much as a full Tesseract pass on a CJK page.
- A full Tesseract ``eng`` pass: its mean word confidence is 0.83-0.93 on the Latin pages, 0.66-0.68
  on mixed ones and 0.38-0.42 on CJK ones, and on a Latin page it *is* the answer, so it costs nothing
  there. That is the first pass (:func:`confident_latin`, which also looks for junk lines and words:
  CJK read as Latin); below the bar, RapidOCR reads the page and the CJK letters in its reading
  (:func:`script_of`) say CJK, mixed, or Latin after all (then the first pass is kept).

A CJK page would pay that first pass (0.4-0.5 s) on top of RapidOCR, so a page whose ink looks CJK
(:meth:`Ink.looks_cjk`, from the connected components the despeckling counts anyway), and any page
after a CJK or mixed one (pages of one document share their script), goes to RapidOCR first; a page
that then turns out Latin goes back to Tesseract. Misrouting is cheap one way only: a Latin page held back costs
time, never text; a page with CJK sent to Tesseract ``eng`` loses its CJK, hence the strict bars.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from PIL import Image

from jobs.engines.script import has_cjk, has_latin

#: Mean word confidence (0-1) of the ``eng`` first pass at or above which a page is Latin-only.
LATIN_MIN_CONF = 0.75
#: ...provided no line of :data:`MIN_LINE_CHARS` or more characters read below :data:`LOW_LINE_CONF`:
#: ``eng`` reads a CJK line as junk at 0.00-0.06 and a mixed one at 0.15-0.40, while the real Latin
#: pages' worst line (code) read at 0.29. A Latin page held back by a bad line pays RapidOCR's
#: reading to learn it has no CJK, and then keeps this pass: slower, never worse.
LOW_LINE_CONF = 0.2
MIN_LINE_CHARS = 3
#: ...and at most this share of its words read below :data:`LOW_WORD_CONF` (0-100, Tesseract's scale):
#: CJK words inside Latin lines come out as junk words ("AES", "F=dn#!-S") at 0-35, 14-30 % of the
#: words of bench/dataset.py's mixed line images, while the real Latin pages had at most 2 % (code).
LOW_WORD_CONF = 35
MAX_LOW_WORDS = 0.05
#: A reading with at most this many CJK letters (ideographs, kana, Hangul; CJK punctuation does not
#: count: RapidOCR reads a bullet as 「・」) is Latin. One short Chinese line is more than this.
MAX_STRAY_CJK = 2
_CJK_LETTER = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30fa\u30fc-\u30ff\uac00-\ud7af]")
#: A non-Latin page whose lines with Latin letters are at most this share is CJK, else mixed.
MAX_LATIN_LINES_IN_CJK = 0.1

ROUTES = ("latin", "cjk", "mixed")


def confident_latin(lines: list[dict[str, Any]], conf: float, words: list[int] | None = None) -> bool:
    """Tesseract ``eng`` read the page with confidence, and neither a line nor many words were junk to it.

    ``words``: the pass's word confidences (0-100), as ``TessReader.word_confidences`` gives them."""
    if not lines or conf < LATIN_MIN_CONF:
        return False
    if any(b["confidence"] < LOW_LINE_CONF and len(b["text"].replace(" ", "")) >= MIN_LINE_CHARS for b in lines):
        return False
    return not words or sum(1 for w in words if w < LOW_WORD_CONF) <= MAX_LOW_WORDS * len(words)


def script_of(texts: list[str]) -> str:
    """``latin``, ``cjk`` or ``mixed``, from a reading that knows both scripts (RapidOCR's lines)."""
    if len(_CJK_LETTER.findall("".join(texts))) <= MAX_STRAY_CJK:
        return "latin"
    lettered = [t for t in texts if has_latin(t) or has_cjk(t)]
    latin = sum(1 for t in lettered if has_latin(t))
    return "cjk" if latin <= MAX_LATIN_LINES_IN_CJK * len(lettered) else "mixed"


#: Dark specks of at most this many pixels, touching nothing, are dust, not print: the smallest
#: printed mark, a full stop in 8 pt at 200 dpi, is about 2x2 pixels with its grey edge.
MAX_SPECK_PX = 4
#: A page whose tall ink blobs (the upper half by height) are this sparse (median ink share of their box)
#: and this often wider than tall looks CJK at a glance. Measured: CJK pages and lines 0.26-0.30 and
#: 0.20-0.25; Latin (real and generated) 0.35-0.47 and 0.02-0.08; mixed 0.36-0.43 and 0.07-0.22.
CJK_MAX_DENSITY = 0.32
CJK_MIN_WIDE = 0.17


class Ink:
    """The page's dark connected components, counted once (~15-70 ms an A4 page) for two uses."""

    def __init__(self, image: Image.Image) -> None:
        import cv2

        self.grey = np.array(image.convert("L"))
        _count, self.labels, stats, _ = cv2.connectedComponentsWithStats((self.grey < 128).astype(np.uint8), 8)
        self.stats = stats[1:]  # row 0 is the background

    def despeckled(self) -> Image.Image:
        """The page in grey without isolated dark specks, for Tesseract's page layout reader.

        RapidOCR's line detector ignores dust, but Tesseract's page layout analysis reads specks
        between and inside lines as stray ``.``, ``'`` and ``/`` (bench/dataset.py's speckled English
        page: CER 0.038 with them, 0.019 without; the real pages of bench/real_docs.py 0.017 -> 0.010)."""
        small = np.flatnonzero(self.stats[:, 4] <= MAX_SPECK_PX) + 1  # stats[:, 4]: area; +1: labels skip 0
        grey = self.grey.copy()
        if small.size:
            grey[np.isin(self.labels, small)] = 255
        return Image.fromarray(grey)

    def looks_cjk(self) -> bool:
        """Ink shaped like CJK: a page that can skip the Tesseract first pass. A wrong yes costs only
        time (RapidOCR's reading then finds no CJK and Tesseract reads the page after all)."""
        st = self.stats[self.stats[:, 4] > MAX_SPECK_PX]
        if len(st) < 20:
            return False
        w, h, area = st[:, 2], st[:, 3], st[:, 4]
        tall = h >= np.median(h)
        density = float(np.median(area[tall] / (w[tall] * h[tall])))
        return density <= CJK_MAX_DENSITY and float(np.mean(w > 1.2 * h)) >= CJK_MIN_WIDE


def despeckle(image: Image.Image) -> Image.Image:
    """:meth:`Ink.despeckled` of ``image``."""
    return Ink(image).despeckled()
