"""Version pinning: a job resumed on a runner whose engine changed pauses until a user accepts the change."""

from __future__ import annotations

import json
import os
import shutil
import signal
from importlib import metadata
from pathlib import Path

import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.runner import pinning
from jobs.store import Store
from jobs.store.lease import claim_next
from jobs.store.requests import apply_requests
from jobs.store.status import JobStatus
from tests.conftest import Runners, cli, cli_json, make_png, wait_for
from tests.hf_tiny import build_ved


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ved(tmp_path_factory.mktemp("pin") / "ved")


def test_identity_of_a_model_folder(model: Path, tmp_path: Path) -> None:
    ident = pinning.engine_identity("transformers", {"model": str(model), "batch_size": 4})
    assert ident["engine"] == "transformers" and ident["model"] == str(model)
    assert ident["versions"]["transformers"] == metadata.version("transformers")
    assert ident["versions"]["torch"] == metadata.version("torch")
    assert len(ident["model_sha256"]) == 64 and "revision" not in ident
    assert pinning.engine_identity("transformers", {"model": str(model), "batch_size": 8}) == ident  # options aside
    copy = shutil.copytree(model, tmp_path / "copy")
    assert pinning.model_identity(str(copy))["model_sha256"] == ident["model_sha256"]  # content, not place
    cfg = json.loads((copy / "config.json").read_text())
    cfg["decoder"]["dropout"] = 0.5
    (copy / "config.json").write_text(json.dumps(cfg))
    assert pinning.model_identity(str(copy))["model_sha256"] != ident["model_sha256"]
    assert pinning.model_identity(str(tmp_path / "gone"))["model_sha256"] is None


def test_identity_of_a_cached_hub_snapshot(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = tmp_path / "hub" / "models--acme--ocr" / "snapshots" / commit
    shutil.copytree(model, snap)
    (tmp_path / "hub" / "models--acme--ocr" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--ocr" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ident = pinning.model_identity("acme/ocr")
    assert ident["revision"] == commit and ident["model_sha256"] == pinning.fingerprint(model)
    assert pinning.model_identity("acme/not-cached")["model_sha256"] is None


def test_other_engines_are_pinned_by_package_versions() -> None:
    ident = pinning.engine_identity("rapid", {})
    assert ident["versions"]["onnxruntime"] == metadata.version("onnxruntime")
    assert pinning.engine_identity("tests.engines:SizeEngine", {}) == {"engine": "tests.engines:SizeEngine"}


def test_enforce_records_then_pauses_on_a_change_until_accepted(model: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    m = shutil.copytree(model, tmp_path / "m")
    spec = JobSpec(engine="transformers", engine_options={"model": str(m)})
    job_id = submit(store, [make_png(tmp_path / "a.png")], spec)
    job_spec = store.get(job_id).spec
    claim = claim_next(store, "r", 60.0, 5)
    assert claim is not None and claim.job_id == job_id
    assert pinning.enforce(store, claim, job_spec) is None  # first claim: recorded
    recorded = store.read_state(job_id)[pinning.IDENTITY]
    assert recorded["model_sha256"] == pinning.fingerprint(m)
    assert pinning.enforce(store, claim, job_spec) is None  # unchanged: nothing to say
    (m / "generation_config.json").write_text(json.dumps({"max_length": 7}))
    reason = pinning.enforce(store, claim, job_spec)
    old, new = recorded["model_sha256"][:4], pinning.fingerprint(m)[:4]
    assert reason == (
        f"engine changed since this job started: model sha256 {old}.. -> {new}..; "
        "resume with --accept-engine-change to continue"
    )
    assert store.read_state(job_id)[pinning.IDENTITY] == recorded  # a refusal changes nothing
    claim.state[pinning.ACCEPTED] = True  # what jobs/store/requests.py sets on resume --accept-engine-change
    assert pinning.enforce(store, claim, job_spec) is None
    state = store.read_state(job_id)
    assert state[pinning.IDENTITY]["model_sha256"] == pinning.fingerprint(m) and pinning.ACCEPTED not in state
    events = [json.loads(x) for x in (store.jobs_dir / job_id / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("engine_change_accepted") == 1


def test_describe_change_names_versions_and_models() -> None:
    old = {"engine": "transformers", "model": "a", "model_sha256": "ab12" * 16, "versions": {"torch": "2.13"}}
    new = {"engine": "transformers", "model": "b", "model_sha256": None, "versions": {"torch": "2.14", "x": "1"}}
    assert pinning.describe_change(old, new) == (
        "model a -> b; model sha256 ab12.. -> missing; torch 2.13 -> 2.14; x absent -> 1"
    )


def test_resume_accept_engine_change_is_a_request_flag(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    job_id = cli_json(state, "submit", str(make_png(tmp_path / "a.png")), "--engine", "tests.engines:SizeEngine")["id"]
    store = Store(state)
    st = store.read_state(job_id)
    st["status"] = JobStatus.PAUSED.value
    (state / "jobs" / job_id / "state.json").write_text(json.dumps(st))
    cli(state, "resume", job_id, "--accept-engine-change")
    assert [r.get("accept_engine_change") for _, r in store.pending_requests(job_id)] == [True]
    apply_requests(store)
    st = store.read_state(job_id)
    assert st["status"] == "queued" and st[pinning.ACCEPTED] is True


def test_a_job_resumed_on_a_changed_model_pauses_until_accepted(
    model: Path, tmp_path: Path, state: Path, runners: Runners
) -> None:
    m = shutil.copytree(model, tmp_path / "model")
    pngs = [str(make_png(tmp_path / f"p{i}.png", (40 + i, 20))) for i in range(4)]
    job_id = cli_json(state, "submit", *pngs, "--engine", "transformers", "--model", str(m), "--device", "cpu")["id"]
    first = runners.start(state, "--lease-seconds", "2", "--device", "cpu")
    wait_for(lambda: cli_json(state, "show", job_id)["status"] == "running", 60, what="the job to start")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    assert pinning.IDENTITY in Store(state).read_state(job_id)  # recorded at the first claim
    cfg = json.loads((m / "config.json").read_text())
    cfg["decoder"]["dropout"] = 0.25  # "a new version of the model" in the same folder
    (m / "config.json").write_text(json.dumps(cfg))
    runners.start(state, "--lease-seconds", "2", "--device", "cpu")
    shown = wait_for(
        lambda: (j := cli_json(state, "show", job_id))["status"] == "paused" and j, 60, what="the job to pause"
    )
    assert shown["error"].startswith("engine changed since this job started: model sha256 ")
    assert shown["error"].endswith("; resume with --accept-engine-change to continue")
    cli(state, "resume", job_id)  # a plain resume pauses again: nothing was accepted
    wait_for(lambda: not Store(state).pending_requests(job_id), 30, what="the resume to be applied")
    wait_for(lambda: cli_json(state, "show", job_id)["status"] == "paused", 30, what="the job to pause again")
    cli(state, "resume", job_id, "--accept-engine-change")
    done = wait_for(
        lambda: (j := cli_json(state, "show", job_id))["status"] == "succeeded" and j, 90, what="the job to finish"
    )
    assert done["progress"]["done"] == 4
