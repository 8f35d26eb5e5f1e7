"""Each dashboard page through Streamlit's AppTest, on a real job folder (no browser)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from jobs.lease import claim_next, commit_item, finish
from jobs.status import JobStatus
from jobs.store import Store
from jobs.submit import JobSpec, submit
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
    assert table["id"].tolist() == [job_id]
    assert table["progress"].tolist() == [100.0] and table["failed"].tolist() == [1]


def test_jobs_page_filters_by_status(store: Store, tmp_path: Path) -> None:
    finished_job(store, tmp_path)
    at = open_page("jobs_page")
    at.multiselect[0].set_value(["running"]).run()
    assert not at.dataframe and "No jobs match." in [i.value for i in at.info]


def test_jobs_page_pause_writes_a_request(store: Store, tmp_path: Path) -> None:
    job_id = submit(store, [make_png(tmp_path / "a.png")])
    at = open_page("jobs_page")
    at.button(key="act-pause").click().run()
    assert [r["kind"] for _, r in store.pending_requests(job_id)] == ["pause"]


def test_jobs_page_delete_needs_confirmation(store: Store, tmp_path: Path) -> None:
    job_id = submit(store, [make_png(tmp_path / "a.png")])
    at = open_page("jobs_page")
    at.button(key="act-delete").click().run()
    assert store.pending_requests(job_id) == []
    assert any("Delete job" in w.value for w in at.warning)
    at.button(key="confirm-yes").click().run()
    assert [r["kind"] for _, r in store.pending_requests(job_id)] == ["delete"]


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
    at.text_input[0].set_value("not a valid path").run()
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
    assert [b.label for b in at.get("download_button")] == ["json", "csv", "txt", "xlsx"]
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
    assert at.dataframe[0].value["state"].tolist() == ["alive"]


def test_health_page_raises_a_gpu_memory_alert(store: Store) -> None:
    from jobs.gpu import gpu_stats
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


def test_the_shared_password_gates_every_page(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRJOBS_DASHBOARD_PASSWORD", "s3cret")
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30).run()
    assert not at.title and at.text_input[0].label == "Password"
    at.text_input[0].set_value("wrong").run()
    assert at.error[0].value == "Wrong password." and not at.title
    at.text_input[0].set_value("s3cret").run()
    assert [t.value for t in at.title] == ["Jobs"]
