"""Jobs: every job with its progress and filters; each id links to its Job page (and its actions).

The filters and the sort live in the URL (``?status=failed&q=invoice&sort=progress``), so a reload,
a bookmark or a link sent to a colleague shows the same list.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from jobs import Job
from jobs.store.job import queue_places
from jobs.store.status import JobStatus
from pages import bulk, text_search
from pages.common import ACTIVE, JOB_COLUMNS, PAGE_JOB, coloured, get_store, job_row, require_login

require_login()  # the password gate, before anything reads the store
store = get_store()
st.title("Jobs")
if flash := st.session_state.pop("flash", None):  # what the Job page did before it came back here
    st.toast(flash)

STATUSES = [s.value for s in JobStatus]
#: Sort orders: the label shown, and the key of a row (rows come newest first, and sorts are stable).
SORTS: dict[str, Any] = {
    "newest first": None,
    "oldest first": lambda r: -r["age"],
    "priority": lambda r: -r["priority"],
    "progress": lambda r: -r["progress"],
    "most failed": lambda r: -(r["failed"] + r["timed out"]),
    "status": lambda r: r["status"].split(" ", 1)[-1],
}


def from_url() -> None:
    """The widgets start from the URL's filters (once per visit of the page: a reload is a new visit)."""
    q = st.query_params
    if "f-status" not in st.session_state:
        st.session_state["f-status"] = [s for s in q.get_all("status") if s in STATUSES]
    if "f-q" not in st.session_state:
        st.session_state["f-q"] = q.get("q", "")[:200]
    if "f-by" not in st.session_state:
        st.session_state["f-by"] = [b[:64] for b in q.get_all("by")][:20]
    if "f-sort" not in st.session_state:
        st.session_state["f-sort"] = q.get("sort", "") if q.get("sort", "") in SORTS else "newest first"


def to_url(statuses: list[str], by: list[str], text: str, sort: str) -> None:
    pairs = (("status", statuses), ("by", by), ("q", text), ("sort", "" if sort == "newest first" else sort))
    for key, value in pairs:
        if value:
            st.query_params[key] = value
        elif key in st.query_params:
            del st.query_params[key]


from_url()
f1, f4, f2, f3 = st.columns([2, 2, 3, 1])
statuses = f1.multiselect(
    "Status", STATUSES, format_func=lambda v: v.replace("_", " "), placeholder="all statuses", key="f-status"
)
people = sorted({j.submitted_by for j in store.list_jobs() if j.submitted_by} | set(st.session_state["f-by"]))
by = f4.multiselect("Submitted by", people, placeholder="anyone", key="f-by")
text = f2.text_input("Search", placeholder="name, id, engine or file name (also inside ZIPs and workbooks)", key="f-q")
sort = f3.selectbox("Sort by", list(SORTS), key="f-sort")
to_url(statuses, by, text.strip(), sort)
text = text.strip().lower()
active_now = any(j.status in ACTIVE for j in store.list_jobs())


@st.cache_resource(max_entries=2000, show_spinner=False)
def item_names(root: str, job_id: str) -> str:
    """A job's item file names (ZIP members, pages, workbook cells), lowercased: read once per job,
    since a manifest never changes, and only when someone searches."""
    try:
        return "\n".join(str(i.get("source", "")) for i in store.manifest(job_id)).lower()
    except Exception:  # noqa: BLE001 - a damaged or vanished job: searchable by its id and inputs only
        return ""


def matches(job: Job, needle: str) -> bool:
    if needle in " ".join([job.name, job.id, job.submitted_by, str(job.spec.get("engine")), *job.inputs]).lower():
        return True
    return needle in item_names(str(store.root), job.id)


@st.fragment(run_every="2s" if active_now else "5s")
def live_table() -> None:
    """Refreshes every 2 s while a job is queued or running, every 5 s otherwise (a job submitted from
    the CLI appears, ages move on); a change between the two reruns the page for the other pace."""
    if active_now != any(j.status in ACTIVE for j in store.list_jobs()):
        st.rerun()  # a job started or everything settled: the full rerun sets the other pace
    everything, deleting = bulk.not_deleted(store.list_jobs())
    if deleting:
        st.caption(f"{deleting} job(s) you deleted are left out: a runner removes their files shortly.")
    queue = queue_places(everything)
    jobs = [j for j in everything if j.status.value in statuses] if statuses else everything
    if by:
        jobs = [j for j in jobs if j.submitted_by in by]
    if text:
        jobs = [j for j in jobs if matches(j, text)]
    if not jobs:
        st.info("No jobs match." if statuses or by or text else "No jobs yet: submit some on the Submit page.")
        if everything:
            bulk.bar(store, everything, [])
        return
    rows = [job_row(j) | {"queue": queue.get(j.id)} for j in jobs]
    if SORTS[sort] is not None:
        rows.sort(key=SORTS[sort])
    ids = [r["id"] for r in rows]
    for r in rows:  # a relative link: right under any server.baseUrlPath; ids have JOB_ID's shape
        r["id"] = f"{PAGE_JOB.url_path}?id={r['id']}"
    event = st.dataframe(
        coloured(rows, "status"),
        hide_index=True,
        placeholder="",
        column_config={"id": st.column_config.LinkColumn("id", display_text=r"\?id=(.+)$"), **JOB_COLUMNS},
        key="jobs-table",
        on_select="rerun",
        selection_mode="multi-row",
    )
    picked = [ids[i] for i in event.selection.rows if i < len(ids)]
    bulk.bar(store, everything, picked)


bulk.report()
live_table()
text_search.box(store)
if pending := st.session_state.get("bulk"):
    bulk.confirm(store, *pending)
