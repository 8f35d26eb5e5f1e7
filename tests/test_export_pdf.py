"""Searchable PDF, hOCR and ALTO exports (issue 19, items 2 and 4): a job of a mixed PDF (scanned
pages, one turned by /Rotate, and a digital page) and an image, OCR'd by the real runner with
RapidOCR, exported; what a reader's PDF viewer (pdfium) extracts and where, what an archive's XML
parser reads."""

from __future__ import annotations

import ctypes
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pikepdf
import pypdfium2 as pdfium
import pypdfium2.raw as raw
import pytest
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance.Levenshtein import distance as edit_distance

from tests.conftest import CJK_FONT, Runners, cli, cli_json
from tests.test_textlayer import make_pdf

DPI = 100
SCALE = DPI / 72
ENGLISH = ["Invoice 4711 total 1,280.50", "The quick brown fox jumps"]
CHINESE = ["今天天气很好", "北京上海广州深圳"]
DIGITAL = ["Digital page: its own text layer", "is left exactly as it was."]
NO_CJK = f"{CJK_FONT} is missing: install Debian's fonts-wqy-zenhei (`make setup` does)"
FONT = CJK_FONT if CJK_FONT.is_file() else Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _scan(lines: list[str], font: Path) -> Image.Image:
    im = Image.new("RGB", (900, 260), "white")
    draw = ImageDraw.Draw(im)
    face = ImageFont.truetype(str(font), 40)
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * 100), line, fill="black", font=face)
    return im


def _pt(im: Image.Image) -> tuple[float, float]:
    return im.width / SCALE, im.height / SCALE  # rendered at DPI, the page gives back the scan's pixels


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Pages: English scan, digital, English scan stored sideways with /Rotate 90, Chinese scan; then a PNG."""
    tmp = tmp_path_factory.mktemp("pdfexport")
    state = tmp / "state"
    state.mkdir()
    english, chinese = _scan(ENGLISH, FONT), _scan(CHINESE if CJK_FONT.is_file() else ENGLISH, FONT)
    sideways = english.rotate(90, expand=True)  # counterclockwise; /Rotate 90 turns it back upright
    pdf = make_pdf(
        tmp / "mixed.pdf",
        [
            {"scan": english, "size": _pt(english)},
            {"lines": DIGITAL, "size": _pt(english)},
            {"scan": sideways, "size": _pt(sideways), "rotate": 90},
            {"scan": chinese, "size": _pt(chinese)},
        ],
    )
    png = tmp / "photo.png"
    _scan(ENGLISH[::-1], FONT).save(png, dpi=(DPI, DPI))
    job_id = cli_json(state, "submit", str(pdf), str(png), "--engine", "rapid", "--dpi", str(DPI))["id"]
    runners = Runners(tmp)
    try:
        runners.run_once(state, "--device", "cpu")
    finally:
        runners.cleanup()
    cli(state, "export", job_id, "--format", "json", "-o", str(tmp / "rows.json"))
    cli(state, "export", job_id, "-o", str(tmp / "out.pdf"))  # the format from the extension
    rows = cli_json(state, "export", job_id, "-o", "-")
    assert [r["status"] for r in rows] == ["done"] * 5, rows
    assert [r["method"] for r in rows] == ["ocr", "text-layer", "ocr", "ocr", "ocr"], rows
    yield {"state": state, "id": job_id, "tmp": tmp, "pdf": pdf, "png": png, "rows": rows, "out": tmp / "out.pdf"}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def _cer(hyp: str, ref: str) -> float:
    return edit_distance(_norm(hyp), _norm(ref)) / max(len(_norm(ref)), 1)


def _page_text(doc: pdfium.PdfDocument, n: int) -> str:
    return doc[n].get_textpage().get_text_range()


def _to_pixels(page: pdfium.PdfPage, x: float, y: float) -> tuple[int, int]:
    """A point in PDF user space to the pixel the worker's render at DPI put it on (pdfium's own map)."""
    w, h = (round(v * SCALE) for v in page.get_size())
    dx, dy = ctypes.c_int(), ctypes.c_int()
    raw.FPDF_PageToDevice(page.raw, 0, 0, w, h, 0, x, y, dx, dy)
    return dx.value, dy.value


def test_extracted_text_is_the_ocr_text_and_cjk_is_searchable(job: dict[str, Any]) -> None:
    doc = pdfium.PdfDocument(str(job["out"]))
    assert len(doc) == 5
    for n, row in enumerate(job["rows"]):
        text = _page_text(doc, n)
        score = _cer(text, row["text"])
        assert score <= 0.02, f"page {n + 1}: CER {score:.3f}: {text!r} vs OCR {row['text']!r}"
    if not CJK_FONT.is_file():
        pytest.skip(NO_CJK)
    chinese = [b["text"] for b in job["rows"][3]["boxes"] if re.search(r"[\u4e00-\u9fff]", b["text"])]
    assert chinese, job["rows"][3]
    found = doc[3].get_textpage().search(chinese[0][:4]).get_next()
    assert found is not None, f"{chinese[0][:4]!r} not found in {_page_text(doc, 3)!r}"


def test_a_words_position_lies_inside_its_line_box(job: dict[str, Any]) -> None:
    doc = pdfium.PdfDocument(str(job["out"]))
    checked = 0
    for n, row in enumerate(job["rows"]):
        if row["method"] != "ocr":
            continue
        page = doc[n]
        tp = page.get_textpage()
        for box in row["boxes"]:
            word = max(box["text"].split(), key=len)
            hit = tp.search(word).get_next()
            assert hit is not None, f"{word!r} not found on page {n + 1}"
            xs, ys = [], []
            for k in range(hit[0], hit[0] + hit[1]):
                left, bottom, right, top = tp.get_charbox(k)
                for x, y in ((left, bottom), (right, top)):
                    px, py = _to_pixels(page, x, y)
                    xs.append(px)
                    ys.append(py)
            bx = [p[0] for p in box["box"]]
            by = [p[1] for p in box["box"]]
            assert min(bx) - 2 <= min(xs) and max(xs) <= max(bx) + 2, (n, word, xs, box)
            assert min(by) - 2 <= min(ys) and max(ys) <= max(by) + 2, (n, word, ys, box)
            checked += 1
    assert checked >= 6  # every line of four OCR'd pages, the turned one too


def test_pages_are_the_originals(job: dict[str, Any]) -> None:
    src, out = pdfium.PdfDocument(str(job["pdf"])), pdfium.PdfDocument(str(job["out"]))
    for n in range(len(src)):
        assert out[n].get_size() == src[n].get_size() and out[n].get_rotation() == src[n].get_rotation()
        before = np.asarray(src[n].render(scale=SCALE).to_pil(), dtype=np.int16)
        after = np.asarray(out[n].render(scale=SCALE).to_pil(), dtype=np.int16)
        assert before.shape == after.shape and np.abs(before - after).max() == 0, f"page {n + 1} looks different"
    with pikepdf.open(job["pdf"]) as a, pikepdf.open(job["out"]) as b:
        for n in range(len(a.pages)):  # the original content stream is still there, byte for byte
            original = a.pages[n].obj.Contents.read_bytes()
            contents = b.pages[n].obj.Contents
            streams = [contents] if isinstance(contents, pikepdf.Stream) else list(contents)
            assert original in [s.read_bytes() for s in streams], f"page {n + 1}"
        digital = b.pages[1].obj  # read from its text layer: no stream, no font added
        assert isinstance(digital.Contents, pikepdf.Stream)
        assert "/OcrJobsGlyphless" not in digital.Resources.get("/Font", {})
    assert _norm(_page_text(out, 1)) == _norm(_page_text(src, 1)) == _norm(" ".join(DIGITAL))
    # the image's page: its size at the file's dpi, its pixels unchanged (lossless)
    photo = Image.open(job["png"]).convert("RGB")
    assert out[4].get_size() == pytest.approx(_pt(photo), abs=0.01)  # PNG keeps dots per metre
    with pikepdf.open(job["out"]) as b:
        (image,) = b.pages[4].get_images().values()
        embedded = pikepdf.PdfImage(image).as_pil_image().convert("RGB")
    assert embedded.size == photo.size and np.array_equal(np.asarray(embedded), np.asarray(photo))


def test_split_writes_one_pdf_per_source(job: dict[str, Any]) -> None:
    folder = job["tmp"] / "split"
    cli(job["state"], "export", job["id"], "--format", "pdf", "--split", "-o", str(folder))
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["0001-mixed.pdf", "0002-photo.pdf"]
    assert [len(pdfium.PdfDocument(str(f))) for f in files] == [4, 1]
    again = cli(job["state"], "export", job["id"], "--format", "pdf", "--split", "-o", str(folder), check=False)
    assert again.returncode != 0 and "exists" in again.stderr


@pytest.mark.parametrize("fmt", ["hocr", "alto"])
def test_hocr_and_alto_parse_with_every_line_on_its_box(job: dict[str, Any], fmt: str) -> None:
    out = job["tmp"] / f"job.{'xml' if fmt == 'alto' else 'hocr'}"
    cli(job["state"], "export", job["id"], "-o", str(out))  # .xml means alto
    root = ET.parse(out).getroot()
    ns = {"h": "http://www.w3.org/1999/xhtml", "a": "http://www.loc.gov/standards/alto/ns-v4#"}
    if fmt == "hocr":
        pages = root.findall(".//h:div[@class='ocr_page']", ns)
        per_page = [p.findall(".//h:span[@class='ocr_line']", ns) for p in pages]
        boxes = [[int(v) for v in ln.get("title").split(";")[0].split()[1:]] for lines in per_page for ln in lines]
        texts = [" ".join(w.text for w in ln) for lines in per_page for ln in lines]
    else:
        pages = root.findall(".//a:Page", ns)
        per_page = [p.findall(".//a:TextLine", ns) for p in pages]
        boxes = [[int(ln.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] for lines in per_page for ln in lines]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in boxes]
        texts = [" ".join(s.get("CONTENT") for s in ln.findall("a:String", ns)) for lines in per_page for ln in lines]
    rows = job["rows"]
    assert len(pages) == len(rows)
    assert [len(lines) for lines in per_page] == [len(r["boxes"]) for r in rows]
    expected = [b for r in rows for b in r["boxes"]]
    for got, want, text in zip(boxes, expected, texts, strict=True):
        xs, ys = [p[0] for p in want["box"]], [p[1] for p in want["box"]]
        assert got == pytest.approx([min(xs), min(ys), max(xs), max(ys)], abs=1), (got, want)
        assert _norm(text) == _norm(want["text"])


def test_pending_pages_are_marked(state: Path, tmp_path: Path) -> None:
    """A job not run yet: every page is there, unchanged, with a note that it is pending; the CLI says so."""
    pdf = make_pdf(tmp_path / "scan.pdf", [{"scan": _scan(ENGLISH, FONT)}])
    job_id = cli_json(state, "submit", str(pdf), "--engine", "rapid")["id"]
    out = tmp_path / "pending.pdf"
    proc = cli(state, "export", job_id, "-o", str(out))
    assert "partial export" in proc.stderr and "1 of 1 items not processed" in proc.stderr
    with pikepdf.open(out) as b:
        notes = [str(a.Contents) for a in b.pages[0].obj.get("/Annots", [])]
    assert any("pending" in n for n in notes), notes
    assert pdfium.PdfDocument(str(out))[0].get_textpage().get_text_range() == ""
    alto = tmp_path / "pending.xml"
    cli(state, "export", job_id, "-o", str(alto))
    page = ET.parse(alto).getroot().find(".//{http://www.loc.gov/standards/alto/ns-v4#}Page")
    assert page.get("QUALITY") == "Missing" and "pending" in page.get("QUALITY_DETAIL")


def test_failed_and_unreadable_items_keep_their_page_with_a_note(state: Path, tmp_path: Path) -> None:
    """Pages stay in item order: a failed item's page carries its error, a vanished input is a blank page."""
    from jobs.store import Store
    from jobs.store.atomic import atomic_write_json

    pngs = []
    for n in range(3):
        pngs.append(tmp_path / f"p{n}.png")
        _scan(ENGLISH, FONT).save(pngs[-1], dpi=(DPI, DPI))
    job_id = cli_json(state, "submit", *map(str, pngs), "--engine", "rapid")["id"]
    store = Store(state)
    store.results_dir(job_id).mkdir(exist_ok=True)
    box = {"box": [[40, 40], [500, 40], [500, 90], [40, 90]], "text": "Invoice 4711 <&> \x0c"}
    for item in store.manifest(job_id):
        failed = item["index"] == 1
        result = {
            "index": item["index"],
            "source": item["source"],
            "page": None,
            "status": "failed" if failed else "done",
            "text": "" if failed else box["text"],
            "confidence": 0.9,
            "processing_time_ms": 1.0,
            "device": "cpu",
            "error": {"kind": "input", "message": "image is truncated or damaged"} if failed else None,
            "method": "ocr",
            "boxes": [] if failed else [box],
        }
        atomic_write_json(store.result_path(job_id, item["index"]), result, durable=False)
    (store.job_dir(job_id) / store.manifest(job_id)[2]["path"]).write_bytes(b"not an image")
    out = tmp_path / "out.pdf"
    cli(state, "export", job_id, "-o", str(out))
    doc = pdfium.PdfDocument(str(out))
    assert len(doc) == 3
    assert "Invoice 4711 <&>" in doc[0].get_textpage().get_text_range()
    with pikepdf.open(out) as pdf:
        notes = [[str(a.Contents) for a in p.obj.get("/Annots", [])] for p in pdf.pages]
    assert notes[0] == [] and "failed - image is truncated or damaged" in notes[1][0], notes
    assert "input could not be read" in notes[2][0], notes
    for ext in ("hocr", "xml"):  # escaped text, control characters dropped: it parses
        cli(state, "export", job_id, "-o", str(tmp_path / f"out.{ext}"))
        assert "&lt;&amp;&gt;" in (tmp_path / f"out.{ext}").read_text()
        ET.parse(tmp_path / f"out.{ext}")
    bad = cli(state, "export", job_id, "--format", "pdf", "--split", "-o", "-", check=False)
    assert bad.returncode != 0 and "folder" in bad.stderr
