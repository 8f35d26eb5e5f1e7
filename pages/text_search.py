"""The Jobs page's search inside the recognised text of every job (the CLI's ``ocrjobs search``).

Hits come ranked from the derived index (jobs/store/search.py), each with its job, source, page and a
snippet whose matches are bold; the text is untrusted, so every piece goes through ``md_text`` and the
bold marks are the only markup. The query lives in the URL (``?text=...``), like the other filters.
"""

from __future__ import annotations

import streamlit as st

from jobs.errors import OcrJobsError
from jobs.store import Store
from jobs.store.search import Hit, search
from pages.common import PAGE_JOB
from pages.literal import md_text

LIMIT = 20


def snippet(hit: Hit) -> str:
    """The snippet as literal text with its matches in bold."""
    out, at = [], 0
    for start, end in sorted(hit.highlights):
        if start < at:
            continue
        out += [md_text(hit.snippet[at:start], 400), "**" + md_text(hit.snippet[start:end], 200) + "**"]
        at = end
    out.append(md_text(hit.snippet[at:], 400))
    return "".join(out).replace("  \n", " ")


def box(store: Store) -> None:
    """A search field; below it, up to ``LIMIT`` hits linking to their job's page."""
    if "f-text" not in st.session_state:
        st.session_state["f-text"] = st.query_params.get("text", "")[:200]
    st.subheader("Search inside the recognised text", anchor=False)
    query = st.text_input(
        "Words to find",
        placeholder="e.g. invoice 4711 (any language; all words must occur)",
        key="f-text",
    ).strip()
    if query:
        st.query_params["text"] = query
    elif "text" in st.query_params:
        del st.query_params["text"]
    if not query:
        return
    try:
        found = search(store, query, limit=LIMIT)
    except OcrJobsError as e:
        st.error(md_text(str(e)))
        return
    for note in found.notes:
        st.caption(md_text(note))
    if not found.hits:
        st.info(f"No item's text holds {md_text(query, 200)}.")
        return
    st.caption(f"{len(found.hits)} best match(es)" + (" (the first 20)" if len(found.hits) == LIMIT else ""))
    for hit in found.hits:
        where = f"{hit.source}" + (f" p{hit.page}" if hit.page else "") + f" · item {hit.item}"
        name = f"{hit.job_name} · " if hit.job_name else ""
        c1, c2 = st.columns([2, 3])
        c1.page_link(PAGE_JOB, label=md_text(f"{name}{hit.job_id}", 160), query_params={"id": hit.job_id})
        c2.markdown(f"{md_text(where, 300)}  \n{snippet(hit)}")
