"""Decoding one item into an RGB image, in the worker process, with every refusal as InputError."""

from __future__ import annotations

import struct
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
    try:
        im = Image.open(path)
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
    with im:
        try:
            if page:
                im.seek(page - 1)  # a TIFF page has its own size: check the page asked for
            _check_pixels(*im.size, f"page {page}" if page else "image")
            im.load()
            return im.convert("RGB")
        except _DAMAGED as e:
            raise InputError(f"image is truncated or damaged: {e}") from None


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
