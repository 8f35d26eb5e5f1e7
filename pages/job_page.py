"""Job: live progress, event log, throughput, results with thumbnails, downloads."""

from __future__ import annotations

import base64
import time
from collections import Counter
from typing import Any

import streamlit as st

from jobs import Job, config
from jobs.dashboard.thumbnails import thumbnail_png
from jobs.errors import JobNotFound, OcrJobsError
from jobs.exports.export import FILE_EXTENSIONS, FORMATS, render
from jobs.ops.diagnose import diagnose
from jobs.store.job import JOB_ID
from jobs.store.status import JobStatus
from pages import item_detail
from pages.common import (
    ACTIVE,
    PAGE_JOB,
    age,
    for_any_setup,
    get_store,
    line_chart,
    orphaned,
    require_login,
    status_words,
)
from pages.job_actions import actions, confirm, progress_bar, takeover, times
from pages.job_data import linked_item, manifest, results, row
from pages.literal import md_text

require_login()  # the password gate, before anything reads the store
store = get_store()
PAGE_SIZE = 50
#: Failed items listed on the page at most (every one is in the downloads).
FAILED_SHOWN = 1000

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
if job_id != wanted:
    st.query_params.pop("item", None)  # an item number of the job the link named, not of this one
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


@st.fragment(run_every="2s" if job.status in ACTIVE else "5s")
def live(seen: JobStatus) -> None:
    """Refreshes every 2 s while the job is queued or running, every 5 s otherwise (a resume from
    the CLI or another tab is noticed); any change of status reruns the whole page."""
    try:
        job = store.get(job_id)
    except JobNotFound:
        st.rerun()  # the full run says the job is gone
    if job.status != seen:
        st.rerun()
    p = job.progress()
    lost = orphaned(job)
    if lost:  # nobody works on it: no rate, no ETA
        p.update(items_per_s=None, eta_s=None)
    named = f"{job.name} · " if job.name else ""
    st.subheader(f"{named}{job.id} · {status_words(job.status)}" + (" (orphaned)" if lost else ""), anchor=False)
    st.caption(times(job))
    actions(job)
    eta = f" · ETA {age(p['eta_s'])}" if p["eta_s"] is not None else ""
    progress_bar(job, p["percent"], f"{p['committed']}/{p['total']} items{eta}")
    m = st.columns(5)
    m[0].metric("done", p["done"])
    m[1].metric("failed", p["failed"])
    m[2].metric("timed out", p["timed_out"])
    m[3].metric("items/s", p["items_per_s"] or "—")
    m[4].metric("workers", p["workers"] if p["workers"] is not None else "—", help="workers on this job now")
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
                summary = diag.summary.removeprefix(f"{diag.diagnosis}: ")  # the heading names it already
                st.error(f"**{md_text(diag.diagnosis.capitalize())}**: {md_text(summary)}")
                if diag.diagnosis == "orphaned":
                    lease_s = float((job.lease or {}).get("lease_s") or config.DEFAULT_LEASE_S)
                    st.info(takeover(diag.evidence, lease_s))
                for tip in diag.suggestions:
                    st.markdown(f"- {md_text(for_any_setup(tip))}")
                with st.expander("Evidence"):
                    st.json(diag.evidence)
    chart = throughput(events)
    if len(chart.get("seconds", [])) > 1:
        st.caption("Throughput (items/s, 10 s buckets)")
        line_chart(chart, "seconds", "items/s", x_type="quantitative", height=180)
    with st.expander("Event log (latest 30)"):
        st.dataframe(
            [
                {"at": time.strftime("%H:%M:%S", time.localtime(e["at"])), **{k: v for k, v in e.items() if k != "at"}}
                for e in events[-30:]
            ][::-1],
            hide_index=True,
        )
    results_section(job)


def results_section(job: Job) -> None:
    found = results(store, job)
    items = manifest(store, job)
    failed = [row(items[i], r) for i, r in sorted(found.items()) if r["status"] in ("failed", "timed_out")]
    if failed:
        with st.expander(f"Failed and timed-out items ({len(failed)})", expanded=True):
            if len(failed) > FAILED_SHOWN:
                st.caption(f"The first {FAILED_SHOWN} are listed; the downloads hold them all.")
            st.dataframe(
                [
                    {
                        "#": i["index"],
                        "source": i["source"],
                        "page": i.get("page"),
                        "status": i["status"].replace("_", " "),
                        "error": (i.get("error") or {}).get("message"),
                    }
                    for i in failed[:FAILED_SHOWN]
                ],
                hide_index=True,
                placeholder="",
                column_config={"page": st.column_config.NumberColumn("page", format="%d")},
            )
    truncated = [row(items[i], r) for i, r in sorted(found.items()) if r.get("truncated")]
    if truncated:
        names = ", ".join(
            f"#{i['index']} {i['source']}" + (f" p{i['page']}" if i.get("page") else "") for i in truncated[:10]
        )
        more = f" and {len(truncated) - 10} more" if len(truncated) > 10 else ""
        st.warning(
            f"{len(truncated)} item(s) were cut off at the model's token limit, so their text may be incomplete: "
            f"{md_text(names)}{more}. Resubmit them with a higher *Max new tokens*."
        )

    if (one := linked_item(items)) is not None:
        st.subheader(f"Item {item_detail.label(one)}", anchor=False)
        st.page_link(PAGE_JOB, label="Back to all results", query_params={"id": job.id}, icon=":material/arrow_back:")
        dpi = job.spec.get("dpi") if isinstance(job.spec.get("dpi"), int) else config.DEFAULT_DPI
        item_detail.show(store.job_dir(job.id), one, row(one, found.get(one["index"])), dpi)

    st.subheader("Results")
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page_no = st.number_input("Page", 1, pages, 1, key="results-page") if pages > 1 else 1
    dpi = job.spec.get("dpi") if isinstance(job.spec.get("dpi"), int) else config.DEFAULT_DPI
    on_page = items[(page_no - 1) * PAGE_SIZE : page_no * PAGE_SIZE]
    shown = [row(i, found.get(i["index"])) for i in on_page]
    st.dataframe(
        [
            {
                "preview": preview(item, dpi),
                "#": i["index"],
                "source": i["source"],
                "page": i.get("page"),
                "status": i["status"].replace("_", " "),
                "text": i.get("text"),
                "confidence": i.get("confidence"),
                "read by": {"text-layer": "PDF text", "ocr": "OCR"}.get(i.get("method") or "", None),
                "detail": f"{PAGE_JOB.url_path}?id={job.id}&item={i['index']}",
            }
            for item, i in zip(on_page, shown, strict=True)
        ],
        hide_index=True,
        row_height=80,
        placeholder="",
        column_config={
            "preview": st.column_config.ImageColumn("preview"),
            "page": st.column_config.NumberColumn("page", format="%d"),
            "text": st.column_config.TextColumn("text", width="large"),
            "confidence": st.column_config.NumberColumn("confidence", format="%.2f"),
            "detail": st.column_config.LinkColumn("detail", display_text="open", help="this item on its own"),
            "read by": st.column_config.TextColumn(
                "read by", help="PDF text: the page's own text layer (exact, no OCR); OCR: recognised from the image"
            ),
        },
    )

    committed = [(item, i) for item, i in zip(on_page, shown, strict=True) if i["status"] != "pending"]
    if committed:  # this page's: a 20,000-item list is no menu
        pick = st.selectbox(
            "Full text of",
            range(len(committed)),
            format_func=lambda n: item_detail.label(committed[n][1]) + f" ({committed[n][1]['status']})",
            key=f"full-text-{page_no}",
        )
        item_detail.show(store.job_dir(job.id), *committed[pick or 0], dpi)


live(job.status)
pending = st.session_state.get("confirm")
if pending and pending[1] == job_id:
    confirm(*pending)


@st.cache_data(max_entries=8, show_spinner=False)
def export(root: str, job_id: str, fmt: str, stamp: tuple[Any, ...]) -> bytes:
    """A download, made once per job state (``stamp``): every click gets the same bytes, and a second
    click never asks for a file that a rerun in between replaced."""
    return render(store, job_id, fmt)


st.subheader("Download")
stamp = (job.status.value, job.state.get("updated_at"), job.state.get("round", 0), store.committed_count(job_id))
#: Documents besides the tables: the scans with an invisible text layer, and hOCR/ALTO for archives.
DOCUMENTS = {"pdf": "searchable pdf", "hocr": "hOCR", "alto": "ALTO xml"}
formats = [*FORMATS, *DOCUMENTS]
cols = st.columns(len(formats))
for col, fmt in zip(cols, formats, strict=True):
    col.download_button(
        DOCUMENTS.get(fmt, fmt),
        data=lambda fmt=fmt: export(str(store.root), job_id, fmt, stamp),  # made only when clicked
        file_name=f"{job_id}.{FILE_EXTENSIONS.get(fmt, fmt)}",
        key=f"dl-{fmt}",
        icon=":material/download:",
        on_click="ignore",  # no rerun: the page (and the file it offers) stays as it was clicked
    )
