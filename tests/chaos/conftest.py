"""Helpers for the fault campaigns: short forms run in ``make test``, long forms with ``make chaos``.

``OCRJOBS_CHAOS=long`` selects the long forms. Each campaign records its figures with
:func:`record`; with ``OCRJOBS_CHAOS_REPORT=path.json`` they are also merged into that file
(docs/reliability.md quotes the last long run).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

from jobs.errors import Corrupt
from jobs.store.atomic import TMP_PREFIX, read_json

T = TypeVar("T")

LONG = os.environ.get("OCRJOBS_CHAOS", "").lower() == "long"


def scale(short: T, long: T) -> T:
    """The short-form value, or the long-form one under ``OCRJOBS_CHAOS=long``."""
    return long if LONG else short


def record(campaign: str, **figures: Any) -> None:
    """Print a campaign's figures and merge them into ``$OCRJOBS_CHAOS_REPORT`` if set."""
    figures = {
        "form": "long" if LONG else "short",
        "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        **figures,
    }
    print(f"\n[chaos] {campaign}: {json.dumps(figures, sort_keys=True)}")
    out = os.environ.get("OCRJOBS_CHAOS_REPORT")
    if out:
        path = Path(out)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[campaign] = figures
        path.write_text(json.dumps(data, indent=1, sort_keys=True))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def corrupt_json_files(root: Path) -> list[str]:
    """Every ``*.json`` under ``root`` that does not parse, and every ``*.jsonl`` line that lost
    a whole record: a line torn by a kill is tolerated (readers skip it), one glued to the next is not."""
    bad = []
    for path in root.rglob("*.json"):
        if path.name.startswith(TMP_PREFIX) or "quarantine" in path.parts:
            continue
        try:
            read_json(path, expect=object)
        except Corrupt as e:
            bad.append(str(e))
    for path in root.rglob("*.jsonl"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                if line and line.count(line[:7]) > 1:  # a torn record with the next one glued on
                    bad.append(f"{path}:{n}: {line[:80]!r}")
    return bad


def torn_lines(root: Path) -> int:
    """``*.jsonl`` lines that do not parse: records a kill cut short (skipped by every reader)."""
    n = 0
    for path in root.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                n += bool(line)
    return n


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TMP_PREFIX}*")]


def exactly_once(state: Path, job_id: str, total: int) -> dict[str, Any]:
    """The exactly-once evidence for one job: results per index, commit events, duplicates."""
    rdir = state / "jobs" / job_id / "results"
    results = {int(p.stem): json.loads(p.read_text()) for p in rdir.glob("[0-9]*.json")}
    events = [json.loads(line) for line in (state / "jobs" / job_id / "events.jsonl").read_text().splitlines()]
    commits = Counter(e["index"] for e in events if e["event"] == "item_committed")
    return {
        "results": results,
        "events": events,
        "missing": sorted(set(range(total)) - set(results)),
        "extra": sorted(set(results) - set(range(total))),
        "committed_twice": sorted(i for i, n in commits.items() if n > 1),
        "commit_events": sum(commits.values()),
        "duplicates_ignored": sum(1 for e in events if e["event"] == "duplicate_ignored"),
    }
