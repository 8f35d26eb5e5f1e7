"""Is a runner alive? Read from its heartbeat file's age, and from its pid when it is on this host.

A runner rewrites ``state/runners/<id>.json`` every ``interval_s`` (2 s by default). It is
*stale* after missing about five beats (its loop is blocked or the process is stopped) and
*dead* after a minute, or at once when its process is gone from this host (a SIGKILL leaves
the file behind). Its last hour of samples (``state/runners/history/<id>.json``, written by
jobs/runner/heartbeat.py) is read here too, for the dashboard's charts.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import psutil

from jobs.errors import Corrupt
from jobs.store.atomic import read_json
from jobs.store.store import Store

DEFAULT_INTERVAL_S = 2.0
STALE_BEATS = 5
DEAD_AFTER_S = 60.0
_HOST = socket.gethostname()


def stale_after(hb: dict[str, Any]) -> float:
    """Seconds without a heartbeat before a runner counts as stale (10 s at the default 2 s beat)."""
    return STALE_BEATS * float(hb.get("interval_s") or DEFAULT_INTERVAL_S)


def _process_gone(hb: dict[str, Any]) -> bool:
    """True when the heartbeat is from this host and its process no longer exists (or the pid was reused)."""
    if hb.get("host") != _HOST:
        return False
    try:
        proc = psutil.Process(int(hb.get("pid") or -1))
        return proc.create_time() > float(hb.get("started_at") or float("inf")) + 1.0
    except (psutil.NoSuchProcess, ValueError):
        return True
    except psutil.Error:  # AccessDenied and the like: the process exists
        return False


def runner_state(hb: dict[str, Any], now: float | None = None) -> str:
    """``alive``, ``stale`` or ``dead``."""
    now = now if now is not None else time.time()
    age = now - float(hb.get("heartbeat_at") or 0)
    if _process_gone(hb):
        return "dead"
    if age <= stale_after(hb):
        return "alive"
    return "stale" if age <= max(DEAD_AFTER_S, 6 * stale_after(hb)) else "dead"


def runner_states(store: Store, now: float | None = None) -> list[dict[str, Any]]:
    """Every heartbeat with ``state`` and ``age_s`` added."""
    now = now if now is not None else time.time()
    return [
        {**hb, "state": runner_state(hb, now), "age_s": round(now - float(hb.get("heartbeat_at") or 0), 1)}
        for hb in store.runners()
    ]


def history_path(store: Store, runner_id: str) -> Path:
    return store.runners_dir / "history" / f"{runner_id}.json"


def read_history(store: Store, runner_id: str) -> list[dict[str, Any]]:
    """A runner's samples of the last hour, oldest first ([] if none)."""
    try:
        data = read_json(history_path(store, runner_id), kind="history")
    except (Corrupt, OSError):  # a corrupt history only costs a chart
        return []
    return list((data or {}).get("samples", []))
