"""Text layer first (issue 19, item 1): digital PDF pages are read from their text layer, scans are
OCR'd, page by page; boxes land where OCR's would, in the rendered page's pixel frame."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as raw
import pytest
from PIL import Image, ImageDraw, ImageFont

from jobs import config
from jobs.errors import SubmitError
from jobs.intake.decode import render_pdf_page
from jobs.intake.submit import JobSpec
from jobs.intake.textlayer import text_layer_result
from tests.conftest import PY, REPO, cli, cli_json

A4 = (595.0, 842.0)
LINES = ["Invoice 4711", "Total due: 1,234.56 EUR", "Thank you for your business."]
SLIDE = ["Quarterly report: slide text over a picture"] * 6  # over a page-sized picture: enough to read it


def _text(
    pdf: pdfium.PdfDocument, page: pdfium.PdfPage, font: Any, s: str, x: float, y: float, size: float, mode: int = 0
) -> None:
    obj = raw.FPDFPageObj_CreateTextObj(pdf, font, size)
    buf = ctypes.create_string_buffer((s + "\0").encode("utf-16-le"))
    raw.FPDFText_SetText(obj, ctypes.cast(buf, ctypes.POINTER(raw.FPDF_WCHAR)))
    raw.FPDFTextObj_SetTextRenderMode(obj, mode)
    raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, y)
    raw.FPDFPage_InsertObject(page, obj)


def _image(
    pdf: pdfium.PdfDocument, page: pdfium.PdfPage, im: Image.Image, rect: tuple[float, float, float, float]
) -> None:
    obj = pdfium.PdfImage.new(pdf)
    obj.set_bitmap(pdfium.PdfBitmap.from_pil(im))
    left, bottom, right, top = rect
    obj.set_matrix(pdfium.PdfMatrix().scale(right - left, top - bottom).translate(left, bottom))
    page.insert_obj(obj)


def _scan(lines: list[str], size: tuple[int, int] = (620, 877)) -> Image.Image:
    """A picture of a printed page (what a scanner gives)."""
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=22)
    for n, line in enumerate(lines):
        draw.text((60, 80 + 40 * n), line, fill="black", font=font)
    return im


def make_pdf(path: Path, pages: list[dict[str, Any]]) -> Path:
    """Pages of: ``lines`` (visible Helvetica text), ``scan`` (a page-sized image), ``ocr_layer``
    (invisible text over it, as OCRmyPDF writes), ``under`` (visible text painted before the scan,
    hidden), ``image`` (an image over part of the page), ``rotate`` (the page's /Rotate)."""
    pdf = pdfium.PdfDocument.new()
    font = pdfium.PdfFont.load_standard(pdf, "Helvetica")
    for spec in pages:
        page = pdf.new_page(*spec.get("size", A4))
        w, h = page.get_size()
        for n, line in enumerate(spec.get("under", [])):  # painted first: the scan hides it
            _text(pdf, page, font, line, 72, h - 100 - 30 * n, 16)
        if "scan" in spec:
            _image(pdf, page, spec["scan"], (0, 0, w, h))
        if "image" in spec:
            _image(pdf, page, spec["image"][0], spec["image"][1])
        for n, line in enumerate(spec.get("lines", [])):
            _text(pdf, page, font, line, 72, h - 100 - 30 * n, 16)
        for n, line in enumerate(spec.get("ocr_layer", [])):
            _text(pdf, page, font, line, 45, h - 75 - 30 * n, 16, mode=raw.FPDF_TEXTRENDERMODE_INVISIBLE)
        page.gen_content()
        if "rotate" in spec:
            page.set_rotation(spec["rotate"])
    pdf.save(str(path))
    pdf.close()
    return path


def _item(pdf: Path, page: int) -> dict[str, Any]:
    return {"index": page - 1, "kind": "pdf", "path": pdf.name, "page": page, "source": pdf.name}


def _ink_box(im: Image.Image) -> tuple[int, int, int, int]:
    """Left, top, right, bottom of the dark pixels of a rendered page."""
    dark = np.asarray(im.convert("L")) < 128
    ys, xs = np.nonzero(dark)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _span(boxes: list[dict[str, Any]]) -> tuple[float, float, float, float]:
    xs = [p[0] for b in boxes for p in b["box"]]
    ys = [p[1] for b in boxes for p in b["box"]]
    return min(xs), min(ys), max(xs), max(ys)


def test_digital_page_is_read_from_its_text_layer_with_boxes_on_the_ink(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "digital.pdf", [{"lines": LINES}])
    result = text_layer_result(tmp_path, _item(pdf, 1), 150, "auto")
    assert result is not None
    assert result["method"] == "text-layer" and result["confidence"] == 1.0
    assert result["text"] == "\n".join(LINES)
    assert [b["text"] for b in result["boxes"]] == LINES
    rendered = render_pdf_page(pdf, 1, 150)
    width, height = rendered.size
    for b in result["boxes"]:
        assert all(0 <= x <= width and 0 <= y <= height for x, y in b["box"])
    # The boxes hold the rendered text: their span and the ink's agree within a few pixels.
    ink, span = _ink_box(rendered), _span(result["boxes"])
    assert all(abs(a - b) <= 4 for a, b in zip(ink, span, strict=True)), (ink, span)
    assert result["processing_time_ms"] < 1000


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to print a PDF with")
def test_a_browser_printed_page_with_chinese_and_a_table(tmp_path: Path) -> None:
    """What users really get: embedded subset fonts (English and CJK), table cells on one line."""
    page = tmp_path / "report.html"
    page.write_text(
        "<!doctype html><meta charset=utf-8><style>body{font:14pt sans-serif} td+td{padding-left:200px}</style>"
        "<h1>Invoice 4711</h1><p>发票号码 4711，合计 1234.56 元</p>"
        "<table><tr><td>Item</td><td>Price</td></tr><tr><td>Paper</td><td>12.50</td></tr></table>",
        encoding="utf-8",
    )
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
         f"--print-to-pdf={pdf}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    result = text_layer_result(tmp_path, _item(pdf, 1), 150, "auto")
    assert result is not None and result["method"] == "text-layer"
    assert result["text"] == "Invoice 4711\n发票号码 4711，合计 1234.56 元\nItem Price\nPaper 12.50"
    assert [b["text"] for b in result["boxes"]][2:] == ["Item", "Price", "Paper", "12.50"]  # a box per cell
    dark = np.asarray(render_pdf_page(pdf, 1, 150).convert("L")) < 128
    for b in result["boxes"]:
        (x0, y0), (x1, y1) = b["box"][0], b["box"][2]
        inside = dark[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1].sum()
        assert inside > 0.9 * dark[int(y0) - 3 : int(y1) + 4, int(x0) - 3 : int(x1) + 4].sum() > 0, b


@pytest.mark.parametrize("rotate", [90, 270])
def test_boxes_follow_page_rotation_and_the_max_side_shrink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rotate: int
) -> None:
    monkeypatch.setattr(config, "MAX_OCR_SIDE", 900)  # A4 at 300 dpi is 3508 px high: shrunk to 900
    pdf = make_pdf(tmp_path / "rotated.pdf", [{"lines": LINES, "rotate": rotate}])
    result = text_layer_result(tmp_path, _item(pdf, 1), 300, "auto")
    assert result is not None and result["text"] == "\n".join(LINES)
    rendered = render_pdf_page(pdf, 1, 300)
    assert max(rendered.size) == 900 and rendered.width > rendered.height  # landscape after /Rotate
    ink, span = _ink_box(rendered), _span(result["boxes"])
    assert all(abs(a - b) <= 3 for a, b in zip(ink, span, strict=True)), (ink, span)


def test_scans_are_ocr_d_even_with_an_invisible_text_layer(tmp_path: Path) -> None:
    pillow_pdf = tmp_path / "scan.pdf"
    _scan(LINES).save(pillow_pdf, resolution=75)  # what a scanner app writes: one image per page
    assert text_layer_result(tmp_path, _item(pillow_pdf, 1), 150, "auto") is None
    ocrd = make_pdf(
        tmp_path / "ocrd.pdf", [{"scan": _scan(LINES), "ocr_layer": LINES}, {"scan": _scan(LINES), "under": SLIDE}]
    )
    assert text_layer_result(tmp_path, _item(ocrd, 1), 150, "auto") is None
    assert text_layer_result(tmp_path, _item(ocrd, 2), 150, "auto") is None  # the slide's text, but under the scan


def test_mixed_pdf_is_decided_page_by_page(tmp_path: Path) -> None:
    photo = Image.new("RGB", (400, 300), (90, 120, 160))
    pdf = make_pdf(
        tmp_path / "mixed.pdf",
        [
            {"lines": LINES},
            {"scan": _scan(LINES)},
            {"lines": LINES[:1], "image": (photo, (72, 200, 520, 600))},  # a large picture nothing reads
            {"lines": LINES, "image": (photo, (500, 780, 560, 830))},  # a logo: small, the page is digital
            {"scan": _scan(["Quarterly report"]), "lines": SLIDE},
            {"scan": _scan(LINES), "lines": ["Page 3 of 12"]},  # a scan with a stamped page number
        ],
    )
    methods = [text_layer_result(tmp_path, _item(pdf, n), 100, "auto") for n in range(1, 7)]
    expected = ["text-layer", "ocr", "ocr", "text-layer", "text-layer", "ocr"]
    assert [m["method"] if m else "ocr" for m in methods] == expected
    assert methods[3]["text"] == "\n".join(LINES)


def test_mode_ocr_always_ocrs_and_images_are_never_text_layer(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "digital.pdf", [{"lines": LINES}])
    assert text_layer_result(tmp_path, _item(pdf, 1), 150, "ocr") is None
    image = {"index": 0, "kind": "image", "path": "a.png", "page": None, "source": "a.png"}
    assert text_layer_result(tmp_path, image, 150, "text") is None
    assert text_layer_result(tmp_path, {**_item(pdf, 1), "page": 9}, 150, "auto") is None  # decode reports it


def test_mode_text_never_ocrs_and_says_why(tmp_path: Path) -> None:
    photo = Image.new("RGB", (400, 300), (90, 120, 160))
    pages = [
        {"scan": _scan(LINES)},
        {"scan": _scan(LINES), "ocr_layer": LINES},
        {"lines": LINES[:1], "image": (photo, (72, 200, 520, 600))},
    ]
    pdf = make_pdf(tmp_path / "scans.pdf", pages)
    bare = text_layer_result(tmp_path, _item(pdf, 1), 150, "text")
    assert bare is not None and bare["method"] == "text-layer"
    assert bare["text"] == "" and bare["boxes"] == []
    assert "no text layer" in bare["warning"]
    layered = text_layer_result(tmp_path, _item(pdf, 2), 150, "text")
    assert layered is not None and layered["text"] == "\n".join(LINES)
    assert "invisible text layer" in layered["warning"]
    partial = text_layer_result(tmp_path, _item(pdf, 3), 150, "text")
    assert partial is not None and partial["text"] == LINES[0]
    assert "may be incomplete (images without text over them cover 36% of the page)" in partial["warning"]


def test_pdf_text_is_validated_and_old_specs_read_as_auto() -> None:
    assert JobSpec().pdf_text == "auto"
    with pytest.raises(SubmitError, match="pdf text must be auto .*ocr or text, got 'never'"):
        JobSpec(pdf_text="never").validate()


def test_cli_stores_pdf_text_in_the_job(state: Path, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "digital.pdf", [{"lines": LINES}])
    job_id = cli_json(state, "submit", str(pdf), "--pdf-text", "ocr")["id"]
    spec = json.loads((state / "jobs" / job_id / "job.json").read_text())["spec"]
    assert spec["pdf_text"] == "ocr"
    default = cli_json(state, "submit", str(pdf))["id"]
    assert json.loads((state / "jobs" / default / "job.json").read_text())["spec"]["pdf_text"] == "auto"
    bad = cli(state, "submit", str(pdf), "--pdf-text", "never", check=False)
    assert bad.returncode == 2 and "invalid choice: 'never'" in bad.stderr


def test_a_scan_placed_as_a_form_xobject_is_ocr_d(tmp_path: Path) -> None:
    """PDF tools impose a scanned page as a form XObject: its image lies in the form's own space."""
    src = pdfium.PdfDocument(str(make_pdf(tmp_path / "scan.pdf", [{"scan": _scan(LINES)}])))
    pdf = pdfium.PdfDocument.new()
    page = pdf.new_page(*A4)
    form = raw.FPDF_NewFormObjectFromXObject(raw.FPDF_NewXObjectFromPage(pdf, src, 0))
    raw.FPDFPageObj_Transform(form, 0.6, 0, 0, 0.6, 100, 80)  # 36 % of the page
    raw.FPDFPage_InsertObject(page, form)
    _text(pdf, page, pdfium.PdfFont.load_standard(pdf, "Helvetica"), "Attachment 1: the signed contract", 72, 780, 14)
    page.gen_content()
    pdf.save(str(tmp_path / "imposed.pdf"))
    assert text_layer_result(tmp_path, _item(tmp_path / "imposed.pdf", 1), 150, "auto") is None


def test_a_job_reads_digital_pages_from_the_text_layer_in_under_1_percent_of_ocr(state: Path, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "mixed.pdf", [{"lines": LINES}] * 5 + [{"scan": _scan(LINES)}])
    auto = cli_json(state, "submit", str(pdf), "--engine", "rapid", "--dpi", "150")["id"]
    digital_only = make_pdf(tmp_path / "digital.pdf", [{"lines": LINES}])
    forced = cli_json(state, "submit", str(digital_only), "--engine", "rapid", "--dpi", "150", "--pdf-text", "ocr")[
        "id"
    ]
    subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once"], cwd=REPO, check=True, capture_output=True, timeout=180
    )

    def results(job_id: str) -> list[dict[str, Any]]:
        files = sorted((state / "jobs" / job_id / "results").glob("*.json"))
        return [json.loads(f.read_text()) for f in files]

    *digital, scanned = results(auto)
    assert [r["method"] for r in digital] == ["text-layer"] * 5 and scanned["method"] == "ocr"
    assert all(r["status"] == "done" for r in [*digital, scanned])
    assert digital[0]["text"] == "\n".join(LINES) and "4711" in scanned["text"]
    # The median page: a worker's first page also pays pdfium's one-time set-up (~10 ms).
    times = sorted(r["processing_time_ms"] for r in digital)
    assert times[2] < 0.01 * scanned["processing_time_ms"], (times, scanned["processing_time_ms"])
    [ocrd] = results(forced)
    assert ocrd["method"] == "ocr" and "4711" in ocrd["text"]
    exported = json.loads(cli(state, "export", auto, "--format", "json", "-o", "-").stdout)
    assert [r["method"] for r in exported] == ["text-layer"] * 5 + ["ocr"]
    assert all(r["boxes"] for r in exported)  # line boxes travel with the JSON export
