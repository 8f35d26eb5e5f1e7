"""ocrjobs dashboard: routes between the pages and shows runner health in the sidebar.

Run with `make run` or `python -m jobs.dashboard.gate`: the gate (jobs/dashboard/gate.py) keeps
uploads and downloads behind OCRJOBS_DASHBOARD_PASSWORD too. The dashboard only reads the store and
writes requests; the runner does all OCR, so nothing here blocks on a model.
"""

from __future__ import annotations

import streamlit as st

from jobs.ops.health import check
from pages.common import PAGE_HEALTH, PAGE_JOB, PAGE_JOBS, PAGE_SUBMIT, get_store, logged_in, login_pages

st.set_page_config(page_title="ocrjobs", page_icon="📄", layout="wide")
if not logged_in():
    # Always route through st.navigation: a session without the password gets a navigation holding
    # only the login page (under each page's URL), so no URL (/job, /job_page, /common...) runs a page file.
    st.navigation(login_pages(), position="hidden").run()
    st.stop()

page = st.navigation([PAGE_JOBS, PAGE_SUBMIT, PAGE_JOB, PAGE_HEALTH])


@st.fragment(run_every="5s")
def sidebar_status() -> None:
    report = check(get_store())
    runners = report["runners"]
    alive = sum(r["state"] == "alive" for r in runners)
    stale = sum(r["state"] == "stale" for r in runners)
    icon = {"ok": ":green[●]", "degraded": ":orange[●]", "down": ":red[●]"}[report["status"]]
    st.markdown(f"{icon} **{report['status']}** · runners: {alive} alive" + (f", {stale} stale" if stale else ""))
    st.caption(f"queue: {report['backlog_items']} items waiting")


with st.sidebar:
    sidebar_status()
page.run()
