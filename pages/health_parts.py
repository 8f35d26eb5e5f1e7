"""The Health page's tables and series built from heartbeats: each runner's workers, and the items
a runner committed per minute over the last hour (from its history samples' counters)."""

from __future__ import annotations

import time
from typing import Any

#: Counters a history sample carries (cumulative since the runner started).
_COUNTED = ("done", "failed", "timed_out")


def worker_rows(runners: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
    """One row per worker of each live or stale runner: what it runs, for how long, what it costs."""
    now = now or time.time()
    rows = []
    for r in runners:
        if r["state"] == "dead":
            continue
        for w in r.get("workers") or []:
            started, loading = w.get("item_started_at"), w.get("loading_since")
            if loading:
                doing = f"loading the engine for {now - loading:.0f} s"
            elif w.get("item") is not None:
                page = f" p{w['page']}" if w.get("page") else ""
                doing = f"#{w['item']} {w.get('source') or ''}{page}".strip()
            else:
                doing = "idle"
            rows.append(
                {
                    "runner": r["id"],
                    "worker": w.get("slot"),
                    "pid": w.get("pid"),
                    "job": w.get("job") if w.get("item") is not None else None,
                    "doing": doing,
                    "for (s)": round(now - started, 1) if started and w.get("item") is not None else None,
                    "CPU %": w.get("cpu_percent"),
                    "RSS (MB)": round(w["rss_bytes"] / 2**20) if isinstance(w.get("rss_bytes"), int) else None,
                    "engine": w.get("engine"),
                    "device": w.get("engine_device") or r.get("device"),
                }
            )
    return rows


def rate_rows(history: list[tuple[str, list[dict[str, Any]]]], now: float | None = None) -> list[dict[str, Any]]:
    """Items per minute and failed per minute between consecutive samples of each runner (minutes
    before now, negative). A counter that went down is a restarted runner: that step is skipped."""
    now = now or time.time()
    rows = []
    for rid, samples in history:
        for a, b in zip(samples, samples[1:], strict=False):
            dt = (b.get("t") or 0) - (a.get("t") or 0)
            steps = {k: int(b.get(k) or 0) - int(a.get(k) or 0) for k in _COUNTED}
            if dt <= 0 or min(steps.values()) < 0 or "done" not in a or "done" not in b:
                continue
            rows.append(
                {
                    "minutes (0 = now)": round((b["t"] - now) / 60, 2),
                    "runner": rid,
                    "items/min": round(60 * sum(steps.values()) / dt, 1),
                    "failed/min": round(60 * (steps["failed"] + steps["timed_out"]) / dt, 1),
                }
            )
    return rows
