"""Each dashboard page through Streamlit's AppTest, on a real job folder (no browser)."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from jobs.store.lease import claim_next, commit_item, finish
from jobs.store.status import JobStatus
from tests.conftest import REPO, make_png

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("OCRJOBS_STATE", str(tmp_path / "state"))
    monkeypatch.chdir(REPO)
    return Store(tmp_path / "state")


def open_page(page: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30)
    at.run()
    at.switch_page(f"pages/{page}.py")
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def finished_job(store: Store, tmp_path: Path) -> str:
    job_id = submit(
        store,
        [make_png(tmp_path / "a.png", (50, 40)), make_png(tmp_path / "b.png", (60, 40))],
        JobSpec(engine="tests.engines:SizeEngine"),
    )
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    commit_item(store, claim, {"index": 0, "source": "a.png", "status": "done", "text": "hello world"})
    commit_item(
        store,
        claim,
        {
            "index": 1,
            "source": "b.png",
            "status": "failed",
            "text": "",
            "error": {"kind": "engine", "message": "model exploded"},
        },
    )
    finish(store, claim, JobStatus.COMPLETED_WITH_ERRORS, "1 item(s) failed")
    return job_id


def test_jobs_page_lists_jobs_with_progress(store: Store, tmp_path: Path) -> None:
    job_id = finished_job(store, tmp_path)
    at = open_page("jobs_page")
    table = at.dataframe[0].value
    assert table["id"].tolist() == [f"job?id={job_id}"]  # a link to the job's page
    assert table["progress"].tolist() == [100.0] and table["failed"].tolist() == [1]


def test_jobs_page_filters_by_status(store: Store, tmp_path: Path) -> None:
    finished_job(store, tmp_path)
    at = open_page("jobs_page")
    at.multiselect[0].set_value(["running"]).run()
    assert not at.dataframe and "No jobs match." in [i.value for i in at.info]


def test_job_page_pause_writes_a_request(store: Store, tmp_path: Path) -> None:
    job_id = submit(store, [make_png(tmp_path / "a.png")])
    at = open_page("job_page", id=job_id)
    at.button(key="act-pause").click().run()
    assert [r["kind"] for _, r in store.pending_requests(job_id)] == ["pause"]


def test_job_page_delete_needs_confirmation(store: Store, tmp_path: Path) -> None:
    job_id = submit(store, [make_png(tmp_path / "a.png")])
    at = open_page("job_page", id=job_id)
    at.button(key="act-delete").click().run()
    assert store.pending_requests(job_id) == []
    assert any(f"Delete job {job_id}?" in m.value for m in at.markdown)  # in the dialog
    at.button(key="confirm-yes").click().run()
    assert [r["kind"] for _, r in store.pending_requests(job_id)] == ["delete"]
    assert [t.value for t in at.title] == ["Jobs"]  # back to the list


def test_submit_page_uploads_and_links_to_the_job(store: Store, tmp_path: Path) -> None:
    png = make_png(tmp_path / "scan.png").read_bytes()
    at = open_page("submit_page")
    at.file_uploader[0].set_value([("scan.png", png, "image/png"), ("two.png", png, "image/png")]).run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    (job,) = store.list_jobs()
    assert job.total == 2 and job.inputs == ["scan.png", "two.png"]
    assert job.id in at.success[0].value


def test_submit_page_shows_validation_errors_inline(store: Store, tmp_path: Path) -> None:
    at = open_page("submit_page")
    at.file_uploader[0].set_value(("scan.png", make_png(tmp_path / "s.png").read_bytes(), "image/png")).run()
    at.selectbox[0].set_value("custom (import path)").run()
    next(t for t in at.text_input if t.label == "Engine import path").set_value("not a valid path").run()
    at.button[0].click().run()
    assert "unknown engine 'not a valid path'" in at.error[0].value
    assert store.list_jobs() == []


def test_job_page_shows_results_errors_and_downloads(store: Store, tmp_path: Path) -> None:
    job_id = finished_job(store, tmp_path)
    at = open_page("job_page", id=job_id)
    texts = [df.value for df in at.dataframe]
    results = texts[-1]
    assert results["text"].tolist() == ["hello world", ""]
    assert results["preview"].iloc[0].startswith("data:image/png;base64,")
    failed = next(df for df in texts if {"source", "error"} <= set(df.columns))
    assert failed["error"].tolist() == ["model exploded"]
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["json", "csv", "txt", "xlsx", "searchable pdf", "hOCR", "ALTO xml"]
    at.button[0].click().run()  # retry failed items
    assert [r["kind"] for _, r in store.pending_requests(job_id)] == ["retry"]


def test_job_page_for_a_deleted_job_says_so(store: Store, tmp_path: Path) -> None:
    finished_job(store, tmp_path)
    at = open_page("job_page", id="20990101-000000-gone00")
    assert "does not exist" in at.error[0].value


def test_health_page_without_runner_or_gpu(store: Store) -> None:
    at = open_page("health_page")
    assert "down" in at.error[0].value
    assert any("no runner is alive" in w.value for w in at.warning)
    assert any("No GPU" in c.value for c in at.caption)


def test_health_page_shows_a_live_runner(store: Store) -> None:
    hb = {"id": "box-1-aa", "pid": 1, "host": "elsewhere", "heartbeat_at": time.time(), "workers": []}
    (store.runners_dir / "box-1-aa.json").write_text(json.dumps(hb))
    at = open_page("health_page")
    assert at.dataframe[0].value["state"].tolist() == ["● alive"]


def test_health_page_raises_a_gpu_memory_alert(store: Store) -> None:
    from jobs.ops.gpu import gpu_stats
    from tests.fakes import FakeNvml, write_heartbeat

    write_heartbeat(store, "gpu-box", gpu=gpu_stats(FakeNvml(used_mib=15800, total_mib=16000)))
    at = open_page("health_page")
    assert any("GPU" in w.value and "memory" in w.value for w in at.warning), [w.value for w in at.warning]
    gpus = next(df.value for df in at.dataframe if "runner" in df.value.columns and "name" in df.value.columns)
    assert gpus["runner"].tolist() == ["gpu-box"]


def test_job_page_shows_the_diagnosis_of_an_orphaned_job(store: Store) -> None:
    from tests.fakes import running_state, write_job

    job_id = write_job(store, state=running_state("gone-runner", expires_in=-120))
    at = open_page("job_page", id=job_id)
    assert any("Orphaned" in e.value for e in at.error), [e.value for e in at.error]


def gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard as `python -m jobs.dashboard.gate` starts it, with no session logged in yet."""
    from jobs.dashboard import gate as dashboard_gate

    monkeypatch.setattr(dashboard_gate._state, "installed", True)
    monkeypatch.setattr(dashboard_gate._state, "sessions", {})
    monkeypatch.setattr(dashboard_gate, "FAILURE_DELAY_S", 0.0)


def test_the_shared_password_gates_every_page(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate(monkeypatch)
    monkeypatch.setenv("OCRJOBS_DASHBOARD_PASSWORD", "s3cret")
    job_id = finished_job(store, tmp_path)
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30)
    at.query_params["id"] = job_id
    at.run()
    assert [t.value for t in at.title] == ["ocrjobs"] and at.text_input[0].label == "Password"
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/job_page.py")  # not routed at all before the password
    at.text_input[0].set_value("wrong")
    at.button[0].click().run()
    assert at.error[0].value == "Wrong password." and [t.value for t in at.title] == ["ocrjobs"]
    at.text_input[0].set_value("s3cret")
    at.button[0].click().run()
    assert [t.value for t in at.title] == ["Jobs"]


@pytest.mark.parametrize("page", ["job_page", "jobs_page", "submit_page", "health_page"])
def test_every_page_file_asks_for_the_password_itself(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    """The second wall: a page file run on its own (as Streamlit's automatic pages/ routes did) shows nothing."""
    gate(monkeypatch)
    job_id = finished_job(store, tmp_path)
    at = AppTest.from_file(str(REPO / "pages" / f"{page}.py"), default_timeout=30)
    at.query_params["id"] = job_id
    assert at.run().main.children  # without a password the page renders
    monkeypatch.setenv("OCRJOBS_DASHBOARD_PASSWORD", "s3cret")
    at = AppTest.from_file(str(REPO / "pages" / f"{page}.py"), default_timeout=30)
    at.query_params["id"] = job_id
    assert not at.run().main.children and not at.exception


def test_a_password_protected_dashboard_started_without_its_gate_serves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`streamlit run dashboard.py` would leave uploads and downloads ungated: it must not serve."""
    monkeypatch.setenv("OCRJOBS_DASHBOARD_PASSWORD", "s3cret")
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30).run()
    assert "python -m jobs.dashboard.gate" in at.error[0].value and not at.text_input
    at = AppTest.from_file(str(REPO / "pages" / "jobs_page.py"), default_timeout=30).run()
    assert not at.main.children and not at.exception


def test_wrong_passwords_in_bulk_lock_every_login_out_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.dashboard import gate as dashboard_gate

    monkeypatch.setattr(dashboard_gate, "FAILURE_DELAY_S", 0.0)
    monkeypatch.setattr(dashboard_gate._state, "failures", collections.deque())
    assert dashboard_gate.check_password("s3cret", "s3cret")
    for _ in range(dashboard_gate.MAX_FAILURES):
        assert not dashboard_gate.check_password("guess", "s3cret")
    with pytest.raises(dashboard_gate.GateError, match="Too many wrong passwords"):
        dashboard_gate.check_password("s3cret", "s3cret")
    monkeypatch.setattr(dashboard_gate, "LOCKOUT_WINDOW_S", 0.0)  # the window has passed
    assert dashboard_gate.check_password("s3cret", "s3cret")


def test_the_gate_survives_streamlit_reimporting_an_edited_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit drops edited modules of the app's folder from sys.modules while it serves."""
    import importlib
    import sys

    from jobs.dashboard import gate as dashboard_gate

    gate(monkeypatch)
    dashboard_gate.log_in("session-1", {})
    monkeypatch.delitem(sys.modules, "jobs.dashboard.gate")  # both put back after the test
    monkeypatch.setattr(sys.modules["jobs.dashboard"], "gate", dashboard_gate)
    fresh = importlib.import_module("jobs.dashboard.gate")
    assert fresh is not dashboard_gate and fresh.installed() and fresh.logged_in("session-1")
