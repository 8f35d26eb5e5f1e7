"""RapidOCR (PP-OCRv4 det/rec/cls, bundled in its wheel) on onnxruntime: real Chinese + English OCR
on CPU with nothing downloaded at run time.

Options are RapidOCR's own keyword arguments (``det_limit_type``, ``text_score``, ``use_cls``,
``intra_op_num_threads``...), checked against its config so a typo fails the job instead of being
ignored; ``lang`` is accepted for symmetry with the other engines (one model reads both).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from jobs.engines.base import Engine, Recognition, runner_threads
from jobs.errors import EngineError


class RapidEngine(Engine):
    name = "rapid"
    #: Measured on bench/'s quality set (mean CER on English, Chinese, mixed; 24 items): RapidOCR's
    #: defaults 0.239/0.012/0.111 in 34 s, "max" 0.073/0.007/0.153 in 24 s (line images are no longer
    #: upscaled to 736 px high), and without the 180-degree line classifier, which flipped and so lost
    #: small English lines, 0.020/0.007/0.083. Pass ``use_cls=true`` for upside-down scans.
    DEFAULTS: dict[str, Any] = {"det_limit_type": "max", "use_cls": False}

    def load(self, device: str = "auto") -> None:
        from rapidocr_onnxruntime import RapidOCR

        options = {k: v for k, v in self.options.items() if k != "lang"}
        _check_options(options)
        if threads := runner_threads():
            import cv2

            cv2.setNumThreads(threads)
            options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1, **options}
        # The onnxruntime CPU build is what the wheel ships; "cuda" runs on CPU here too.
        self._ocr = RapidOCR(**{**self.DEFAULTS, **options})
        self.device = "cpu"

    def recognize(self, images: list[Image.Image]) -> list[Recognition]:
        return [compose(self.read(im)[1]) for im in images]

    def read(self, image: Image.Image) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The image as an RGB array, and one box per detected text line (in detection order)."""
        rgb = np.asarray(image.convert("RGB"))
        found, _elapse = self._ocr(np.ascontiguousarray(rgb[:, :, ::-1]))
        boxes = [
            {"box": [[float(x), float(y)] for x, y in box], "text": text.strip(), "confidence": float(score)}
            for box, text, score in found or []
        ]
        return rgb, boxes


def _check_options(options: dict[str, Any]) -> None:
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
    from rapidocr_onnxruntime.utils import read_yaml

    cfg = read_yaml(DEFAULT_CFG_PATH)
    known = set(cfg["Global"])
    for section, prefix in (("Det", "det_"), ("Cls", "cls_"), ("Rec", "rec_")):
        known |= {k if k.startswith(prefix) else prefix + k for k in cfg[section]}
    unknown = sorted(set(options) - known)
    if unknown:
        raise EngineError(f"rapid: unknown option(s) {', '.join(unknown)}; RapidOCR takes {', '.join(sorted(known))}")


def compose(boxes: list[dict[str, Any]]) -> Recognition:
    """Boxes -> text in reading order, one output line per printed line; mean box confidence."""
    if not boxes:
        return Recognition(text="", confidence=None, boxes=[])
    lines = reading_order(boxes)
    confidence = sum(b["confidence"] for b in boxes) / len(boxes)
    text = "\n".join(" ".join(b["text"] for b in line if b["text"]) for line in lines)
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
