"""Job: live progress, event log, throughput, results with thumbnails, downloads."""

from __future__ import annotations

import base64
import time
from collections import Counter
from typing import Any

import streamlit as st

from jobs import config
from jobs.dashboard.thumbnails import thumbnail_png
from jobs.errors import JobNotFound, OcrJobsError
from jobs.exports.export import FORMATS, render
from jobs.ops.diagnose import diagnose
from jobs.store.job import JOB_ID
from jobs.store.status import JobStatus
from pages.common import ACTIVE, age, get_store, request, require_login
from pages.literal import md_text

require_login()  # the password gate, before anything reads the store
store = get_store()
PAGE_SIZE = 50

job_ids = [j.id for j in store.list_jobs()]
wanted = st.query_params.get("id") or (job_ids[0] if job_ids else None)
if not wanted:
    st.info("No jobs yet.")
    st.stop()
valid = bool(JOB_ID.fullmatch(wanted))  # the URL is anyone's: only a job id's shape is used or shown as is
job_id = st.selectbox(
    "Job",
    job_ids,
    index=job_ids.index(wanted) if wanted in job_ids else None,
    placeholder=f"{wanted} (not found)" if valid else "(not a job id)",
)
if job_id is None:
    what = wanted if valid else f"{wanted[:100]!r} (not a job id)"
    st.error(f"Job {md_text(what)} does not exist (deleted, or a wrong link).")
    st.stop()
st.query_params["id"] = job_id


def preview(item: dict[str, Any], dpi: int) -> str | None:
    """A <= 160 px data-URI preview (jobs/dashboard/thumbnails.py: confined, size-limited, cached in the job folder)."""
    png = thumbnail_png(store.job_dir(job_id), item, dpi)
    return "data:image/png;base64," + base64.b64encode(png).decode() if png else None


def throughput(events: list[dict[str, Any]]) -> dict[str, list[Any]]:
    commits = [e["at"] for e in events if e.get("event") == "item_committed"]
    if not commits:
        return {}
    start = min(commits)
    buckets = Counter(int((t - start) // 10) for t in commits)
    xs = list(range(max(buckets) + 1))
    return {"seconds": [x * 10 for x in xs], "items/s": [buckets.get(x, 0) / 10 for x in xs]}


try:
    job = store.get(job_id)
except JobNotFound:
    st.error(f"Job {job_id} was deleted.")
    st.stop()


@st.fragment(run_every="2s" if job.status in ACTIVE else None)
def live() -> None:
    try:
        job = store.get(job_id)
    except JobNotFound:
        st.error(f"Job {job_id} was deleted.")
        return
    p = job.progress()
    st.subheader(f"{job.id} · {job.status.value}")
    eta = f" · ETA {age(p['eta_s'])}" if p["eta_s"] is not None else ""
    st.progress(p["percent"] / 100, text=f"{p['committed']}/{p['total']} items{eta}")
    m = st.columns(4)
    m[0].metric("done", p["done"])
    m[1].metric("failed", p["failed"])
    m[2].metric("timed out", p["timed_out"])
    m[3].metric("items/s", p["items_per_s"] or "—")
    if job.state.get("error"):
        st.warning(md_text(job.state["error"]))
    if job.status == JobStatus.PAUSED and job.state.get("reason") == "engine_changed":  # see jobs/runner/pinning.py
        if st.button("Resume, accepting the engine change", key="accept-engine-change"):
            try:
                store.request(job.id, "resume", accept_engine_change=True)
            except JobNotFound:
                st.error(f"Job {job.id} was deleted.")
            except OcrJobsError as e:
                st.error(md_text(str(e)))
            else:
                st.toast(f"resume (accepting the engine change) requested for {job.id}")
    pending = [r["kind"] for _, r in store.pending_requests(job.id)]
    if pending:
        st.info(f"Requested, waiting for a runner: {md_text(', '.join(map(str, pending)))}")
    events = store.events(job.id)
    if job.status == JobStatus.RUNNING:
        diag = diagnose(store, job.id)
        if diag.stuck:
            with st.container(border=True):
                st.error(f"**{md_text(diag.diagnosis.capitalize())}**: {md_text(diag.summary)}")
                for tip in diag.suggestions:
                    st.markdown(f"- {md_text(tip)}")
                with st.expander("Evidence"):
                    st.json(diag.evidence)
    chart = throughput(events)
    if len(chart.get("seconds", [])) > 1:
        st.caption("Throughput (items/s, 10 s buckets)")
        st.line_chart(chart, x="seconds", y="items/s", height=180)
    with st.expander("Event log (latest 30)"):
        st.dataframe(
            [
                {"at": time.strftime("%H:%M:%S", time.localtime(e["at"])), **{k: v for k, v in e.items() if k != "at"}}
                for e in events[-30:]
            ][::-1],
            hide_index=True,
        )
    if job.status in ACTIVE and job.status != store.get(job_id).status:
        st.rerun()


live()

items = store.items(job_id)
failed = [i for i in items if i["status"] in ("failed", "timed_out")]
if failed:
    with st.expander(f"Failed and timed-out items ({len(failed)})", expanded=True):
        st.dataframe(
            [
                {
                    "#": i["index"],
                    "source": i["source"],
                    "page": i.get("page"),
                    "status": i["status"],
                    "error": (i.get("error") or {}).get("message"),
                }
                for i in failed
            ],
            hide_index=True,
        )
        if st.button("Retry failed items", disabled=job.status in ACTIVE):
            request(store, job_id, "retry")

st.subheader("Results")
pages = max(1, -(-len(items) // PAGE_SIZE))
page_no = st.number_input("Page", 1, pages, 1) if pages > 1 else 1
manifest = {m["index"]: m for m in store.manifest(job_id)}
dpi = job.spec.get("dpi") if isinstance(job.spec.get("dpi"), int) else config.DEFAULT_DPI
shown = items[(page_no - 1) * PAGE_SIZE : page_no * PAGE_SIZE]
st.dataframe(
    [
        {
            "preview": preview(manifest.get(i["index"], {}), dpi),
            "#": i["index"],
            "source": i["source"],
            "page": i.get("page"),
            "status": i["status"],
            "text": i.get("text"),
            "confidence": i.get("confidence"),
        }
        for i in shown
    ],
    hide_index=True,
    row_height=80,
    column_config={
        "preview": st.column_config.ImageColumn("preview"),
        "text": st.column_config.TextColumn("text", width="large"),
    },
)

done = [i for i in items if i["status"] == "done"]
if done:
    pick = st.selectbox(
        "Full text of",
        done,
        format_func=lambda i: f"#{i['index']} {i['source']}" + (f" p{i['page']}" if i.get("page") else ""),
    )
    st.code(pick.get("text") or "(no text found)", language=None, wrap_lines=True)

st.subheader("Download")
cols = st.columns(len(FORMATS))
for col, fmt in zip(cols, FORMATS, strict=True):
    col.download_button(
        f"{fmt}",
        data=lambda fmt=fmt: render(store, job_id, fmt),
        file_name=f"{job_id}.{fmt}",
        key=f"dl-{fmt}",
        icon=":material/download:",
    )
