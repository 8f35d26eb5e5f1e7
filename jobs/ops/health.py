"""One health model (ok | degraded | down, with reasons) for the CLI, the dashboard and the metrics.

Cheap at thousands of jobs: job states come from the store's stat-keyed cache, runner facts from
their heartbeat files, the failure rate from the counters runners put in their heartbeats (never
from result files), and only a stuck job's event-log tail is read.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from jobs.ops import mounts
from jobs.ops.diagnose import diagnose_job
from jobs.ops.liveness import runner_state, runner_states
from jobs.store.shared_folder import folder_problems
from jobs.store.status import JobStatus
from jobs.store.store import Store

__all__ = ["EXIT_CODES", "check", "runner_state"]

BACKLOG_LIMIT = 1000
DISK_DEGRADED_PERCENT = 5.0
DISK_DOWN_PERCENT = 1.0
GPU_MEMORY_FRACTION = 0.95
GPU_FREE_MIN_BYTES = 500 * 1024**2
FAILURE_RATE_LIMIT = 0.10
FAILURE_MIN_ITEMS = 10  # below this, one failure out of three is noise, not a failure rate
EXIT_CODES = {"ok": 0, "degraded": 1, "down": 2}

Reasons = list[tuple[str, str]]  # (level, message)


def _runner_rules(runners: list[dict[str, Any]], reasons: Reasons, root: Path) -> None:
    for r in runners:
        if r["state"] == "stale":
            reasons.append(
                ("degraded", f"runner {r['id']} heartbeat is {r['age_s']:.0f} s old: it is hung, stopped or overloaded")
            )
    if not any(r["state"] in ("alive", "stale") for r in runners):  # stale may recover; dead will not
        reasons.append(("down", f"no runner is alive in {root}: start one with `python runner.py` (or `make run`)"))


def _disk_rules(store: Store, reasons: Reasons) -> dict[str, Any]:
    usage = shutil.disk_usage(store.root)
    free_pct = 100.0 * usage.free / usage.total if usage.total else 100.0
    if free_pct < DISK_DOWN_PERCENT:
        reasons.append(("down", f"disk almost full: {free_pct:.1f} % free in {store.root}"))
    elif free_pct < DISK_DEGRADED_PERCENT:
        reasons.append(("degraded", f"disk low: {free_pct:.1f} % free in {store.root}"))
    fs = mounts.filesystem(store.root)
    warning = mounts.network_warning(fs, store.root)
    if warning:
        reasons.append(("degraded", warning))
    return {
        "free_bytes": usage.free,
        "total_bytes": usage.total,
        "free_percent": round(free_pct, 2),
        "fstype": fs["fstype"],
        "network": fs["network"],
    }


def gpu_reasons(runner_id: str, gpu: dict[str, Any] | None) -> list[str]:
    """GPU memory over 95 % or under 500 MiB free, from one runner's heartbeat GPU stats."""
    out = []
    for g in (gpu or {}).get("gpus") or []:
        total, used, free = g["memory_total_bytes"], g["memory_used_bytes"], g["memory_free_bytes"]
        if total and (used / total > GPU_MEMORY_FRACTION or free < GPU_FREE_MIN_BYTES):
            out.append(
                f"GPU {g['index']} ({g['name']}) of runner {runner_id}: {100 * used / total:.0f} % memory used, "
                f"{free / 1024**2:.0f} MiB free"
            )
    return out


def ray_reasons(runner_id: str, ray: dict[str, Any] | None) -> list[str]:
    """Dead Ray nodes and actors that are not up, from a runner on the Ray executor."""
    if not ray:
        return []
    out = []
    dead = [n for n in ray.get("nodes") or [] if not n.get("alive")]
    if dead:
        names = ", ".join(str(n.get("host") or n.get("node_id", "?"))[:24] for n in dead)
        out.append(f"runner {runner_id}: {len(dead)} Ray node(s) dead ({names})")
    for node, gpu in (ray.get("gpu_by_node") or {}).items():
        out += gpu_reasons(f"{runner_id} (Ray node {str(node)[:12]})", gpu)
    actors = ray.get("actors") or []
    if actors and ray.get("actors_alive", 0) < len(actors):
        out.append(f"runner {runner_id}: {ray.get('actors_alive', 0)} of {len(actors)} Ray actors up")
    return out


def failure_rate(runners: list[dict[str, Any]]) -> dict[str, Any]:
    """Failed + timed-out share of the items the live runners committed over the last ~5 minutes."""
    counts = {"done": 0, "failed": 0, "timed_out": 0}
    window = 0.0
    for r in runners:
        recent = r.get("recent") or {}
        for k in counts:
            counts[k] += int(recent.get(k, 0))
        window = max(window, float(recent.get("window_s", 0)))
    items = sum(counts.values())
    rate = (counts["failed"] + counts["timed_out"]) / items if items else 0.0
    return {"items": items, **counts, "rate": round(rate, 4), "window_s": window}


def _job_rules(store: Store, runners: dict[str, dict[str, Any]], now: float, reasons: Reasons) -> dict[str, Any]:
    """Jobs by status, the backlog, running jobs and stuck ones: one pass, no result file read."""
    counts = dict.fromkeys(JobStatus, 0)
    backlog = 0
    running, stuck = [], []
    for job in store.list_jobs():
        st = job.status  # a property that parses the enum: read it once per job
        counts[st] += 1
        if st.is_active:
            p = job.state.get("progress") or {}
            backlog += max(0, job.total - sum(int(p.get(k, 0)) for k in ("done", "failed", "timed_out")))
        if st == JobStatus.RUNNING:
            since = (job.state.get("run") or {}).get("started_at") or job.state.get("started_at") or now
            running.append({"job_id": job.id, "running_s": round(max(0.0, now - since), 1)})
            d = diagnose_job(store, job, runners, now)
            if d.stuck:
                stuck.append({"job_id": job.id, "diagnosis": d.diagnosis, "summary": d.summary})
                reasons.append(("degraded", f"job {job.id} is {d.summary}; see `ocrjobs diagnose {job.id}`"))
    if backlog > BACKLOG_LIMIT:
        reasons.append(("degraded", f"backlog of {backlog} items (> {BACKLOG_LIMIT})"))
    return {
        "backlog_items": backlog,
        "jobs": {s.value: n for s, n in counts.items()},
        "running_jobs": running,
        "stuck_jobs": stuck,
    }


def check(store: Store, now: float | None = None) -> dict[str, Any]:
    """The health of the job folder and its runners: ``status``, ``reasons`` and the facts behind them."""
    now = now if now is not None else time.time()
    reasons: Reasons = []
    runners = runner_states(store, now)
    _runner_rules(runners, reasons, store.root)
    disk = _disk_rules(store, reasons)
    reasons.extend(("degraded", msg) for msg in folder_problems(store.root))
    live = [r for r in runners if r["state"] != "dead"]
    for r in live:
        reasons.extend(("degraded", msg) for msg in gpu_reasons(r["id"], r.get("gpu")))
        reasons.extend(("degraded", msg) for msg in ray_reasons(r["id"], r.get("ray")))
    failures = failure_rate(live)
    if failures["items"] >= FAILURE_MIN_ITEMS and failures["rate"] > FAILURE_RATE_LIMIT:
        reasons.append(
            (
                "degraded",
                f"{100 * failures['rate']:.0f} % of the last {failures['items']} items failed or timed out "
                f"(over {failures['window_s'] / 60:.0f} min; limit {100 * FAILURE_RATE_LIMIT:.0f} %)",
            )
        )
    jobs = _job_rules(store, {r["id"]: r for r in runners}, now, reasons)
    levels = {lvl for lvl, _ in reasons}
    status = "down" if "down" in levels else "degraded" if "degraded" in levels else "ok"
    return {
        "status": status,
        "reasons": [msg for _, msg in reasons],
        "checked_at": now,
        "runners": runners,
        **jobs,
        "failure_rate": failures,
        "disk": disk,
    }
