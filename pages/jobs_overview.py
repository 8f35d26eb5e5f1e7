"""A read-only list of jobs (placeholder until the dashboard issue builds the full pages)."""

from __future__ import annotations

import streamlit as st

from jobs import Store

store = Store()
st.title("Jobs")
st.caption(f"Job folder: {store.root}. Submit with `python -m jobs submit FILE...`.")
rows = [
    {"id": j.id, "status": j.status.value, **{k: j.progress()[k] for k in ("total", "done", "failed", "timed_out")}}
    for j in store.list_jobs()
]
if rows:
    st.dataframe(rows, hide_index=True, width="stretch")
else:
    st.info("No jobs yet.")
