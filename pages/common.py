"""Dashboard-only helpers shared by the pages: the store, the password gate, formatting.

The dashboard reads the store and writes requests; it never imports an engine or a worker.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from jobs import Job, Store
from jobs.dashboard import gate
from jobs.store.status import JobStatus

HERE = Path(__file__).parent
#: The pages, made once so page links point at the very objects st.navigation routes to.
PAGE_JOBS = st.Page(HERE / "jobs_page.py", title="Jobs", icon=":material/list:", default=True)
PAGE_SUBMIT = st.Page(HERE / "submit_page.py", title="Submit", icon=":material/upload:")
PAGE_JOB = st.Page(HERE / "job_page.py", title="Job", icon=":material/description:", url_path="job")
PAGE_HEALTH = st.Page(HERE / "health_page.py", title="Health", icon=":material/monitor_heart:")
ACTIVE = {JobStatus.QUEUED, JobStatus.RUNNING}


@st.cache_resource
def _store(root: str) -> Store:
    return Store(root)


def get_store() -> Store:
    """One store per job folder for every session: it holds only paths and a parse cache."""
    from jobs import config

    return _store(str(config.state_dir()))


def logged_in() -> bool:
    """Whether this session may see the dashboard: no password set, or it gave the password to a
    dashboard started through the gate (``python -m jobs.dashboard.gate``, ``make run``)."""
    if not gate.password():
        return True
    ctx = get_script_run_ctx()
    return gate.installed() and gate.logged_in(ctx.session_id if ctx else None)


def require_login() -> None:
    """The first line of every page file: a second wall behind dashboard.py's navigation."""
    if not logged_in():
        st.stop()


def login() -> None:
    """The only page a session without the password can reach (OCRJOBS_DASHBOARD_PASSWORD)."""
    st.title("ocrjobs")
    if not gate.installed():
        st.error(
            "This dashboard has a password, so it only serves when started through its gate: "
            "`make run` or `python -m jobs.dashboard.gate`, not `streamlit run dashboard.py`."
        )
        return
    with st.form("login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if not submitted or not given:
        return
    try:
        ok = gate.check_password(given, gate.password() or "")
    except gate.GateError as e:
        st.error(str(e))
        return
    if not ok:
        st.error("Wrong password.")
        return
    ctx = get_script_run_ctx()
    if ctx is not None:
        gate.log_in(ctx.session_id, dict(st.context.cookies))
    st.rerun()


PAGE_LOGIN = st.Page(login, title="Log in", icon=":material/lock:", url_path="login", default=True)


def login_pages() -> list[Any]:
    """The navigation of a session without the password: the login page, under every page's URL too,
    so a link to /job?id=... asks for the password and then opens that job."""
    aliases = [st.Page(login, title="Log in", url_path=p.url_path) for p in (PAGE_SUBMIT, PAGE_JOB, PAGE_HEALTH)]
    return [PAGE_LOGIN, *aliases]


def age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


#: What a person reads for each status: words (never the enum value ``completed_with_errors``)
#: after a dot that :func:`coloured` paints in the status's colour, row by row.
DOT = "●"
#: Streamlit's named colours, for badges and the Job page's progress bar.
STATUS_COLOR = {
    JobStatus.QUEUED: "gray",
    JobStatus.RUNNING: "blue",
    JobStatus.PAUSED: "orange",
    JobStatus.SUCCEEDED: "green",
    JobStatus.COMPLETED_WITH_ERRORS: "orange",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "gray",
}


def status_words(status: JobStatus) -> str:
    """``completed_with_errors`` -> ``completed with errors``."""
    return status.value.replace("_", " ")


def status_label(status: JobStatus) -> str:
    return f"{DOT} {status_words(status)}"


#: The status colours as CSS (Streamlit's own palette), for table cells and the progress bar.
CSS_COLOR = {"gray": "#808495", "blue": "#1c83e1", "orange": "#e07b00", "green": "#21a354", "red": "#ff4b4b"}
_WORD_COLOR = {status_words(s): CSS_COLOR[c] for s, c in STATUS_COLOR.items()} | {
    "alive": CSS_COLOR["green"],
    "stale": CSS_COLOR["orange"],
    "dead": CSS_COLOR["gray"],
}


def coloured(rows: list[dict[str, Any]], column: str) -> Any:
    """``rows`` as a table whose ``column`` cells (``● words``) are painted in their status's colour:
    one ProgressColumn or emoji cannot colour row by row, a Styler can (and any font has the dot)."""
    import pandas as pd

    def paint(cell: Any) -> str:
        words = str(cell).removeprefix(f"{DOT} ").split(" (")[0]
        return f"color: {_WORD_COLOR[words]}" if words in _WORD_COLOR else ""

    return pd.DataFrame(rows).style.map(paint, subset=[column]).format(na_rep="")  # a blank, never "nan"


def orphaned(job: Job, now: float | None = None) -> bool:
    """Running under a lease that expired (past the diagnosis's grace): nobody is working on it, so
    it has no rate and no ETA (a rate over a growing wall time would make the ETA grow for ever)."""
    from jobs.ops.diagnose import ORPHAN_GRACE_S

    if job.status != JobStatus.RUNNING:
        return False
    expires = float((job.lease or {}).get("expires_at") or 0)
    return (now or time.time()) - expires > ORPHAN_GRACE_S


def job_row(job: Job, now: float | None = None) -> dict[str, Any]:
    """One row of the Jobs table. Age and ETA are seconds (numbers, so they sort as numbers; the
    table formats them); a value that does not apply is None (the table shows a blank)."""
    now = now or time.time()
    p = job.progress()
    lost = orphaned(job, now)
    return {
        "id": job.id,
        "name": job.name or None,
        "by": job.submitted_by or None,
        "status": status_label(job.status) + (" (orphaned)" if lost else ""),
        "progress": p["percent"],
        "done": p["done"],
        "failed": p["failed"],
        "timed out": p["timed_out"],
        "total": p["total"],
        "items/s": None if lost else p["items_per_s"],
        "workers": None if lost else p["workers"],
        "ETA": None if lost else p["eta_s"],
        "age": max(0.0, now - job.created_at),
        "submitted": _local(job.created_at),
        "finished": _local(job.state.get("finished_at")),
        "priority": job.priority,
        "engine": job.spec.get("engine"),
    }


def _local(t: Any) -> datetime | None:
    """A time the table shows with its date and UTC offset, in the dashboard machine's time zone."""
    return datetime.fromtimestamp(t).astimezone() if isinstance(t, int | float) and t > 0 else None


#: The Jobs table's columns: numbers stay numbers (they sort as numbers), shown for people.
JOB_COLUMNS = {
    "progress": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100, color="blue"),
    "items/s": st.column_config.NumberColumn("items/s", format="%.2f"),
    "workers": st.column_config.NumberColumn("workers", format="%d", help="workers on a running job now"),
    "ETA": st.column_config.NumberColumn("ETA", format="duration", help="time left at the current rate"),
    "age": st.column_config.NumberColumn("age", format="duration", help="since it was submitted"),
    "queue": st.column_config.NumberColumn("queue", format="#%d", help="place in line of a queued job"),
    "submitted": st.column_config.DatetimeColumn("submitted", format="YYYY-MM-DD HH:mm Z"),
    "finished": st.column_config.DatetimeColumn("finished", format="YYYY-MM-DD HH:mm Z"),
}


def request(store: Store, job_id: str, kind: str) -> bool:
    """Write a request and say what happens next; a vanished job is a message, not a crash."""
    from jobs.errors import OcrJobsError
    from pages.literal import md_text

    try:
        store.request(job_id, kind)
    except OcrJobsError as e:
        st.error(md_text(str(e)))
        return False
    st.toast(f"{kind} requested for {job_id}: a runner applies it at the next item boundary", icon="✅")
    return True


_SERVICE = re.compile(r"`systemctl (start|restart) ocrjobs-runner`")
_JOURNAL = re.compile(r"`journalctl -u ocrjobs-runner`")


def for_any_setup(advice: str) -> str:
    """Advice written for a runner installed as a service, worded for a `make run` user as well
    (the runner is then the background process of that terminal)."""
    how = {"start": "`make run`", "restart": "stop `make run` (Ctrl-C) and run it again"}
    advice = _SERVICE.sub(lambda m: f"{how[m[1]]}, or `systemctl {m[1]} ocrjobs-runner` for a service", advice)
    return _JOURNAL.sub("the `make run` terminal (or `journalctl -u ocrjobs-runner` for a service)", advice)


def line_chart(
    data: Any,
    x: str,
    y: str,
    *,
    x_type: str,
    color: str | None = None,
    height: int = 200,
    x_domain: list[float] | None = None,
) -> None:
    """A plain Vega-Lite line chart with its scales' domains given. Streamlit draws a chart before
    its data arrives, so a domain Vega computes from the data starts empty: "Infinite extent" in the
    console at every refresh (st.line_chart adds a hover layer that is empty until a hover, too)."""
    import pandas as pd

    df = pd.DataFrame(data)
    xs, ys = pd.to_numeric(df[x], errors="coerce"), pd.to_numeric(df[y], errors="coerce")
    if x_domain is None:
        x_domain = [float(xs.min()), float(xs.max())]
    y_top = float(ys.max()) if ys.notna().any() else 0.0
    encoding: dict[str, Any] = {
        "x": {"field": x, "type": x_type, "title": x, "scale": {"domain": x_domain}},
        "y": {"field": y, "type": "quantitative", "title": y, "scale": {"domain": [0, y_top * 1.1 or 1]}},
        "tooltip": [{"field": x, "type": x_type}, {"field": y, "type": "quantitative"}],
    }
    if color:
        names = sorted(df[color].astype(str).unique())
        encoding["color"] = {
            "field": color,
            "type": "nominal",
            "legend": {"orient": "bottom"},
            "scale": {"domain": names},
        }
        encoding["tooltip"].append({"field": color, "type": "nominal"})
    spec = {"mark": {"type": "line", "point": True}, "encoding": encoding, "height": height}
    st.vega_lite_chart(df, spec, width="stretch")
