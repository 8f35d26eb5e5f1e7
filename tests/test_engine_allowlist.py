"""Issue 14, finding 2: a job names its engine, but only its runner's operator decides what code runs.

Real CLI and runner processes. A client can write files into the job folder and write job.json itself,
so the runner must check the engine again and must never import anything from the job folder or from
the folder it was started in.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from jobs.errors import EngineError
from jobs.store import Store
from tests.conftest import PY, REPO, make_png
from tests.hostile.engine_code import entry_point_site, plant_engine

ALLOW = "OCRJOBS_ALLOWED_ENGINES"


def env_with(**changes: str | None) -> dict[str, str]:
    """This process's environment with variables set, or removed (None)."""
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def submit(state: Path, image: Path, engine: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "jobs", "--state", str(state), "submit", str(image), "--engine", engine, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def submitted(state: Path, image: Path, engine: str, env: dict[str, str]) -> str:
    proc = submit(state, image, engine, env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


def run_once(state: Path, cwd: Path, env: dict[str, str], log: Path) -> None:
    """``runner.py --once`` started from ``cwd`` (an operator's shell in some folder), to completion."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PY, str(REPO / "runner.py"), "--state", str(state), "--once", "--workers", "1"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            assert proc.wait(timeout=120) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait(10)


def final(state: Path, job_id: str) -> dict[str, object]:
    return Store(state).read_state(job_id)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_png(tmp_path / "in" / "page.png", (31, 17))


def test_engine_planted_in_the_job_folder_is_refused_and_never_runs(tmp_path: Path, image: Path) -> None:
    """The attack: drop evil.py into the shared folder, name it as the engine. The client has no
    allow-list (its submit lets any import path through), the runner starts in the folder above the
    job folder: the job fails with one message that says how to allow an engine, and evil.py never runs."""
    state, marker = tmp_path / "state", tmp_path / "evil-ran"
    plant_engine(state / "requests", "evil", marker)
    job_id = submitted(state, image, "state.requests.evil:Engine", env_with(**{ALLOW: None}))
    run_once(state, cwd=tmp_path, env=env_with(**{ALLOW: "tests.engines:*"}), log=tmp_path / "runner.log")
    shown = final(state, job_id)
    assert not marker.exists(), "the planted engine was imported by the runner"
    assert shown["status"] == "failed", shown
    error = str(shown["error"])
    assert "engine 'state.requests.evil:Engine' is not allowed on this runner" in error, error
    assert f"{ALLOW}=mypkg.engine:MyEngine" in error, error


def test_even_an_allowed_module_is_never_imported_from_the_job_folder(tmp_path: Path, image: Path) -> None:
    """An operator who put the job folder's parent on PYTHONPATH and allowed a module that a client can
    plant there: the worker finds the module inside the job folder and refuses it before it runs."""
    state, marker = tmp_path / "state", tmp_path / "evil-ran"
    plant_engine(state, "evil", marker)
    env = env_with(**{ALLOW: "state.evil:*", "PYTHONPATH": str(tmp_path)})
    job_id = submitted(state, image, "state.evil:Engine", env)
    run_once(state, cwd=REPO, env=env, log=tmp_path / "runner.log")
    shown = final(state, job_id)
    assert not marker.exists(), "an engine module inside the job folder was imported"
    assert shown["status"] == "failed", shown
    assert "inside the job folder; code in the job folder is never run" in str(shown["error"]), shown["error"]


def test_the_folder_a_runner_starts_in_is_not_importable(tmp_path: Path, image: Path) -> None:
    """Even an allowed name is not looked up in the runner's working folder (nor by its workers):
    engines of one's own come from an installed package or an explicit PYTHONPATH."""
    state, marker = tmp_path / "state", tmp_path / "cwd-ran"
    plant_engine(tmp_path, "cwdengine", marker)
    env = env_with(**{ALLOW: "cwdengine:*"})
    job_id = submitted(state, image, "cwdengine:Engine", env)
    run_once(state, cwd=tmp_path, env=env, log=tmp_path / "runner.log")
    shown = final(state, job_id)
    assert not marker.exists(), "a module in the runner's working folder was imported"
    assert shown["status"] == "failed" and "cannot import 'cwdengine'" in str(shown["error"]), shown


def test_submit_refuses_an_engine_its_allow_list_does_not_name(state: Path, image: Path) -> None:
    proc = submit(state, image, "tests.engines:SizeEngine", env_with(**{ALLOW: "tests.engines:DictEngine"}))
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: engine 'tests.engines:SizeEngine' is not allowed on this runner: ")
    assert f"{ALLOW}=mypkg.engine:MyEngine" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not list((state / "jobs").glob("*")) if (state / "jobs").exists() else True


def test_the_runner_checks_job_json_again(tmp_path: Path, image: Path) -> None:
    """A job naming a class the runner's list does not allow fails (the client checked nothing);
    a listed class, and any class of a ``module:*`` entry, runs."""
    state, env = tmp_path / "state", env_with(**{ALLOW: "tests.engines:SizeEngine"})
    refused = submitted(state, image, "tests.engines:DictEngine", env_with(**{ALLOW: None}))
    listed = submitted(state, image, "tests.engines:SizeEngine", env)
    run_once(state, cwd=REPO, env=env, log=tmp_path / "runner.log")
    assert final(state, refused)["status"] == "failed"
    assert "engine 'tests.engines:DictEngine' is not allowed" in str(final(state, refused)["error"])
    assert final(state, listed)["status"] == "succeeded", final(state, listed)
    assert [r["text"] for r in Store(state).iter_results(listed)] == ["31x17"]

    wildcard = env_with(**{ALLOW: " tests.engines:* "})
    job_id = submitted(state, image, "tests.engines:DictEngine", wildcard)
    run_once(state, cwd=REPO, env=wildcard, log=tmp_path / "runner2.log")
    assert final(state, job_id)["status"] == "succeeded", final(state, job_id)


def test_an_installed_entry_point_is_an_engine_name(tmp_path: Path, image: Path) -> None:
    """``[project.entry-points."ocrjobs.engines"] tinyocr = "tinyocr_pkg:TinyEngine"``: usable by its name,
    and by its import path, with no allow-list at all."""
    site = entry_point_site(tmp_path / "site", "tinyocr", "tinyocr_pkg")
    state, env = tmp_path / "state", env_with(**{ALLOW: None, "PYTHONPATH": str(site)})
    by_name = submitted(state, image, "tinyocr", env)
    by_path = submitted(state, image, "tinyocr_pkg:TinyEngine", env)
    run_once(state, cwd=REPO, env=env, log=tmp_path / "runner.log")
    for job_id in (by_name, by_path):
        assert final(state, job_id)["status"] == "succeeded", final(state, job_id)
        assert [r["text"] for r in Store(state).iter_results(job_id)] == ["tiny:31x17"]


def test_the_runner_does_not_start_with_a_malformed_allow_list(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PY, "runner.py", "--state", str(tmp_path / "state"), "--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env_with(**{ALLOW: "mypkg.engine"}),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {ALLOW} has 'mypkg.engine': each entry must be package.module:Class or package.module:*"
    )


# -- the policy itself ------------------------------------------------------------------------------
def test_policy_by_name() -> None:
    from jobs.engines import allow

    env = {ALLOW: "pkg.mod:One, other.mod:*"}
    assert allow.resolve("auto", {}) == "jobs.engines.auto:AutoEngine"
    assert allow.resolve("pkg.mod:One", env) == "pkg.mod:One"
    assert allow.resolve("other.mod:Anything", env) == "other.mod:Anything"
    for name in ("pkg.mod:Two", "other.mod.sub:X", "other:X", "pkg.mod:One", "state.requests.evil:Engine"):
        with pytest.raises(allow.EngineNotAllowed, match=f"engine '{name}' is not allowed on this runner"):
            allow.resolve(name, {} if name == "pkg.mod:One" else env)
    with pytest.raises(EngineError, match="unknown engine 'no such:thing'"):
        allow.resolve("no such:thing", env)
    assert allow.choices(env)[:4] == ["auto", "rapid", "tesseract", "transformers"]
    assert "pkg.mod:One" in allow.choices(env) and not any(c.endswith(":*") for c in allow.choices(env))


def test_the_submit_page_offers_only_allowed_engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard's engine box lists the built-ins and the allowed classes; no free import path
    unless a whole module is allowed, and then a path outside it is refused on the page."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("OCRJOBS_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("OCRJOBS_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.chdir(REPO)

    def engine_box(allowed: str) -> tuple[AppTest, list[str]]:
        monkeypatch.setenv(ALLOW, allowed)
        at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)
        at.run()
        at.switch_page("pages/submit_page.py")
        at.run()
        assert not at.exception, at.exception
        return at, next(s for s in at.selectbox if s.label == "Engine").options

    at, options = engine_box("tests.engines:SizeEngine")
    assert options == ["auto", "rapid", "tesseract", "transformers", "ppocr", "tests.engines:SizeEngine"]
    at, options = engine_box("tests.engines:*")
    assert options[-1] == "custom (import path)"
    next(s for s in at.selectbox if s.label == "Engine").set_value("custom (import path)").run()
    next(t for t in at.text_input if t.label == "Engine import path").set_value("state.requests.evil:Engine").run()
    assert "engine 'state.requests.evil:Engine' is not allowed on this runner" in at.error[0].value
