"""Submitting a job: copy the inputs into a new job folder built under a temporary name,
then rename it into place, so a job is either wholly there or not there at all."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobs import config
from jobs.atomic import TMP_PREFIX, atomic_write_json, fsync_dir, is_disk_full, remove_tree
from jobs.engines.registry import ENGINES
from jobs.errors import SubmitError
from jobs.inputs import copy_input, expand
from jobs.store import Store, new_job_id

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class JobSpec:
    """What a job asks for. Stored in job.json; never changed after submit."""

    engine: str = config.DEFAULT_ENGINE
    engine_options: dict[str, Any] = field(default_factory=dict)
    item_timeout: float = config.DEFAULT_ITEM_TIMEOUT_S
    retries: int = config.DEFAULT_RETRIES
    max_attempts: int = config.DEFAULT_MAX_ATTEMPTS
    dpi: int = config.DEFAULT_DPI

    def validate(self) -> None:
        if self.engine not in ENGINES and not _IMPORT_PATH.match(self.engine):
            raise SubmitError(
                f"unknown engine {self.engine!r}: use one of {', '.join(sorted(ENGINES))} "
                "or an import path like package.module:ClassName"
            )
        if not 0 < self.item_timeout <= 24 * 3600:
            raise SubmitError(f"item timeout must be between 0 and 86400 s, got {self.item_timeout}")
        if not 36 <= self.dpi <= 1200:
            raise SubmitError(f"dpi must be between 36 and 1200, got {self.dpi}")
        if not 0 <= self.retries <= 20:
            raise SubmitError(f"retries must be between 0 and 20, got {self.retries}")
        if not 1 <= self.max_attempts <= 100:
            raise SubmitError(f"max attempts must be between 1 and 100, got {self.max_attempts}")


def submit(
    store: Store, files: Sequence[str | os.PathLike[str]], spec: JobSpec | None = None, priority: int = 0
) -> str:
    """Create a queued job from ``files``; returns its id. Raises SubmitError before writing anything durable."""
    spec = spec or JobSpec()
    spec.validate()
    paths = [Path(f) for f in files]
    if not paths:
        raise SubmitError("nothing to submit: give at least one file")
    for p in paths:
        if not p.is_file():
            raise SubmitError(f"cannot read {p}: no such file" if not p.exists() else f"{p} is not a file")
    job_id = new_job_id()
    tmp = store.jobs_dir / f"{TMP_PREFIX}{job_id}"
    try:
        items: list[dict[str, Any]] = []
        for n, p in enumerate(paths):
            dest = tmp / "inputs" / f"{n:03d}-{_safe_name(p.name)}"
            copy_input(p, dest)
            items.extend(expand(tmp, dest, p.name))
        for i, item in enumerate(items):
            item["index"] = i
        atomic_write_json(tmp / "manifest.json", items)
        atomic_write_json(
            tmp / "job.json",
            {
                "id": job_id,
                "created_at": time.time(),
                "priority": int(priority),
                "spec": asdict(spec),
                "total": len(items),
                "inputs": [p.name for p in paths],
            },
        )
        for d in (tmp / "inputs", tmp):
            fsync_dir(d)
        os.rename(tmp, store.jobs_dir / job_id)
        fsync_dir(store.jobs_dir)
    except OSError as e:
        remove_tree(tmp)
        if is_disk_full(e):
            raise SubmitError(
                f"disk full while copying inputs into {store.root}; free space and submit again"
            ) from None
        raise SubmitError(f"could not store the job in {store.root}: {e}") from None
    except BaseException:
        remove_tree(tmp)
        raise
    return job_id


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "file"
    return cleaned[-120:]
