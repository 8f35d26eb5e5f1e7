"""Submit: upload files, choose how to OCR them, get a link to the new job."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from jobs import config
from jobs.engines import allow
from jobs.engines.allow import HOW_TO_ALLOW
from jobs.errors import OcrJobsError
from jobs.intake import excel
from jobs.intake.column_match import best_column
from jobs.intake.inputs import SUPPORTED
from jobs.intake.submit import JobSpec, submit, submit_table
from pages.common import PAGE_JOB, get_store, require_login
from pages.literal import md_text
from pages.wording import for_page

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
n1, n2 = st.columns(2)
job_name = n1.text_input("Job name (optional)", max_chars=120, placeholder="e.g. May invoices").strip()
who = n2.text_input(
    "Your name",
    value=st.session_state.get("submitter", ""),
    max_chars=64,
    help="recorded as who submitted the job (kept for this browser session); blank: 'dashboard'",
).strip()
st.session_state["submitter"] = who  # a widget's own state is dropped when the page changes: keep it here
c1, c2 = st.columns(2)
try:  # only what this dashboard's runners' operator allowed (OCRJOBS_ALLOWED_ENGINES, entry points)
    allowed, modules = allow.choices(), [w.removesuffix(":*") for w in allow.wildcards()]
except OcrJobsError as e:
    st.error(for_page(e))
    st.stop()
OTHER = "custom (import path)"
#: The transformers engine's tasks across its families (jobs/engines/hf_families.py checks each family's own).
TASKS = ["ocr", "markdown", "grounding", "table", "formula", "chart"]  # offered only for a package.module:* entry
engine = c1.selectbox(
    "Engine", [*allowed, *([OTHER] if modules else [])], index=allowed.index(config.DEFAULT_ENGINE), help=HOW_TO_ALLOW
)
if engine == OTHER:
    engine = c1.text_input("Engine import path", placeholder=f"{modules[0]}:ClassName").strip()
    try:
        if engine:
            allow.resolve(engine)
    except OcrJobsError as e:
        st.error(for_page(e))
priority = c2.number_input("Priority (higher runs first)", value=config.DEFAULT_PRIORITY, step=1)
c3, c4, c5, c6 = st.columns(4)
item_timeout = c3.number_input(
    "Item timeout (s)", min_value=1.0, max_value=86400.0, value=config.DEFAULT_ITEM_TIMEOUT_S, step=10.0
)
dpi = c4.number_input("PDF dpi", min_value=36, max_value=1200, value=config.DEFAULT_DPI, step=50)
pdf_text = c5.selectbox(
    "PDF text",
    ["auto", "ocr", "text"],
    help="auto: a PDF page whose own text covers it is read from that text (milliseconds), other pages are "
    "OCR'd; ocr: OCR every page; text: never OCR, take each page's text as it is",
)
max_workers = c6.number_input(
    "Max workers (0: no cap)",
    min_value=0,
    max_value=1000,
    value=0,
    step=1,
    help="a runner shares its workers among the jobs it holds by priority; a cap keeps this job to at most N",
)
engine_options: dict = {}
if engine == "transformers":  # the CLI's --model, --batch-size, --max-new-tokens, --device, --trust-remote-code
    st.subheader("Transformers model")
    model = st.text_input(
        "Model", placeholder="/models/trocr-base-printed or microsoft/trocr-base-printed (already downloaded)"
    ).strip()
    t1, t2, t3 = st.columns(3)
    batch = t1.text_input("Batch size", value="auto", help="images per batch; auto grows while GPU memory allows")
    max_new = t2.number_input(
        "Max new tokens",
        min_value=1,
        max_value=32768,
        value=None,
        step=16,
        placeholder="the model's default",
        help="blank: the checkpoint's own limit, else its family's (64 for a text-line model, 4096 for a page model)",
    )
    device = t3.selectbox("Device", ["auto", "cuda", "cpu"])
    t4, t5 = st.columns([1, 2])
    task = t4.selectbox(
        "Task",
        ["default", *TASKS],
        help="what the model is asked to do, in the words its family was trained on; a task the model's family "
        "does not know is refused with the ones it does",
    )
    prompt = t5.text_input("Prompt (optional)", help="replaces the family's own prompt for the task").strip()
    remote = st.checkbox("Trust remote code", help="allow a model that ships its own Python code (DeepSeek-OCR v1...)")
    engine_options = {
        "model": model,
        "batch_size": int(batch) if batch.strip().isdigit() else batch.strip(),
        "device": device,
        **({"max_new_tokens": int(max_new)} if max_new else {}),
        **({"task": task} if task != "default" else {}),
        **({"prompt": prompt} if prompt else {}),
        **({"trust_remote_code": True} if remote else {}),
    }
elif engine == "ppocr":
    st.subheader("PP-OCR models")
    p1, p2, p3 = st.columns([2, 2, 1])
    det = p1.text_input("Detection model folder", placeholder="/models/PP-OCRv5_server_det").strip()
    rec = p2.text_input("Recognition model folder", placeholder="/models/PP-OCRv5_server_rec").strip()
    device = p3.selectbox("Device", ["auto", "cuda", "cpu"])
    engine_options = {"det_model": det, "rec_model": rec, "device": device}


def _best_column(book: UploadedFile, sheet: str, header_row: int, images: UploadedFile | None) -> str | None:
    """The column whose first rows name files in the ZIP (or under the allowed folders), worked out
    once per workbook, sheet, header row and ZIP (the uploads are written to a temporary folder)."""
    key = (book.file_id, sheet, header_row, images.file_id if images is not None else None)
    cache = st.session_state.setdefault("best_column", {})
    if key not in cache:
        with tempfile.TemporaryDirectory(prefix="ocrjobs-match-") as tmp:
            path = Path(tmp) / Path(book.name).name
            path.write_bytes(book.getbuffer())
            zip_path = None
            if images is not None:
                zip_path = Path(tmp) / "images.zip"
                zip_path.write_bytes(images.getbuffer())
            cache.clear()  # one entry: the current choice
            cache[key] = best_column(path, sheet, header_row, zip_path)
    return cache[key]


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
        st.error(md_text(for_page(e)))  # it may quote sheet names and cells
    else:
        sheets = {sh["name"]: sh for sh in info["sheets"]}
        sheet = sheets[st.selectbox("Sheet", list(sheets))]
        zip_upload = st.file_uploader("ZIP of the files the column names (paths relative to it)", type=["zip"])
        labels = {
            f"{c['letter']}  {c['header']}" + (f"  ({c['images']} pictures)" if c["images"] else ""): c["letter"]
            for c in sheet["columns"]
        }
        try:
            best = _best_column(book, sheet["name"], header_row, zip_upload)
        except OcrJobsError as e:
            st.error(md_text(for_page(e)))
            best = None
        best = best or next((c["letter"] for c in sheet["columns"] if c["images"]), None)
        letters = list(labels.values())
        column = labels.get(
            st.selectbox(
                "Column naming the files (or holding the pictures)",
                list(labels),
                index=letters.index(best) if best in letters else 0,
                help="Preselected: the column whose first rows name files in the ZIP (or pictures).",
            )
            or ""
        )
        if best and column == best:
            st.caption(f"Column {best} names files found {'in the ZIP' if zip_upload else 'on the server'}.")
        st.caption(f"{sheet['rows']} data row(s); first rows:")
        if sheet["preview"]:
            preview = pd.DataFrame([dict(zip(letters, row, strict=False)) for row in sheet["preview"]])
            if column in preview.columns:  # the chosen column, tinted as well as ticked
                preview = preview.style.set_properties(subset=[column], **{"background-color": "rgba(28,131,225,.12)"})
            st.dataframe(
                preview,
                hide_index=True,
                column_config={
                    c["letter"]: ("✓ " if c["letter"] == column else "")
                    + (f"{c['letter']} · {c['header']}" if c["header"] else c["letter"])
                    for c in sheet["columns"]
                },
            )
        table = {"sheet": sheet["name"], "column": column, "header_row": header_row, "zip": zip_upload}

if st.button("Submit", type="primary", disabled=not uploads):
    spec = JobSpec(
        engine=engine,
        engine_options=engine_options,
        item_timeout=float(item_timeout),
        dpi=int(dpi),
        pdf_text=pdf_text,
        name=job_name,
        submitted_by=who or "dashboard",
        max_workers=int(max_workers) or None,
    )
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
            st.error(md_text(for_page(e)))  # it may quote file and ZIP member names
        else:
            st.session_state["last_submitted"] = job_id

if job_id := st.session_state.get("last_submitted"):
    total = store.get(job_id).total
    st.success(f"Submitted job {job_id} with {total} item(s).")
    st.page_link(PAGE_JOB, label=f"Open job {job_id}", query_params={"id": job_id}, icon=":material/arrow_forward:")
