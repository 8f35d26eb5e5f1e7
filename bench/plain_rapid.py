"""The baseline: a plain loop over the files with a default ``RapidOCR()``, as one would write it
without ocrjobs. ``python -m bench.plain_rapid OUT.json FILE...`` writes the texts in file order."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from rapidocr_onnxruntime import RapidOCR

    out, files = argv[0], argv[1:]
    ocr = RapidOCR()
    texts = []
    for path in files:
        found, _elapse = ocr(path)
        texts.append("\n".join(text for _box, text, _score in found or []))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
