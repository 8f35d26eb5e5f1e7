"""Prometheus metrics: scraped over HTTP from a real runner, and the registry's gauges."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs.ops.gpu import gpu_stats
from jobs.ops.metrics import RunnerMetrics
from jobs.store import Store
from tests.conftest import PY, REPO, Runners, cli_json, make_png, wait_for
from tests.fakes import FakeNvml, running_state, write_job


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def registry_samples(metrics: RunnerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in metrics.registry.collect() for s in f.samples}


@pytest.mark.slow
def test_a_runner_serves_its_metrics_over_http(state: Path, tmp_path: Path, runners: Runners) -> None:
    port = free_port()
    files = [make_png(tmp_path / f"p{i}.png", (20 + i, 10)) for i in range(3)]
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    job_id = cli_json(state, "submit", *map(str, [*files, bad]), "--engine", "tests.engines:SizeEngine")["id"]
    runners.start(state, "--metrics-port", str(port))
    wait_for(lambda: Store(state).read_state(job_id).get("status") == "completed_with_errors", 30, what="the job")

    def scrape() -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return samples(r.read().decode())
        except OSError:
            return None

    m = wait_for(lambda: (got := scrape()) and got[("ocrjobs_runners", (("state", "alive"),))] == 1 and got, 10)
    assert m[("ocrjobs_items_processed_total", (("status", "done"),))] == 3
    assert m[("ocrjobs_items_processed_total", (("status", "failed"),))] == 1
    assert m[("ocrjobs_items_processed_total", (("status", "timed_out"),))] == 0
    assert m[("ocrjobs_item_duration_seconds_count", ())] == 3  # the empty file failed before any worker time
    assert m[("ocrjobs_jobs", (("status", "completed_with_errors"),))] == 1
    assert m[("ocrjobs_backlog_items", ())] == 0 and m[("ocrjobs_health_status", ())] == 0
    ages = [v for (name, _), v in m.items() if name == "ocrjobs_runner_heartbeat_age_seconds"]
    assert len(ages) == 1 and 0 <= ages[0] < 10
    assert ("process_resident_memory_bytes", ()) in m


@pytest.mark.slow
def test_a_busy_metrics_port_is_a_clear_error(state: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run(
            [PY, "runner.py", "--state", str(state), "--once", "--metrics-port", str(port)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 1
    assert f"error: cannot serve metrics on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


def test_gpu_gauges_come_from_the_runners_last_heartbeat(state: Path) -> None:
    metrics = RunnerMetrics(state, lambda: {"gpu": gpu_stats(FakeNvml(12000, 16000))})
    m = registry_samples(metrics)
    key = (("gpu", "0"), ("name", "Tesla T4"))
    assert m[("ocrjobs_gpu_memory_used_bytes", key)] == 12000 * 1024**2
    assert m[("ocrjobs_gpu_memory_total_bytes", key)] == 16000 * 1024**2
    assert m[("ocrjobs_gpu_utilization_ratio", key)] == 0.8


def test_without_a_gpu_there_are_no_gpu_samples(state: Path) -> None:
    metrics = RunnerMetrics(state, lambda: {"gpu": {"available": False, "reason": "no GPU", "gpus": []}})
    assert not [name for name, _ in registry_samples(metrics) if name.startswith("ocrjobs_gpu_")]


def test_a_running_job_reports_how_long_it_has_run(state: Path) -> None:
    write_job(Store(state), "20260101-000000-aaaaaa", state=running_state("r1", expires_in=10))
    m = registry_samples(RunnerMetrics(state, dict))
    assert 99 <= m[("ocrjobs_job_running_seconds", (("job_id", "20260101-000000-aaaaaa"),))] < 110


@pytest.mark.slow
def test_a_runner_serving_metrics_stops_cleanly_on_sigterm(state: Path, runners: Runners) -> None:
    """As systemd stops the service: SIGTERM to the process group, exit 0 within the grace, port freed."""
    port = free_port()
    proc = runners.start(state, "--metrics-port", str(port))
    wait_for(lambda: Store(state).runners(), 30, what="the runner's heartbeat")
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(3 + 5) == 0
    assert list((state / "runners").iterdir()) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing listens there any more
