"""Searchable PDF export: the original pages, unchanged, with an invisible OCR text layer.

What OCRmyPDF produces, from results the job already has:

- **A PDF input** keeps its own pages (pikepdf copies them object for object: content, images,
  fonts, annotations). An OCR'd page gets one more content stream, after its own (which is wrapped
  in ``q``/``Q`` so its graphics state cannot leak into ours), drawing each line's text in render
  mode 3 (invisible) over the line's box. A page read from its text layer (``method:
  "text-layer"``) already has its text and is left exactly as it was.
- **An image input** becomes a page of the image's size at its own dpi (the job's dpi when the file
  has none): a JPEG is embedded as its own bytes (DCTDecode, no re-compression), any other image
  losslessly (Flate), and gets the same text layer.

The text uses the glyphless font OCRmyPDF and Tesseract use (a Type0/CIDFontType2 font whose one
glyph is empty, Identity-H encoding, CID = the UTF-16 code unit, a ToUnicode map back): so any
script, Chinese too, is selectable, copyable and searchable, and nothing is drawn. Each line is one
text object on its box: baseline on the box's bottom edge, font size the box's height, stretched
(``Tz``) to the box's width, turned with the box and with the page's /Rotate: a selection follows
the lines on the picture.

**Not done yet** (``pending``, ``failed``, ``timed_out``): the page is still there, unchanged and
without text, with a note (a non-printing comment annotation at its top left) saying why; an input
that cannot be read at all becomes a blank page with that note, so pages stay in item order.

**Streaming**: pages are written in chunks of ``CHUNK_PAGES`` to temporary PDFs, then joined;
qpdf's own page selection (``qpdf --empty --pages``) copies their streams from disk as it writes, so
memory holds one chunk's pages at most (200 pages: 78 MB peak, as at 50; bench/pdf_export.py).
"""

from __future__ import annotations

import math
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pikepdf
from pikepdf import Array, Dictionary, Name, Pdf, String
from pikepdf.canvas import ContentStreamBuilder, Matrix
from PIL import Image

from jobs import config
from jobs.exports.pageframe import Frame, decoded_size, file_name, image_frame, lines, pdf_frame
from jobs.exports.pdf_font import CHAR_WIDTH, glyphless_font
from jobs.exports.results import Tracker
from jobs.intake.decode import item_path

CHUNK_PAGES = 50
CHUNK_BYTES = 64 * 2**20  # or fewer pages, when their images add up to this much
MAX_PAGE_PT = 14400.0  # PDF's page size limit (200 in): a huge image at a low dpi is scaled to it
_FONT = Name("/OcrJobsGlyphless")


def text_layer(frame: Frame, page_lines: list[tuple[list[list[float]], str]]) -> bytes:
    """The content stream of the invisible lines, in user space."""
    cs = ContentStreamBuilder()
    for quad, text in page_lines:
        tl, _tr, br, bl = (frame.point(*p) for p in quad)
        base = (br[0] - bl[0], br[1] - bl[1])
        up = (tl[0] - bl[0], tl[1] - bl[1])
        width, height = math.hypot(*base), math.hypot(*up)
        codes = text.encode("utf-16-be")
        if width < 0.1 or height < 0.1 or not codes:
            continue
        ux, uy = base[0] / width, base[1] / width
        # the up vector square to the baseline, on the side the box's top is (a mirrored frame flips it)
        side = 1.0 if ux * up[1] - uy * up[0] >= 0 else -1.0
        vx, vy = -uy * side, ux * side
        cs.begin_text()
        cs.set_text_rendering(3)  # invisible: neither fill nor stroke
        cs.set_text_font(_FONT, 1)
        cs.set_text_matrix(Matrix(ux * height, uy * height, vx * height, vy * height, bl[0], bl[1]))
        cs.set_text_horizontal_scaling(100.0 * width / (len(codes) // 2 * CHAR_WIDTH * height))
        cs.show_text(codes)
        cs.end_text()
    return cs.build()


def _copy_dict(obj: pikepdf.Object | None) -> Dictionary:
    """A direct copy of a (maybe shared, maybe indirect) dictionary: adding to it changes no other page."""
    return Dictionary({k: obj[k] for k in obj.keys()}) if isinstance(obj, Dictionary) else Dictionary()


def add_text_layer(pdf: Pdf, page: pikepdf.Page, frame: Frame, page_lines: list, font: pikepdf.Object) -> None:
    stream = text_layer(frame, page_lines)
    if not stream:
        return
    resources = _copy_dict(page.obj.get(Name.Resources))
    fonts = _copy_dict(resources.get(Name.Font))
    fonts[_FONT] = font
    resources[Name.Font] = fonts
    page.obj[Name.Resources] = resources
    page.contents_add(pdf.make_stream(b"q\n"), prepend=True)
    page.contents_add(pdf.make_stream(b"\nQ\n" + stream))


def add_note(pdf: Pdf, page: pikepdf.Page, text: str) -> None:
    """A comment at the page's top left (a sticky note; not printed): why the page has no text."""
    x0, _y0, _x1, y1 = (float(v) for v in page.cropbox)
    note = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Text,
            Rect=[x0 + 4, y1 - 28, x0 + 28, y1 - 4],
            Contents=String(text),
            T=String("ocrjobs"),
            Name=Name.Comment,
        )
    )
    annots = page.obj.get(Name.Annots)
    page.obj[Name.Annots] = Array([*(annots or []), note])


def _status_note(row: dict[str, Any]) -> str:
    if row["status"] == "pending":
        return "ocrjobs: pending - not processed yet; export again when the job has finished"
    return f"ocrjobs: {row['status']} - {row.get('error') or 'no text'}"


class Chunks:
    """Builds the export's pages into temporary PDFs of ``CHUNK_PAGES`` pages each."""

    def __init__(self, job_dir: Path, dpi: int, tmp: Path) -> None:
        self.job_dir, self.dpi, self.tmp = job_dir, dpi, tmp
        self.files: list[Path] = []
        self.pages: list[tuple[int, int, str]] = []  # every output page: chunk, page in chunk, source
        self._pdf: Pdf | None = None
        self._bytes = 0.0  # the chunk's image data so far (a PDF page: its share of the file)
        self._sources: dict[Path, Pdf] = {}  # open until the chunk is saved: its pages read from them
        self._pdfium: dict[Path, Any] = {}  # the same files in pdfium, for the frame the worker rendered

    def add(self, item: dict[str, Any], row: dict[str, Any]) -> None:
        if self._pdf is None:
            self._pdf = pikepdf.new()
            self._font = glyphless_font(self._pdf)
        pdf = self._pdf
        try:
            page, frame = self._page(pdf, item)
        except Exception as e:  # noqa: BLE001 - an unreadable input: a blank page that says so, order kept
            pdf.add_blank_page(page_size=(612, 792))
            add_note(pdf, pdf.pages[-1], f"ocrjobs: input could not be read ({str(e)[:200]}); {_status_note(row)}")
        else:
            if row["status"] != "done":
                add_note(pdf, page, _status_note(row))
            elif row.get("method") != "text-layer":
                add_text_layer(pdf, page, frame, lines(row, frame), self._font)
        self.pages.append((len(self.files), len(pdf.pages) - 1, str(row["source"])))
        if len(pdf.pages) >= CHUNK_PAGES or self._bytes >= CHUNK_BYTES:
            self.flush()

    def _page(self, pdf: Pdf, item: dict[str, Any]) -> tuple[pikepdf.Page, Frame]:
        if item.get("error"):
            raise ValueError(item["error"])
        path = item_path(self.job_dir, item.get("path"))
        if item.get("kind") == "pdf":
            import pypdfium2 as pdfium

            if path not in self._sources:
                src, doc = pikepdf.open(path), pdfium.PdfDocument(str(path))
                self._sources[path], self._pdfium[path] = src, doc
            number = int(item["page"]) - 1
            frame = pdf_frame(self._pdfium[path][number], self.dpi)
            self._bytes += path.stat().st_size / max(len(self._sources[path].pages), 1)
            pdf.pages.append(self._sources[path].pages[number])
            return pdf.pages[-1], frame
        return self._image_page(pdf, path, item.get("page"))

    def _image_page(self, pdf: Pdf, path: Path, number: int | None) -> tuple[pikepdf.Page, Frame]:
        with Image.open(path) as im:
            if number:
                im.seek(number - 1)
            if im.width * im.height > config.MAX_PIXELS:  # as the worker refused it: never decoded here
                raise ValueError(f"image is {im.width}x{im.height}, above the pixel limit (OCRJOBS_MAX_PIXELS)")
            dpi = im.info.get("dpi") or (self.dpi, self.dpi)
            dx, dy = (float(d) if 36 <= float(d) <= 4800 else float(self.dpi) for d in dpi[:2])
            w_pt, h_pt = im.width * 72 / dx, im.height * 72 / dy
            shrink = min(1.0, MAX_PAGE_PT / max(w_pt, h_pt))
            w_pt, h_pt = w_pt * shrink, h_pt * shrink
            frame = image_frame((w_pt, h_pt), decoded_size(path, number, im))
            if im.format == "JPEG" and im.mode in ("RGB", "L"):  # the file's own bytes: no re-compression
                data, filt, mode = path.read_bytes(), Name.DCTDecode, im.mode
            else:
                im.load()
                mode = "L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                data, filt = zlib.compress(im.convert(mode).tobytes(), 6), Name.FlateDecode
            self._bytes += len(data)
            image = pdf.make_stream(
                data,
                Type=Name.XObject,
                Subtype=Name.Image,
                Width=im.width,
                Height=im.height,
                ColorSpace=Name.DeviceGray if mode == "L" else Name.DeviceRGB,
                BitsPerComponent=8,
                Filter=filt,
            )
        pdf.add_blank_page(page_size=(w_pt, h_pt))
        page = pdf.pages[-1]
        page.obj[Name.Resources] = Dictionary(XObject=Dictionary(Im0=image))
        draw = ContentStreamBuilder().push().cm(Matrix(w_pt, 0, 0, h_pt, 0, 0)).draw_xobject(Name.Im0).pop()
        page.obj[Name.Contents] = pdf.make_stream(draw.build())
        return page, frame

    def flush(self) -> None:
        if self._pdf is not None:
            path = self.tmp / f"chunk-{len(self.files):05d}.pdf"
            self._pdf.save(path)
            self._pdf.close()
            self.files.append(path)
        for src in self._sources.values():
            src.close()
        for doc in self._pdfium.values():
            doc.close()
        self._pdf, self._sources, self._pdfium, self._bytes = None, {}, {}, 0.0


def write(items: Tracker, out: Path, split: bool = False) -> None:
    """The job's searchable PDF at ``out``; with ``split``, ``out`` is a new folder of one PDF per source."""
    job_dir = items.store.job_dir(items.job_id)
    dpi = int(items.job.spec.get("dpi") or config.DEFAULT_DPI)
    manifest = items.store.manifest(items.job_id)
    with tempfile.TemporaryDirectory(prefix="ocrjobs-pdf-", dir=out.parent) as tmp:
        chunks = Chunks(job_dir, dpi, Path(tmp))
        for item, row in zip(manifest, items, strict=True):
            chunks.add(item, row)
        chunks.flush()
        if not split:
            _join(chunks.files, chunks.pages, out)
            return
        out.mkdir()
        groups: list[list[tuple[int, int, str]]] = []
        for p in chunks.pages:  # consecutive pages of one source make its file
            if groups and groups[-1][0][2] == p[2]:
                groups[-1].append(p)
            else:
                groups.append([p])
        for n, group in enumerate(groups, 1):
            _join(chunks.files, group, out / f"{n:04d}-{file_name(group[0][2])}.pdf")


def _join(files: list[Path], pages: list[tuple[int, int, str]], dest: Path) -> None:
    """``pages`` of the chunk ``files`` into ``dest``, by qpdf's own page selection (``qpdf --empty
    --pages``): it reads each page's streams from its chunk as it writes them. (pikepdf's
    ``pages.append`` from another Pdf copies the streams into memory at once: 250 MB for 200 pages.)"""
    runs: list[list[int]] = []  # chunk, first page, last page (1-based): a chunk's run of pages is one range
    for chunk, index, _source in pages:
        if runs and runs[-1][0] == chunk and runs[-1][2] == index:
            runs[-1][2] = index + 1
        else:
            runs.append([chunk, index + 1, index + 1])
    # absolute paths: a relative name starting with '-' or '@' would read as a qpdf option or argument file
    spec = [arg for chunk, first, last in runs for arg in (str(files[chunk].absolute()), f"{first}-{last}")]
    pikepdf.Job(["qpdf", "--empty", "--pages", *spec, "--", str(dest.absolute())]).run()
