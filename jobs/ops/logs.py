"""Runner logging: readable lines on the console, and one JSON object per line in a size-rotated
file under ``state/logs/`` for machines (job and item ids, durations and errors as fields).

Each process writes its own file (``runner-<host>-<pid>.jsonl``): several runners may share a
job folder, and size rotation is only safe with one writer. Files untouched for longer than the
retention are removed at start-up, so a service restarting for weeks does not fill the disk.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import time
from pathlib import Path
from typing import Any

MAX_BYTES = 10 * 1024**2
BACKUPS = 5
CONSOLE_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message, and every ``extra=`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "at": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def prune(log_dir: Path, retention_days: float) -> None:
    cutoff = time.time() - retention_days * 86400
    for path in log_dir.glob("*.jsonl*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            continue


def setup(state_root: Path, level: str = "INFO", retention_days: float = 7.0) -> Path:
    """Console + JSON file logging for this process; returns the file's path."""
    log_dir = state_root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    prune(log_dir, retention_days)
    path = log_dir / f"runner-{socket.gethostname()}-{os.getpid()}.jsonl"
    file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    file_handler.setFormatter(JsonFormatter())
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(console)
    root.addHandler(file_handler)
    return path
