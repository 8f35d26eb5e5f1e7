"""Real documents: CER and pages/s of the default engine (``auto``) beside plain Tesseract and plain
RapidOCR, in one run, on pages nobody here wrote (issue 20).

Latin pages: born-digital PDF manuals that Debian installs (shared-mime-info's spec, GNU libtasn1's
manual: prose, headings, lists, code), rendered scan-like (200 dpi, grey, rotated 0.3-0.8 degrees, dust
specks), each page's own text layer (pypdfium2) as the truth. A manual that is not installed is skipped
and said so. CJK and mixed pages are generated (bench/dataset.py's A4 pages, speckled, rotated).

Each engine reads every page in this process, one after the other (one core's worth: the job system's
workers are not involved), so the three are compared on the same pages under the same load.
``python -m bench.real_docs [--quick]`` prints markdown.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import Row, cer, goal_table, table

#: (PDF, pages): chosen for what real pages hold: a title page, prose, headings, bullet lists, code.
MANUALS = [
    (Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"), (0, 1, 3, 4, 8)),
    (Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"), (3, 4, 5, 11, 20)),
]
DPI = 200
SUBSETS = ("latin", "cjk", "mixed")


@dataclass
class Page:
    name: str
    subset: str  # latin | cjk | mixed
    image: Image.Image
    reference: str


def text_layer(pdf: Path, index: int) -> str:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    try:
        page = doc[index]
        return page.get_textpage().get_text_range().replace("\r\n", "\n").replace("\r", "\n")
    finally:
        doc.close()


def scan_like(pdf: Path, index: int, rng: random.Random) -> Image.Image:
    """The page as a 200 dpi office scan: grey, slightly rotated, with dust."""
    import pypdfium2 as pdfium

    from bench.dataset import _speckle

    doc = pdfium.PdfDocument(str(pdf))
    try:
        im = doc[index].render(scale=DPI / 72).to_pil().convert("L")
    finally:
        doc.close()
    angle = rng.choice((-1, 1)) * rng.uniform(0.3, 0.8)
    im = im.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    return _speckle(im, rng, density=0.0005)


def latin_pages(rng: random.Random, quick: bool) -> tuple[list[Page], list[str]]:
    pages, missing = [], []
    for pdf, indexes in MANUALS:
        if not pdf.is_file():
            missing.append(str(pdf))
            continue
        for i in indexes[:2] if quick else indexes:
            pages.append(Page(f"{pdf.stem} p{i + 1}", "latin", scan_like(pdf, i, rng), text_layer(pdf, i)))
    return pages, missing


def generated_pages(work: Path, rng: random.Random, quick: bool) -> list[Page]:
    """CJK and mixed A4 pages at 200 dpi (bench/dataset.py), speckled or rotated 1 degree."""
    from bench.dataset import CJK_FONT, make_page

    if not CJK_FONT.is_file():
        return []
    out = []
    for subset, kind in (("cjk", "chinese"), ("mixed", "mixed")):
        for n in range(1 if quick else 6):
            path = work / f"{subset}-{n}.png"
            s = make_page(path, kind, rng, speckle=n % 2 == 0, rotate=0.0 if n % 2 == 0 else rng.choice((-1.0, 1.0)))
            with Image.open(path) as im:
                out.append(Page(f"{subset} {n}", subset, im.convert("RGB"), s.reference))
    return out


def all_pages(work: Path, quick: bool = False, seed: int = 20) -> tuple[list[Page], list[str]]:
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    latin, missing = latin_pages(rng, quick)
    return latin + generated_pages(work, rng, quick), missing


# -- the engines, each as one would run it ------------------------------------------------------
Reader = Callable[[Page], tuple[str, str]]  # page -> (text, route or "")


def _auto(cls: Any = None) -> tuple[Reader, Callable[[], None]]:
    """ocrjobs' default engine, in this process (``cls``: another version of it, for a before/after)."""
    if cls is None:
        from jobs.engines.auto import AutoEngine as cls

    engine = cls()
    engine.load("cpu")

    def read(page: Page) -> tuple[str, str]:
        out = engine.recognize([page.image])[0]
        out = out if isinstance(out, dict) else out.__dict__
        return out["text"], out.get("route", "")

    return read, engine.close


def _tesseract() -> tuple[Reader, Callable[[], None]]:
    """Plain Tesseract 5 (tesserocr), its page layout analysis, as a user runs it: ``eng`` for the
    Latin pages, ``chi_sim+eng`` for the CJK and mixed ones."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    import tesserocr

    from jobs.engines.tessdata import find_tessdata

    path = f"{find_tessdata()}{os.sep}"
    apis = {lang: tesserocr.PyTessBaseAPI(path=path, lang=lang) for lang in ("eng", "chi_sim+eng")}

    def read(page: Page) -> tuple[str, str]:
        api = apis["eng" if page.subset == "latin" else "chi_sim+eng"]
        api.SetImage(page.image)
        return api.GetUTF8Text(), ""

    def close() -> None:
        for api in apis.values():
            api.End()

    return read, close


def _rapid() -> tuple[Reader, Callable[[], None]]:
    """Plain RapidOCR as it comes (``RapidOCR()``), its lines joined in its order."""
    import numpy as np
    from rapidocr_onnxruntime import RapidOCR

    ocr = RapidOCR()

    def read(page: Page) -> tuple[str, str]:
        found, _ = ocr(np.ascontiguousarray(np.asarray(page.image.convert("RGB"))[:, :, ::-1]))
        return "\n".join(text for _box, text, _score in found or []), ""

    return read, lambda: None


def _from_file(spec: str) -> Callable[[], tuple[Reader, Callable[[], None]]]:
    """``path/to/auto.py:AutoEngine``: an engine class from a file (the previous version, for before/after)."""
    path, _, name = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(f"_bench_{Path(path).stem}", path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return lambda: _auto(getattr(module, name))


ENGINES: dict[str, Callable[[], tuple[Reader, Callable[[], None]]]] = {
    "auto": _auto,
    "tesseract": _tesseract,
    "rapid": _rapid,
}


def measure(work: Path, quick: bool = False, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Every page through every engine, interleaved page by page so that load on the machine hits all alike."""
    pages, missing = all_pages(work / "pages", quick)
    makers = dict(ENGINES)
    for name, spec in (extra or {}).items():
        makers[name] = _from_file(spec)
    readers = {name: make() for name, make in makers.items()}
    texts: dict[str, list[str]] = {name: [] for name in readers}
    routes: dict[str, list[str]] = {name: [] for name in readers}
    seconds: dict[str, list[float]] = {name: [] for name in readers}
    # Untimed warm-up, one page of each script (ONNX and Tesseract allocate on their first big page); Latin
    # last, so that auto starts the timed pages as after a Latin page: its first CJK page pays the routing pass.
    for subset in ("cjk", "mixed", "latin"):
        for page in [p for p in pages if p.subset == subset][:1]:
            for read, _close in readers.values():
                read(page)
    for page in pages:
        for name, (read, _close) in readers.items():
            t0 = time.perf_counter()
            text, route = read(page)
            seconds[name].append(time.perf_counter() - t0)
            texts[name].append(text)
            routes[name].append(route)
    for _read, close in readers.values():
        close()
    return {"pages": pages, "missing": missing, "texts": texts, "routes": routes, "seconds": seconds}


def report(m: dict[str, Any], quick: bool = False) -> str:
    pages: list[Page] = m["pages"]
    names = list(m["texts"])
    stats: dict[tuple[str, str], tuple[float, float, str]] = {}
    for subset in SUBSETS:
        chosen = [i for i, p in enumerate(pages) if p.subset == subset]
        if not chosen:
            continue
        for name in names:
            score = cer([(m["texts"][name][i], pages[i].reference) for i in chosen])
            rate = len(chosen) / max(sum(m["seconds"][name][i] for i in chosen), 1e-9)
            routes = Counter(m["routes"][name][i] for i in chosen if m["routes"][name][i])
            stats[subset, name] = (score, rate, ", ".join(f"{r} {n}" for r, n in sorted(routes.items())))
    rows = []
    for subset in SUBSETS:
        n = sum(1 for p in pages if p.subset == subset)
        for name in names:
            if (subset, name) in stats:
                score, rate, routes = stats[subset, name]
                rows.append([subset, n, f"`{name}`", f"{score:.4f}", f"{rate:.3f}", routes or "-"])
    goals = []
    if ("latin", "auto") in stats:
        best = min(stats["latin", e][0] for e in ("tesseract", "rapid"))
        auto, tess = stats["latin", "auto"], stats["latin", "tesseract"]
        goals.append(
            Row("Latin CER", f"{auto[0]:.4f}", f"{best:.4f} (better plain)", "-", "<= better", auto[0] <= best)
        )
        ratio = auto[1] / tess[1]
        goals.append(
            Row(
                "Latin pages/s",
                f"{auto[1]:.3f}",
                f"{tess[1]:.3f} (Tesseract)",
                f"{ratio:.2f}x",
                ">= 0.8x",
                ratio >= 0.8,
            )
        )
    if ("cjk", "auto") in stats:
        auto, rapid = stats["cjk", "auto"][0], stats["cjk", "rapid"][0]
        goals.append(Row("CJK CER", f"{auto:.4f}", f"{rapid:.4f} (RapidOCR)", "-", "<= RapidOCR", auto <= rapid))
    if ("mixed", "auto") in stats:
        auto = stats["mixed", "auto"][0]
        best = min(stats["mixed", e][0] for e in ("tesseract", "rapid"))
        met = auto <= best + 0.01
        goals.append(Row("mixed CER", f"{auto:.4f}", f"{best:.4f} (better plain)", "-", "<= best + 0.01", met))
    for name in names:
        if name.startswith("auto") and name != "auto" and ("cjk", name) in stats:
            now, before = stats["cjk", "auto"][1], stats["cjk", name][1]
            goals.append(
                Row(
                    "CJK pages/s",
                    f"{now:.3f}",
                    f"{before:.3f} (`{name}`)",
                    f"{now / before:.2f}x",
                    ">= 1x",
                    now >= before,
                )
            )
    missing = m["missing"]
    out = [
        "## Real documents: the default engine beside plain Tesseract and plain RapidOCR"
        + (" (quick)" if quick else ""),
        "",
        f"{len(pages)} pages: real manual pages (PDFs Debian installs, rendered at {DPI} dpi, grey, rotated "
        "0.3-0.8 degrees, dust specks; truth: each page's own text layer) and generated CJK and mixed A4 pages "
        "(bench/dataset.py). Every engine reads every page in this one process, interleaved page by page, after an "
        "untimed warm-up page of each script. "
        "CER = edit distance / reference length after NFKC, whitespace runs as one space (word spaces count, "
        "line breaks do not). Plain Tesseract: tesserocr with its page layout, `eng` on Latin pages, "
        "`chi_sim+eng` on the others; plain RapidOCR: `RapidOCR()` as it comes. `route`: where `auto` sent each page."
        + (f" Not installed, so skipped: {', '.join(missing)}." if missing else ""),
        "",
        table(["pages", "n", "engine", "CER", "pages/s", "route"], rows),
        "",
        goal_table(goals),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.real_docs", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 pages per manual, 1 CJK and 1 mixed page")
    p.add_argument("--work", type=Path, help="keep the generated pages here (default: a temporary folder)")
    p.add_argument(
        "--also", action="append", default=[], metavar="NAME=FILE.py:Class", help="another engine version beside them"
    )
    args = p.parse_args(argv)
    extra = dict(spec.split("=", 1) for spec in args.also)
    with tempfile.TemporaryDirectory(prefix="ocrjobs-real-") as tmp:
        print(report(measure(args.work or Path(tmp), args.quick, extra), args.quick), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
