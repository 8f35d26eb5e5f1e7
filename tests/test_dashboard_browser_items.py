"""Issue 17 in a real Chromium, as a user meets it: a cancel from the Job page leaves the items in flight
pending (defect 3), the workbook's column is preselected from the ZIP (defect 4), one item opens on its
own with its picture, text and the worker that read it, and every page fits a 390 px phone screen.

The same real dashboard and browser as tests/test_dashboard_live.py. Screenshots: /tmp/h8-shots/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests import test_dashboard_live as live
from tests.conftest import Runners, cli_json, make_png, wait_for
from tests.test_browser import CHROMIUM
from tests.test_dashboard_live import SHOTS, WAIT_MS, click_until, grid, status_heading

browser, dashboard = live.browser, live.dashboard  # the fixtures, under their names here
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (`make setup` does)"),
]


def test_a_cancel_from_the_job_page_leaves_the_items_in_flight_pending_not_failed(
    dashboard: str, state: Path, runners: Runners, tmp_path: Path, browser: Any
) -> None:
    """Defect 3: the engine answers the runner's soft stop with "stopped at the item timeout" (as the
    real ones do); the page must not count or list that as a failure."""
    from playwright.sync_api import expect

    files = [str(make_png(tmp_path / f"p{i}.png", (20 + i, 10 + i))) for i in range(6)]
    engine = ("--engine", "tests.engines:StopEngine", "--engine-option", "delay=3", "--item-timeout", "60")
    job_id = cli_json(state, "submit", *files, *engine)["id"]
    runners.start(state, "--workers", "1")
    page = browser.new_page()
    page.goto(f"{dashboard}/job?id={job_id}")
    expect(status_heading(page, job_id, "running")).to_be_visible(timeout=WAIT_MS)
    wait_for(lambda: cli_json(state, "show", job_id)["progress"].get("current"), timeout=30, what="an item in flight")
    click_until(page.get_by_role("button", name="Cancel", exact=True), page.get_by_text(f"Cancel job {job_id}?"))
    page.get_by_role("button", name="Yes, cancel").click()
    expect(status_heading(page, job_id, "cancelled")).to_be_visible(timeout=WAIT_MS)
    page.wait_for_timeout(2_500)  # a refresh after the end
    page.screenshot(path=str(SHOTS / "3-cancelled.png"), full_page=True)
    failed = page.get_by_test_id("stMetric").filter(has_text=re.compile(r"^failed"))
    expect(failed).to_contain_text("0")
    expect(page.get_by_text("Failed and timed-out items")).to_have_count(0)
    assert "pending" in grid(page) and "failed" not in grid(page) and "stopped" not in grid(page)
    assert cli_json(state, "show", job_id)["progress"]["failed"] == 0


def test_the_workbook_column_that_names_the_zips_files_is_chosen_for_the_user(
    dashboard: str, state: Path, tmp_path: Path, browser: Any
) -> None:
    """Defect 4: column A holds ids, column B the file names; with the ZIP given, B is preselected
    (marked ✓ in the preview, with the header names) and the job is submitted from it."""
    from playwright.sync_api import expect

    from tests.test_dashboard_defects import id_first_book

    book, bundle = id_first_book(tmp_path)
    page = browser.new_page()
    page.goto(f"{dashboard}/submit_page")
    uploads = page.locator("input[type=file]")
    expect(uploads.first).to_be_attached(timeout=WAIT_MS)
    uploads.first.set_input_files(str(book))
    expect(page.get_by_text("ZIP of the files the column names")).to_be_visible(timeout=WAIT_MS)
    page.locator("input[type=file]").nth(1).set_input_files(str(bundle))
    column = page.get_by_role("combobox", name=re.compile(r"^Column naming the files"))
    expect(column).to_have_value(re.compile(r"^\s*B\s+file"), timeout=WAIT_MS)
    expect(page.get_by_text("Column B names files found in the ZIP.")).to_be_visible()
    page.screenshot(path=str(SHOTS / "4-column.png"), full_page=True)
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_text(re.compile(r"[Ss]ubmitted"))).to_be_visible(timeout=WAIT_MS)
    (job,) = cli_json(state, "list")
    assert [i["source"] for i in manifest_of(state, job["id"])] == ["a.png", "b.png"]


def manifest_of(state: Path, job_id: str) -> list[dict[str, Any]]:
    from jobs.store import Store

    return Store(state).manifest(job_id)


def test_one_item_opens_on_its_own_with_picture_text_and_worker(
    dashboard: str, state: Path, runners: Runners, tmp_path: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    files = [str(make_png(tmp_path / f"scan{i}.png", (100 + i, 40 + i))) for i in range(2)]
    job_id = cli_json(state, "submit", *files, "--engine", "tests.engines:SizeEngine")["id"]
    runners.start(state, "--workers", "1")
    wait_for(lambda: cli_json(state, "show", job_id)["status"] == "succeeded", timeout=60, what="the job done")
    page = browser.new_page()
    page.goto(f"{dashboard}/job?id={job_id}&item=1")
    expect(page.get_by_role("heading", name="Item #1 scan1.png")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("code").filter(has_text=re.compile(r"^101x41$"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"worker: \S+ · worker 0 \(pid \d+\)")).first).to_be_visible()
    expect(page.get_by_test_id("stImage").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "item-detail.png"), full_page=True)
    page.get_by_role("link", name="Back to all results").click()
    expect(page.get_by_role("heading", name="Item #1 scan1.png")).to_have_count(0, timeout=10_000)
    expect(page.get_by_text("Full text of")).to_be_visible()
    assert "item=" not in page.url, page.url


def test_every_page_fits_a_390_px_phone_screen(dashboard: str, state: Path, tmp_path: Path, browser: Any) -> None:
    """Nothing wider than the screen: no page scrolls sideways (tables scroll inside themselves)."""
    job_id = cli_json(state, "submit", str(make_png(tmp_path / "a.png")), "--engine", "tests.engines:SizeEngine")["id"]
    page = browser.browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    wide = {}
    for path in ("/", f"/job?id={job_id}", f"/job?id={job_id}&item=0", "/submit_page", "/health_page"):
        page.goto(dashboard + path)
        page.get_by_text("runners:").first.wait_for(timeout=WAIT_MS, state="attached")
        page.wait_for_timeout(1_000)
        name = re.sub(r"\W+", "-", path.replace(job_id, "j")).strip("-") or "jobs"
        page.screenshot(path=str(SHOTS / f"390-{name}.png"), full_page=True)
        wide[path] = page.evaluate(WIDEST)
    assert all(w <= 390 for w in wide.values()), wide


#: The widest of the page and its main pane (which scrolls by itself, so the page's own width misses it).
WIDEST = """Math.max(document.documentElement.scrollWidth, ...[...document.querySelectorAll(
    '[data-testid=stMain], [data-testid=stMainBlockContainer]')].map(e => e.scrollWidth))"""
