"""``python -m bench.report [-o bench/RESULTS.md] [--quick]``: the benchmarks, one after the
other, written as one markdown file headed by the machine they ran on (``make bench``)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench import dashboard_refresh, quality, throughput
from bench.common import machine, versions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", type=Path, help="write here too (default: print only)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="throughput rounds (best time of each side kept)")
    args = p.parse_args(argv)
    parts = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}.  ",
        f"Software: {versions()}.  ",
        "Reproduce with `make bench` (`python -m bench.report --repeat 2 -o bench/RESULTS.md`); inputs are generated "
        "by bench/dataset.py with fixed seeds.",
    ]
    with tempfile.TemporaryDirectory(prefix="ocrjobs-bench-") as tmp:
        samples, runs = throughput.measure(Path(tmp) / "throughput", args.quick, max(1, args.repeat))
        parts += ["", throughput.report(samples, runs, args.quick)[0]]
        parts += ["", quality.report(quality.measure(Path(tmp) / "quality", args.quick), args.quick)[0]]
    parts += ["", dashboard_refresh.report(100 if args.quick else 1000, 3 if args.quick else 15)]
    text = "\n".join(parts) + "\n"
    print(text, end="", flush=True)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
