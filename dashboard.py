"""ocrjobs dashboard: routes between the pages and shows runner health in the sidebar.

Run with `make run`. The dashboard only reads the store and writes requests; the runner does
all OCR, so nothing here blocks on a model.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from jobs.health import check
from pages.common import get_store, password_ok

HERE = Path(__file__).parent

st.set_page_config(page_title="ocrjobs", page_icon=":material/document_scanner:", layout="wide")
if not password_ok():
    st.stop()

page = st.navigation(
    [
        st.Page(HERE / "pages" / "jobs_page.py", title="Jobs", icon=":material/list:", default=True),
        st.Page(HERE / "pages" / "submit_page.py", title="Submit", icon=":material/upload:"),
        st.Page(HERE / "pages" / "job_page.py", title="Job", icon=":material/description:", url_path="job"),
        st.Page(HERE / "pages" / "health_page.py", title="Health", icon=":material/monitor_heart:"),
    ]
)


@st.fragment(run_every="5s")
def sidebar_status() -> None:
    report = check(get_store())
    runners = report["runners"]
    alive = sum(r["state"] == "alive" for r in runners)
    stale = sum(r["state"] == "stale" for r in runners)
    icon = {"ok": "🟢", "degraded": "🟠", "down": "🔴"}[report["status"]]
    st.markdown(f"{icon} **{report['status']}** · runners: {alive} alive" + (f", {stale} stale" if stale else ""))
    st.caption(f"queue: {report['backlog_items']} items waiting")


with st.sidebar:
    sidebar_status()
page.run()
