"""Fakes for the health, diagnosis and metrics tests: an NVML stand-in, hand-written heartbeats and jobs."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jobs.store import Store

MIB = 1024**2


class FakeNvml:
    """Just the NVML calls jobs.ops.gpu makes; one GPU with the given memory use."""

    def __init__(self, used_mib: int = 1000, total_mib: int = 16000, fail: bool = False) -> None:
        self.used, self.total, self.fail = used_mib * MIB, total_mib * MIB, fail

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's names
        if self.fail:
            raise RuntimeError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetName(self, handle: int) -> bytes:  # noqa: N802
        return b"Tesla T4"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(used=self.used, total=self.total, free=self.total - self.used)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=80)


def write_heartbeat(store: Store, runner_id: str = "r1", age_s: float = 0.0, **fields: Any) -> dict[str, Any]:
    """A heartbeat as a live runner in this very process would write it, ``age_s`` old."""
    now = time.time()
    hb = {
        "id": runner_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": now,
        "heartbeat_at": now - age_s,
        "interval_s": 2.0,
        "job": None,
        "current": None,
        "workers": [],
        "counters": {"done": 0, "failed": 0, "timed_out": 0},
        "grace_s": 3.0,
        **fields,
    }
    (store.runners_dir / f"{runner_id}.json").write_text(json.dumps(hb))
    return hb


def write_job(
    store: Store,
    job_id: str = "20260101-000000-aaaaaa",
    total: int = 5,
    state: dict[str, Any] | None = None,
    item_timeout: float = 60.0,
) -> str:
    """A job folder written by hand (job.json, manifest.json, optional state.json)."""
    d: Path = store.jobs_dir / job_id
    d.mkdir()
    spec = {"engine": "tests.engines:SizeEngine", "item_timeout": item_timeout, "max_attempts": 5}
    (d / "job.json").write_text(
        json.dumps({"id": job_id, "created_at": time.time(), "priority": 0, "spec": spec, "total": total})
    )
    (d / "manifest.json").write_text(json.dumps([{"index": i, "source": f"p{i}.png"} for i in range(total)]))
    if state is not None:
        (d / "state.json").write_text(json.dumps(state))
    return job_id


def running_state(runner_id: str, expires_in: float, committed: int = 0) -> dict[str, Any]:
    now = time.time()
    return {
        "status": "running",
        "epoch": 1,
        "lease": {"runner": runner_id, "epoch": 1, "expires_at": now + expires_in},
        "progress": {"done": committed, "failed": 0, "timed_out": 0, "current": None},
        "run": {"started_at": now - 100, "committed": committed},
        "started_at": now - 100,
    }
