"""The runner daemon: ``python runner.py [--state DIR] [--once] [--workers N] [--device auto|cpu|cuda]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.getcwd())  # so --engine package.module:Class resolves from the working directory

from jobs import config  # noqa: E402
from jobs.errors import OcrJobsError  # noqa: E402
from jobs.supervisor import Runner, RunnerOptions  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="runner.py", description="ocrjobs runner: works through the job folder")
    p.add_argument("--state", help="job folder (default: $OCRJOBS_STATE or ./state)")
    p.add_argument("--once", action="store_true", help="drain the queue, then exit")
    p.add_argument("--workers", type=int, default=1, help="worker subprocesses (each loads the engine once)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--lease-seconds", type=float, default=config.DEFAULT_LEASE_S)
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=config.KILL_GRACE_S,
        help="after an item's timeout, seconds before its worker is killed (0-5)",
    )
    p.add_argument("--retention-days", type=float, default=config.RETENTION_DAYS)
    p.add_argument("--log-level", default=os.environ.get("OCRJOBS_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if not 1 <= args.lease_seconds <= 3600:
        p.error("--lease-seconds must be between 1 and 3600")
    if not 0 <= args.grace_seconds <= 5:
        p.error("--grace-seconds must be between 0 and 5")
    opts = RunnerOptions(
        state=args.state,
        workers=args.workers,
        device=args.device,
        lease_s=args.lease_seconds,
        once=args.once,
        grace_s=args.grace_seconds,
        retention_days=args.retention_days,
    )
    try:
        return Runner(opts).run()
    except OcrJobsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
