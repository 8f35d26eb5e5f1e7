"""Durable, atomic file writes and tolerant reads.

A reader never sees a half-written file: every write goes to a temp file in the same
folder, is fsync'd, renamed over the target with ``os.replace`` and the folder is fsync'd,
so after a crash the file holds either the previous or the new version.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from jobs.errors import Corrupt
from jobs.store import safejson

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    data = json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode()
    atomic_write_bytes(path, data, durable=durable)


def append_line(path: Path, obj: Any) -> None:
    """Append one JSON line with a single O_APPEND write (no fsync: logs only).

    A SIGKILL can cut a write short between pages, leaving a torn line without its newline.
    Readers skip a torn line, but the next line would be glued onto it and lost too, so a line
    is started on a fresh line when the file does not end with one.
    """
    line = (json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n").encode()
    # never through a symlink, never into a FIFO (a write there blocks once its buffer is full)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{path.name} is not a regular file, not appended to")
        size = st.st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def read_json(path: Path, *, expect: type = dict, kind: str = "any") -> Any:
    """Return the parsed file, None if it does not exist; raise :class:`Corrupt` if unreadable.

    Read through :func:`jobs.store.safejson.read_json`: regular files only, size-capped, depth-checked,
    finite numbers, and the schema of ``kind`` (see jobs/store/schemas.py)."""
    obj = safejson.read_json(path, kind)
    if obj is None:
        return None
    if not isinstance(obj, expect):
        raise Corrupt(f"{path.name}: expected a JSON {expect.__name__}, found {type(obj).__name__}")
    return obj


def quarantine(state_root: Path, victim: Path, reason: str) -> Path | None:
    """Move a corrupt file or folder aside into ``state/quarantine/`` with a reason file.

    Moving, not deleting, keeps whatever a person may want to recover by hand.
    """
    qdir = state_root / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    rel = victim.relative_to(state_root).as_posix().replace("/", "__")
    dest = qdir / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}-{rel}"
    try:
        os.replace(victim, dest)
    except FileNotFoundError:
        return None
    (qdir / f"{dest.name}.reason.txt").write_text(f"{victim}\n{reason}\n")
    log.warning("quarantined %s -> %s: %s", victim, dest, reason)
    return dest


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
