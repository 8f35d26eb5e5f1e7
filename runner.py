"""The runner daemon: ``python runner.py [--state DIR] [--once] [--workers N|auto] [--threads T|auto] [--max-jobs N]``.

``--executor ray [--ray-address ADDR] [--ray-actors N]`` runs the items on Ray actors instead of local
worker processes (jobs/ray/executor.py); the runner still owns the job folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# The working folder is deliberately not put on sys.path: a job names its engine, and the folder a runner
# happens to start in (often the shared job folder's parent) must not decide what code it runs. Engines of
# one's own come from an installed package, or a folder the operator puts on PYTHONPATH, and must be
# allowed (jobs/engines/allow.py). sys.path[0] is this script's folder, for ``jobs``.
from jobs import config
from jobs.engines import allow
from jobs.engines.base import THREADS_ENV
from jobs.errors import OcrJobsError
from jobs.ops import logs
from jobs.runner import sizing
from jobs.runner.supervisor import Runner, RunnerOptions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="runner.py", description="ocrjobs runner: works through the job folder")
    p.add_argument("--state", help="job folder (default: $OCRJOBS_STATE or ./state)")
    p.add_argument("--once", action="store_true", help="drain the queue, then exit")
    p.add_argument(
        "--workers",
        type=_auto_or_count,
        default=os.environ.get("OCRJOBS_WORKERS", "auto"),
        help="worker subprocesses, each loading the engine once (default auto: from cores and free memory)",
    )
    p.add_argument(
        "--threads",
        type=_auto_or_count,
        default=os.environ.get(THREADS_ENV, "auto"),
        help="intra-op threads per worker (default auto: the cores shared out among the workers)",
    )
    p.add_argument(
        "--worker-memory",
        type=int,
        default=int(os.environ.get("OCRJOBS_WORKER_MB") or sizing.WORKER_MEMORY_MB),
        metavar="MB",
        help=f"memory budgeted per worker when choosing --workers auto (default {sizing.WORKER_MEMORY_MB})",
    )
    p.add_argument(
        "--max-jobs",
        type=int,
        default=int(os.environ.get("OCRJOBS_MAX_JOBS") or config.DEFAULT_MAX_JOBS),
        metavar="N",
        help=f"jobs held at once, their items shared out among the workers by priority (default "
        f"{config.DEFAULT_MAX_JOBS}; 1: one job at a time)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default=os.environ.get("OCRJOBS_EXECUTOR", "local"),
        help="local: worker subprocesses (default); ray: Ray actors, on this machine or a Ray cluster",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join, e.g. 10.0.0.5:6379 (default: $RAY_ADDRESS, else a Ray started on this machine)",
    )
    p.add_argument(
        "--ray-actors",
        type=int,
        default=None,
        metavar="N",
        help="actors to start (default: one per GPU if the cluster has GPUs, else one CPU actor per node)",
    )
    p.add_argument(
        "--ray-actor-cpus",
        type=float,
        default=1.0,
        metavar="C",
        help="CPUs each actor reserves in Ray, and its engine's intra-op threads (default 1)",
    )
    p.add_argument("--lease-seconds", type=float, default=config.DEFAULT_LEASE_S)
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=config.KILL_GRACE_S,
        help="after an item's timeout, seconds before its worker is killed (0-5)",
    )
    p.add_argument("--retention-days", type=float, default=config.RETENTION_DAYS)
    p.add_argument("--log-level", default=os.environ.get("OCRJOBS_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("OCRJOBS_METRICS_PORT") or 0) or None,
        help="serve Prometheus metrics on this port (default: off)",
    )
    p.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)")
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    if not 1 <= args.max_jobs <= 1000:
        p.error("--max-jobs must be between 1 and 1000")
    if args.worker_memory < 1:
        p.error("--worker-memory must be at least 1 MB")
    if not 1 <= args.lease_seconds <= 3600:
        p.error("--lease-seconds must be between 1 and 3600")
    if not 0 <= args.grace_seconds <= 5:
        p.error("--grace-seconds must be between 0 and 5")
    if args.metrics_port is not None and not 1 <= args.metrics_port <= 65535:
        p.error("--metrics-port must be between 1 and 65535")
    if args.executor not in ("local", "ray"):  # a default from $OCRJOBS_EXECUTOR skips argparse's check
        p.error(f"--executor must be local or ray, got {args.executor!r}")
    if args.ray_actors is not None and args.ray_actors < 1:
        p.error("--ray-actors must be at least 1")
    if args.ray_actor_cpus <= 0:
        p.error("--ray-actor-cpus must be above 0")
    if args.executor == "ray":
        from jobs.ray.executor import require_ray

        try:
            require_ray()
        except OcrJobsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:  # a typo in the allow-list must not quietly refuse every job naming an engine by import path
        allow.allow_list()
    except OcrJobsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not isinstance(logging.getLevelName(args.log_level.upper()), int):
        p.error(f"--log-level {args.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    log_file = logs.setup(config.state_dir(args.state), args.log_level, args.retention_days)
    logging.getLogger("ocrjobs.runner").info("JSON log: %s", log_file)
    workers, gpu = _size_workers(args) if args.executor == "local" else (0, None)
    opts = RunnerOptions(
        state=args.state,
        workers=workers,
        device=args.device,
        lease_s=args.lease_seconds,
        once=args.once,
        grace_s=args.grace_seconds,
        retention_days=args.retention_days,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        executor=args.executor,
        ray_address=args.ray_address,
        ray_actors=args.ray_actors,
        ray_actor_cpus=args.ray_actor_cpus,
        gpu=gpu,
        max_jobs=args.max_jobs,
    )
    try:
        return Runner(opts).run()
    except OcrJobsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _auto_or_count(raw: str) -> int | None:
    """``auto`` -> None (chosen at start), else a whole number."""
    if str(raw).strip().lower() == "auto":
        return None
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number, got {raw!r}") from None


def _size_workers(args: argparse.Namespace) -> tuple[int, sizing.GpuPlan | None]:
    """Choose workers x threads, say so, and hand the thread count to the workers through the
    environment they inherit (engines read it with ``runner_threads()`` before loading models).
    Also the plan for GPU engines' jobs, one worker per GPU (jobs/runner/sizing.py), None without a GPU."""
    chosen = sizing.plan(args.workers, args.threads, budget_mb=args.worker_memory)
    log = logging.getLogger("ocrjobs.runner")
    log.info("workers: %s", chosen.describe())
    os.environ[THREADS_ENV] = str(chosen.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(chosen.threads))
    gpu = None
    if args.device != "cpu":
        gpus, order = sizing.visible_gpus()
        gpu = sizing.gpu_plan(gpus, args.workers, args.threads, order=order)
    said = gpu.describe() if gpu else "no GPU visible, so they get the CPU plan above"
    log.info("GPU engines (transformers, plug-ins with uses_gpu = True): %s", said)
    return chosen.workers, gpu


if __name__ == "__main__":
    sys.exit(main())
