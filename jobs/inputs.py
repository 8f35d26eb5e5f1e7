"""Turning submitted files into items: one per image, per TIFF/PDF page, per file in a ZIP.

Runs at submit time, on copies inside the job's own folder. Nothing here decodes pixels;
a file that cannot even be opened becomes an item that carries its input error, so the
runner commits that error and the rest of the job goes on.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from jobs import config
from jobs.atomic import is_disk_full

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
PDF_EXTS = {".pdf"}
ZIP_EXTS = {".zip"}
MEDIA_EXTS = IMAGE_EXTS | PDF_EXTS
SUPPORTED = sorted(IMAGE_EXTS | PDF_EXTS | ZIP_EXTS)

Item = dict[str, Any]
#: What zipfile raises on a damaged archive or entry (bad headers, names, data, or methods).
ZIP_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error)


def _error_item(source: str, rel: str, message: str, kind: str = "image") -> Item:
    return {"source": source, "path": rel, "page": None, "kind": kind, "error": message}


def expand(job_dir: Path, path: Path, source: str, *, in_zip: bool = False) -> list[Item]:
    """Items for one file already copied under ``job_dir``."""
    rel = path.relative_to(job_dir).as_posix()
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTS | PDF_EXTS | ZIP_EXTS:
        return [
            _error_item(source, rel, f"unsupported file type {ext or '(none)'!r}; supported: {', '.join(SUPPORTED)}")
        ]
    if path.stat().st_size == 0:
        return [_error_item(source, rel, "file is empty (0 bytes)")]
    if ext in ZIP_EXTS:
        if in_zip:
            return [_error_item(source, rel, "a ZIP inside a ZIP is not expanded; unpack it and submit the inner ZIP")]
        return expand_zip(job_dir, path, source)
    if ext in PDF_EXTS:
        return expand_pdf(rel, path, source)
    return expand_image(rel, path, source)


def expand_pdf(rel: str, path: Path, source: str) -> list[Item]:
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as e:
        msg = str(e)
        if "password" in msg.lower():
            msg = "PDF is encrypted (password protected); remove the password and submit it again"
        else:
            msg = f"not a readable PDF ({msg}); is the file complete?"
        return [_error_item(source, rel, msg, kind="pdf")]
    try:
        n = len(doc)
    finally:
        doc.close()
    if n == 0:
        return [_error_item(source, rel, "PDF has no pages", kind="pdf")]
    return [{"source": source, "path": rel, "page": p, "kind": "pdf"} for p in range(1, n + 1)]


def expand_image(rel: str, path: Path, source: str) -> list[Item]:
    """One item, or one per page of a multi-page TIFF. Header only; decoding is the worker's."""
    pages = 1
    if path.suffix.lower() in {".tif", ".tiff"}:
        from PIL import Image

        try:
            with Image.open(path) as im:
                pages = getattr(im, "n_frames", 1)
        except Exception:  # noqa: BLE001 - the worker reports the decode error for this item
            pages = 1
    if pages == 1:
        return [{"source": source, "path": rel, "page": None, "kind": "image"}]
    return [{"source": source, "path": rel, "page": p, "kind": "image"} for p in range(1, pages + 1)]


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in pure.parts:
        return "path with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    return None


def expand_zip(job_dir: Path, path: Path, source: str) -> list[Item]:
    """Extract a ZIP safely next to itself and expand each member. Never writes outside ``job_dir``."""
    rel = path.relative_to(job_dir).as_posix()
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as e:
        return [_error_item(source, rel, f"not a readable ZIP ({e})", kind="zip")]
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        declared = sum(i.file_size for i in infos)
        if len(infos) > config.MAX_ZIP_ENTRIES:
            return [
                _error_item(
                    source, rel, f"ZIP has {len(infos)} files, above the limit of {config.MAX_ZIP_ENTRIES}", "zip"
                )
            ]
        if declared > config.MAX_ZIP_BYTES:
            return [
                _error_item(
                    source,
                    rel,
                    f"ZIP would expand to {size_text(declared)}, above the {size_text(config.MAX_ZIP_BYTES)} limit "
                    "(a zip bomb, or split it into smaller archives)",
                    "zip",
                )
            ]
        out_root = path.with_name(path.name + ".d")
        items: list[Item] = []
        budget = config.MAX_ZIP_BYTES
        for n, info in enumerate(sorted(infos, key=lambda i: i.filename)):
            member_source = f"{source}/{info.filename}"
            why = unsafe_member(info)
            if why:
                items.append(
                    _error_item(member_source, rel, f"refused ZIP entry ({why}): nothing was extracted for it")
                )
                continue
            ext = PurePosixPath(info.filename).suffix.lower()
            if ext not in IMAGE_EXTS | PDF_EXTS | ZIP_EXTS:
                items.append(_error_item(member_source, rel, f"unsupported file type {ext or '(none)'!r} in ZIP"))
                continue
            dest = out_root / f"{n:05d}{ext}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                budget -= extract_bounded(zf, info, dest, budget)
            except ZIP_ERRORS as e:
                dest.unlink(missing_ok=True)
                if is_disk_full(e):
                    raise  # the submit fails as a whole, with its disk-full message
                items.append(_error_item(member_source, rel, f"ZIP entry could not be extracted: {e}"))
                continue
            items.extend(expand(job_dir, dest, member_source, in_zip=True))
        if not items:
            return [_error_item(source, rel, "ZIP contains no files", kind="zip")]
        return items


def extract_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: int) -> int:
    """Copy one member, counting real bytes: a header that lies about its size cannot fill the disk."""
    written = 0
    with zf.open(info) as src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > budget:
                raise ValueError(f"expands past the {size_text(config.MAX_ZIP_BYTES)} ZIP limit")
            out.write(chunk)
    return written


def size_text(n: float) -> str:
    """A byte count for people: 900 B, 12.3 MB, 4.3 GB."""
    unit = "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            break
        n /= 1000
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


def copy_input(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
