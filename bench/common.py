"""What the benchmarks share: CER scoring, running ocrjobs as a user does, and the machine's description."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def normalize(text: str) -> str:
    """NFKC, and every whitespace run (line breaks too) one space: spaces count, layout does not."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).strip())


def edits(hyp: str, ref: str) -> tuple[int, int]:
    """(Levenshtein distance, reference length) after :func:`normalize`, to pool over a subset."""
    from rapidfuzz.distance import Levenshtein

    h, r = normalize(hyp), normalize(ref)
    return Levenshtein.distance(h, r), len(r)


def cer(pairs: list[tuple[str, str]]) -> float:
    """Character error rate of (hypothesis, reference) pairs, pooled: all edits / all reference characters."""
    totals = [edits(h, r) for h, r in pairs]
    return sum(d for d, _ in totals) / max(sum(n for _, n in totals), 1)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}... exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def submit(state: Path, files: list[Path], *options: str) -> str:
    """``python -m jobs submit`` as a user runs it; returns the job id."""
    cmd = [sys.executable, "-m", "jobs", "--state", str(state), "submit", *map(str, files), *options, "--json"]
    return json.loads(_run(cmd, 600).stdout)["id"]


def run_once(state: Path, *options: str, timeout: float = 3600) -> str:
    """``python runner.py --once``: works through every queued job, then exits. Returns its log."""
    proc = _run([sys.executable, "runner.py", "--state", str(state), "--once", *options], timeout)
    return proc.stdout + proc.stderr


def sizing_line(log: str) -> str:
    """The runner's own account of the workers x threads it chose."""
    found = re.search(r"workers: (.*?); override", log)
    return found.group(1) if found else "?"


def results(state: Path, job_id: str) -> list[dict[str, Any]]:
    """A job's rows in item order, through ``python -m jobs export``."""
    out = state / f"{job_id}.json"
    _run(
        [sys.executable, "-m", "jobs", "--state", str(state), "export", job_id, "--format", "json", "-o", f"{out}"], 600
    )
    return sorted(json.loads(out.read_text()), key=lambda r: r["index"])


def machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = psutil.virtual_memory()
    return (
        f"{cpu}, {cores} cores, {mem.total / 2**30:.1f} GiB RAM ({mem.available / 2**30:.1f} GiB available), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at start, {time.strftime('%Y-%m-%d %H:%M')}"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("rapidocr-onnxruntime", "onnxruntime", "tesserocr"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} missing")
    try:
        import tesserocr

        out.append(f"Tesseract {tesserocr.tesseract_version().split()[1]}")
    except ImportError:
        pass
    return ", ".join(out)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Row:
    """One line of a part's results table: ocrjobs side by side with its reference, and the goal."""

    measure: str
    ocrjobs: str
    reference: str = "-"
    ratio: str = "-"
    goal: str = "-"
    met: bool | None = None  # None: informational row, no goal
    note: str = ""


def goal_table(rows: list[Row]) -> str:
    """The one table shape every part of RESULTS.md uses; a missed goal carries its reason."""
    out = []
    for r in rows:
        met = "-" if r.met is None else ("met" if r.met else "**missed**")
        if r.note:
            met += f" ({r.note})"
        out.append([r.measure, r.ocrjobs, r.reference, r.ratio, r.goal, met])
    return table(["measure", "ocrjobs", "reference", "ratio", "goal", "met?"], out)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out
