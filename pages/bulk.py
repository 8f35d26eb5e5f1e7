"""Bulk actions of the Jobs page: retry every failed job, cancel or delete the selected jobs, remove
finished jobs older than N days. Each asks first, in a dialog that lists what it will touch, and
writes one request per job (the runners apply them, as for a single job)."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from jobs import Job, Store
from jobs.errors import OcrJobsError
from jobs.store.status import JobStatus
from pages.literal import md_text

RETRYABLE = {JobStatus.FAILED, JobStatus.COMPLETED_WITH_ERRORS}
#: How many ids a confirmation lists before it says "and N more".
LISTED = 8


def requests(store: Store, kind: str, job_ids: list[str]) -> tuple[int, list[str]]:
    """Write ``kind`` for each job; the count written and the messages of those refused."""
    done, refused = 0, []
    for job_id in job_ids:
        try:
            store.request(job_id, kind)
        except OcrJobsError as e:
            refused.append(f"{job_id}: {e}")
        else:
            done += 1
            if kind == "delete":
                hide_deleted(job_id)
    return done, refused


def hide_deleted(job_id: str) -> None:
    """A job this session asked to delete leaves its table at once, though a runner removes it later."""
    st.session_state.setdefault("deleting", set()).add(job_id)


def not_deleted(jobs: list[Job]) -> tuple[list[Job], int]:
    """``jobs`` less those this session asked to delete, and how many of those still wait for a runner."""
    asked: set[str] = st.session_state.get("deleting") or set()
    asked &= {j.id for j in jobs}  # removed by now: forgotten
    st.session_state["deleting"] = asked
    return [j for j in jobs if j.id not in asked], len(asked)


def ask(kind: str, job_ids: list[str], why: str) -> None:
    """Open the confirmation in the next full run (a fragment's refresh then leaves it open)."""
    st.session_state["bulk"] = (kind, job_ids, why)
    st.rerun(scope="app")


def _dismiss() -> None:
    st.session_state["bulk"] = None


@st.dialog("Please confirm", on_dismiss=_dismiss)
def confirm(store: Store, kind: str, job_ids: list[str], why: str) -> None:
    shown = ", ".join(job_ids[:LISTED]) + (f" and {len(job_ids) - LISTED} more" if len(job_ids) > LISTED else "")
    effect = {
        "cancel": "Items not yet done stay pending; results so far are kept.",
        "delete": "Their files and results are removed; this cannot be undone.",
        "retry": "Their failed and timed-out items go back to the queue.",
    }[kind]
    st.markdown(f"**{kind.capitalize()} {len(job_ids)} job(s)** ({md_text(why)}): {shown}. {effect}")
    yes, no = st.columns(2)
    if yes.button(f"Yes, {kind} {len(job_ids)}", key="bulk-yes", type="primary", width="stretch"):
        done, refused = requests(store, kind, job_ids)
        st.session_state["bulk"] = None
        st.session_state["bulk_done"] = (kind, done, refused)
        st.rerun()
    if no.button("No", key="bulk-no", width="stretch"):
        st.session_state["bulk"] = None
        st.rerun()


def report() -> None:
    """What the last bulk action did, once."""
    result = st.session_state.pop("bulk_done", None)
    if result is None:
        return
    kind, done, refused = result
    st.success(f"{kind.capitalize()} requested for {done} job(s): the runners apply it at the next item boundary.")
    for msg in refused[:LISTED]:
        st.error(md_text(msg))


def bar(store: Store, jobs: list[Job], picked: list[str]) -> None:
    """The buttons under the table: for the selected rows, for every failed job, for old finished ones."""
    failed = [j.id for j in jobs if j.status in RETRYABLE]
    c1, c2, c3, c4, c5 = st.columns([1.3, 1.3, 1.6, 1.2, 1.6], vertical_alignment="bottom")
    live = [i for i in picked if (j := _by_id(jobs, i)) is not None and not j.status.is_terminal]
    if c1.button(f"Cancel selected ({len(live)})", key="bulk-cancel", disabled=not live):
        ask("cancel", live, "selected, not finished")
    if c2.button(f"Delete selected ({len(picked)})", key="bulk-delete", disabled=not picked):
        ask("delete", picked, "selected")
    if c3.button(f"Retry all failed ({len(failed)})", key="bulk-retry", disabled=not failed):
        ask("retry", failed, "failed or completed with errors")
    days = c4.number_input("Older than (days)", min_value=0, value=30, step=1, key="bulk-days")
    old = old_finished(jobs, float(days))
    if c5.button(f"Remove finished ({len(old)})", key="bulk-old", disabled=not old):
        ask("delete", old, f"finished more than {days} day(s) ago")


def old_finished(jobs: list[Job], days: float, now: float | None = None) -> list[str]:
    cutoff = (now or time.time()) - days * 86400
    return [
        j.id
        for j in jobs
        if j.status.is_terminal and float(j.state.get("finished_at") or j.state.get("updated_at") or 0) < cutoff
    ]


def _by_id(jobs: list[Job], job_id: str) -> Any:
    return next((j for j in jobs if j.id == job_id), None)
