"""The one reading path for the JSON files of the job folder, which anyone can write into.

A hostile or damaged file must cost its reader a bounded amount of time and memory and end as
:class:`~jobs.errors.Corrupt` with a reason, never hang, crash or flood a runner, the CLI or the
dashboard. So every read here:

- opens with ``O_NOFOLLOW | O_NONBLOCK`` and checks ``fstat``: a symlink (to ``/dev/zero``), a FIFO
  (which would block for ever) or a folder is refused before a byte is read;
- reads at most the kind's size cap (:data:`jobs.store.schemas.KINDS`) plus one byte: more is refused;
- checks the nesting depth *before* parsing (``[`` x 100,000 would raise RecursionError inside
  :func:`json.loads`), and parses with non-finite numbers refused (``Infinity``, ``NaN``, ``1e400``);
- checks the kind's schema (:mod:`jobs.store.schemas`), so a reader can index the fields it needs.

Nothing here moves a file: readers only report; runners quarantine (see jobs/store/store.py).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from typing import Any

from jobs.errors import Corrupt
from jobs.store.schemas import KINDS, MAX_DEPTH

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Strings (which may hold brackets) and brackets: what the precise depth scan looks at.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def _open(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> tuple[int, os.stat_result]:
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, mode)
    except OSError as e:
        name = os.path.basename(os.fspath(path))
        if e.errno == errno.ELOOP:
            raise Corrupt(f"{name}: is a symbolic link, not a file") from None
        if e.errno in (errno.ENXIO, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG):
            raise Corrupt(f"{name}: not a regular file ({e.strerror})") from None
        raise
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Corrupt(f"{os.path.basename(os.fspath(path))}: not a regular file (a {stat.filemode(st.st_mode)})")
    return fd, st


def open_regular(path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A descriptor on a regular file, never through a symlink, never blocking on a FIFO (``flags``
    may add ``O_RDWR | O_CREAT``). FileNotFoundError if absent, :class:`Corrupt` if not a regular file."""
    return _open(path, flags, mode)[0]


def read_capped(path: str | os.PathLike[str], cap: int) -> bytes | None:
    """The file's bytes (None if absent); :class:`Corrupt` if not a regular file or over ``cap`` bytes."""
    try:
        fd, st = _open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if st.st_size > cap:
            raise Corrupt(f"{os.path.basename(os.fspath(path))}: {st.st_size} bytes, over the {cap} a valid one has")
        data = os.read(fd, st.st_size + 1)  # one read: a regular file's whole size, +1 to see it grew
        while len(data) < st.st_size and (more := os.read(fd, cap + 1 - len(data))):
            data += more  # a short read (rare: a network filesystem); still never past the cap
        if len(data) > cap:
            raise Corrupt(f"{os.path.basename(os.fspath(path))}: over the {cap} bytes a valid one has")
        return data
    finally:
        os.close(fd)


def read_tail(path: str | os.PathLike[str], max_bytes: int) -> tuple[bytes, bool]:
    """The last ``max_bytes`` of a log file and whether that is the whole file (b"" if absent or not
    a regular file): a 400 MB events.jsonl costs a page view no more than its tail."""
    try:
        fd = open_regular(path)
    except (FileNotFoundError, Corrupt):
        return b"", True
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - max_bytes)
        return os.pread(fd, max_bytes, start), start == 0
    finally:
        os.close(fd)


def _depth_ok(data: bytes | str, limit: int) -> bool:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= limit:
        return True  # the common case, at C speed: too few brackets to nest that deep
    depth = 0
    for m in _TOKENS.finditer(data):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        elif tok in (b"]", b"}"):
            depth -= 1
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _small_int(text: str) -> int:
    if len(text.lstrip("-")) > 300:  # as a float (a time, a timeout) it would be inf
        raise ValueError(f"{text[:20]}... is out of range")
    return int(text)


#: Refuses Infinity and NaN, floats that overflow to inf (1e400) and ints too big to be a float.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite, parse_int=_small_int)


def loads(data: bytes | str, kind: str, name: str | None = None) -> Any:
    """Parse and check one document of ``kind`` (a key of :data:`jobs.store.schemas.KINDS`)."""
    spec = KINDS[kind]
    name = name or kind
    if len(data) > spec.max_bytes:
        raise Corrupt(f"{name}: over {spec.max_bytes} bytes, too big to be one")
    if not _depth_ok(data, MAX_DEPTH):
        raise Corrupt(f"{name}: nested deeper than {MAX_DEPTH} levels")
    try:
        obj = _DECODER.decode(data.decode() if isinstance(data, bytes) else data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, ours, int digits
        raise Corrupt(f"{name}: not valid JSON ({str(e)[:200]})") from None
    problem = spec.check(obj)
    if problem:
        raise Corrupt(f"{name}: {problem}")
    return obj


def read_json(path: str | os.PathLike[str], kind: str) -> Any:
    """The parsed, checked file; None if it does not exist; :class:`Corrupt` (with why) otherwise."""
    data = read_capped(path, KINDS[kind].max_bytes)
    if data is None:
        return None
    return loads(data, kind, os.path.basename(os.fspath(path)))


def parse_line(line: bytes | str, kind: str) -> Any | None:
    """One JSON line of a log (``journal``, ``event``): the entry, or None if it is not a valid one
    (torn, glued, hostile). A log is for people or an accelerator: a bad line is skipped, never fatal."""
    if not line or not line.strip():
        return None
    try:
        return loads(line, kind)
    except Corrupt:
        return None
