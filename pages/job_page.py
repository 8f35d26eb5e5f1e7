"""Job: live progress, event log, throughput, results with thumbnails, downloads."""

from __future__ import annotations

import base64
import io
import time
from collections import Counter
from typing import Any

import streamlit as st

from jobs.diagnose import diagnose
from jobs.errors import JobNotFound
from jobs.export import FORMATS, render
from jobs.status import JobStatus
from pages.common import ACTIVE, age, get_store, request

store = get_store()
PAGE_SIZE = 50

job_ids = [j.id for j in store.list_jobs()]
wanted = st.query_params.get("id") or (job_ids[0] if job_ids else None)
if not wanted:
    st.info("No jobs yet.")
    st.stop()
job_id = st.selectbox(
    "Job", job_ids, index=job_ids.index(wanted) if wanted in job_ids else None, placeholder=f"{wanted} (not found)"
)
if job_id is None:
    st.error(f"Job {wanted} does not exist (deleted, or a wrong link).")
    st.stop()
st.query_params["id"] = job_id


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail(job_id: str, path: str, page: int | None, kind: str) -> str | None:
    """A small data-URI preview of an item's input (never the full image in the browser)."""
    from PIL import Image

    try:
        src = store.job_dir(job_id) / path
        if kind == "pdf":
            import pypdfium2 as pdfium

            doc = pdfium.PdfDocument(str(src))
            im = doc[int(page or 1) - 1].render(scale=0.3).to_pil()
            doc.close()
        else:
            im = Image.open(src)
            if page:
                im.seek(page - 1)
        im = im.convert("RGB")
        im.thumbnail((160, 160))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:  # noqa: BLE001 - a broken input simply has no preview
        return None


def preview(item: dict[str, Any]) -> str | None:
    if item.get("error") or not item.get("path"):
        return None
    return thumbnail(job_id, item["path"], item.get("page"), item.get("kind", "image"))


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
        st.warning(job.state["error"])
    if job.status == JobStatus.PAUSED and job.state.get("reason") == "engine_changed":  # see jobs/pinning.py
        if st.button("Resume, accepting the engine change", key="accept-engine-change"):
            try:
                store.request(job.id, "resume", accept_engine_change=True)
            except JobNotFound:
                st.error(f"Job {job.id} was deleted.")
            else:
                st.toast(f"resume (accepting the engine change) requested for {job.id}")
    pending = [r["kind"] for _, r in store.pending_requests(job.id)]
    if pending:
        st.info(f"Requested, waiting for a runner: {', '.join(pending)}")
    events = store.events(job.id)
    if job.status == JobStatus.RUNNING:
        diag = diagnose(store, job.id)
        if diag.stuck:
            with st.container(border=True):
                st.error(f"**{diag.diagnosis.capitalize()}**: {diag.summary}")
                for tip in diag.suggestions:
                    st.markdown(f"- {tip}")
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
shown = items[(page_no - 1) * PAGE_SIZE : page_no * PAGE_SIZE]
st.dataframe(
    [
        {
            "preview": preview(manifest.get(i["index"], {})),
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
