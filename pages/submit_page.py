"""Submit: upload files, choose how to OCR them, get a link to the new job."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from jobs import config
from jobs.engines.registry import ENGINES
from jobs.errors import OcrJobsError
from jobs.inputs import SUPPORTED
from jobs.submit import JobSpec, submit
from pages.common import PAGE_JOB, get_store

store = get_store()
st.title("Submit")

uploads = st.file_uploader(
    "Images, PDFs or ZIPs of them",
    type=[ext.lstrip(".") for ext in SUPPORTED],
    accept_multiple_files=True,
    help="Every image, PDF page and file inside a ZIP becomes one item.",
)
c1, c2 = st.columns(2)
engine = c1.selectbox("Engine", [*ENGINES, "custom (import path)"], index=list(ENGINES).index(config.DEFAULT_ENGINE))
if engine == "custom (import path)":
    engine = c1.text_input("Engine import path", placeholder="package.module:ClassName").strip()
priority = c2.number_input("Priority (higher runs first)", value=config.DEFAULT_PRIORITY, step=1)
c3, c4 = st.columns(2)
item_timeout = c3.number_input(
    "Item timeout (s)", min_value=1.0, max_value=86400.0, value=config.DEFAULT_ITEM_TIMEOUT_S, step=10.0
)
dpi = c4.number_input("PDF dpi", min_value=36, max_value=1200, value=config.DEFAULT_DPI, step=50)

if st.button("Submit", type="primary", disabled=not uploads):
    spec = JobSpec(engine=engine, item_timeout=float(item_timeout), dpi=int(dpi))
    with tempfile.TemporaryDirectory(prefix="ocrjobs-upload-") as tmp:
        paths = []
        for n, up in enumerate(uploads or []):
            dest = Path(tmp) / f"{n:03d}" / Path(up.name).name  # keep the user's file name, never a path
            dest.parent.mkdir()
            dest.write_bytes(up.getbuffer())
            paths.append(dest)
        try:
            job_id = submit(store, paths, spec, priority=int(priority))
        except OcrJobsError as e:
            st.error(str(e))
        else:
            st.session_state["last_submitted"] = job_id

if job_id := st.session_state.get("last_submitted"):
    total = store.get(job_id).total
    st.success(f"Submitted job {job_id} with {total} item(s).")
    st.page_link(PAGE_JOB, label=f"Open job {job_id}", query_params={"id": job_id}, icon=":material/arrow_forward:")
