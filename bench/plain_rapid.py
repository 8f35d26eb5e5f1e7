"""The baseline: a plain loop over the files calling rapidocr directly, as one would write it
without ocrjobs. ``python -m bench.plain_rapid OUT.json FILE...`` writes the texts in file order
(a PDF gives one text per page, rendered with pypdfium2 one page after the other).

Default: ``RapidOCR()`` as it comes. ``--same-config --threads T``: the options and thread counts
ocrjobs' rapid engine uses (jobs/engines/rapid.py), so only the job system differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _pages(path: Path, dpi: int) -> Any:
    """Each page as a BGR array: decoded like ocrjobs does (PIL, RGB), so both sides pay the same."""
    import numpy as np
    from PIL import Image

    if path.suffix.lower() != ".pdf":
        with Image.open(path) as im:
            yield np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
        return
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    try:
        for page in doc:
            rgb = page.render(scale=dpi / 72.0).to_pil().convert("RGB")
            yield np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    finally:
        doc.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plain_rapid", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--same-config", action="store_true", help="ocrjobs' rapid engine options (RapidEngine.DEFAULTS)")
    p.add_argument("--threads", type=int, help="intra-op threads (and OpenCV's), as OCRJOBS_THREADS does in a worker")
    p.add_argument("--dpi", type=int, default=200, help="PDF render resolution")
    args = p.parse_args(argv)
    from rapidocr_onnxruntime import RapidOCR

    options: dict[str, Any] = {}
    if args.same_config:
        from jobs.engines.rapid import RapidEngine

        options.update(RapidEngine.DEFAULTS)
    if args.threads:
        import cv2

        cv2.setNumThreads(args.threads)
        options.update(intra_op_num_threads=args.threads, inter_op_num_threads=1)
    ocr = RapidOCR(**options)
    texts = []
    for path in args.files:
        if not args.same_config and path.suffix.lower() != ".pdf":
            found, _elapse = ocr(str(path))  # the default way: rapidocr reads the file itself
            texts.append("\n".join(text for _box, text, _score in found or []))
            continue
        for image in _pages(path, args.dpi):
            found, _elapse = ocr(image)
            texts.append("\n".join(text for _box, text, _score in found or []))
    args.out.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
