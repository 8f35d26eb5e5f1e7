"""One model per GPU: the plan a GPU engine's job gets (jobs/runner/sizing.py), the pool reshaped for it
(jobs/runner/pool.py's Shape), and a real runner whose workers each see their own (fake) GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobs.engines.base import THREADS_ENV
from jobs.runner import pool, sizing
from tests.conftest import Runners, cli, cli_json, job, make_png
from tests.fakes import FakeNvml

H200 = "NVIDIA H200"


class Nvml(FakeNvml):
    """NVML with the given GPUs (FakeNvml has one T4)."""

    def __init__(self, names: list[str], fail: bool = False) -> None:
        super().__init__(fail=fail)
        self.names = names

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - NVML's names
        return len(self.names)

    def nvmlDeviceGetName(self, handle: int) -> bytes:  # noqa: N802
        return self.names[handle].encode()


def gpus(n: int) -> list[sizing.Gpu]:
    return sizing.visible_gpus({}, Nvml([H200] * n))[0]


def test_the_gpu_list_comes_from_nvml_limited_by_cuda_visible_devices() -> None:
    found, order = sizing.visible_gpus({}, Nvml([H200, "NVIDIA L4"]))
    assert [(g.pin, g.label) for g in found] == [("0", f"cuda 0: {H200}"), ("1", "cuda 1: NVIDIA L4")]
    assert order == "PCI_BUS_ID"  # NVML's indices are PCI bus order: the workers' CUDA must number them so too
    found, order = sizing.visible_gpus({"CUDA_VISIBLE_DEVICES": "3,1"}, Nvml([H200] * 4))
    assert [(g.pin, g.label) for g in found] == [("3", f"cuda 0: {H200}"), ("1", f"cuda 1: {H200}")]
    assert order is None  # the operator's entries are passed on as they are, in their CUDA's order
    uuid = "GPU-8d6c1f4e-0000-1111-2222-333344445555"
    found, _ = sizing.visible_gpus({"CUDA_VISIBLE_DEVICES": f"{uuid},-1,2"}, Nvml([H200] * 4))
    assert [(g.pin, g.label) for g in found] == [(uuid, f"cuda 0: {uuid}")]  # CUDA stops at the first invalid one
    assert sizing.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, Nvml([H200]))[0] == []
    assert sizing.visible_gpus({}, Nvml([H200], fail=True))[0] == []  # no driver: no GPU
    assert sizing.visible_gpus({}, Nvml([]))[0] == []
    fake, _ = sizing.visible_gpus({sizing.FAKE_GPUS_ENV: "0,1,2"}, Nvml([H200]))
    assert [g.pin for g in fake] == ["0", "1", "2"]


@pytest.mark.parametrize("n_gpus", [0, 1, 2, 4])
@pytest.mark.parametrize(
    ("engine", "options", "runner_device", "on_gpu"),
    [
        ("transformers", {}, "auto", True),
        ("transformers", {}, "cuda", True),
        ("transformers", {"device": "cpu"}, "auto", False),  # the job asked for the CPU
        ("transformers", {}, "cpu", False),  # the runner was told --device cpu
        ("tests.engines:GpuEnvEngine", {}, "auto", True),  # a plug-in with uses_gpu = True
        ("tests.engines:SizeEngine", {}, "auto", False),  # a plug-in without it
        ("rapid", {}, "auto", False),
        ("tesseract", {}, "cuda", False),
        ("auto", {}, "auto", False),
    ],
)
def test_a_gpu_engine_gets_one_worker_per_gpu_and_a_cpu_engine_the_cpu_plan(
    monkeypatch: pytest.MonkeyPatch,
    n_gpus: int,
    engine: str,
    options: dict[str, Any],
    runner_device: str,
    on_gpu: bool,
) -> None:
    started: list[dict[str, str]] = []

    class Handle:
        def __init__(self, slot: int, device: str, hb: float, env: dict[str, str] | None = None) -> None:
            self.slot, self.device, self.env = slot, device, env or {}
            started.append(self.env)

        def stop(self) -> None:
            pass

    monkeypatch.setattr(pool, "WorkerHandle", Handle)
    monkeypatch.setattr(pool, "engine_uses_gpu", lambda name, forbidden: name.endswith("GpuEnvEngine"))
    cpu = sizing.plan(cores=16, free_mb=64_000)
    assert cpu.workers == 16  # the 16-core box: 16 workers for CPU engines, as before
    gpu = sizing.gpu_plan(gpus(n_gpus), cores=16, order="PCI_BUS_ID")
    assert (gpu is None) == (n_gpus == 0)
    shape = pool.Shape(cpu.workers, gpu, runner_device, 1.0)
    workers = shape.start()
    said = shape.fit(workers, {"engine": engine, "engine_options": options}, Path("/state"))
    if on_gpu and n_gpus:
        assert said is not None and said.startswith(f"{engine}: {n_gpus} worker(s), one per GPU (cuda 0: {H200}")
        assert [w.env["CUDA_VISIBLE_DEVICES"] for w in workers] == [str(i) for i in range(n_gpus)]
        assert {w.env[THREADS_ENV] for w in workers} == {str(16 // n_gpus)}  # the cores shared out as threads
        assert {w.env["CUDA_DEVICE_ORDER"] for w in workers} == {"PCI_BUS_ID"}
    else:  # a CPU engine, or no GPU to put it on: today's per-core plan, nothing pinned
        assert said is None and len(workers) == 16
        assert all(w.env == {} for w in workers)
    if said is not None:  # the next job, a CPU engine's, gets the CPU plan back
        back = shape.fit(workers, {"engine": "rapid"}, Path("/state"))
        assert back == "rapid: back to the CPU plan, 16 worker(s)" and len(workers) == 16
        assert all(w.env == {} for w in workers)
    assert len(started) == len(set(map(id, started)))  # every worker a fresh process: none reused across plans


def test_the_users_workers_and_threads_are_kept_and_spread_over_the_gpus() -> None:
    plan = sizing.gpu_plan(gpus(2), workers=3, threads=2, cores=16)
    assert plan is not None
    assert [plan.env(i)["CUDA_VISIBLE_DEVICES"] for i in range(plan.workers)] == ["0", "1", "0"]
    assert plan.env(0)[THREADS_ENV] == "2"
    assert plan.describe("transformers") == (
        f"transformers: 3 worker(s) over 2 GPU(s) in turn (cuda 0: {H200}, cuda 1: {H200}) x 2 thread(s) "
        "(set; 16 cores); override with --workers N --threads T"
    )
    auto = sizing.gpu_plan(gpus(2), cores=16)
    assert auto is not None and auto.describe() == (
        f"2 worker(s), one per GPU (cuda 0: {H200}, cuda 1: {H200}) x 8 thread(s) (auto; 16 cores); "
        "override with --workers N --threads T"
    )


def test_a_real_runner_pins_each_worker_to_its_own_gpu(state: Path, tmp_path: Path, runners: Runners) -> None:
    """OCRJOBS_FAKE_GPUS pretends two GPUs; GpuEnvEngine answers with its worker's CUDA_VISIBLE_DEVICES."""
    files = [str(make_png(tmp_path / "in" / f"p{i}.png", (20 + i, 10))) for i in range(6)]
    gpu_job = cli_json(
        state, "submit", *files, "--engine", "tests.engines:GpuEnvEngine", "--engine-option", "delay=0.4"
    )["id"]
    cpu_job = cli_json(state, "submit", *files[:2], "--engine", "tests.engines:SizeEngine")["id"]
    proc = runners.start(state, "--once", "--threads", "1", env={sizing.FAKE_GPUS_ENV: "0,1"})
    assert proc.wait(120) == 0, runners.log(proc)
    log = runners.log(proc)
    assert "GPU engines (transformers, plug-ins with uses_gpu = True): 2 worker(s), one per GPU " in log
    assert (
        f"job {gpu_job}: tests.engines:GpuEnvEngine: 2 worker(s), one per GPU (cuda 0: fake GPU 0, cuda 1: fake GPU 1)"
        in log
    )
    assert job(state, gpu_job)["status"] == "succeeded", log
    out = tmp_path / "gpu.json"
    cli(state, "export", gpu_job, "-o", str(out))
    seen = [r["text"].split() for r in json.loads(out.read_text())]
    pins = {pin: pid for pin, pid, _threads in seen}
    assert set(pins) == {"0", "1"} and len(set(pins.values())) == 2  # two workers, each its own GPU
    assert {threads for *_, threads in seen} == {"1"}
    assert job(state, cpu_job)["status"] == "succeeded", log
    assert f"job {cpu_job}: tests.engines:SizeEngine: back to the CPU plan" in log
