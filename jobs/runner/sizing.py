"""How many worker processes, and threads in each, the runner starts: from cores and free memory.

On CPU, OCR models scale better across processes than across one process's threads: on 2 cores,
2 workers x 1 intra-op thread did 30 % more pages than one default rapidocr process, while
2 default (all-core) processes did worse than one. So: one single-threaded worker per core, as
many as fit the memory budget, and the cores left over shared out as threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
