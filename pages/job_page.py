"""Job: live progress, event log, throughput, results with thumbnails, downloads."""

from __future__ import annotations

import base64
import os
import time
from collections import Counter
from typing import Any

import streamlit as st

from jobs import Job, config
from jobs.dashboard.thumbnails import thumbnail_png
from jobs.errors import JobNotFound, OcrJobsError
from jobs.exports.export import FORMATS, render
from jobs.ops.diagnose import diagnose
from jobs.store.job import JOB_ID
from jobs.store.status import JobStatus
from pages.common import ACTIVE, PAGE_JOBS, age, get_store, request, require_login
from pages.literal import md_text

require_login()  # the password gate, before anything reads the store
store = get_store()
PAGE_SIZE = 50
#: Failed items listed on the page at most (every one is in the downloads).
FAILED_SHOWN = 1000
DESTRUCTIVE = {"cancel", "delete"}

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


def results(job: Job) -> dict[int, dict[str, Any]]:
    """The job's results, reading only the files committed since this session's last look: one
    scandir of the names, then the store's validated reader for each new one. A retry moves failed
    results aside (its ``round`` changes), a runner sets a bad one aside: names gone are dropped."""
    key = (job.id, job.state.get("round", 0), job.total)
    cached = st.session_state.get("job_results")
    if cached is None or cached[0] != key:
        cached = st.session_state["job_results"] = (key, {})
    known: dict[int, dict[str, Any]] = cached[1]
    try:
        with os.scandir(store.results_dir(job.id)) as it:
            names = {int(e.name[:-5]) for e in it if e.name.endswith(".json") and e.name[:-5].isdigit()}
    except (FileNotFoundError, NotADirectoryError):
        names = set()
    for gone in known.keys() - names:
        del known[gone]
    for index in sorted(names - known.keys()):
        if index < job.total and (res := store.result(job.id, index)) is not None:
            known[index] = res
    return known


def manifest(job: Job) -> list[dict[str, Any]]:
    """The job's items, read once per session (a job's manifest never changes)."""
    cached = st.session_state.get("job_manifest")
    if cached is None or cached[0] != job.id:
        cached = st.session_state["job_manifest"] = (job.id, store.manifest(job.id))
    return cached[1]


def row(item: dict[str, Any], res: dict[str, Any] | None) -> dict[str, Any]:
    """An item with its result merged in, as Store.items() gives it (status 'pending' if none)."""
    out = {"index": item["index"], "source": item["source"], "page": item.get("page")}
    if res is None:
        out.update(status="pending", text="", confidence=None, error=None)
    else:
        out.update({k: v for k, v in res.items() if k not in out})
    return out


def actions(job: Job) -> None:
    """The requests a user may make for this job, by its status; cancel and delete ask for a second click."""
    allowed = {
        "pause": job.status in ACTIVE,
        "resume": job.status == JobStatus.PAUSED,
        "retry": job.status in {JobStatus.FAILED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.CANCELLED},
        "cancel": not job.status.is_terminal,
        "delete": True,
    }
    confirmed = st.session_state.pop("confirmed", None)  # set by the "Yes" button's callback
    if confirmed and confirmed[1] == job.id:
        request(store, job.id, confirmed[0])
        if confirmed[0] == "delete":
            st.session_state["flash"] = f"delete requested for {job.id}: a runner removes it"
            st.switch_page(PAGE_JOBS)
    shown = [kind for kind, ok in allowed.items() if ok]
    cols = st.columns(len(shown) + 3)
    for col, kind in zip(cols, shown, strict=False):
        if kind in DESTRUCTIVE:
            col.button(kind.capitalize(), key=f"act-{kind}", on_click=_set, args=("confirm", (kind, job.id)))
        elif col.button(kind.capitalize(), key=f"act-{kind}"):
            request(store, job.id, kind)
    pending = st.session_state.get("confirm")
    if pending and pending[1] == job.id and allowed.get(pending[0]):
        kind = pending[0]
        st.warning(f"{kind.capitalize()} job {job.id}?" + (" Its files are removed." if kind == "delete" else ""))
        yes, no, _ = st.columns([1, 1, 4])
        yes.button(f"Yes, {kind}", key="confirm-yes", type="primary", on_click=_confirm, args=(kind, job.id))
        no.button("No", key="confirm-no", on_click=_set, args=("confirm", None))


def _set(key: str, value: Any) -> None:
    st.session_state[key] = value


def _confirm(kind: str, job_id: str) -> None:
    st.session_state.update(confirm=None, confirmed=(kind, job_id))


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
    st.subheader(f"{job.id} · {job.status.value}")
    actions(job)
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
    results_section(job)


def results_section(job: Job) -> None:
    found = results(job)
    items = manifest(job)
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
                        "status": i["status"],
                        "error": (i.get("error") or {}).get("message"),
                    }
                    for i in failed[:FAILED_SHOWN]
                ],
                hide_index=True,
            )

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
                "status": i["status"],
                "text": i.get("text"),
                "confidence": i.get("confidence"),
            }
            for item, i in zip(on_page, shown, strict=True)
        ],
        hide_index=True,
        row_height=80,
        column_config={
            "preview": st.column_config.ImageColumn("preview"),
            "text": st.column_config.TextColumn("text", width="large"),
        },
    )

    done = [i for i in shown if i["status"] == "done"]  # this page's: a 20,000-item list is no menu
    if done:
        pick = st.selectbox(
            "Full text of",
            done,
            format_func=lambda i: f"#{i['index']} {i['source']}" + (f" p{i['page']}" if i.get("page") else ""),
            key=f"full-text-{page_no}",
        )
        st.code(pick.get("text") or "(no text found)", language=None, wrap_lines=True)


live(job.status)

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
