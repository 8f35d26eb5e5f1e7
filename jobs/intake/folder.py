"""``submit --folder PATH``: every image and PDF below a folder of the shared job folder use.

The folder must lie under an allowed root (``OCRJOBS_ALLOWED_ROOTS``), and so must everything
a symlink inside it leads to: a link out of the roots is refused as that file's error, never
followed. Files come in a stable, natural order (``p2`` before ``p10``), so the same folder
always gives the same item numbers.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobs import config
from jobs.errors import InputError, SubmitError
from jobs.intake.inputs import MEDIA_EXTS
from jobs.intake.sources import under_roots

_DIGITS = re.compile(r"(\d+)")
#: Bounds on one scan (a symlink maze, a folder of millions of entries): depth, entries listed
#: (folders and skipped files too) and seconds (OCRJOBS_FOLDER_SCAN_S).
MAX_DEPTH = 64
MAX_ENTRIES = int(os.environ.get("OCRJOBS_MAX_FOLDER_ENTRIES", 1_000_000))
MAX_SCAN_S = 60.0


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
    _walk(real, "", roots, _Bounds(path), out)
    if not out.files and not out.refused:
        raise SubmitError(f"no images or PDFs below {path} ({out.skipped} other files skipped)")
    out.files.sort(key=lambda f: natural_key(f[0]))
    out.refused.sort(key=lambda f: natural_key(f[0]))
    return out


class _Bounds:
    """What one scan may cost: a symlink maze or a folder of millions of entries is refused with
    a message, never walked for minutes. Each real folder is walked once, however many links
    lead to it (a "diamond" of links doubles the paths at each level; walking them is 2^depth)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries = 0
        self.deadline = time.monotonic() + config.env_float("OCRJOBS_FOLDER_SCAN_S", MAX_SCAN_S)
        self.walked: set[Path] = set()

    def tick(self) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            self.refuse(f"it holds more than {MAX_ENTRIES:,} files and folders")
        if self.entries % 1000 == 0 and time.monotonic() > self.deadline:
            self.refuse(f"listing it took more than {config.env_float('OCRJOBS_FOLDER_SCAN_S', MAX_SCAN_S):.0f} s")

    def refuse(self, why: str) -> None:
        raise SubmitError(f"folder {self.path} refused: {why}; submit its subfolders one by one")


def _walk(directory: Path, prefix: str, roots: list[Path], bounds: _Bounds, out: Scan, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        bounds.refuse(f"{prefix.rstrip('/')} is more than {MAX_DEPTH} folders deep")
    bounds.walked.add(directory)
    try:
        it = os.scandir(directory)
    except OSError as e:
        out.refused.append((prefix.rstrip("/") or ".", f"folder cannot be read: {e.strerror or e}"))
        return
    with it:
        for entry in it:
            bounds.tick()
            _entry(entry, prefix, roots, bounds, out, depth)


def _entry(entry: os.DirEntry[str], prefix: str, roots: list[Path], bounds: _Bounds, out: Scan, depth: int) -> None:
    if entry.name.startswith("."):  # .DS_Store, ._AppleDouble, .git: never scans
        return
    rel = prefix + entry.name
    target = Path(entry.path)
    if entry.is_symlink():
        try:
            target = under_roots(target, roots)
        except InputError:
            out.refused.append((rel, f"symbolic link to {os.path.realpath(entry.path)} leaves the allowed folders"))
            return
        if not target.exists():
            out.refused.append((rel, "broken symbolic link"))
            return
    if target.is_dir():
        real = Path(os.path.realpath(target))
        if real not in bounds.walked:  # a link back up the tree, or a second way to the same folder
            _walk(real, rel + "/", roots, bounds, out, depth + 1)
    elif Path(entry.name).suffix.lower() in MEDIA_EXTS:
        out.files.append((rel, target))
        if len(out.files) > config.MAX_FOLDER_FILES:
            raise SubmitError(
                f"more than {config.MAX_FOLDER_FILES} images and PDFs below the folder "
                "(OCRJOBS_MAX_FOLDER_FILES); submit its subfolders one by one"
            )
    else:
        out.skipped += 1
