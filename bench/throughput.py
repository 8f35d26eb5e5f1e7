"""Throughput: ocrjobs with its default configuration against a plain default rapidocr loop, side
by side in one run on the same inputs (bench/dataset.py's throughput set: 50 mixed pages).

Each side is timed from the start of its first process to the end of its last, so both pay for
Python start-up and model loading; ocrjobs also pays for `submit` copying the files in and for
committing every result durably. ``python -m bench.throughput [--quick] [--repeat N]`` prints
markdown. The goal (issue 7): ocrjobs >= 1.25x the plain loop's pages per second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.common import cer, table
from bench.dataset import Sample, throughput_set
from bench.overhead import ocrjobs, plain

GOAL = 1.25


def measure(work: Path, quick: bool, repeat: int) -> tuple[list[Sample], dict[str, list[tuple[float, float, str]]]]:
    samples = throughput_set(work / "data", n=3, lines_only=True) if quick else throughput_set(work / "data")
    files = [s.path for s in samples]
    configs = {"plain default `RapidOCR()` loop, 1 process": None, "ocrjobs, default configuration": ()}
    if not quick:
        configs["ocrjobs, `--engine rapid` (no Tesseract re-reading)"] = ("--engine", "rapid")
    runs: dict[str, list[tuple[float, float, str]]] = {name: [] for name in configs}
    for n in range(repeat):  # alternate the sides, so a busy moment on the machine hits both alike
        for name, options in configs.items():
            if options is None:
                seconds, texts = plain(files, work)
                how = "1 process, onnxruntime default threads"
            else:
                seconds, texts, how = ocrjobs(files, work / f"state-{n}-{len(runs[name])}", *options)
            runs[name].append((seconds, cer(list(zip(texts, (s.reference for s in samples), strict=True))), how))
    return samples, runs


def report(samples: list[Sample], runs: dict[str, list[tuple[float, float, str]]], quick: bool) -> tuple[str, float]:
    names = list(runs)
    best = {name: min(r[0] for r in rs) for name, rs in runs.items()}
    base = best[names[0]]
    rows = []
    for name, rs in runs.items():
        s = best[name]
        rows.append([name, f"{s:.1f}", f"{len(samples) / s:.2f}", f"{base / s:.2f}x", f"{rs[0][1]:.4f}", rs[0][2]])
    ratio = base / best[names[1]]
    kinds = {k: sum(s.kind == k for s in samples) for k in ("page", "line")}
    what = f"{kinds['page']} A4 pages at 150 dpi, {kinds['line']} line images"
    out = [
        "## Throughput: ocrjobs vs a plain rapidocr loop" + (" (quick)" if quick else ""),
        "",
        f"{len(samples)} PNG inputs ({what}; English, "
        "Chinese and mixed text in turn, every fourth speckled), the same files for every row, run one after "
        f"another in one session ({len(next(iter(runs.values())))} round(s), best time kept). Wall time includes "
        "process start-up and model loading on both sides.",
        "",
        table(["configuration", "seconds", "items/s", "vs plain", "CER", "workers x threads"], rows),
        "",
        f"Goal (ocrjobs default >= {GOAL}x the plain loop): {ratio:.2f}x -> {'met' if ratio >= GOAL else 'MISSED'}",
    ]
    return "\n".join(out), ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 line images, no extra rows (a smoke test)")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the best time of each side is kept")
    p.add_argument("--work", type=Path, help="keep inputs and job folders here (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocrjobs-throughput-") as tmp:
        samples, runs = measure(args.work or Path(tmp), args.quick, max(1, args.repeat))
    print(report(samples, runs, args.quick)[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
