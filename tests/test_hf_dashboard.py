"""The dashboard's transformers options (Submit page) and the engine-change resume button (Job page)."""

from __future__ import annotations

from pathlib import Path

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


def _pick_transformers(tmp_path: Path, model: str) -> AppTest:
    at = open_page("submit_page")
    at.file_uploader[0].set_value(("scan.png", make_png(tmp_path / "s.png").read_bytes(), "image/png")).run()
    at.selectbox[0].set_value("transformers").run()
    at.text_input[0].set_value(model).run()
    at.text_input[1].set_value("2").run()
    at.button[0].click().run()
    return at


def test_submit_page_passes_the_model_options(store: Store, tmp_path: Path) -> None:  # noqa: F811
    model = build_ved(tmp_path / "ved")
    at = _pick_transformers(tmp_path, str(model))
    assert not at.exception and not at.error
    (job,) = store.list_jobs()
    assert job.spec["engine"] == "transformers"
    assert job.spec["engine_options"] == {"model": str(model), "batch_size": 2, "max_new_tokens": 128, "device": "auto"}


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
