"""Jobs: every job with its progress, filters, and the actions a user may request."""

from __future__ import annotations

import streamlit as st

from jobs.store.status import JobStatus
from pages.common import ACTIVE, PAGE_JOB, get_store, job_row, request, require_login

require_login()  # the password gate, before anything reads the store
store = get_store()
st.title("Jobs")

f1, f2 = st.columns([2, 3])
statuses = f1.multiselect("Status", [s.value for s in JobStatus], placeholder="all statuses")
text = f2.text_input("Search", placeholder="id, engine or file name").strip().lower()
active_now = any(j.status in ACTIVE for j in store.list_jobs())
DESTRUCTIVE = {"cancel", "delete"}


def actions(job_ids: list[str]) -> None:
    """Requests for one chosen job; cancel and delete ask for a second click."""
    job_id = st.selectbox("Job", job_ids, key="selected_job")
    if job_id is None:
        return
    job = store.get(job_id)
    allowed = {
        "pause": job.status in ACTIVE,
        "resume": job.status == JobStatus.PAUSED,
        "retry": job.status in {JobStatus.FAILED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.CANCELLED},
        "cancel": not job.status.is_terminal,
        "delete": True,
    }
    cols = st.columns(len(allowed) + 1)
    cols[0].page_link(PAGE_JOB, label="Open", query_params={"id": job_id})
    for col, (kind, ok) in zip(cols[1:], allowed.items(), strict=True):
        if col.button(kind.capitalize(), key=f"act-{kind}", disabled=not ok):
            if kind in DESTRUCTIVE:
                st.session_state["confirm"] = (kind, job_id)
            else:
                request(store, job_id, kind)
    pending = st.session_state.get("confirm")
    if pending and pending[1] == job_id:
        kind = pending[0]
        st.warning(f"{kind.capitalize()} job {job_id}?" + (" Its files are removed." if kind == "delete" else ""))
        yes, no = st.columns(2)
        if yes.button(f"Yes, {kind}", key="confirm-yes", type="primary"):
            request(store, job_id, kind)
            st.session_state.pop("confirm")
        if no.button("No", key="confirm-no"):
            st.session_state.pop("confirm")


@st.fragment(run_every="2s" if active_now else None)
def live_table() -> None:
    jobs = store.list_jobs({JobStatus(s) for s in statuses} if statuses else None)
    if text:
        jobs = [j for j in jobs if text in " ".join([j.id, str(j.spec.get("engine")), *j.inputs]).lower()]
    if not jobs:
        st.info("No jobs match." if statuses or text else "No jobs yet: submit some on the Submit page.")
        return
    st.dataframe(
        [job_row(j) for j in jobs],
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100)
        },
    )
    if active_now and not any(j.status in ACTIVE for j in store.list_jobs()):
        st.rerun()  # everything settled: a full rerun turns the auto-refresh off


live_table()
jobs_now = store.list_jobs()
if jobs_now:
    actions([j.id for j in jobs_now])
