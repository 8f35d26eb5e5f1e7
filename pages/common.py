"""Dashboard-only helpers shared by the pages: the store, the password gate, formatting.

The dashboard reads the store and writes requests; it never imports an engine or a worker.
"""

from __future__ import annotations

import hmac
import os
import time
from pathlib import Path
from typing import Any

import streamlit as st

from jobs import Job, Store
from jobs.status import JobStatus

HERE = Path(__file__).parent
#: The pages, made once so page links point at the very objects st.navigation routes to.
PAGE_JOBS = st.Page(HERE / "jobs_page.py", title="Jobs", icon=":material/list:", default=True)
PAGE_SUBMIT = st.Page(HERE / "submit_page.py", title="Submit", icon=":material/upload:")
PAGE_JOB = st.Page(HERE / "job_page.py", title="Job", icon=":material/description:", url_path="job")
PAGE_HEALTH = st.Page(HERE / "health_page.py", title="Health", icon=":material/monitor_heart:")
ACTIVE = {JobStatus.QUEUED, JobStatus.RUNNING}


@st.cache_resource
def _store(root: str) -> Store:
    return Store(root)


def get_store() -> Store:
    """One store per job folder for every session: it holds only paths and a parse cache."""
    from jobs import config

    return _store(str(config.state_dir()))


def password_ok() -> bool:
    """Optional shared password (OCRJOBS_DASHBOARD_PASSWORD) for a team that exposes the port."""
    expected = os.environ.get("OCRJOBS_DASHBOARD_PASSWORD")
    if not expected or st.session_state.get("authenticated"):
        return True
    given = st.text_input("Password", type="password")
    if given:
        if hmac.compare_digest(given.encode(), expected.encode()):
            st.session_state["authenticated"] = True
            st.rerun()
        st.error("Wrong password.")
    return False


def age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def job_row(job: Job, now: float | None = None) -> dict[str, Any]:
    now = now or time.time()
    p = job.progress()
    return {
        "id": job.id,
        "status": job.status.value,
        "progress": p["percent"],
        "done": p["done"],
        "failed": p["failed"],
        "timed out": p["timed_out"],
        "total": p["total"],
        "items/s": p["items_per_s"],
        "ETA": age(p["eta_s"]) if p["eta_s"] is not None else "—",
        "age": age(now - job.created_at),
        "priority": job.priority,
        "engine": job.spec.get("engine"),
    }


def request(store: Store, job_id: str, kind: str) -> None:
    """Write a request and say what happens next; a vanished job is a message, not a crash."""
    from jobs.errors import OcrJobsError

    try:
        store.request(job_id, kind)
    except OcrJobsError as e:
        st.error(str(e))
        return
    st.toast(f"{kind} requested for {job_id}: a runner applies it at the next item boundary")
