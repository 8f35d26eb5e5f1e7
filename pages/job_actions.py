"""The Job page's actions and what goes with them: the buttons by status, the confirmation dialog
for cancel and delete, what happens next after a request, the progress bar in the status's colour,
and when another runner takes an orphaned job over."""

from __future__ import annotations

from typing import Any

import streamlit as st

from jobs import Job
from jobs.store.clock import milestones
from jobs.store.job import queue_places
from jobs.store.status import JobStatus
from pages.bulk import hide_deleted
from pages.common import ACTIVE, CSS_COLOR, PAGE_JOBS, STATUS_COLOR, age, get_store, request

DESTRUCTIVE = {"cancel", "delete"}


def actions(job: Job) -> None:
    """The requests a user may make for this job, by its status; cancel and delete ask first, in a dialog."""
    allowed = {
        "pause": job.status in ACTIVE,
        "resume": job.status == JobStatus.PAUSED,
        "retry": job.status in {JobStatus.FAILED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.CANCELLED},
        "cancel": not job.status.is_terminal,
        "delete": True,
    }
    shown = [kind for kind, ok in allowed.items() if ok]
    cols = st.columns(len(shown) + 3)
    for col, kind in zip(cols, shown, strict=False):
        label = "Retry failed items" if kind == "retry" and job.status != JobStatus.CANCELLED else kind.capitalize()
        if not col.button(label, key=f"act-{kind}"):
            continue
        if kind in DESTRUCTIVE:  # the dialog opens in the full run, so a refresh of this fragment keeps it open
            st.session_state["confirm"] = (kind, job.id)
            st.rerun(scope="app")
        elif request(get_store(), job.id, kind):
            st.session_state["done_action"] = (kind, job.id, job.status)
    done = st.session_state.get("done_action")
    if done and done[1] == job.id and done[2] == job.status:  # until the runner applies it
        st.success(WHAT_NEXT[done[0]])
    if job.status in (JobStatus.QUEUED, JobStatus.PAUSED):
        priority_control(job)


def priority_control(job: Job) -> None:
    """A waiting job's place in the queue and a way to move it: a priority request the runner applies."""
    from jobs.errors import OcrJobsError
    from pages.literal import md_text

    store = get_store()
    place = queue_places(store.list_jobs()).get(job.id)
    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    new = c1.number_input("Priority (higher runs first)", value=job.priority, step=1, key=f"prio-{job.id}")
    if c2.button("Change priority", key="act-priority", disabled=int(new) == job.priority):
        try:
            store.request(job.id, "priority", priority=int(new))
        except OcrJobsError as e:
            st.error(md_text(str(e)))
        else:
            st.toast(
                f"priority {int(new)} requested for {job.id}: a runner applies it within a second or two", icon="✅"
            )
    c3.caption(f"#{place} in the queue" if place else "paused: not in the queue until resumed")


#: What a user is told after asking, until the job's status changes.
WHAT_NEXT = {
    "pause": "Pause requested: the runner stops after the items in flight; Resume continues from there.",
    "resume": "Resume requested: the job goes back to the queue and continues after its last committed item.",
    "retry": "Retry requested: the failed, timed-out and unfinished items go back to the queue; done ones are kept.",
}


def _dismiss() -> None:
    st.session_state["confirm"] = None


@st.dialog("Please confirm", on_dismiss=_dismiss)
def confirm(kind: str, job_id: str) -> None:
    """Cancel or delete, asked in a modal that closes with the answer (a full rerun)."""
    what = {
        "cancel": "Its items not yet done stay pending; the results so far are kept.",
        "delete": "Its files and results are removed; this cannot be undone.",
    }[kind]
    st.markdown(f"**{kind.capitalize()} job {job_id}?** {what}")
    yes, no = st.columns(2)
    if yes.button(f"Yes, {kind}", key="confirm-yes", type="primary", width="stretch"):
        st.session_state["confirm"] = None
        if request(get_store(), job_id, kind) and kind == "delete":
            hide_deleted(job_id)
            st.session_state["flash"] = f"delete requested for {job_id}: a runner removes it"
            st.switch_page(PAGE_JOBS)
        st.rerun()
    if no.button("No", key="confirm-no", width="stretch"):
        st.session_state["confirm"] = None
        st.rerun()


def progress_bar(job: Job, percent: float, text: str) -> None:
    """st.progress in the status's colour (red only for a failed job): a CSS rule for a keyed container."""
    color = STATUS_COLOR[job.status]
    with st.container(key=f"progress-{color}"):
        st.progress(percent / 100, text=text)
    st.html(
        f"<style>.st-key-progress-{color} [data-testid='stProgressBarTrack'] > div"
        f"{{background-color: {CSS_COLOR[color]};}}</style>"
    )


def takeover(evidence: dict[str, Any], lease_s: float) -> str:
    """When another runner takes an orphaned job over: a runner takes a lease it has seen unchanged for
    one lease period (jobs/store/lease_watch.py), and only while it has no job of its own."""
    alive, idle = evidence.get("runners_alive", 0), evidence.get("runners_idle", 0)
    if not alive:
        return f"No runner is running: the next one started takes it over within {lease_s:.0f} s and resumes it."
    if idle:
        return f"An idle runner takes it over within {lease_s:.0f} s of first seeing the expired lease."
    return f"All {alive} runner(s) are busy with other jobs: the first to finish takes this one over."


def times(job: Job) -> str:
    """Submitted, started, finished and how long it took, for the line under the job's heading."""
    started, finished = job.state.get("started_at"), job.state.get("finished_at")
    by = f" by {job.submitted_by}" if job.submitted_by else ""
    return milestones(job.created_at, started, finished, took=age, submitted=f"submitted{by}")
