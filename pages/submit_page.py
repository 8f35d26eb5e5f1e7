"""Submit: upload files, choose how to OCR them, get a link to the new job."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from jobs import config
from jobs.engines import allow
from jobs.engines.allow import HOW_TO_ALLOW
from jobs.errors import OcrJobsError
from jobs.intake import excel
from jobs.intake.inputs import SUPPORTED
from jobs.intake.submit import JobSpec, submit, submit_table
from pages.common import PAGE_JOB, get_store, require_login
from pages.literal import md_text

require_login()  # the password gate, before anything reads the store
store = get_store()
st.title("Submit")

uploads = st.file_uploader(
    "Images, PDFs or ZIPs of them — or one workbook (.xlsx, .xlsm, .csv)",
    type=[ext.lstrip(".") for ext in [*SUPPORTED, *sorted(excel.TABLE_EXTS)]],
    accept_multiple_files=True,
    help="Every image, PDF page and file inside a ZIP becomes one item; "
    "for a workbook, every row of the column you choose.",
)
c1, c2 = st.columns(2)
try:  # only what this dashboard's runners' operator allowed (OCRJOBS_ALLOWED_ENGINES, entry points)
    allowed, modules = allow.choices(), [w.removesuffix(":*") for w in allow.wildcards()]
except OcrJobsError as e:
    st.error(str(e))
    st.stop()
OTHER = "custom (import path)"  # offered only for a package.module:* entry
engine = c1.selectbox(
    "Engine", [*allowed, *([OTHER] if modules else [])], index=allowed.index(config.DEFAULT_ENGINE), help=HOW_TO_ALLOW
)
if engine == OTHER:
    engine = c1.text_input("Engine import path", placeholder=f"{modules[0]}:ClassName").strip()
    try:
        if engine:
            allow.resolve(engine)
    except OcrJobsError as e:
        st.error(str(e))
priority = c2.number_input("Priority (higher runs first)", value=config.DEFAULT_PRIORITY, step=1)
c3, c4 = st.columns(2)
item_timeout = c3.number_input(
    "Item timeout (s)", min_value=1.0, max_value=86400.0, value=config.DEFAULT_ITEM_TIMEOUT_S, step=10.0
)
dpi = c4.number_input("PDF dpi", min_value=36, max_value=1200, value=config.DEFAULT_DPI, step=50)
engine_options: dict = {}
if engine == "transformers":  # the CLI's --model, --batch-size, --max-new-tokens, --device, --trust-remote-code
    st.subheader("Transformers model")
    model = st.text_input(
        "Model", placeholder="/models/trocr-base-printed or microsoft/trocr-base-printed (already downloaded)"
    ).strip()
    t1, t2, t3 = st.columns(3)
    batch = t1.text_input("Batch size", value="auto", help="images per batch; auto grows while GPU memory allows")
    max_new = t2.number_input("Max new tokens", min_value=1, max_value=8192, value=128, step=16)
    device = t3.selectbox("Device", ["auto", "cuda", "cpu"])
    remote = st.checkbox("Trust remote code", help="allow a model that ships its own Python code (Florence-2...)")
    engine_options = {
        "model": model,
        "batch_size": int(batch) if batch.strip().isdigit() else batch.strip(),
        "max_new_tokens": int(max_new),
        "device": device,
        **({"trust_remote_code": True} if remote else {}),
    }


@st.cache_data(max_entries=8, show_spinner=False)
def _inspect(name: str, data: bytes, header_row: int) -> dict:
    """jobs.intake.excel.inspect on an upload (the CLI's `inspect`), cached per file and header row."""
    with tempfile.TemporaryDirectory(prefix="ocrjobs-inspect-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        return excel.inspect(path, header_row=header_row, preview=5)


book = next((u for u in uploads or [] if Path(u.name).suffix.lower() in excel.TABLE_EXTS), None)
table: dict = {}
if book is not None:
    st.subheader(f"Workbook {md_text(book.name)}")
    header_row = int(st.number_input("Header row (0: no header)", min_value=0, max_value=10_000, value=1))
    try:
        info = _inspect(book.name, book.getvalue(), header_row)
    except OcrJobsError as e:
        st.error(md_text(e))  # it may quote sheet names and cells
    else:
        sheets = {sh["name"]: sh for sh in info["sheets"]}
        sheet = sheets[st.selectbox("Sheet", list(sheets))]
        labels = {
            f"{c['letter']}  {c['header']}" + (f"  ({c['images']} pictures)" if c["images"] else ""): c["letter"]
            for c in sheet["columns"]
        }
        column = labels.get(st.selectbox("Column naming the files (or holding the pictures)", list(labels)) or "")
        st.caption(f"{sheet['rows']} data row(s); first rows:")
        if sheet["preview"]:
            st.dataframe([dict(zip(labels.values(), row, strict=False)) for row in sheet["preview"]], hide_index=True)
        zip_upload = st.file_uploader("ZIP of the files the column names (paths relative to it)", type=["zip"])
        table = {"sheet": sheet["name"], "column": column, "header_row": header_row, "zip": zip_upload}

if st.button("Submit", type="primary", disabled=not uploads):
    spec = JobSpec(engine=engine, engine_options=engine_options, item_timeout=float(item_timeout), dpi=int(dpi))
    with tempfile.TemporaryDirectory(prefix="ocrjobs-upload-") as tmp:
        paths = []
        for n, up in enumerate(uploads or []):
            dest = Path(tmp) / f"{n:03d}" / Path(up.name).name  # keep the user's file name, never a path
            dest.parent.mkdir()
            dest.write_bytes(up.getbuffer())
            paths.append(dest)
        try:
            if book is not None:
                if len(paths) != 1:
                    raise OcrJobsError("submit a workbook on its own; put the files it names in the ZIP below it")
                images = None
                if table.get("zip") is not None:
                    images = Path(tmp) / "images" / Path(table["zip"].name).name
                    images.parent.mkdir()
                    images.write_bytes(table["zip"].getbuffer())
                job_id = submit_table(
                    store,
                    paths[0],
                    sheet=table.get("sheet"),
                    column=table.get("column"),
                    header_row=table.get("header_row", 1),
                    images=images,
                    spec=spec,
                    priority=int(priority),
                )
            else:
                job_id = submit(store, paths, spec, priority=int(priority))
        except OcrJobsError as e:
            st.error(md_text(e))  # it may quote file and ZIP member names
        else:
            st.session_state["last_submitted"] = job_id

if job_id := st.session_state.get("last_submitted"):
    total = store.get(job_id).total
    st.success(f"Submitted job {job_id} with {total} item(s).")
    st.page_link(PAGE_JOB, label=f"Open job {job_id}", query_params={"id": job_id}, icon=":material/arrow_forward:")
