"""Where the job folder is, and the defaults everything else falls back to."""

from __future__ import annotations

import os
from pathlib import Path

VERSION = "0.1.0"
DEFAULT_ENGINE = "auto"
DEFAULT_PRIORITY = 0
DEFAULT_ITEM_TIMEOUT_S = 120.0
DEFAULT_DPI = 200
DEFAULT_RETRIES = 2
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_LEASE_S = 15.0
#: Jobs a runner holds at once (its workers interleave their items): enough that a job submitted
#: while others run starts at the next free worker instead of waiting for them to finish.
DEFAULT_MAX_JOBS = 8
#: Seconds between the soft timeout (engine asked to stop) and the kill; at most 5.
KILL_GRACE_S = 3.0
LOCK_TIMEOUT_S = 30.0
RETENTION_DAYS = 7.0
#: Images above this many pixels are refused (decompression bombs).
MAX_PIXELS = int(os.environ.get("OCRJOBS_MAX_PIXELS", 120_000_000))
#: Images (and rendered PDF pages) longer than this on a side are scaled down before OCR: a page
#: scanned at 600 dpi keeps ~300 dpi, and a 119 MP image costs its decode, not the engine's gigabytes.
MAX_OCR_SIDE = int(os.environ.get("OCRJOBS_MAX_OCR_SIDE", 4096))
#: A ZIP whose entries add up to more than this is refused whole.
MAX_ZIP_BYTES = int(os.environ.get("OCRJOBS_MAX_ZIP_BYTES", 4 * 1024**3))
MAX_ZIP_ENTRIES = int(os.environ.get("OCRJOBS_MAX_ZIP_ENTRIES", 20_000))
MAX_FOLDER_FILES = int(os.environ.get("OCRJOBS_MAX_FOLDER_FILES", 100_000))
#: A workbook/CSV with more data rows than this is refused while it is read, so a 1,048,576-row
#: sheet costs a second or two of validation, not minutes and gigabytes of items.
MAX_TABLE_ROWS = int(os.environ.get("OCRJOBS_MAX_TABLE_ROWS", 100_000))
#: Excel refuses longer cell text; exports cut there with a visible mark.
EXCEL_CELL_MAX = 32_767


def state_dir(arg: str | os.PathLike[str] | None = None) -> Path:
    """`--state DIR`, else `$OCRJOBS_STATE`, else `./state`."""
    return Path(arg or os.environ.get("OCRJOBS_STATE") or "state").resolve()


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def allowed_roots() -> list[Path]:
    """Folders a workbook path or ``--folder`` may point into (``$OCRJOBS_ALLOWED_ROOTS``,
    os.pathsep-separated). Empty means none: the server never reads paths nobody opened up.
    Read at each call, so a client picks up a change without a restart."""
    raw = os.environ.get("OCRJOBS_ALLOWED_ROOTS", "")
    return [Path(os.path.realpath(p)) for p in raw.split(os.pathsep) if p.strip()]
