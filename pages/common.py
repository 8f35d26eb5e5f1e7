"""Dashboard-only helpers shared by the pages: the store, the password gate, formatting.

The dashboard reads the store and writes requests; it never imports an engine or a worker.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from jobs import Job, Store
from jobs.dashboard import gate
from jobs.store.status import JobStatus

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


def logged_in() -> bool:
    """Whether this session may see the dashboard: no password set, or it gave the password to a
    dashboard started through the gate (``python -m jobs.dashboard.gate``, ``make run``)."""
    if not gate.password():
        return True
    ctx = get_script_run_ctx()
    return gate.installed() and gate.logged_in(ctx.session_id if ctx else None)


def require_login() -> None:
    """The first line of every page file: a second wall behind dashboard.py's navigation."""
    if not logged_in():
        st.stop()


def login() -> None:
    """The only page a session without the password can reach (OCRJOBS_DASHBOARD_PASSWORD)."""
    st.title("ocrjobs")
    if not gate.installed():
        st.error(
            "This dashboard has a password, so it only serves when started through its gate: "
            "`make run` or `python -m jobs.dashboard.gate`, not `streamlit run dashboard.py`."
        )
        return
    with st.form("login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if not submitted or not given:
        return
    try:
        ok = gate.check_password(given, gate.password() or "")
    except gate.GateError as e:
        st.error(str(e))
        return
    if not ok:
        st.error("Wrong password.")
        return
    ctx = get_script_run_ctx()
    if ctx is not None:
        gate.log_in(ctx.session_id, dict(st.context.cookies))
    st.rerun()


PAGE_LOGIN = st.Page(login, title="Log in", icon=":material/lock:", url_path="login", default=True)


def login_pages() -> list[Any]:
    """The navigation of a session without the password: the login page, under every page's URL too,
    so a link to /job?id=... asks for the password and then opens that job."""
    aliases = [st.Page(login, title="Log in", url_path=p.url_path) for p in (PAGE_SUBMIT, PAGE_JOB, PAGE_HEALTH)]
    return [PAGE_LOGIN, *aliases]


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
    from pages.literal import md_text

    try:
        store.request(job_id, kind)
    except OcrJobsError as e:
        st.error(md_text(str(e)))
        return
    st.toast(f"{kind} requested for {job_id}: a runner applies it at the next item boundary")
