"""``python -m bench.report [-o bench/RESULTS.md] [--quick] [--only PART,...]``: every benchmark, one
after the other, written as one markdown file headed by the machine they ran on (``make bench``).

A part that fails (or whose module is not in this tree) becomes a "not available" row with the
reason, so one broken benchmark never hides the others' numbers. Parts owned elsewhere
(store_scale, batching, ray_bench) are called through ``section(work, quick)`` or
``report(measure(work, quick), quick)``, whichever the module has.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Row, goal_table, machine, table, versions

Part = Callable[[Path, argparse.Namespace], str]


def _overhead(work: Path, args: argparse.Namespace) -> str:
    from bench import overhead

    return overhead.report(overhead.measure(work, args.quick, args.rounds or (1 if args.quick else 2)), args.quick)


def _recovery(work: Path, args: argparse.Namespace) -> str:
    from bench import recovery

    return recovery.report(recovery.measure(work, args.quick), args.quick)


def _memory(work: Path, args: argparse.Namespace) -> str:
    from bench import memory

    return memory.report(memory.measure(work, args.quick), args.quick)


def _dashboard(work: Path, args: argparse.Namespace) -> str:
    from bench import dashboard_refresh

    return dashboard_refresh.report((100,) if args.quick else (1000, 10000), 3 if args.quick else 15)


def _throughput(work: Path, args: argparse.Namespace) -> str:
    from bench import throughput

    samples, runs = throughput.measure(work, args.quick, max(1, args.repeat))
    return throughput.report(samples, runs, args.quick)[0]


def _quality(work: Path, args: argparse.Namespace) -> str:
    from bench import quality

    return quality.report(quality.measure(work, args.quick), args.quick)[0]


def _call(fn: Callable[..., Any], values: dict[str, Any], positional: list[Any]) -> Any:
    """Call with each parameter by its name where known (work/tmp/out/folder, quick, measured), else
    the value at its position in ``positional``; parameters with defaults are otherwise left alone."""
    kwargs = {}
    for i, param in enumerate(inspect.signature(fn).parameters.values()):
        if param.name in values:
            kwargs[param.name] = values[param.name]
        elif param.default is inspect.Parameter.empty and i < len(positional):
            kwargs[param.name] = positional[i]
    return fn(**kwargs)


def external(module: str) -> Part:
    """A part from a module someone else owns, through whichever of its entry points exists."""

    def run(work: Path, args: argparse.Namespace) -> str:
        mod = importlib.import_module(f"bench.{module}")
        values = {"work": work, "tmp": work, "out": work, "folder": work, "workdir": work, "quick": args.quick}
        if hasattr(mod, "section"):
            out = _call(mod.section, values, [work, args.quick])
        elif hasattr(mod, "measure") and hasattr(mod, "report"):
            measured = _call(mod.measure, values, [work, args.quick])
            out = _call(mod.report, {**values, "measured": measured}, [measured, args.quick])
        else:
            raise RuntimeError(f"bench/{module}.py has neither section() nor measure() + report()")
        out = out[0] if isinstance(out, tuple) else out
        if not isinstance(out, str):
            raise TypeError(f"bench/{module}.py returned {type(out).__name__}, not markdown")
        return out

    return run


#: name -> (title if it fails, how to run it). Order: the issue's.
PARTS: dict[str, tuple[str, Part]] = {
    "overhead": ("Overhead: ocrjobs vs the raw engine", _overhead),
    "store_scale": ("Store at scale: 10,000 jobs vs RQ on redis", external("store_scale")),
    "recovery": ("Recovery: runner SIGKILLed mid-job", _recovery),
    "memory": ("Memory: runner + worker RSS over a long job", _memory),
    "dashboard": ("Dashboard refresh", _dashboard),
    "batching": ("Batching: transformers engine batched vs batch-1", external("batching")),
    "ray_bench": ("Ray executor", external("ray_bench")),
    "throughput": ("Throughput: ocrjobs vs a plain rapidocr loop", _throughput),
    "quality": ("Quality: CER by engine and subset", _quality),
    "real_docs": ("Real documents: the default engine beside plain Tesseract and RapidOCR", external("real_docs")),
    "hf_confidence": ("Confidence memory: transformers engine", external("hf_confidence")),
    "pdf_text": ("PDF text layer: digital pages read from the PDF vs rendered and OCR'd", external("pdf_text")),
    "pdf_export": ("Searchable PDF export", external("pdf_export")),
    "search": ("Search across jobs", external("search")),
    "multijob": ("Many jobs at once: a small job in a busy runner, 1 vs 8 jobs held", external("multijob")),
}


def not_available(title: str, error: BaseException) -> str:
    reason = re.sub(r"\s+", " ", f"{type(error).__name__}: {error}")[:300].replace("|", "/")
    return f"## {title}\n\n" + goal_table([Row("whole part", f"not available: {reason}")])


MARK = "<!-- part: "


def previous(path: Path) -> dict[str, tuple[str, float]]:
    """The parts' sections in an earlier RESULTS.md, by part name, with how long each took."""
    if not path.is_file():
        return {}
    found = re.findall(r"<!-- part: (\w+) took=(\d+) -->\n(.*?)(?=\n<!-- part: |\Z)", path.read_text(), re.S)
    return {name: (section.strip(), float(took)) for name, took, section in found}


def tally(section: str) -> str:
    met = len(re.findall(r"\| met( \(|\s*\|)", section)) + len(re.findall(r"-> met\b", section))
    missed = section.count("**missed**") + len(re.findall(r"-> (MISSED|missed)\b", section))
    if "not available" in section:
        return "not available"
    return f"{met + missed} goal(s): {met} met, {missed} missed" if met + missed else "no goal"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", type=Path, help="write here too (default: print only)")
    p.add_argument("--quick", action="store_true", help="every part at its smallest size (a smoke test)")
    p.add_argument("--only", help=f"comma-separated parts (default all; '' with --update: none): {', '.join(PARTS)}")
    p.add_argument("--repeat", type=int, default=1, help="throughput rounds (best time of each side kept)")
    p.add_argument("--rounds", type=int, help="overhead A/B rounds (default 2, 1 with --quick)")
    p.add_argument("--update", action="store_true", help="keep the other parts' sections already in --output")
    args = p.parse_args(argv)
    chosen = [c for c in args.only.split(",") if c] if args.only is not None else list(PARTS)
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    head = [
        "# Benchmark results" + (" (quick sizes: a smoke test, not a measurement)" if args.quick else ""),
        "",
        f"Machine: {machine()}.  ",
        f"Software: {versions()}.  ",
        "This machine is shared with other work and noisy: every number that has a reference was taken side by "
        "side with it in the same run (sides interleaved), so read the ratios, not the absolute times.  ",
        "Reproduce with `make bench` (`python -m bench.report -o bench/RESULTS.md`); each part also runs alone "
        "(`python -m bench.<part> [--quick]`); inputs are generated by bench/dataset.py with fixed seeds.",
    ]
    done: dict[str, tuple[str, float]] = previous(args.output) if args.update and args.output else {}
    if done:  # the earlier run's machine line stays: most of the numbers are from it
        head = args.output.read_text().split("\n## Summary")[0].rstrip("\n").splitlines()
    with tempfile.TemporaryDirectory(prefix="ocrjobs-bench-") as tmp:
        for name in chosen:
            title, run = PARTS[name]
            work = Path(tmp) / name
            work.mkdir()
            t0 = time.monotonic()
            try:
                section = run(work, args)
            except Exception as e:  # noqa: BLE001 - one broken part must not hide the others
                traceback.print_exc()
                section = not_available(title, e)
            took = time.monotonic() - t0
            print(f"bench.report: {name} took {took:.0f} s", file=sys.stderr, flush=True)
            done[name] = (section.strip(), took)
    order = [name for name in PARTS if name in done] + [name for name in done if name not in PARTS]
    summary = [[name, tally(done[name][0]), f"{done[name][1]:.0f}"] for name in order]
    overview = ["", "## Summary", "", table(["part", "goals", "seconds to run"], summary)]
    if args.update and len(done) > len(chosen) and chosen:
        overview += [
            "",
            f"Parts re-run (`--update`): {', '.join(chosen)}, on {machine()}; the others are from the "
            "run described above.",
        ]
    sections = [f"\n{MARK}{name} took={done[name][1]:.0f} -->\n{done[name][0]}" for name in order]
    text = "\n".join(head + overview + sections) + "\n"
    print(text, end="", flush=True)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
