"""Searchable PDF export (issue 19, item 2): seconds and peak RSS for a 200-page job.

Two jobs of the same scanned page (an A4 page of text at 200 dpi, 1654x2339, a ~0.5 MB JPEG):
one PDF of N pages (each page its own image, as a scanner writes it) and N JPEG files. Results
are written straight into the job folders (no OCR: this measures the export), 40 line boxes a
page. Each export runs in a fresh process (``export ID --format pdf`` through
``jobs.exports.export.write``), which reports its wall time and its peak RSS (VmHWM); the same at
N/4 pages shows whether memory grows with the job (it should not: pages go through chunks on disk).
    python -m bench.pdf_export [--pages N] [--append bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pikepdf
from PIL import Image, ImageDraw, ImageFont

from bench.common import REPO, Row, goal_table, machine
from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from jobs.store.atomic import atomic_write_json

DPI = 200
SIZE = (1654, 2339)  # A4 at 200 dpi
LINES = 40
RSS_GOAL = 1.5  # peak RSS at N pages <= 1.5x that at N/4

_CHILD = """
import json, sys, time
from pathlib import Path
from jobs.exports.export import write
from jobs.store import Store
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
before = status("VmRSS")
t = time.perf_counter()
s = write(Store(Path(sys.argv[1])), sys.argv[2], "pdf", Path(sys.argv[3]))
print(json.dumps({"s": time.perf_counter() - t, "hwm_mb": status("VmHWM"), "start_mb": before,
                  "size_mb": Path(sys.argv[3]).stat().st_size / 2**20, "counts": s.counts}))
"""


def scan_jpeg(seed: int = 19) -> tuple[bytes, list[list[list[float]]], list[str]]:
    """A page of printed-looking text as JPEG bytes, with its line boxes and texts."""
    rng = random.Random(seed)
    im = Image.new("L", SIZE, 255)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=30)
    boxes, texts = [], []
    for n in range(LINES):
        text = " ".join(rng.choice(("invoice", "total", "4711", "delivery", "payment", "due")) for _ in range(8))
        x, y = 120, 100 + n * 54
        draw.text((x, y), text, fill=0, font=font)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        boxes.append([[left, top], [right, top], [right, bottom], [left, bottom]])
        texts.append(text)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=80, dpi=(DPI, DPI))
    return buf.getvalue(), boxes, texts


def make_inputs(work: Path, pages: int, jpeg: bytes) -> tuple[Path, list[Path]]:
    pdf = pikepdf.new()
    w_pt, h_pt = SIZE[0] * 72 / DPI, SIZE[1] * 72 / DPI
    for _ in range(pages):
        image = pdf.make_stream(
            jpeg,
            Type=pikepdf.Name.XObject,
            Subtype=pikepdf.Name.Image,
            Width=SIZE[0],
            Height=SIZE[1],
            ColorSpace=pikepdf.Name.DeviceRGB,
            BitsPerComponent=8,
            Filter=pikepdf.Name.DCTDecode,
        )
        pdf.add_blank_page(page_size=(w_pt, h_pt))
        page = pdf.pages[-1]
        page.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
        page.obj.Contents = pdf.make_stream(f"q {w_pt} 0 0 {h_pt} 0 0 cm /Im0 Do Q".encode())
    path = work / f"scans-{pages}.pdf"
    pdf.save(path)
    images = []
    for n in range(pages):
        images.append(work / f"img-{pages}-{n:04d}.jpg")
        images[-1].write_bytes(jpeg)
    return path, images


def fake_job(state: Path, files: list[Path], boxes: list, texts: list[str]) -> str:
    store = Store(state)
    job_id = submit(store, files, JobSpec(engine="rapid", dpi=DPI))
    store.results_dir(job_id).mkdir(exist_ok=True)
    for item in store.manifest(job_id):
        result = {
            "index": item["index"],
            "source": item["source"],
            "page": item["page"],
            "status": "done",
            "text": "\n".join(texts),
            "confidence": 0.95,
            "processing_time_ms": 1.0,
            "device": "cpu",
            "error": None,
            "method": "ocr",
            "boxes": [{"box": b, "text": t} for b, t in zip(boxes, texts, strict=True)],
        }
        atomic_write_json(store.result_path(job_id, item["index"]), result, durable=False)
    return job_id


def export_in_child(state: Path, job_id: str, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(state), job_id, str(out)], cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(work: Path, pages: int) -> list[Row]:
    jpeg, boxes, texts = scan_jpeg()
    state = work / "state"
    state.mkdir()
    got = {}
    for n in (pages // 4, pages):
        pdf, images = make_inputs(work, n, jpeg)
        for kind, files in (("PDF", [pdf]), ("JPEG", images)):
            job_id = fake_job(state, files, boxes, texts)
            got[kind, n] = export_in_child(state, job_id, work / f"out-{kind}-{n}.pdf")
    rows = []
    for kind in ("PDF", "JPEG"):
        big, small = got[kind, pages], got[kind, pages // 4]
        what = f"a {pages}-page scanned PDF" if kind == "PDF" else f"{pages} JPEG files"
        rows.append(Row(f"{what}: seconds to export", f"{big['s']:.1f} s ({pages / big['s']:.0f} pages/s)"))
        rows.append(Row(f"{what}: output size", f"{big['size_mb']:.0f} MB"))
        ratio = big["hwm_mb"] / small["hwm_mb"]
        rows.append(
            Row(
                f"{what}: peak RSS (VmHWM) of the exporting process, vs {pages // 4} pages",
                f"{big['hwm_mb']:.0f} MB (imports: {big['start_mb']:.0f} MB)",
                f"{small['hwm_mb']:.0f} MB at {pages // 4} pages",
                f"{ratio:.2f}x",
                f"<= {RSS_GOAL}x (streams)",
                ratio <= RSS_GOAL,
            )
        )
    return rows


def section(work: Path, quick: bool = False) -> str:
    """For bench/report.py (which writes the part marker itself): 40 pages with --quick, else 200."""
    pages = 40 if quick else 200
    t0 = time.monotonic()
    return report(measure(work, pages), pages, time.monotonic() - t0).split("\n", 1)[1]


def report(rows: list[Row], pages: int, took: float) -> str:
    return (
        f"<!-- part: pdf_export took={took:.0f} -->\n## Searchable PDF export: {pages} pages\n\n"
        f"Fake results (40 line boxes a page, no OCR), A4 scans at {DPI} dpi (1654x2339 JPEG, "
        f"{len(scan_jpeg()[0]) / 1024:.0f} KB a page); each export in a fresh process (`python -m bench.pdf_export`). "
        f"Machine: {machine()}.\n\n" + goal_table(rows) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pdf_export", description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=200, help="pages in each job (default 200)")
    p.add_argument("--append", type=Path, help="append the section to this file (bench/RESULTS.md)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ocrjobs-pdfexport-") as tmp:
        rows = measure(Path(tmp), args.pages)
    text = report(rows, args.pages, time.monotonic() - t0)
    print(text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
