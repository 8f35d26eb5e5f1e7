"""``submit --folder PATH``: every image and PDF below a folder of the shared job folder use.

The folder must lie under an allowed root (``OCRJOBS_ALLOWED_ROOTS``), and so must everything
a symlink inside it leads to: a link out of the roots is refused as that file's error, never
followed. Files come in a stable, natural order (``p2`` before ``p10``), so the same folder
always gives the same item numbers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from jobs import config
from jobs.errors import InputError, SubmitError
from jobs.inputs import MEDIA_EXTS
from jobs.sources import under_roots

_DIGITS = re.compile(r"(\d+)")


@dataclass
class Scan:
    """What a folder holds: files to OCR (relative name, real path), refused links, others skipped."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0


def natural_key(rel: str) -> list[tuple[int, int | str]]:
    """Sorts ``scan2`` before ``scan10``, folder by folder, case-insensitively, ties by exact name."""
    key: list[tuple[int, int | str]] = []
    for part in rel.split("/"):
        for n, chunk in enumerate(_DIGITS.split(part)):
            key.append((1, int(chunk)) if n % 2 else (0, chunk.casefold()))
        key.append((-1, ""))  # a folder's end sorts before any longer name in it
    key.append((2, rel))
    return key


def scan(folder: str | os.PathLike[str]) -> Scan:
    """Walk ``folder`` recursively. Raises SubmitError if the folder itself is not usable."""
    path = Path(folder).expanduser()
    roots = config.allowed_roots()
    try:
        real = under_roots(path.absolute(), roots)
    except InputError as e:
        raise SubmitError(f"folder refused: {e}") from None
    if not real.is_dir():
        raise SubmitError(f"{path} is not a folder" if real.exists() else f"no such folder: {path}")
    out = Scan()
    _walk(real, "", roots, {real}, out)
    if not out.files and not out.refused:
        raise SubmitError(f"no images or PDFs below {path} ({out.skipped} other files skipped)")
    out.files.sort(key=lambda f: natural_key(f[0]))
    out.refused.sort(key=lambda f: natural_key(f[0]))
    return out


def _walk(directory: Path, prefix: str, roots: list[Path], seen: set[Path], out: Scan) -> None:
    try:
        entries = list(os.scandir(directory))
    except OSError as e:
        out.refused.append((prefix.rstrip("/") or ".", f"folder cannot be read: {e.strerror or e}"))
        return
    for entry in entries:
        if entry.name.startswith("."):  # .DS_Store, ._AppleDouble, .git: never scans
            continue
        rel = prefix + entry.name
        target = Path(entry.path)
        if entry.is_symlink():
            try:
                target = under_roots(target, roots)
            except InputError:
                out.refused.append((rel, f"symbolic link to {os.path.realpath(entry.path)} leaves the allowed folders"))
                continue
            if not target.exists():
                out.refused.append((rel, "broken symbolic link"))
                continue
        if target.is_dir():
            if target not in seen:  # a link back up the tree would loop forever
                _walk(target, rel + "/", roots, seen | {target}, out)
        elif Path(entry.name).suffix.lower() in MEDIA_EXTS:
            out.files.append((rel, target))
            if len(out.files) > config.MAX_FOLDER_FILES:
                raise SubmitError(
                    f"more than {config.MAX_FOLDER_FILES} images and PDFs below the folder "
                    "(OCRJOBS_MAX_FOLDER_FILES); submit its subfolders one by one"
                )
        else:
            out.skipped += 1
