"""The dashboard's transformers options (Submit page) and the engine-change resume button (Job page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from jobs.store.lease import claim_next, finish
from jobs.store.status import JobStatus
from tests.conftest import make_png
from tests.hf_tiny import build_ved
from tests.test_dashboard import open_page, store  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def field(at: AppTest, label: str) -> Any:
    return next(t for t in at.text_input if t.label == label)


def _pick_transformers(tmp_path: Path, model: str) -> AppTest:
    at = open_page("submit_page")
    at.file_uploader[0].set_value(("scan.png", make_png(tmp_path / "s.png").read_bytes(), "image/png")).run()
    at.selectbox[0].set_value("transformers").run()
    field(at, "Model").set_value(model).run()
    field(at, "Batch size").set_value("2").run()
    at.button[0].click().run()
    return at


def test_submit_page_passes_the_model_options(store: Store, tmp_path: Path) -> None:  # noqa: F811
    model = build_ved(tmp_path / "ved")
    at = _pick_transformers(tmp_path, str(model))
    assert not at.exception and not at.error
    (job,) = store.list_jobs()
    assert job.spec["engine"] == "transformers"
    # no max_new_tokens unless typed: the checkpoint's or its family's own limit (64 for a line, 4096 for a page)
    assert job.spec["engine_options"] == {"model": str(model), "batch_size": 2, "device": "auto"}
    assert job.spec["pdf_text"] == "auto"


def test_submit_page_passes_task_prompt_limit_and_pdf_text(store: Store, tmp_path: Path) -> None:  # noqa: F811
    model = build_ved(tmp_path / "ved")
    at = open_page("submit_page")
    at.file_uploader[0].set_value(("scan.png", make_png(tmp_path / "s.png").read_bytes(), "image/png")).run()
    at.selectbox[0].set_value("transformers").run()
    field(at, "Model").set_value(str(model)).run()
    next(s for s in at.selectbox if s.label == "PDF text").set_value("ocr").run()
    next(n for n in at.number_input if n.label == "Max new tokens").set_value(300).run()
    next(s for s in at.selectbox if s.label == "Task").set_value("markdown").run()
    next(t for t in at.text_input if t.label == "Prompt (optional)").set_value("Read it.").run()
    at.button[0].click().run()
    # the family's own check runs at submit, and the page says what the model can do
    assert [e.value for e in at.error] == ["TrOCR has no task 'markdown'; its tasks: ocr"]
    assert store.list_jobs() == []
    next(t for t in at.text_input if t.label == "Prompt (optional)").set_value("").run()
    next(s for s in at.selectbox if s.label == "Task").set_value("default").run()
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    (job,) = store.list_jobs()
    assert job.spec["engine_options"] == {
        "model": str(model),
        "batch_size": "auto",
        "device": "auto",
        "max_new_tokens": 300,
    }
    assert job.spec["pdf_text"] == "ocr"


def test_submit_page_asks_ppocr_for_its_two_model_folders(store: Store, tmp_path: Path) -> None:  # noqa: F811
    at = open_page("submit_page")
    at.file_uploader[0].set_value(("scan.png", make_png(tmp_path / "s.png").read_bytes(), "image/png")).run()
    at.selectbox[0].set_value("ppocr").run()
    labels = [t.label for t in at.text_input]
    assert "Detection model folder" in labels and "Recognition model folder" in labels
    next(t for t in at.text_input if t.label == "Detection model folder").set_value(str(tmp_path / "det")).run()
    at.button[0].click().run()
    assert at.error and str(tmp_path / "det") in at.error[0].value, [e.value for e in at.error]
    assert store.list_jobs() == []


def test_submit_page_refuses_a_missing_model_inline(store: Store, tmp_path: Path) -> None:  # noqa: F811
    at = _pick_transformers(tmp_path, str(tmp_path / "nope"))
    assert at.error[0].value == f"model folder {tmp_path / 'nope'} does not exist"
    assert store.list_jobs() == []


def test_job_page_resumes_accepting_the_engine_change(store: Store, tmp_path: Path) -> None:  # noqa: F811
    job_id = submit(store, [make_png(tmp_path / "a.png")], JobSpec(engine="tests.engines:SizeEngine"))
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    reason = "engine changed since this job started: model sha256 ab12.. -> cd34..; resume with --accept-engine-change"
    finish(store, claim, JobStatus.PAUSED, reason, reason="engine_changed")
    at = open_page("job_page", id=job_id)
    assert reason in [w.value for w in at.warning]
    at.button(key="accept-engine-change").click().run()
    assert [(r["kind"], r.get("accept_engine_change")) for _, r in store.pending_requests(job_id)] == [("resume", True)]


def test_job_page_has_no_such_button_for_other_pauses(store: Store, tmp_path: Path) -> None:  # noqa: F811
    job_id = submit(store, [make_png(tmp_path / "a.png")], JobSpec(engine="tests.engines:SizeEngine"))
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    finish(store, claim, JobStatus.PAUSED, None)
    at = open_page("job_page", id=job_id)
    assert "accept-engine-change" not in [b.key for b in at.button]
