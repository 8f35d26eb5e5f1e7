"""Turning what a cell says into a file inside the job: a member of the ZIP uploaded with the
workbook, or an absolute path under an allowed root (``OCRJOBS_ALLOWED_ROOTS``).

Each referenced file is extracted or copied once, however many rows name it, so the job
never depends on the caller's files after submit. A reference that cannot be used raises
InputError: it becomes that row's error and the rest of the job goes on.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from jobs import config
from jobs.errors import InputError, SubmitError
from jobs.intake.inputs import MEDIA_EXTS, ZIP_ERRORS, extract_for_job, sniff_member, too_many_entries, unsafe_member
from jobs.store.atomic import is_disk_full

_WINDOWS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def under_roots(path: Path, roots: list[Path]) -> Path:
    """``path`` with every symlink resolved, if that lies under an allowed root; else InputError."""
    real = Path(os.path.realpath(path))
    if not roots:
        raise InputError(
            f"{path} is not in an allowed folder: none are configured (an admin sets OCRJOBS_ALLOWED_ROOTS)"
        )
    if not any(real == r or r in real.parents for r in roots):
        shown = os.pathsep.join(str(r) for r in roots)
        via = f" (it leads to {real})" if real != Path(os.path.abspath(path)) else ""
        raise InputError(f"{path}{via} is outside the allowed folders {shown} (OCRJOBS_ALLOWED_ROOTS)")
    return real


class Resolver:
    """Resolves references for one job being built in ``job_dir``."""

    def __init__(self, images_zip: Path | None = None, job_dir: Path | None = None) -> None:
        self.job_dir = job_dir or Path(".")  # the job being built; set before resolving
        self.roots = config.allowed_roots()
        self.zip: zipfile.ZipFile | None = None
        self._done: dict[str, Path] = {}
        if images_zip is not None:
            try:
                self.zip = zipfile.ZipFile(images_zip)
                infos = [i for i in self.zip.infolist() if not i.is_dir()]
            except ZIP_ERRORS as e:
                raise SubmitError(f"cannot read the images ZIP {images_zip.name}: {e}; is the file complete?") from None
            too_many = too_many_entries(self.zip)
            if too_many:
                self.zip.close()
                raise SubmitError(f"the images ZIP {images_zip.name}: {too_many}")
            self.zip_name = images_zip.name
            self.members = {_norm(i.filename): i for i in infos}
            self.folded: dict[str, list[zipfile.ZipInfo]] = {}
            for key, info in self.members.items():
                self.folded.setdefault(key.casefold(), []).append(info)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def resolve(self, ref: str) -> Path:
        """The job-local copy of the file ``ref`` names."""
        ref = ref.strip().strip('"').strip()
        if "://" in ref:
            raise InputError(f"{ref!r} is a URL; URLs are not downloaded: put the file in the images ZIP")
        if _WINDOWS.match(ref):
            raise InputError(
                f"{ref!r} is a Windows path the server cannot reach; put the files in a ZIP and "
                "write paths relative to it"
            )
        if ref.startswith("/"):
            return self._from_disk(Path(ref))
        return self._from_zip(ref)

    def _from_disk(self, path: Path) -> Path:
        real = under_roots(path, self.roots)
        if not real.exists():
            raise InputError(f"file not found: {path}")
        if not real.is_file():
            raise InputError(f"{path} is a folder, not a file")
        _check_type(path.name)
        key = f"disk:{real}"
        if key not in self._done:
            dest = self.job_dir / "inputs" / "files" / f"{len(self._done):05d}{real.suffix.lower()}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            copy_or_explain(real, dest)
            self._done[key] = dest
        return self._done[key]

    def _from_zip(self, ref: str) -> Path:
        if self.zip is None:
            raise InputError(
                f"{ref!r} is a relative path but no images ZIP was given; upload the files as a ZIP "
                "(--images files.zip) or use absolute paths under an allowed folder"
            )
        info = self._member(ref)
        why = unsafe_member(info)
        if why:
            raise InputError(f"refused ZIP entry {info.filename!r} ({why}): nothing was extracted for it")
        _check_type(info.filename)
        key = f"zip:{info.filename}"
        if key not in self._done:
            dest = (
                self.job_dir
                / "inputs"
                / f"{self.zip_name}.d"
                / f"{len(self._done):05d}{PurePosixPath(info.filename).suffix.lower()}"
            )
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                not_it = sniff_member(self.zip, info)
                if not_it:
                    raise InputError(f"ZIP entry {info.filename!r} is {not_it}; nothing was extracted for it")
                extract_for_job(self.zip, info, dest, self.job_dir)
            except ZIP_ERRORS as e:
                dest.unlink(missing_ok=True)
                if is_disk_full(e):
                    raise  # the whole submit fails, with its disk-full message
                raise InputError(f"ZIP entry {info.filename!r} could not be extracted: {e}") from None
            self._done[key] = dest
        return self._done[key]

    def _member(self, ref: str) -> zipfile.ZipInfo:
        """Exact name, else ignoring case, else the one member whose path ends with ``ref``
        (a ZIP made of the folder holding the files has that folder as a prefix)."""
        key = _norm(ref)
        if key in self.members:
            return self.members[key]
        folded = self.folded.get(key.casefold(), [])
        if len(folded) == 1:
            return folded[0]
        tail = "/" + key.casefold()
        ends = [i for k, i in self.members.items() if k.casefold().endswith(tail)]
        if len(ends) == 1:
            return ends[0]
        if len(ends) > 1:
            names = ", ".join(i.filename for i in ends[:3])
            raise InputError(f"{ref!r} matches several files in the ZIP ({names}); write the full path inside it")
        raise InputError(f"file not found in the images ZIP: {ref!r}")


def copy_or_explain(src: Path, dest: Path) -> None:
    """Copy one input; a file that cannot be read is that item's error, a full disk fails the submit."""
    try:
        shutil.copyfile(src, dest)
    except OSError as e:
        dest.unlink(missing_ok=True)
        if is_disk_full(e):
            raise
        raise InputError(f"cannot read {src}: {e.strerror or e}") from None


def _norm(name: str) -> str:
    name = name.replace("\\", "/").strip()
    normed = posixpath.normpath(name)
    return normed[2:] if normed.startswith("./") else normed.lstrip("/")


def _check_type(name: str) -> None:
    ext = PurePosixPath(name).suffix.lower()
    if ext not in MEDIA_EXTS:
        raise InputError(
            f"{name}: unsupported file type {ext or '(none)'!r}; a cell must name an image or a PDF "
            f"({', '.join(sorted(MEDIA_EXTS))})"
        )
