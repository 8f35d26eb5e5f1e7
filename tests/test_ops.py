"""Operations files and plumbing: alert rules, systemd units, JSON logs, GPU probe, NFS warning."""

from __future__ import annotations

import configparser
import json
import logging
import re
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from jobs.ops import gpu, mounts
from jobs.ops.metrics import RunnerMetrics
from jobs.runner.heartbeat import Telemetry
from jobs.store import Store
from tests.conftest import PY, REPO, Runners, cli_json, make_png
from tests.fakes import FakeNvml, running_state, write_heartbeat, write_job

OPS = REPO / "ops"
RULES = OPS / "prometheus-rules.yml"
#: The seed's alerts: failure rate, backlog, long job, runner down, GPU memory.
SEED_ALERTS = {
    "OcrjobsHighFailureRate",
    "OcrjobsBacklogHigh",
    "OcrjobsJobRunningTooLong",
    "OcrjobsRunnerDown",
    "OcrjobsGpuMemoryHigh",
}
PROMQL_WORDS = {"sum", "max", "min", "rate", "by", "without", "and", "or", "unless", "on", "ignoring", "absent"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    for args in (["check", "rules", RULES.name], ["test", "rules", "prometheus-rules.test.yml"]):
        proc = subprocess.run(["promtool", *args], cwd=OPS, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_expression_names_an_exported_metric(state: Path) -> None:
    """Without promtool too: each rule's metrics are ones the runner really exports."""
    store = Store(state)  # a live runner, a running job and a GPU: every gauge has samples
    write_heartbeat(store, "r1")
    write_job(store, state=running_state("r1", expires_in=10))
    latest = {"gpu": gpu.gpu_stats(FakeNvml())}
    exported = {s.name for f in RunnerMetrics(state, lambda: latest).registry.collect() for s in f.samples}
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert SEED_ALERTS <= {r["alert"] for r in rules}
    for rule in rules:
        expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', "", rule["expr"])  # drop label matchers and ranges
        names = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in PROMQL_WORDS}
        names -= {w for w in re.findall(r"by \(([^)]*)\)", rule["expr"]) for w in w.replace(" ", "").split(",")}
        assert names, rule["alert"]
        unknown = {n for n in names if n != "up" and n not in exported}  # `up` is Prometheus's own
        assert not unknown, f"{rule['alert']} uses metrics the runner does not export: {unknown}"


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(OPS / name)
    return parser["Service"]


@pytest.mark.parametrize("name", ["ocrjobs-runner.service", "ocrjobs-dashboard.service"])
def test_units_restart_always_and_stop_with_sigterm(name: str) -> None:
    svc = unit(name)
    assert svc["Restart"] == "always" and svc["KillSignal"] == "SIGTERM"
    assert int(svc["TimeoutStopSec"]) >= 15  # the item grace (at most 5 s) plus the workers' exit


def test_the_runner_unit_uses_flags_the_runner_has() -> None:
    exec_start = unit("ocrjobs-runner.service")["ExecStart"].split()
    assert exec_start[1] == "runner.py"
    usage = subprocess.run([PY, "runner.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for flag in (a for a in exec_start if a.startswith("--")):
        assert flag in usage


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", ["ocrjobs-runner.service", "ocrjobs-dashboard.service"])
def test_units_pass_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    local = tmp_path / name  # point the unit at this checkout so its ExecStart exists
    local.write_text((OPS / name).read_text().replace("/opt/ocrjobs", str(REPO)))
    if not Path(str(REPO / ".venv/bin/python")).exists():
        pytest.skip("no .venv in this checkout")
    proc = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_runner_log_lines_are_json_with_job_and_item_fields(state: Path, tmp_path: Path, runners: Runners) -> None:
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    files = [make_png(tmp_path / "a.png"), bad]
    job_id = cli_json(state, "submit", *map(str, files), "--engine", "tests.engines:SizeEngine")["id"]
    proc = runners.start(state, "--once")
    assert proc.wait(60) == 0
    (log_file,) = (state / "logs").glob("runner-*.jsonl")
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert all({"at", "level", "logger", "message"} <= set(line) for line in lines)
    items = {line["index"]: line for line in lines if line.get("event") == "item_committed"}
    assert items[0]["job_id"] == job_id and items[0]["status"] == "done" and items[0]["duration_s"] >= 0
    assert items[1]["status"] == "failed" and items[1]["error_kind"] == "input" and items[1]["error"]
    assert [line["event"] for line in lines if line.get("job_id") and line.get("event") != "item_committed"] == [
        "claimed",
        "job_completed_with_errors",
    ]
    assert f"job {job_id} item 0 done in" in runners.log(proc)  # and readable on the console


def test_gpu_stats_report_the_fake_gpu() -> None:
    stats = gpu.gpu_stats(FakeNvml(used_mib=1000, total_mib=16000))
    assert stats["available"] is True
    assert stats["gpus"] == [
        {
            "index": 0,
            "name": "Tesla T4",
            "memory_used_bytes": 1000 * 1024**2,
            "memory_total_bytes": 16000 * 1024**2,
            "memory_free_bytes": 15000 * 1024**2,
            "utilization_percent": 80.0,
        }
    ]


def test_gpu_stats_never_raise_when_nvml_fails() -> None:
    assert gpu.gpu_stats(FakeNvml(fail=True)) == {
        "available": False,
        "reason": "NVML could not start: Driver Not Loaded",
        "gpus": [],
    }


def test_gpu_stats_on_this_machine_never_raise() -> None:
    stats = gpu.gpu_stats()
    assert stats["available"] or (stats["reason"].startswith("no GPU") and stats["gpus"] == [])


def test_the_runner_warns_at_start_on_a_network_filesystem(
    state: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    part = namedtuple("part", "device mountpoint fstype opts")
    table = [part("/dev/sda1", "/", "ext4", "rw"), part("nas:/ocr", str(state), "cifs", "rw")]
    monkeypatch.setattr(mounts.psutil, "disk_partitions", lambda all=False: table)
    with caplog.at_level(logging.WARNING, logger="ocrjobs.runner"):
        Telemetry(Store(state), "r1", 2.0)
    assert "is on cifs" in caplog.text and "one host per folder" in caplog.text
