"""What the Job page shows of a job's items: its manifest and results, read once per session and then
only what is new, each item with its result merged in, and the item a link names."""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from jobs import Job
from jobs.store.store import Store
from pages.literal import md_text


def results(store: Store, job: Job) -> dict[int, dict[str, Any]]:
    """The job's results, reading only the files committed since this session's last look: one
    scandir of the names, then the store's validated reader for each new one. A retry moves failed
    results aside (its ``round`` changes), a runner sets a bad one aside: names gone are dropped."""
    key = (job.id, job.state.get("round", 0), job.total)
    cached = st.session_state.get("job_results")
    if cached is None or cached[0] != key:
        cached = st.session_state["job_results"] = (key, {})
    known: dict[int, dict[str, Any]] = cached[1]
    try:
        with os.scandir(store.results_dir(job.id)) as it:
            names = {int(e.name[:-5]) for e in it if e.name.endswith(".json") and e.name[:-5].isdigit()}
    except (FileNotFoundError, NotADirectoryError):
        names = set()
    for gone in known.keys() - names:
        del known[gone]
    for index in sorted(names - known.keys()):
        if index < job.total and (res := store.result(job.id, index)) is not None:
            known[index] = res
    return known


def linked_item(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The item a ``?item=N`` link names (the URL is anyone's: only a plain index in range counts)."""
    wanted = st.query_params.get("item")
    if wanted is None:
        return None
    if not (wanted.isdigit() and int(wanted) < len(items)):
        st.warning(f"This job has no item {md_text(wanted[:20])}: it has items 0 to {len(items) - 1}.")
        return None
    return items[int(wanted)]


def manifest(store: Store, job: Job) -> list[dict[str, Any]]:
    """The job's items, read once per session (a job's manifest never changes)."""
    cached = st.session_state.get("job_manifest")
    if cached is None or cached[0] != job.id:
        cached = st.session_state["job_manifest"] = (job.id, store.manifest(job.id))
    return cached[1]


def row(item: dict[str, Any], res: dict[str, Any] | None) -> dict[str, Any]:
    """An item with its result merged in, as Store.items() gives it (status 'pending' if none)."""
    out = {"index": item["index"], "source": item["source"], "page": item.get("page")}
    if res is None:
        out.update(status="pending", text="", confidence=None, error=None)
    else:
        out.update({k: v for k, v in res.items() if k not in out})
    return out
