"""Decoding one item into an RGB image, in the worker process, with every refusal as InputError."""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile, UnidentifiedImageError

from jobs import config
from jobs.errors import InputError

# Our own limit is checked first with a clear message; PIL's bomb guard stays on behind it.
Image.MAX_IMAGE_PIXELS = config.MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False
#: What PIL raises, at open, seek or load, on a damaged or truncated file.
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError, TypeError, KeyError, IndexError, struct.error)


def _check_pixels(w: int, h: int, what: str) -> None:
    if w * h > config.MAX_PIXELS:
        raise InputError(
            f"{what} is {w}x{h} = {w * h / 1e6:.1f} MP, above the {config.MAX_PIXELS / 1e6:.1f} MP limit "
            "(OCRJOBS_MAX_PIXELS); scale it down or lower the dpi"
        )


def load_image(path: Path, page: int | None = None) -> Image.Image:
    if not path.exists():
        raise InputError(f"input file is missing: {path.name}")
    if path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)")
    if page:  # a page of a multi-page TIFF
        return _tiff_pages.page(path, page)
    with _open(path) as im:
        try:
            _check_pixels(*im.size, "image")
            return _decode(im)
        except _DAMAGED as e:
            raise InputError(f"image is truncated or damaged: {e}") from None


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise InputError(f"not an image, or an unsupported image format ({path.suffix or 'no extension'})") from None
    except Image.DecompressionBombError:
        # PIL's guard fires at open, before our check, for images over twice the limit.
        raise InputError(
            f"image is more than twice the {config.MAX_PIXELS / 1e6:.1f} MP limit (OCRJOBS_MAX_PIXELS), "
            "refused unread as a likely decompression bomb; scale it down"
        ) from None
    except _DAMAGED as e:
        raise InputError(f"image is truncated or damaged: {e}") from None


_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"}


def _decode(im: Image.Image) -> Image.Image:
    """The current frame as RGB, no longer than MAX_OCR_SIDE on its longer side: a JPEG is
    decoded at a reduced scale (``draft``), others are reduced before the RGB copy is made."""
    side = max(im.size)
    if side > config.MAX_OCR_SIDE:
        ratio = config.MAX_OCR_SIDE / side
        want = (max(1, int(im.width * ratio)), max(1, int(im.height * ratio)))
        if im.format == "JPEG":
            im.draft("RGB", want)  # DCT scaling: at most 1/8, never below ``want``
        im.load()
        if im.mode not in _REDUCIBLE:  # palette, 1-bit, ...: averaging needs real levels
            im = im.convert("L" if im.mode == "1" else "RGB")
        # Twice too long or more: one box reduce straight to the limit or just under (no resize
        # buffers on top of a huge decode); under twice, a resize to exactly the limit.
        now = max(im.size)
        factor = -(-now // config.MAX_OCR_SIDE) if now >= 2 * config.MAX_OCR_SIDE else 1
        small = im.reduce(factor) if factor > 1 else im
        if max(small.size) > config.MAX_OCR_SIDE:
            small = small.resize(want, Image.Resampling.LANCZOS)
        return small if small.mode == "RGB" and small is not im else small.convert("RGB")
    im.load()
    return im.convert("RGB")


class _TiffPages:
    """The last multi-page TIFF opened, kept open: PIL remembers where each page it has passed
    starts, so page n+1 after page n reads one directory, where a fresh open walks all n from
    page 1 (a 10,000-page TIFF went from quadratic, ~45 CPU-minutes, to linear)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int, int] | None = None
        self._im: Image.Image | None = None

    def page(self, path: Path, page: int) -> Image.Image:
        st = path.stat()
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key != self._key or self._im is None:
                self._drop()
                self._im, self._key = _open(path), key
            im = self._im
            try:
                im.seek(page - 1)  # a TIFF page has its own size: check the page asked for
                _check_pixels(*im.size, f"page {page}")
                return _decode(im)
            except InputError:
                raise
            except _DAMAGED as e:
                self._drop()
                raise InputError(f"image is truncated or damaged: {e}") from None

    def _drop(self) -> None:
        if self._im is not None:
            self._im.close()
        self._key = self._im = None


_tiff_pages = _TiffPages()


def render_pdf_page(path: Path, page: int, dpi: int) -> Image.Image:
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as e:
        raise InputError(f"not a readable PDF: {e}") from None
    try:
        if not 1 <= page <= len(doc):  # doc[-1] would quietly be the last page
            raise InputError(f"PDF has no page {page} (it has {len(doc)})")
        pdf_page = doc[page - 1]
        w_pt, h_pt = pdf_page.get_size()
        scale = dpi / 72.0
        if max(w_pt, h_pt) * scale > config.MAX_OCR_SIDE:  # a poster-sized page: render it smaller
            scale = config.MAX_OCR_SIDE / max(w_pt, h_pt)
        _check_pixels(int(w_pt * scale), int(h_pt * scale), f"PDF page {page} at {dpi} dpi")
        return pdf_page.render(scale=scale).to_pil().convert("RGB")
    except pdfium.PdfiumError as e:
        raise InputError(f"PDF page {page} could not be rendered: {e}") from None
    finally:
        doc.close()


def item_path(job_dir: Path, rel: Any) -> Path:
    """The item's file, resolved (symlinks too) and confined to the job folder: a hand-edited
    manifest naming ``../../etc/passwd`` or ``/etc/passwd`` is that item's InputError, never a read."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise InputError(f"manifest names no usable input file ({str(rel)[:80]!r})")
    root = job_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or path == root:
        raise InputError(f"manifest path {rel[:200]!r} lies outside the job folder; refused")
    return path


def load_item(job_dir: Path, item: dict[str, Any], dpi: int) -> Image.Image:
    if item.get("error"):
        raise InputError(item["error"])
    path = item_path(job_dir, item.get("path"))
    if item.get("kind") == "pdf":
        page = item.get("page")
        if not isinstance(page, int):
            raise InputError(f"manifest gives no page number for PDF item {item.get('index')}")
        return render_pdf_page(path, page, dpi)
    return load_image(path, item.get("page"))
