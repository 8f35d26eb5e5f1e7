"""Many jobs at once (issue 18): a one-item job's latency in a busy runner vs an idle one, and the
runner's throughput holding 1 job vs 8, side by side in one run.

- Latency: a runner (2 workers) busy with a big job (an engine sleeping ``DELAY_S`` per item); one-item
  jobs are submitted one after another, each once the last is done; latency = the job's
  ``finished_at - created_at`` (the store's own clock). The same submissions into a second, idle
  runner are the reference. Goal: busy p50 <= 1.5x idle p50.
- Throughput: the same items as 1 job and as 8 jobs, through ``runner.py --once`` (2 workers, so 8 jobs
  are held at once): items/s from the first claim to the last finish. Goal: 8 jobs >= 0.97x 1 job.
- Shared batches: an engine that takes 8 images per call and costs a fixed ``CALL_S`` per call (as a GPU
  model does); the same items as 1 job and as 2-item jobs, 1 worker. Without batches shared across
  jobs a 2-item job makes calls of 2 images. Goal: the small jobs >= 0.8x the one job's items/s.

    python -m bench.multijob [--quick]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import REPO, Row, goal_table, pct, run_once, submit
from jobs.engines.allow import ALLOW_ENV
from jobs.engines.base import Engine, Recognition

_PLUGINS = ["bench.multijob:SleepEngine", "bench.multijob:CallEngine"]
os.environ[ALLOW_ENV] = ",".join(filter(None, [os.environ.get(ALLOW_ENV), *_PLUGINS]))
ENGINE = ("--engine", "bench.multijob:SleepEngine")
DELAY_S = 0.2
CALL_S = 0.1


class SleepEngine(Engine):
    """Sleeps ``delay`` s per image and answers its size."""

    name = "sleep"

    def load(self, device: str = "auto") -> None:
        self.delay = float(self.options.get("delay", DELAY_S))
        self.device = "cpu"

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        out = []
        for im in images:
            time.sleep(self.delay)
            out.append(Recognition(text=f"{im.width}x{im.height}", confidence=1.0))
        return out


class CallEngine(SleepEngine):
    """Takes 8 images per call and sleeps ``delay`` s per call, however many images it got."""

    name = "call"

    def load(self, device: str = "auto") -> None:
        super().load(device)
        self.max_batch = 8

    def recognize(self, images: list[Image.Image]) -> list[Any]:
        time.sleep(self.delay)
        return [Recognition(text=f"{im.width}x{im.height}", confidence=1.0) for im in images]


def inputs(folder: Path, n: int, base: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:04d}.png"
        Image.new("RGB", (20 + base + i, 20), "white").save(path)
        paths.append(path)
    return paths


def _runner(state: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "runner.py", "--state", str(state), "--workers", "2"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def latencies(work: Path, n: int, busy_items: int) -> list[float]:
    """Seconds from submit to done of ``n`` one-item jobs, one after another; the runner busy with a
    ``busy_items`` job meanwhile if ``busy_items``."""
    from jobs.intake.submit import JobSpec
    from jobs.intake.submit import submit as submit_job
    from jobs.store import Store

    state = work / "state"
    store = Store(state)
    spec = JobSpec(engine=ENGINE[1], engine_options={"delay": DELAY_S})
    big = submit_job(store, inputs(work / "big", busy_items), spec) if busy_items else None
    runner = _runner(state, work / "runner.log")
    out = []
    try:
        if big:
            _until(lambda: store.get(big).progress()["committed"] >= 4, 120, "the big job to start")
        for k in range(n):
            job_id = submit_job(store, inputs(work / f"one{k}", 1, base=1000 + k), spec)
            _until(lambda j=job_id: store.get(j).status.value == "succeeded", 60, f"one-item job {k}")
            out.append(store.read_state(job_id)["finished_at"] - store.get(job_id).created_at)
        if big and store.get(big).status.value != "running":
            raise RuntimeError("the big job ended before the last one-item job: make it bigger")
    finally:
        _stop(runner)
    return out


def _until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def throughput(
    work: Path, items: int, jobs: int, delay: float, engine: tuple[str, str] = ENGINE, workers: int = 2
) -> float:
    """Items/s through ``runner.py --once``: ``items`` as ``jobs`` equal jobs, first claim to last finish."""
    from jobs.store import Store

    state = work / "state"
    option = ("--engine-option", f"delay={delay}")
    ids = [submit(state, inputs(work / f"in{j}", items // jobs, base=j * 1000), *engine, *option) for j in range(jobs)]
    run_once(state, "--workers", str(workers), "--max-jobs", "8")
    store = Store(state)
    started = min(store.read_state(j)["run"]["started_at"] for j in ids)
    ended = max(store.read_state(j)["finished_at"] for j in ids)
    if any(store.get(j).status.value != "succeeded" for j in ids):
        raise RuntimeError(f"a job did not succeed: see {state}")
    return items / (ended - started)


def measure(work: Path, quick: bool) -> dict[str, Any]:
    n = 5 if quick else 20
    busy = latencies(work / "busy", n, busy_items=60 if quick else 400)
    idle = latencies(work / "idle", n, busy_items=0)
    items, delay = (80, 0.02) if quick else (400, 0.05)
    one = throughput(work / "one", items, 1, delay)
    eight = throughput(work / "eight", items, 8, delay)
    call = ("--engine", "bench.multijob:CallEngine")
    small = 16 if quick else 64  # 2-item jobs; all but the last batch full only if jobs share them
    big_one = throughput(work / "batch1", 2 * small, 1, CALL_S, call, workers=1)
    smalls = throughput(work / "batch2", 2 * small, small, CALL_S, call, workers=1)
    return {
        **{"busy": busy, "idle": idle, "one": one, "eight": eight, "n": n, "items": items, "delay": delay},
        **{"big_one": big_one, "smalls": smalls, "small": small},
    }


def report(m: dict[str, Any], quick: bool) -> str:
    busy50, idle50 = statistics.median(m["busy"]), statistics.median(m["idle"])
    ratio = busy50 / idle50
    tput = m["eight"] / m["one"]
    rows = [
        Row(
            f"1-item job latency p50 ({m['n']} jobs), busy runner vs idle runner",
            f"{busy50:.2f} s",
            f"{idle50:.2f} s",
            f"{ratio:.2f}x",
            "<= 1.5x",
            ratio <= 1.5,
        ),
        Row("1-item job latency p95", f"{pct(m['busy'], 0.95):.2f} s", f"{pct(m['idle'], 0.95):.2f} s"),
        Row(
            f"throughput, {m['items']} items of {m['delay']:g} s: 8 jobs held vs 1 job",
            f"{m['eight']:.2f} items/s",
            f"{m['one']:.2f} items/s",
            f"{tput:.2f}x",
            ">= 0.97x",
            tput >= 0.97,
        ),
        Row(
            f"shared batches: {2 * m['small']} items as {m['small']} 2-item jobs vs as 1 job (batch 8, "
            f"{CALL_S:g} s a call, 1 worker)",
            f"{m['smalls']:.2f} items/s",
            f"{m['big_one']:.2f} items/s",
            f"{m['smalls'] / m['big_one']:.2f}x",
            ">= 0.8x",
            m["smalls"] / m["big_one"] >= 0.8,
        ),
    ]
    head = "## Many jobs at once: a small job in a busy runner, 1 vs 8 jobs held\n\n"
    note = (
        f"\n\nOne runner, 2 workers, an engine sleeping {DELAY_S:g} s per item for the latency rows. "
        "Latency is the job's own finished_at - created_at. Shared batches: 8 jobs held (the default "
        "--max-jobs); unshared, each 2-item job would make calls of 2 images: about 2/8 = 0.25x."
        + (" Quick run: small sizes." if quick else "")
    )
    return head + goal_table(rows) + note


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocrjobs-multijob-") as tmp:
        print(report(measure(Path(tmp), args.quick), args.quick))


if __name__ == "__main__":
    main()
