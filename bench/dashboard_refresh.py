"""Server time of one dashboard refresh, per page, with 1000 jobs in the folder vs an empty one.

Runs each page through Streamlit's AppTest (the real scripts, no browser) and prints a
markdown table. Goal (issue 5): every page under 300 ms with 1000 jobs.
    python bench/dashboard_refresh.py [--jobs 1000] [--runs 15] [--quick]
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
PAGES = ("jobs_page", "job_page", "submit_page", "health_page")


def populate(state: Path, n: int) -> str:
    """n jobs: one real submission, cloned (job.json + manifest), a third of them finished."""
    from PIL import Image

    from jobs.store import Store
    from jobs.submit import submit

    store = Store(state)
    png = state.parent / "page.png"
    Image.new("RGB", (64, 48), "white").save(png)
    first = submit(store, [png, png, png])
    src = store.jobs_dir / first
    sub = json.loads((src / "job.json").read_text())
    for i in range(n - 1):
        d = store.jobs_dir / f"20260101-000000-{i:06x}"
        (d / "inputs").mkdir(parents=True)
        (d / "job.json").write_text(json.dumps({**sub, "id": d.name, "created_at": sub["created_at"] - i}))
        (d / "manifest.json").write_text((src / "manifest.json").read_text())
        if i % 3 == 0:
            state_json = {"status": "succeeded", "progress": {"done": 3, "failed": 0, "timed_out": 0}}
            (d / "state.json").write_text(json.dumps(state_json))
    return first


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


def report(n_jobs: int, runs: int) -> str:
    """The markdown section: each page's refresh with one job and with ``n_jobs``, side by side."""
    warnings.filterwarnings("ignore")
    os.chdir(REPO)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "one" / "state", Path(tmp) / "many" / "state"
        small.mkdir(parents=True)
        big.mkdir(parents=True)
        ids = {small: populate(small, 1), big: populate(big, n_jobs)}
        results: dict[tuple[str, Path], list[float]] = {}
        for page in PAGES:
            for state in (small, big):  # side by side, same process, same page
                os.environ["OCRJOBS_STATE"] = str(state)
                results[(page, state)] = time_page(page, ids[state], runs)
        for page in PAGES:
            one, many = (statistics.median(results[(page, s)]) for s in (small, big))
            p90 = sorted(results[(page, big)])[int(0.9 * (runs - 1))]
            ok = "met" if p90 < 300 else "missed"
            rows.append(f"| {page} | {one:.0f} | {many:.0f} | {p90:.0f} | {many / one:.2f}x | {ok} |")
    return "\n".join(
        [
            f"## Dashboard refresh: server time per page (AppTest, median of {runs})",
            "",
            f"Goal (issue 5): every page under 300 ms with {n_jobs} jobs in the folder.",
            "",
            f"| page | 1 job (ms) | {n_jobs} jobs (ms) | {n_jobs} jobs p90 (ms) | {n_jobs} vs 1 | goal |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="100 jobs, 3 runs: checks the script still works")
    args = ap.parse_args()
    if args.quick:
        args.jobs, args.runs = 100, 3
    print(report(args.jobs, args.runs))


if __name__ == "__main__":
    main()
