"""Health: runners, GPU, machine resources, backlog and alerts, from one health model."""

from __future__ import annotations

import shutil
import time

import psutil
import streamlit as st

from jobs.ops.health import check
from jobs.ops.liveness import read_history
from pages.common import age, get_store, require_login
from pages.literal import md_text

require_login()  # the password gate, before anything reads the store
store = get_store()
st.title("Health")


@st.fragment(run_every="5s")
def live() -> None:
    report = check(store)
    {"ok": st.success, "degraded": st.warning, "down": st.error}[report["status"]](f"Status: **{report['status']}**")
    for reason in report["reasons"]:  # they name runners, hosts, GPUs and paths from heartbeat files
        st.warning(md_text(reason))

    st.subheader("Runners")
    if report["runners"]:
        st.dataframe(
            [
                {
                    "runner": r["id"],
                    "state": r["state"],
                    "heartbeat": age(r["age_s"]) + " ago",
                    "job": r.get("job"),
                    "items": ", ".join(str(w.get("item")) for w in r.get("workers", []) if w.get("item") is not None),
                    "pid": r.get("pid"),
                    "host": r.get("host"),
                }
                for r in report["runners"]
            ],
            hide_index=True,
        )
    else:
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
    if any(samples for _, samples in history):
        now = time.time()
        rows = [
            {
                "minutes ago": round((now - s["t"]) / 60, 1),
                "runner": rid,
                "CPU %": s.get("cpu_percent"),
                "GPU memory (MiB)": (s.get("gpu_memory_used_bytes") or 0) / 2**20,
            }
            for rid, samples in history
            for s in samples
        ]
        metric = "GPU memory (MiB)" if gpus else "CPU %"
        st.caption(f"{metric}, last hour (from runner heartbeats)")
        st.line_chart(rows, x="minutes ago", y=metric, color="runner", height=200)

    st.subheader("Machine")
    disk = shutil.disk_usage(store.root)
    mem = psutil.virtual_memory()
    c = st.columns(4)
    c[0].metric("CPU", f"{psutil.cpu_percent(interval=None):.0f} %")
    c[1].metric("RAM used", f"{mem.percent:.0f} %")
    c[2].metric("Disk free (job folder)", f"{100 * disk.free / disk.total:.1f} %")
    c[3].metric("Backlog (items)", report["backlog_items"])
    st.caption("Jobs by status: " + md_text(", ".join(f"{k} {v}" for k, v in report["jobs"].items() if v)))


live()
