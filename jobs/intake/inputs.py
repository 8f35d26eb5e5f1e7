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
from jobs.store.atomic import is_disk_full

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
PDF_EXTS = {".pdf"}
ZIP_EXTS = {".zip"}
MEDIA_EXTS = IMAGE_EXTS | PDF_EXTS
SUPPORTED = sorted(IMAGE_EXTS | PDF_EXTS | ZIP_EXTS)

Item = dict[str, Any]
#: Bytes extracted so far for each job being built (its temporary folder): the ZIP limit is per job.
_spent: dict[str, int] = {}
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
        why = too_many_entries(zf)
        if why:
            return [_error_item(source, rel, why, "zip")]
        infos = [i for i in zf.infolist() if not i.is_dir()]
        declared = sum(i.file_size for i in infos)
        left = budget_left(job_dir)
        if declared > left:
            return [_error_item(source, rel, f"ZIP would expand to {size_text(declared)}, {_over(left)}", "zip")]
        out_root = path.with_name(path.name + ".d")
        items: list[Item] = []
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
                not_it = sniff_member(zf, info)
                if not_it:
                    items.append(_error_item(member_source, rel, f"{not_it}; nothing was extracted for it"))
                    continue
                extract_for_job(zf, info, dest, job_dir)
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


def budget_left(job_dir: Path) -> int:
    """Bytes the job being built in ``job_dir`` may still extract: one OCRJOBS_MAX_ZIP_BYTES for all
    its ZIPs together (a limit per ZIP let ten ZIPs write ten times as much)."""
    return config.MAX_ZIP_BYTES - _spent.get(str(job_dir), 0)


def release_zip_budget(job_dir: Path) -> None:
    """Forget a built (or abandoned) job's extraction count, so a long-lived dashboard keeps none."""
    _spent.pop(str(job_dir), None)


def _over(left: int) -> str:
    limit = size_text(config.MAX_ZIP_BYTES)
    full = left >= config.MAX_ZIP_BYTES
    of = f"the {limit} limit" if full else f"the {size_text(left)} left of the job's {limit} limit"
    return f"above {of} (OCRJOBS_MAX_ZIP_BYTES; a zip bomb, or split it into smaller archives)"


def extract_for_job(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, job_dir: Path) -> int:
    """Extract one member within what is left of the job's budget; its declared size is checked
    first, so a member that says it is too large is refused without writing a byte."""
    left = budget_left(job_dir)
    if info.file_size > left:
        raise ValueError(f"it would expand to {size_text(info.file_size)}, {_over(left)}")
    written = extract_bounded(zf, info, dest, left)
    _spent[str(job_dir)] = _spent.get(str(job_dir), 0) + written
    return written


def too_many_entries(zf: zipfile.ZipFile) -> str | None:
    """Every entry counts, folders too: a million empty folders cost as much to list as files."""
    infos = zf.infolist()
    if len(infos) <= config.MAX_ZIP_ENTRIES:
        return None
    dirs = sum(1 for i in infos if i.is_dir())
    what = f"{len(infos) - dirs} files and {dirs} folders" if dirs else f"{len(infos)} files"
    return f"ZIP has {what}, above the limit of {config.MAX_ZIP_ENTRIES} (OCRJOBS_MAX_ZIP_ENTRIES)"


#: How each accepted kind of file starts, checked through the ZIP stream before extracting.
_MAGIC: dict[str, tuple[bytes, ...]] = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".bmp": (b"BM",),
    ".webp": (b"RIFF",),
    ".tif": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ".tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ".zip": (b"PK\x03\x04", b"PK\x05\x06"),
}
_KIND = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}


def sniff_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """Why the member is not the kind of file its name says (read from its first bytes), or None."""
    ext = PurePosixPath(info.filename).suffix.lower()
    with zf.open(info) as src:
        head = src.read(1024)
    if ext in PDF_EXTS:
        ok = b"%PDF-" in head  # a PDF may have a few bytes of junk before its header
    elif ext == ".webp":
        ok = head.startswith(b"RIFF") and head[8:12] == b"WEBP"
    else:
        ok = head.startswith(_MAGIC.get(ext, (b"",)))
    if ok:
        return None
    kind = _KIND.get(ext, ext.lstrip(".").upper())
    return f"not a {kind} file (its first bytes are {head[:8]!r}), whatever its name says"


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
