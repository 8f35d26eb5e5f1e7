"""Server time of one dashboard refresh, per page, with 1000 and 10,000 jobs in the folder vs one.

Runs each page through Streamlit's AppTest (the real scripts, no browser) and prints a
markdown table. Goal (issue 5): every page under 300 ms with 1000 jobs.
    python -m bench.dashboard_refresh [--jobs 1000 10000] [--runs 15] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.common import Row, goal_table  # noqa: E402 - after the path, for `python bench/dashboard_refresh.py`

PAGES = ("jobs_page", "job_page", "submit_page", "health_page")
GOAL_MS = 300
GOAL_JOBS = 1000


def populate(state: Path, n: int) -> str:
    """n jobs: one real submission, cloned (job.json + manifest), a third of them finished."""
    from PIL import Image

    from jobs.intake.submit import submit
    from jobs.store import Store

    store = Store(state)
    png = state.parent / "page.png"
    Image.new("RGB", (64, 48), "white").save(png)
    first = submit(store, [png, png, png])
    src = store.jobs_dir / first
    sub = json.loads((src / "job.json").read_text())
    for i in range(n - 1):
        d = store.jobs_dir / f"20260101-000000-{i:06x}"
        (d / "inputs").mkdir(parents=True)
        clone = {**sub, "id": d.name, "created_at": sub["created_at"] - i}
        (d / "job.json").write_text(json.dumps(clone))
        (d / "manifest.json").write_text((src / "manifest.json").read_text())
        if i % 3 == 0:
            state_json = {"status": "succeeded", "progress": {"done": 3, "failed": 0, "timed_out": 0}}
            (d / "state.json").write_text(json.dumps(state_json))
        _journal(state, d.name, "succeeded" if i % 3 == 0 else "queued", clone)
    listed = len(Store(state).list_jobs())
    if listed != n:
        raise RuntimeError(f"populated {n} jobs but the store lists {listed}: the clone no longer matches the layout")
    return first


def _journal(state: Path, job_id: str, status: str, sub: dict[str, object]) -> None:
    """Tell the store's journal (jobs/store/queue_journal.py, where this tree has one) about a cloned job,
    as submit would: the clones are written behind the store's back."""
    try:
        from jobs.store import queue_journal
    except ImportError:
        return
    queue_journal.append(state, job_id, status, sub.get("priority", 0), sub.get("created_at"))  # type: ignore[arg-type]


def time_page(page: str, job_id: str, runs: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.query_params["id"] = job_id
    at.run()  # warm: first run imports and fills caches, like a page already open in a browser
    assert not at.exception, at.exception
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        at.run()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def report(sizes: tuple[int, ...] = (1000, 10000), runs: int = 15) -> str:
    """The markdown section: each page's refresh with every size in ``sizes`` side by side with one job."""
    warnings.filterwarnings("ignore")
    os.chdir(REPO)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        states = {n: Path(tmp) / f"jobs-{n}" / "state" for n in (1, *sizes)}
        ids = {}
        for n, state in states.items():
            state.mkdir(parents=True)
            ids[n] = populate(state, n)
        results: dict[tuple[str, int], list[float]] = {}
        for page in PAGES:
            for n, state in states.items():  # side by side, same process, same page
                os.environ["OCRJOBS_STATE"] = str(state)
                results[(page, n)] = time_page(page, ids[n], runs)
        for page in PAGES:
            one = statistics.median(results[(page, 1)])
            for n in sizes:
                many = statistics.median(results[(page, n)])
                p90 = sorted(results[(page, n)])[int(0.9 * (runs - 1))]
                goal = n == GOAL_JOBS
                rows.append(
                    Row(
                        f"{page}: one refresh (ms) with {n} jobs",
                        f"{many:.0f} (p90 {p90:.0f})",
                        f"{one:.0f} with 1 job",
                        f"{many / one:.2f}x",
                        f"<= {GOAL_MS} ms" if goal else "-",
                        many <= GOAL_MS if goal else None,
                        "" if not goal or many <= GOAL_MS else "see the profile in the closing note",
                    )
                )
    return "\n".join(
        [
            f"## Dashboard refresh: server time per page (AppTest, median of {runs})",
            "",
            "Each page script run by Streamlit's AppTest (no browser) against a job folder of N jobs (one real "
            "submission cloned, a third of them finished), after one warm-up run, as a page already open refreshes. "
            f"Goal (issue 5): <= {GOAL_MS} ms with {GOAL_JOBS} jobs; larger folders are shown for scale.",
            "",
            goal_table(rows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, nargs="+", default=[1000, 10000], help="folder sizes (default 1000 10000)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="100 jobs, 3 runs: checks the script still works")
    args = ap.parse_args(argv)
    if args.quick:
        args.jobs, args.runs = [100], 3
    print(report(tuple(args.jobs), args.runs))


if __name__ == "__main__":
    main()
