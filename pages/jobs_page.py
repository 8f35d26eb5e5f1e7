"""Jobs: every job with its progress and filters; each id links to its Job page (and its actions)."""

from __future__ import annotations

import streamlit as st

from jobs.store.status import JobStatus
from pages.common import ACTIVE, PAGE_JOB, get_store, job_row, require_login

require_login()  # the password gate, before anything reads the store
store = get_store()
st.title("Jobs")
if flash := st.session_state.pop("flash", None):  # what the Job page did before it came back here
    st.toast(flash)

f1, f2 = st.columns([2, 3])
statuses = f1.multiselect("Status", [s.value for s in JobStatus], placeholder="all statuses")
text = f2.text_input("Search", placeholder="id, engine or file name").strip().lower()
active_now = any(j.status in ACTIVE for j in store.list_jobs())


@st.fragment(run_every="2s" if active_now else "5s")
def live_table() -> None:
    """Refreshes every 2 s while a job is queued or running, every 5 s otherwise (a job submitted from
    the CLI appears, ages move on); a change between the two reruns the page for the other pace."""
    if active_now != any(j.status in ACTIVE for j in store.list_jobs()):
        st.rerun()  # a job started or everything settled: the full rerun sets the other pace
    jobs = store.list_jobs({JobStatus(s) for s in statuses} if statuses else None)
    if text:
        jobs = [j for j in jobs if text in " ".join([j.id, str(j.spec.get("engine")), *j.inputs]).lower()]
    if not jobs:
        st.info("No jobs match." if statuses or text else "No jobs yet: submit some on the Submit page.")
        return
    rows = [job_row(j) for j in jobs]
    for r in rows:  # a relative link: right under any server.baseUrlPath; ids have JOB_ID's shape
        r["id"] = f"{PAGE_JOB.url_path}?id={r['id']}"
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            "id": st.column_config.LinkColumn("id", display_text=r"\?id=(.+)$"),
            "progress": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100),
        },
    )


live_table()
