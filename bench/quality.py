"""Quality: CER (spaces kept) of the rapid, tesseract and auto engines on the generated set
(bench/dataset.py), each run as a job through ``python -m jobs submit`` and ``runner.py --once``.

``python -m bench.quality [--quick]`` prints markdown. The goal (issue 7): on each subset
(English, Chinese, mixed) auto's CER is at most the better engine's, and never more than 0.01
above either.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.common import cer, results, run_once, sizing_line, submit, table
from bench.dataset import quality_set

ENGINES = ("rapid", "tesseract", "auto")
SUBSETS = ("english", "chinese", "mixed")
KINDS = ("line", "page", "pdf150", "pdf300")


def measure(work: Path, quick: bool) -> dict[str, object]:
    samples = quality_set(work / "data", quick=quick)
    state = work / "state"
    files = [s.path for s in samples]
    jobs = {engine: submit(state, files, "--engine", engine) for engine in ENGINES}
    t0 = time.monotonic()
    log = run_once(state)
    elapsed = time.monotonic() - t0
    rows = {engine: results(state, job_id) for engine, job_id in jobs.items()}
    return {"samples": samples, "rows": rows, "elapsed": elapsed, "sizing": sizing_line(log)}


def report(m: dict[str, object], quick: bool) -> tuple[str, bool]:
    samples, rows = m["samples"], m["rows"]
    assert isinstance(samples, list) and isinstance(rows, dict)
    by_subset: dict[str, dict[str, float]] = defaultdict(dict)
    by_kind: dict[str, dict[str, float]] = defaultdict(dict)
    lines_out = []
    for engine in ENGINES:
        got = rows[engine]
        failed = [r["source"] for r in got if r["status"] != "done"]
        pairs = [(r["text"], s) for r, s in zip(got, samples, strict=True)]
        for subset in SUBSETS:
            by_subset[engine][subset] = cer([(t, s.reference) for t, s in pairs if s.subset == subset])
        for kind in KINDS:
            chosen = [(t, s.reference) for t, s in pairs if s.kind == kind]
            by_kind[engine][kind] = cer(chosen) if chosen else float("nan")
        by_subset[engine]["all"] = cer([(t, s.reference) for t, s in pairs])
        seconds = sum(r.get("processing_time_ms") or 0 for r in got) / 1000 / max(len(got), 1)
        row = [f"`{engine}`", *(f"{by_subset[engine][c]:.4f}" for c in (*SUBSETS, "all")), f"{seconds:.2f}"]
        lines_out.append(row + [", ".join(failed) or "none"])
    verdicts = []
    ok = True
    for subset in SUBSETS:
        auto, others = by_subset["auto"][subset], [by_subset[e][subset] for e in ENGINES if e != "auto"]
        met = auto <= min(others) + 1e-9 and all(auto <= o + 0.01 for o in others)
        ok &= met
        verdicts.append(f"{subset}: auto {auto:.4f} vs best other {min(others):.4f} -> {'met' if met else 'MISSED'}")
    what = (
        "one plain line image per subset"
        if quick
        else "per subset: line images plain, rotated 1.5 degrees and speckled; A4 pages at 200 dpi speckled "
        "and rotated 1 degree; raster PDFs at 150 and 300 dpi, rendered at 200 dpi"
    )
    out = [
        "## Quality: CER by engine and subset" + (" (quick)" if quick else ""),
        "",
        f"{len(samples)} generated inputs ({what}); each engine one job through `submit` + `runner.py --once` "
        f"({m['sizing']}; {m['elapsed']:.0f} s for the three jobs). CER = edit distance / reference length "
        "after NFKC, whitespace runs as one space, pooled over the subset; lower is better.",
        "",
        table(["engine", *SUBSETS, "all", "s/item (in worker)", "failed items"], lines_out),
        "",
        table(["engine", *KINDS], [[f"`{e}`", *(_fmt(by_kind[e][k]) for k in KINDS)] for e in ENGINES]),
        "",
        "Goal (auto <= the better engine on each subset, never > 0.01 above either): " + "; ".join(verdicts),
    ]
    return "\n".join(out), ok


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"  # NaN: no input of that kind


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one line image per subset (a smoke test)")
    p.add_argument("--work", type=Path, help="keep inputs and job folder here (default: a temporary folder)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocrjobs-quality-") as tmp:
        work = args.work or Path(tmp)
        text, _ok = report(measure(work, args.quick), args.quick)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
