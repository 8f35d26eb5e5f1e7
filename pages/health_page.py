"""Health: runners, GPU, machine resources, backlog and alerts, from one health model."""

from __future__ import annotations

import shutil
import time
from typing import Any

import pandas as pd
import psutil
import streamlit as st

from jobs.ops.health import check
from jobs.ops.liveness import read_history
from pages.common import DOT, age, coloured, get_store, line_chart, require_login
from pages.health_parts import rate_rows, worker_rows
from pages.literal import md_text

require_login()  # the password gate, before anything reads the store
#: A dead runner stays listed (greyed: no job, no items) this long, then only counted.
DEAD_SHOWN_S = 600
#: The charts' time axis: minutes before now, negative, so time runs left to right and now is 0.
MINUTES = "minutes (0 = now)"
STATES = ["alive", "stale", "dead"]


WORKER_COLUMNS = {
    "for (s)": st.column_config.NumberColumn("for", format="%.0f s", help="how long the current item has run"),
    "CPU %": st.column_config.NumberColumn("CPU", format="%.0f %%"),
}


def runner_row(r: dict[str, Any]) -> dict[str, Any]:
    """A runner as the table shows it; a dead one's job and items are history, not work, so blank."""
    dead = r["state"] == "dead"
    items = ", ".join(str(w.get("item")) for w in r.get("workers", []) if w.get("item") is not None)
    return {
        "runner": r["id"],
        "state": f"{DOT} {r['state']}",
        "heartbeat": age(r["age_s"]) + " ago",
        "jobs": None if dead else ", ".join(r.get("jobs") or ([r["job"]] if r.get("job") else [])) or None,
        "items": None if dead else items,
        "pid": r.get("pid"),
        "host": r.get("host"),
    }


def load_chart(history: list[tuple[str, list[dict[str, Any]]]], key: str, metric: str, scale: float) -> bool:
    """One line per runner over the last hour, time running left to right; False when there is
    nothing to draw (an empty or one-point series is where Vega logs "Infinite extent")."""
    now = time.time()
    rows = [
        {MINUTES: round((s["t"] - now) / 60, 2), "runner": rid, metric: s[key] / scale}
        for rid, samples in history
        for s in samples
        if isinstance(s.get(key), int | float) and isinstance(s.get("t"), int | float)
    ]
    if len(rows) < 2:
        return False
    st.caption(f"{metric}, last hour (from runner heartbeats; now is at the right)")
    line_chart(pd.DataFrame(rows), MINUTES, metric, x_type="quantitative", color="runner", x_domain=[-60, 0])
    return True


store = get_store()
st.title("Health")


@st.fragment(run_every="5s")
def live() -> None:
    report = check(store)
    {"ok": st.success, "degraded": st.warning, "down": st.error}[report["status"]](f"Status: **{report['status']}**")
    for reason in report["reasons"]:  # they name runners, hosts, GPUs and paths from heartbeat files
        st.warning(md_text(reason))

    st.subheader("Runners")
    shown = [r for r in report["runners"] if r["state"] != "dead" or r["age_s"] <= DEAD_SHOWN_S]
    shown.sort(key=lambda r: (STATES.index(r["state"]) if r["state"] in STATES else 3, r["age_s"]))
    if shown:
        st.dataframe(coloured([runner_row(r) for r in shown], "state"), hide_index=True, placeholder="")
    if len(shown) < len(report["runners"]):
        gone = len(report["runners"]) - len(shown)
        st.caption(f"{gone} runner(s) dead for over {DEAD_SHOWN_S // 60} min are not listed.")
    if workers := worker_rows(shown):
        st.caption("Workers")
        st.dataframe(workers, hide_index=True, placeholder="", column_config=WORKER_COLUMNS)
    if not report["runners"]:
        st.info("No runner has ever reported. Start one with `python runner.py` (or `make run`).")

    alive = [r for r in report["runners"] if r["state"] == "alive"]
    for r in alive:
        if r.get("ray"):
            ray = r["ray"]
            st.subheader(f"Ray cluster ({md_text(r['id'])})")
            st.caption(
                md_text(
                    f"{ray.get('nodes_alive', 0)} of {len(ray.get('nodes') or [])} nodes alive, "
                    f"{ray.get('actors_alive', 0)} of {len(ray.get('actors') or [])} actors up"
                )
            )
            st.dataframe(ray.get("nodes") or [], hide_index=True)
            st.dataframe(ray.get("actors") or [], hide_index=True)
    st.subheader("GPU")
    gpus = [{"runner": r["id"], **g} for r in alive for g in (r.get("gpu") or {}).get("gpus", [])]
    gpus += [  # GPUs of Ray nodes, reported by the actors there
        {"runner": r["id"], "ray node": str(node)[:12], **g}
        for r in alive
        for node, gpu in ((r.get("ray") or {}).get("gpu_by_node") or {}).items()
        for g in (gpu or {}).get("gpus", [])
    ]
    if gpus:
        st.dataframe(gpus, hide_index=True)
    else:
        st.caption("No GPU — CPU mode.")
    history = [(r["id"], read_history(store, r["id"])) for r in alive]
    if gpus:
        load_chart(history, "gpu_memory_used_bytes", "GPU memory (MiB)", 2**20)
    st.subheader("Throughput")
    rates = rate_rows(history)
    if len(rates) >= 2:
        st.caption("Items committed per minute, last hour (from runner heartbeats; now is at the right)")
        line_chart(pd.DataFrame(rates), MINUTES, "items/min", x_type="quantitative", color="runner", x_domain=[-60, 0])
        failed = sum({r["runner"]: r["failed/min"] for r in rates}.values())  # each runner's latest step
        st.caption(f"Failed or timed out per minute, last hour (now: {failed:.1f} per minute)")
        line_chart(pd.DataFrame(rates), MINUTES, "failed/min", x_type="quantitative", color="runner", x_domain=[-60, 0])
    else:
        st.caption("No samples yet: a live runner records its counts every 10 s.")
    st.subheader("Backlog")
    st.metric("Items waiting, all jobs", report["backlog_items"])
    if not load_chart(history, "held_items", "items left in the jobs each runner holds", 1):
        st.caption("No samples yet: a live runner records what it holds every 10 s.")
    st.subheader("CPU")
    if not load_chart(history, "cpu_percent", "CPU %", 1):
        st.caption("No samples yet: a live runner records CPU use with its heartbeats.")

    st.subheader("Machine")
    disk = shutil.disk_usage(store.root)
    mem = psutil.virtual_memory()
    c = st.columns(3)
    c[0].metric("CPU", f"{psutil.cpu_percent(interval=None):.0f} %")
    c[1].metric("RAM used", f"{mem.percent:.0f} %")
    c[2].metric("Disk free (job folder)", f"{100 * disk.free / disk.total:.1f} %")
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report["jobs"].items() if v)
    st.caption("Jobs by status: " + (md_text(counts) if counts else "no jobs yet"))


live()
