"""Item previews for the dashboard: confined like the runner, refused like the runner, made once.

The dashboard is a long-lived process serving everyone, so a preview must never read outside the
job folder (a hand-edited manifest naming ``/etc/…`` or ``../../…``), never decode what the runner
refuses (OCRJOBS_MAX_PIXELS, checked from the header before any pixel is decoded), and never hold a
big frame: non-JPEG images above OCRJOBS_THUMB_MAX_PIXELS get no preview (JPEGs are decoded at
1/2..1/8 scale first, PDF pages rendered straight at thumbnail size).

Each preview is a <= 160 px PNG cached in the job folder as ``thumbs/<index>.png`` (atomic write,
so it goes away with the job and housekeeping sweeps a torn temp file); a job folder the dashboard
may not write (another user's) simply gets no cache. An input that fails to decode is remembered
as an empty cache file, so it is tried once, not at every refresh.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

from PIL import Image

from jobs import config
from jobs.errors import InputError
from jobs.intake.decode import _check_pixels, item_path
from jobs.store.atomic import atomic_write_bytes

SIZE = 160
#: The largest frame (pixels, after JPEG draft) the dashboard decodes for a preview: 30 MP is 90 MB as RGB.
THUMB_MAX_PIXELS = int(os.environ.get("OCRJOBS_THUMB_MAX_PIXELS", 30_000_000))
#: A cache file bigger than this, or not a PNG, is not ours: it is ignored and made again.
CACHE_MAX_BYTES = 1 << 20
_PNG = b"\x89PNG\r\n\x1a\n"


def thumbnail_png(job_dir: Path, item: dict[str, Any], dpi: int = config.DEFAULT_DPI) -> bytes | None:
    """The item's preview as PNG bytes, or None (no input, refused, or undecodable)."""
    index = item.get("index")
    if item.get("error") or not isinstance(index, int) or index < 0:
        return None
    try:
        src = item_path(job_dir, item.get("path"))  # the runner's confinement, symlinks resolved
    except InputError:
        return None
    cache = _cache_path(job_dir, index)
    if cache is not None and (cached := _read_cache(cache)) is not None:
        return cached or None
    try:
        png = _make(src, item, dpi)
    except (InputError, Image.DecompressionBombError):
        return None  # refused, as the runner would: cheap to find again, and a limit may be raised later
    except Exception:  # noqa: BLE001 - a damaged input simply has no preview; remembered below
        png = b""
    if cache is not None:
        try:
            _make_dir(cache.parent)
            atomic_write_bytes(cache, png, durable=False)
        except OSError:
            pass  # a job folder this process may not write (another user's): no cache, still a preview
    return png or None


def _cache_path(job_dir: Path, index: int) -> Path | None:
    """``thumbs/<index>.png`` in the job folder, or None if ``thumbs`` is anything but our own folder."""
    root = job_dir.resolve()
    thumbs = root / "thumbs"
    try:
        st = os.lstat(thumbs)
    except FileNotFoundError:
        return thumbs / f"{index:06d}.png"
    except OSError:
        return None
    return thumbs / f"{index:06d}.png" if stat.S_ISDIR(st.st_mode) else None


def _make_dir(thumbs: Path) -> None:
    """``thumbs/`` with its job folder's mode: in a shared group folder (2770) the runner, another
    user, must be able to delete it with the job. Never ``parents``: a deleted job is not made again."""
    try:
        thumbs.mkdir()
    except FileExistsError:
        return
    os.chmod(thumbs, stat.S_IMODE(os.stat(thumbs.parent).st_mode))


def _read_cache(path: Path) -> bytes | None:
    """The cached PNG (b"" for a remembered failure); None if absent or not a plain PNG file of ours.
    O_NOFOLLOW and O_NONBLOCK: a planted symlink or FIFO is neither followed nor waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > CACHE_MAX_BYTES:
            return None
        data = f.read(CACHE_MAX_BYTES + 1)
    return data if data == b"" or data.startswith(_PNG) else None


def _make(src: Path, item: dict[str, Any], dpi: int) -> bytes:
    if not src.is_file():  # a FIFO or device inside the job folder would block or never end
        raise InputError("not a regular file")
    im = _render_pdf(src, item.get("page"), dpi) if item.get("kind") == "pdf" else _decode_image(src, item.get("page"))
    im = im.convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def detail_png(
    job_dir: Path, item: dict[str, Any], dpi: int = config.DEFAULT_DPI, boxes: list[dict[str, Any]] | None = None
) -> bytes | None:
    """The item at up to :data:`DETAIL` px with its line boxes drawn over it (never cached: one item
    at a time, when a user opens it), or None where no preview would be made either."""
    if item.get("error") or not isinstance(item.get("index"), int):
        return None
    try:
        src = item_path(job_dir, item.get("path"))
        if not src.is_file():
            return None
        if item.get("kind") == "pdf":
            im, full = _render_pdf(src, item.get("page"), dpi, DETAIL, keep_size=True)
        else:
            im, full = _decode_image(src, item.get("page"), DETAIL, keep_size=True)
    except Exception:  # noqa: BLE001 - refused, damaged or gone: no picture, the text is still shown
        return None
    im = im.convert("RGB")
    if boxes:
        _draw(im, boxes, full)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _draw(im: Image.Image, boxes: list[dict[str, Any]], full: tuple[int, int] | None) -> None:
    """Line boxes (``[[x, y] x4]`` in the engine's pixels: the image's own, or a PDF page's at the job's
    dpi) scaled onto ``im``, whose full size was ``full``; boxes that do not parse are skipped."""
    from PIL import ImageDraw

    fx = im.width / full[0] if full else 1.0
    fy = im.height / full[1] if full else 1.0
    draw = ImageDraw.Draw(im)
    for b in boxes[:2000]:
        try:
            points = [(float(x) * fx, float(y) * fy) for x, y in b["box"]]
        except (KeyError, TypeError, ValueError):
            continue
        if len(points) >= 3:
            draw.polygon(points, outline=(230, 40, 40), width=2)


#: The largest side of the picture of one item's detail view.
DETAIL = 1200


def _decode_image(src: Path, page: Any, size: int = SIZE, keep_size: bool = False) -> Any:
    with Image.open(src) as im:  # lazy: the header only
        if page:
            im.seek(int(page) - 1)
        _check_pixels(*im.size, "image")  # what the runner refuses, refused before decoding
        full = im.size
        im.draft("RGB", (size, size))  # JPEG: decode at 1/2..1/8 scale; other formats: no-op
        w, h = im.size
        if w * h > THUMB_MAX_PIXELS:
            raise InputError(f"{w}x{h} is above the preview limit (OCRJOBS_THUMB_MAX_PIXELS)")
        im.thumbnail((size, size))
        return (im.copy(), full) if keep_size else im.copy()


def _render_pdf(src: Path, page: Any, dpi: int, size: int = SIZE, keep_size: bool = False) -> Any:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(src))
    try:
        if not isinstance(page, int) or not 1 <= page <= len(doc):
            raise InputError("no such page")
        pdf_page = doc[page - 1]
        w_pt, h_pt = pdf_page.get_size()
        _check_pixels(int(w_pt * dpi / 72), int(h_pt * dpi / 72), f"PDF page {page} at {dpi} dpi")
        scale = min(size / max(w_pt, h_pt, 1.0), 4.0)  # straight at the size shown: never a full page
        im = pdf_page.render(scale=scale).to_pil()
        return (im, (w_pt * dpi / 72, h_pt * dpi / 72)) if keep_size else im  # the engine's pixels at dpi
    finally:
        doc.close()
