"""One health model (ok | degraded | down, with reasons) for the CLI, the dashboard and metrics."""

from __future__ import annotations

import shutil
import socket
import time
from typing import Any

import psutil

from jobs.status import JobStatus
from jobs.store import Store

STALE_AFTER_S = 10.0
DEAD_AFTER_S = 60.0
BACKLOG_LIMIT = 1000


def runner_state(hb: dict[str, Any], now: float) -> str:
    age = now - float(hb.get("heartbeat_at", 0))
    if hb.get("host") == socket.gethostname() and not psutil.pid_exists(int(hb.get("pid", -1))):
        return "dead"
    if age <= STALE_AFTER_S:
        return "alive"
    return "stale" if age <= DEAD_AFTER_S else "dead"


def check(store: Store, now: float | None = None) -> dict[str, Any]:
    now = now if now is not None else time.time()
    reasons: list[tuple[str, str]] = []  # (level, message)
    runners = []
    for hb in store.runners():
        st = runner_state(hb, now)
        runners.append({**hb, "state": st, "age_s": round(now - float(hb.get("heartbeat_at", 0)), 1)})
        if st == "stale":
            reasons.append(("degraded", f"runner {hb['id']} heartbeat is {now - hb['heartbeat_at']:.0f} s old"))
    if not any(r["state"] == "alive" for r in runners):
        reasons.append(("down", "no runner is alive: start one with `python runner.py` (or `make run`)"))
    usage = shutil.disk_usage(store.root)
    free_pct = 100.0 * usage.free / usage.total
    if free_pct < 1:
        reasons.append(("down", f"disk almost full: {free_pct:.1f} % free in {store.root}"))
    elif free_pct < 5:
        reasons.append(("degraded", f"disk low: {free_pct:.1f} % free in {store.root}"))
    jobs = store.list_jobs()
    backlog = 0
    for job in jobs:
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            p = job.progress()
            backlog += job.total - p["committed"]
        if job.status == JobStatus.RUNNING and job.lease_expired(now):
            reasons.append(
                (
                    "degraded",
                    f"job {job.id} is orphaned: its lease expired "
                    f"{now - job.lease['expires_at'] if job.lease else 0:.0f} s ago",
                )
            )
    if backlog > BACKLOG_LIMIT:
        reasons.append(("degraded", f"backlog of {backlog} items (> {BACKLOG_LIMIT})"))
    levels = {lvl for lvl, _ in reasons}
    status = "down" if "down" in levels else "degraded" if "degraded" in levels else "ok"
    return {
        "status": status,
        "reasons": [msg for _, msg in reasons],
        "runners": runners,
        "backlog_items": backlog,
        "jobs": {s.value: sum(1 for j in jobs if j.status == s) for s in JobStatus},
        "disk": {"free_bytes": usage.free, "total_bytes": usage.total, "free_percent": round(free_pct, 2)},
    }


EXIT_CODES = {"ok": 0, "degraded": 1, "down": 2}
