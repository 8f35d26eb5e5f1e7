"""ocrjobs dashboard entry point: routes between the pages and shows runner health in the sidebar.

The dashboard only reads the store and writes requests; it never runs OCR (the runner does).
The full Submit / Jobs / Job / Health pages arrive with the dashboard issue.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from jobs import Store
from jobs.health import check

HERE = Path(__file__).parent


@st.cache_resource
def get_store() -> Store:
    return Store()


st.set_page_config(page_title="ocrjobs", layout="wide")
page = st.navigation([st.Page(HERE / "pages" / "jobs_overview.py", title="Jobs", default=True)])
with st.sidebar:
    report = check(get_store())
    st.markdown(f"**Health:** {report['status']}")
    for reason in report["reasons"]:
        st.caption(reason)
page.run()
