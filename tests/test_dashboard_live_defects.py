"""Issue 17, defects 7, 12 and 13 (charts) in a real Chromium, as a user meets them.

The same real dashboard and browser as tests/test_dashboard_live.py; no runner: the jobs, events,
heartbeats and history are written as a runner would, so each test takes seconds.
Screenshots: /tmp/h8-shots/.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from jobs.store import Store
from tests import test_dashboard_live as live
from tests.conftest import cli, make_png, wait_for
from tests.fakes import write_heartbeat, write_job
from tests.test_browser import CHROMIUM
from tests.test_dashboard_live import SHOTS, WAIT_MS, grid, submit

browser, dashboard = live.browser, live.dashboard  # the fixtures, under their names here
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (`make setup` does)"),
]


def test_search_inside_a_zip_and_the_filters_survive_a_reload(
    dashboard: str, state: Path, tmp_path: Path, browser: Any
) -> None:
    """Defect 12: a file name inside a ZIP finds its job; filters and sort stay in the URL through a reload."""
    from playwright.sync_api import expect

    bundle = tmp_path / "batch.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.write(make_png(tmp_path / "invoice-4711.png"), "march/invoice-4711.png")
    zipped = submit(state, bundle, delay=0)
    other = submit(state, make_png(tmp_path / "receipt.png"), delay=0)
    page = browser.new_page()
    page.goto(dashboard)
    wait_for(lambda: other in grid(page, 0) and zipped in grid(page, 0), timeout=30, what="both jobs listed")
    search = page.get_by_role("textbox", name="Search")
    search.fill("invoice-4711")
    search.press("Enter")
    wait_for(lambda: other not in grid(page, 0) and zipped in grid(page, 0), timeout=10, what="only the ZIP's job")
    wait_for(lambda: "q=invoice-4711" in page.url, timeout=10, what="the search in the URL")
    page.reload()
    expect(page.get_by_role("textbox", name="Search")).to_have_value("invoice-4711", timeout=WAIT_MS)
    wait_for(lambda: zipped in grid(page, 0), timeout=30, what="the ZIP's job after the reload")
    assert other not in grid(page, 0)
    page.screenshot(path=str(SHOTS / "12-search-after-reload.png"), full_page=True)


def test_cancel_in_a_dialog_and_charts_without_vega_warnings(
    dashboard: str, state: Path, tmp_path: Path, browser: Any
) -> None:
    """Defect 7: the dialog closes with the answer; defect 13: no chart logs "Infinite extent"."""
    from playwright.sync_api import expect

    store = Store(state)
    job_id = write_job(store, total=6)
    now = time.time()
    events = [{"at": now - 60 + 8 * i, "event": "item_committed", "index": i, "status": "done"} for i in range(6)]
    (store.job_dir(job_id) / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (store.runners_dir / "history").mkdir(exist_ok=True)
    samples = [{"t": now - 60 * m, "cpu_percent": 20.0 + m} for m in (40, 30, 20, 10, 0)]
    (store.runners_dir / "history" / "box-1.json").write_text(json.dumps({"samples": samples}))
    page = browser.new_page()
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if "extent" in m.text.lower() else None)
    page.goto(f"{dashboard}/job?id={job_id}")
    expect(page.get_by_text("Throughput")).to_be_visible(timeout=WAIT_MS)
    page.get_by_role("button", name="Cancel", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Cancel job {job_id}?")).to_be_visible(timeout=10_000)
    page.screenshot(path=str(SHOTS / "7-dialog.png"), full_page=True)
    dialog.get_by_role("button", name="Yes, cancel").click()
    expect(dialog).to_have_count(0, timeout=10_000)  # closed by the answer, not left on screen
    expect(page.get_by_text("Requested, waiting for a runner: cancel")).to_be_visible(timeout=10_000)
    assert [r["kind"] for _, r in store.pending_requests(job_id)] == ["cancel"]
    page.wait_for_timeout(5_500)  # refreshes of the page and its chart
    page.screenshot(path=str(SHOTS / "7-job.png"), full_page=True)
    write_heartbeat(store, "box-1", job=None)  # alive now: a heartbeat is stale after 10 s
    page.goto(f"{dashboard}/health_page")
    expect(page.get_by_text("CPU %, last hour")).to_be_visible(timeout=WAIT_MS)
    page.wait_for_timeout(5_500)
    page.screenshot(path=str(SHOTS / "10-health.png"), full_page=True)
    assert warnings == [], warnings
    assert cli(state, "show", job_id).returncode == 0
