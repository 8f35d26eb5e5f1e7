"""Shared helpers: every test gets its own job folder; processes are real and always reaped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import jobs  # noqa: F401  (first: it lets torchvision import before any test imports transformers)

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
#: The test engines are allowed for the whole session (jobs/engines/allow.py), set at import so that every
#: runner and CLI the tests start inherits it; tests of the allow-list itself pass their own environment.
os.environ["OCRJOBS_ALLOWED_ENGINES"] = "tests.engines:*"
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


def cli(state: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m jobs --state STATE ARGS`` from the repo root, as a user would."""
    proc = subprocess.run(
        [PY, "-m", "jobs", "--state", str(state), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cli {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_json(state: Path, *args: str) -> Any:
    return json.loads(cli(state, *args, "--json").stdout)


def make_png(path: Path, size: tuple[int, int] = (64, 48), marker: tuple[int, int, int] | None = None) -> Path:
    im = Image.new("RGB", size, "white")
    if marker:
        im.putpixel((0, 0), marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def wait_for(pred: Callable[[], Any], timeout: float = 60, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Runners:
    """Starts real ``runner.py`` processes and makes sure none outlives the test."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, state: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"runner-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [PY, "runner.py", "--state", str(state), *args],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def run_once(self, state: Path, *args: str, timeout: float = 240) -> str:
        """``runner.py --once``: drain the queue, insist on exit 0, return the runner's log."""
        proc = self.start(state, "--once", *args)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"runner --once did not finish:\n{self.log(proc)}") from None
        assert rc == 0, f"runner exited {rc}:\n{self.log(proc)}"
        return self.log(proc)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def cleanup(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[Runners]:
    r = Runners(tmp_path)
    yield r
    r.cleanup()


def job(state: Path, job_id: str) -> dict[str, Any]:
    return cli_json(state, "show", job_id)


def events(state: Path, job_id: str) -> list[dict[str, Any]]:
    path = state / "jobs" / job_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
