"""The embedded default: RapidOCR (PP-OCRv4 det/rec/cls, bundled in its wheel) on onnxruntime.

Real Chinese + English OCR on CPU with nothing downloaded at run time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from jobs.engines.base import Engine, Recognition


class RapidEngine(Engine):
    name = "rapid"

    def load(self, device: str = "auto") -> None:
        from rapidocr_onnxruntime import RapidOCR

        # The onnxruntime CPU build is what the wheel ships; "cuda" runs on CPU here too.
        self._ocr = RapidOCR(**self.options)
        self.device = "cpu"

    def recognize(self, images: list[Image.Image]) -> list[Recognition]:
        return [self._one(im) for im in images]

    def _one(self, image: Image.Image) -> Recognition:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        found, _elapse = self._ocr(bgr)
        if not found:
            return Recognition(text="", confidence=None, boxes=[])
        boxes: list[dict[str, Any]] = [
            {"box": [[float(x), float(y)] for x, y in box], "text": text.strip(), "confidence": float(score)}
            for box, text, score in found
        ]
        lines = reading_order(boxes)
        confidence = sum(b["confidence"] for b in boxes) / len(boxes)
        text = "\n".join(" ".join(b["text"] for b in line) for line in lines)
        return Recognition(text=text, confidence=confidence, boxes=[b for line in lines for b in line])


def reading_order(boxes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group detected boxes into text lines (vertical overlap), top to bottom, left to right.

    The detector may split one printed line into several boxes; joining them keeps a line a line.
    """

    def span(b: dict[str, Any]) -> tuple[float, float]:
        ys = [p[1] for p in b["box"]]
        return min(ys), max(ys)

    lines: list[list[dict[str, Any]]] = []
    for b in sorted(boxes, key=lambda b: sum(span(b)) / 2):
        top, bottom = span(b)
        centre = (top + bottom) / 2
        if lines:
            ltop, lbottom = span(lines[-1][0])
            if ltop <= centre <= lbottom:
                lines[-1].append(b)
                continue
        lines.append([b])
    return [sorted(line, key=lambda b: min(p[0] for p in b["box"])) for line in lines]
