"""How many worker processes, and threads in each, the runner starts: from cores and free memory, or
one per GPU for an engine that runs on a GPU.

On CPU, OCR models scale better across processes than across one process's threads: on 2 cores,
2 workers x 1 intra-op thread did 30 % more pages than one default rapidocr process, while
2 default (all-core) processes did worse than one. So: one single-threaded worker per core, as
many as fit the memory budget, and the cores left over shared out as threads (:func:`plan`).

A GPU engine is different: each worker holds its own copy of the model, so 16 workers on a 16-core
box would load 16 copies onto one GPU. :func:`gpu_plan` gives it one worker per visible GPU, each
pinned with ``CUDA_VISIBLE_DEVICES`` (it sees its GPU as ``cuda:0``), the cores shared out as its
decoding and prefetch threads. Workers start before any job says which engine they will run, so the
runner keeps both plans and reshapes its pool when a claimed job needs the other one
(jobs/runner/pool.py's ``Shape``): a job wants the GPU plan if its engine is a GPU engine
(:data:`GPU_ENGINES`, or a plug-in class with ``uses_gpu = True``), neither the runner's ``--device`` nor
the job's ``device`` option is ``cpu``, and a GPU is visible. Without a GPU a GPU engine gets the CPU plan.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs import config
from jobs.engines.base import THREADS_ENV

#: Peak RSS of one worker running the auto engine on A4 pages was ~1030 MB (RapidOCR's detector on
#: a 2000 px page is most of it); the budget leaves some room above that.
WORKER_MEMORY_MB = 1200
#: Share of the available memory the workers may plan to use; the rest is for everything else.
MEMORY_SHARE = 0.85


@dataclass(frozen=True)
class Plan:
    workers: int
    threads: int
    cores: int
    available_mb: int
    budget_mb: int
    chosen: str  # "auto", or what the user set

    def describe(self) -> str:
        fits = self.workers * self.budget_mb <= self.available_mb * MEMORY_SHARE
        text = (
            f"{self.workers} worker(s) x {self.threads} thread(s) ({self.chosen}; {self.cores} cores, "
            f"{self.available_mb / 1024:.1f} GiB available, {self.budget_mb} MB budgeted per worker)"
        )
        if not fits:
            text += "; warning: that is more memory than is available, the machine may swap"
        return text + "; override with --workers N --threads T"


def cpu_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the whole machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_mb() -> int:
    import psutil

    return int(psutil.virtual_memory().available / 2**20)


def plan(
    workers: int | None = None,
    threads: int | None = None,
    budget_mb: int = WORKER_MEMORY_MB,
    cores: int | None = None,
    free_mb: int | None = None,
) -> Plan:
    """``workers``/``threads`` None: chosen here. A user's numbers are kept as they are."""
    cores = cores or cpu_cores()
    free_mb = available_mb() if free_mb is None else free_mb
    chosen = "auto" if workers is None and threads is None else "set"
    if workers is None:
        fit = int(free_mb * MEMORY_SHARE // max(budget_mb, 1))
        workers = max(1, min(cores // (threads or 1), fit))
    if threads is None:
        threads = max(1, cores // workers)
    return Plan(workers, threads, cores, free_mb, budget_mb, chosen)


#: Built-in engines that run on a GPU when there is one; a plug-in says so with ``uses_gpu = True``.
GPU_ENGINES = frozenset({"transformers", "ppocr"})
#: Tests only: a comma-separated list of pretend GPUs (``0,1``), used instead of NVML's; empty: none.
FAKE_GPUS_ENV = "OCRJOBS_FAKE_GPUS"


@dataclass(frozen=True)
class Gpu:
    pin: str  # what the worker's CUDA_VISIBLE_DEVICES gets: an index or a UUID
    label: str  # "cuda 0: NVIDIA H200", for the printed plan


def visible_gpus(environ: Mapping[str, str] | None = None, nvml: Any | None = None) -> tuple[list[Gpu], str | None]:
    """The GPUs this runner may use, and the ``CUDA_DEVICE_ORDER`` its pins assume (None: leave it be).

    NVML lists every GPU of the machine in PCI bus order; CUDA numbers them fastest first unless
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so workers pinned by NVML's index get that order too. A
    ``CUDA_VISIBLE_DEVICES`` the runner was started with limits the list to its entries, passed on as
    they are (an index or a UUID, in whatever order the operator's CUDA uses)."""
    from jobs.ops.gpu import gpu_stats

    env = os.environ if environ is None else environ
    fake = env.get(FAKE_GPUS_ENV)
    if fake is not None:
        return [Gpu(p, f"cuda {n}: fake GPU {p}") for n, p in enumerate(_entries(fake))], None
    found = gpu_stats(nvml)
    if not found["available"]:
        return [], None
    names = {str(g["index"]): g["name"] for g in found["gpus"]}
    chosen = env.get("CUDA_VISIBLE_DEVICES")
    if chosen is None:
        return [Gpu(i, f"cuda {n}: {name}") for n, (i, name) in enumerate(names.items())], "PCI_BUS_ID"
    same_order = env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" or len(set(names.values())) == 1
    gpus = []
    for n, entry in enumerate(_entries(chosen)):
        name = names.get(entry) if same_order else None
        gpus.append(Gpu(entry, f"cuda {n}: {name or entry}"))
    return gpus, None


def _entries(raw: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES' entries up to the first invalid one (CUDA ignores the rest too)."""
    out = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry or entry.startswith("-"):
            break
        out.append(entry)
    return out


@dataclass(frozen=True)
class GpuPlan:
    workers: int
    threads: int
    cores: int
    gpus: tuple[Gpu, ...]
    chosen: str  # "auto", or "set" when the user gave --workers or --threads
    order: str | None = None  # CUDA_DEVICE_ORDER the pins assume
    extra_env: dict[str, str] = field(default_factory=dict)

    def gpu_of(self, slot: int) -> Gpu:
        """Workers take the GPUs in turn (more workers than GPUs only when the user asked for them)."""
        return self.gpus[slot % len(self.gpus)]

    def env(self, slot: int) -> dict[str, str]:
        """Worker ``slot``'s environment: its one GPU, and its share of the cores."""
        out = {"CUDA_VISIBLE_DEVICES": self.gpu_of(slot).pin, THREADS_ENV: str(self.threads)}
        out["OMP_NUM_THREADS"] = str(self.threads)
        if self.order:
            out["CUDA_DEVICE_ORDER"] = self.order
        return {**out, **self.extra_env}

    def describe(self, engine: str | None = None) -> str:
        """The plan in words, e.g. "transformers: 2 worker(s), one per GPU (cuda 0: NVIDIA H200, ...) ..."."""
        gpus = ", ".join(g.label for g in self.gpus)
        if self.workers == len(self.gpus):
            shape = f"{self.workers} worker(s), one per GPU ({gpus})"
        else:
            shape = f"{self.workers} worker(s) over {len(self.gpus)} GPU(s) in turn ({gpus})"
        return (
            f"{engine + ': ' if engine else ''}{shape} x {self.threads} thread(s) ({self.chosen}; {self.cores} cores); "
            "override with --workers N --threads T"
        )


def gpu_plan(
    gpus: list[Gpu],
    workers: int | None = None,
    threads: int | None = None,
    cores: int | None = None,
    order: str | None = None,
) -> GpuPlan | None:
    """One worker per GPU (``workers``: the user's number, spread over the GPUs); None without a GPU."""
    if not gpus:
        return None
    cores = cores or cpu_cores()
    chosen = "auto" if workers is None and threads is None else "set"
    workers = workers or len(gpus)
    threads = threads or max(1, cores // workers)
    return GpuPlan(workers, threads, cores, tuple(gpus), chosen, order)


def job_wants_gpu(spec: Mapping[str, Any], runner_device: str, uses_gpu: Any = None) -> bool:
    """Whether the job's engine should get the GPU plan. ``uses_gpu(name)``: a plug-in's ``uses_gpu``
    (read without importing the engine here, see pool.py); built-in engines are known by name."""
    if runner_device == "cpu":
        return False
    options = spec.get("engine_options") or {}
    if str(options.get("device", "auto")).lower() == "cpu":
        return False
    name = spec.get("engine", config.DEFAULT_ENGINE)
    if name in GPU_ENGINES:
        return True
    from jobs.engines.allow import BUILTIN

    return name not in BUILTIN and uses_gpu is not None and bool(uses_gpu(name))
