"""Memory over a long job: the runner's and its worker's RSS, sampled with psutil while one job of
1000 real OCR items runs (rapid engine, small one-line images cycled from 20 generated ones).

Drift = median RSS over the last tenth of the items (90-100 % committed) against the median over
the 10-20 % tenth, after the model has loaded and the first items warmed the allocator; a leak
of a few KB per item shows as steady growth. Goal (issue 8): drift <= 5 %.
    python -m bench.memory [--quick] [--items N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, goal_table, submit
from bench.dataset import short_lines
from bench.overhead import threads_used

GOAL = 0.05
MB = 2**20


@dataclass
class Sample:
    committed: int
    runner: int  # bytes
    workers: int  # bytes, every descendant of the runner


@dataclass
class Measured:
    items: int
    threads: int
    seconds: float
    samples: list[Sample] = field(default_factory=list)


def _rss(pid: int) -> tuple[int, int]:
    import psutil

    proc = psutil.Process(pid)
    children = 0
    for child in proc.children(recursive=True):
        try:
            children += child.memory_info().rss
        except psutil.Error:
            pass  # a worker exiting between the listing and the read
    return proc.memory_info().rss, children


def measure(work: Path, quick: bool = False, items: int | None = None, interval: float = 0.2) -> Measured:
    import psutil

    from jobs.store import Store

    n = items or (200 if quick else 1000)
    images = [s.path for s in short_lines(work / "images", 20)]
    files = [images[i % len(images)] for i in range(n)]
    state, threads = work / "state", threads_used()
    job_id = submit(state, files, "--engine", "rapid")
    store = Store(state)
    out = Measured(n, threads, 0.0)
    log = open(work / "runner.log", "wb")  # noqa: SIM115 - closed below, after the runner
    t0 = time.monotonic()
    runner = subprocess.Popen(
        [sys.executable, "runner.py", "--state", str(state), "--once", "--workers", "1", "--threads", str(threads)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            try:
                committed = store.get(job_id).progress()["committed"]
                out.samples.append(Sample(committed, *_rss(runner.pid)))
            except (psutil.Error, OSError):
                pass  # the runner is exiting

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rc = runner.wait(3600)
    finally:
        stop.set()
        sampler.join()
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        log.close()
    out.seconds = time.monotonic() - t0
    if rc != 0:
        raise RuntimeError(f"runner exited {rc}: see {work / 'runner.log'}")
    return out


def window(m: Measured, lo: float, hi: float, what: str) -> float:
    """Median RSS (bytes) of ``what`` over the samples taken while lo..hi of the items were committed."""
    picked = [
        getattr(s, what) if what != "total" else s.runner + s.workers
        for s in m.samples
        if lo * m.items <= s.committed <= hi * m.items and s.workers
    ]
    if not picked:
        raise RuntimeError(f"no samples between {lo:.0%} and {hi:.0%} of the items: the job ran too fast to sample")
    return statistics.median(picked)


def report(m: Measured, quick: bool = False) -> str:
    rows = []
    for what, label in (("total", "runner + worker"), ("runner", "runner alone"), ("workers", "worker alone")):
        early, late = window(m, 0.1, 0.2, what), window(m, 0.9, 1.0, what)
        drift = late / early - 1
        goal = what == "total"
        rows.append(
            Row(
                f"{label}: RSS at 90-100 % of the items (MB) vs at 10-20 %",
                f"{late / MB:.0f}",
                f"{early / MB:.0f}",
                f"{drift:+.1%}",
                f"<= +{GOAL:.0%}" if goal else "-",
                (drift <= GOAL) if goal else None,
                ""
                if not goal or drift <= GOAL
                else "RSS still grows after warm-up: see the profile in the closing note",
            )
        )
    peak = max(s.runner + s.workers for s in m.samples)
    rows.append(Row("runner + worker: peak RSS (MB)", f"{peak / MB:.0f}"))
    return "\n".join(
        [
            "## Memory: runner + worker RSS over a long job" + (" (quick)" if quick else ""),
            "",
            f"One job of {m.items} items (20 generated one-line images, 240x40, English / Chinese / mixed, cycled), "
            f"`--engine rapid`, `runner.py --once --workers 1 --threads {m.threads}`; {len(m.samples)} psutil samples "
            f"every 0.2 s over {m.seconds:.0f} s ({m.items / m.seconds:.1f} items/s). The reference is the same "
            "processes earlier in the same job.",
            "",
            goal_table(rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 items (a smoke test)")
    p.add_argument("--items", type=int, help="items in the job (default 1000, 200 with --quick)")
    p.add_argument("--work", type=Path, help="keep the job folder here (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocrjobs-memory-") as tmp:
        measured: Any = measure(args.work or Path(tmp), args.quick, args.items)
    print(report(measured, args.quick), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
