"""The dashboard keeps up with its jobs by itself (issue 17: defects 1, 2, 5, 6), in a real Chromium.

A real dashboard (`python -m jobs.dashboard.gate`, no password) over a job folder that a real runner
works on with the SizeEngine, slowed by its ``delay`` option so results arrive over a few seconds.
Every check is what the user sees, and no test reloads a page. Screenshots: /tmp/h8-shots/.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import PY, REPO, Runners, cli, cli_json, make_png, wait_for
from tests.test_browser import CHROMIUM, FLAGS, free_port
from tests.test_dashboard_security import http

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (`make setup` does)"),
]
SHOTS = Path("/tmp/h8-shots")
ENGINE = "tests.engines:SizeEngine"
WAIT_MS = 60_000


@pytest.fixture
def dashboard(tmp_path: Path, state: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k != "OCRJOBS_DASHBOARD_PASSWORD"}
    port = free_port()
    log = open(tmp_path / "dashboard.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [PY, "-m", "jobs.dashboard.gate", "--server.port", str(port), "--server.headless", "true"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**env, "OCRJOBS_STATE": str(state)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http(f"{url}/_stcore/health")[0] == 200 or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b.new_context(viewport={"width": 1400, "height": 1000})
        b.close()


def submit(state: Path, *files: Path, delay: float) -> str:
    return cli_json(state, "submit", *map(str, files), "--engine", ENGINE, "--engine-option", f"delay={delay}")["id"]


def images(tmp: Path, n: int) -> list[Path]:
    return [make_png(tmp / f"scan{i}.png", size=(100 + i, 40 + i)) for i in range(n)]


def status_heading(page: Any, job_id: str, status: str) -> Any:
    return page.get_by_role("heading", name=f"{job_id} · {status}")


def grid(page: Any, nth: int = -1) -> str:
    """The text of a dataframe: its cells are drawn on a canvas, with an accessible table beside it."""
    frame = page.get_by_test_id("stDataFrame").nth(nth)
    return " | ".join(frame.locator("table td").all_inner_texts())


def click_until(button: Any, then: Any) -> None:
    """Click ``button`` until ``then`` shows: a click that lands while a fragment redraws is lost."""
    from playwright.sync_api import expect

    for _ in range(3):
        button.click()
        try:
            expect(then).to_be_visible(timeout=5_000)
            return
        except AssertionError:
            continue
    expect(then).to_be_visible()


def all_rows(page: Any) -> str:
    """The last dataframe's text, scrolled through: only the rows in view are in its table."""
    frame = page.get_by_test_id("stDataFrame").last
    seen = grid(page)
    frame.hover()
    page.mouse.wheel(0, 2000)
    page.wait_for_timeout(500)
    return seen + " | " + grid(page)


def test_results_fill_in_while_the_job_runs(
    dashboard: str, state: Path, runners: Runners, tmp_path: Path, browser: Any
) -> None:
    """Defect 1: open the Job page while the job runs; at 'succeeded' every row has its text, no reload."""
    from playwright.sync_api import expect

    pdf = tmp_path / "book.pdf"
    pages = [Image.new("RGB", (200 + 10 * i, 150), "white") for i in range(3)]
    pages[0].save(pdf, save_all=True, append_images=pages[1:])
    job_id = submit(state, *images(tmp_path, 3), pdf, delay=0.8)
    runners.start(state, "--workers", "1")
    page = browser.new_page()
    page.goto(f"{dashboard}/job?id={job_id}")
    expect(status_heading(page, job_id, "running")).to_be_visible(timeout=WAIT_MS)
    assert cli_json(state, "show", job_id)["status"] == "running"  # the page opened before the end
    page.screenshot(path=str(SHOTS / "1-running.png"), full_page=True)
    expect(status_heading(page, job_id, "succeeded")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("6/6 items")).to_be_visible(timeout=10_000)
    expect(page.get_by_text("Full text of")).to_be_visible(timeout=10_000)
    wait_for(lambda: "pending" not in grid(page), timeout=10, what="no pending row")
    page.screenshot(path=str(SHOTS / "1-succeeded.png"), full_page=True)
    cells = all_rows(page)
    texts = re.findall(r"\b\d+x\d+\b", cells)
    assert len(set(texts)) == 6 and "pending" not in cells and {"100x40", "101x41", "102x42"} <= set(texts), cells
    expect(page.locator("code").filter(has_text=re.compile(r"^\d+x\d+$"))).to_be_visible()


def test_pause_and_resume_from_the_cli_show_on_open_pages(
    dashboard: str, state: Path, runners: Runners, tmp_path: Path, browser: Any
) -> None:
    """Defect 2: a page open while the job runs, and one opened while it is paused, both follow it."""
    from playwright.sync_api import expect

    job_id = submit(state, *images(tmp_path, 8), delay=1.0)
    runners.start(state, "--workers", "1")
    first = browser.new_page()
    first.goto(f"{dashboard}/job?id={job_id}")
    expect(status_heading(first, job_id, "running")).to_be_visible(timeout=WAIT_MS)
    cli(state, "pause", job_id)
    expect(status_heading(first, job_id, "paused")).to_be_visible(timeout=WAIT_MS)
    second = browser.new_page()  # another tab, opened on the paused job
    second.goto(f"{dashboard}/job?id={job_id}")
    expect(status_heading(second, job_id, "paused")).to_be_visible(timeout=WAIT_MS)
    second.screenshot(path=str(SHOTS / "2-paused.png"), full_page=True)
    cli(state, "resume", job_id)
    for page in (second, first):  # the tab opened on the paused job first
        expect(status_heading(page, job_id, "succeeded")).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_text("8/8 items")).to_be_visible(timeout=10_000)
        wait_for(lambda page=page: "pending" not in grid(page), timeout=10, what="no pending row")
    second.screenshot(path=str(SHOTS / "2-resumed.png"), full_page=True)


def test_a_job_id_links_to_its_page_where_it_is_cancelled(
    dashboard: str, state: Path, runners: Runners, tmp_path: Path, browser: Any
) -> None:
    """Defect 5: a click on a job id opens its Job page; its Cancel button (confirmed) cancels it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    other = submit(state, make_png(tmp_path / "other.png"), delay=0.0)
    job_id = submit(state, *images(tmp_path, 10), delay=2.0)
    runners.start(state, "--workers", "1")
    page = browser.new_page()
    page.goto(dashboard)
    frame = page.get_by_test_id("stDataFrame").first
    expect(frame).to_be_visible(timeout=WAIT_MS)
    wait_for(lambda: job_id in grid(page, 0) and other in grid(page, 0), timeout=30, what="both jobs listed")
    page.screenshot(path=str(SHOTS / "5-jobs.png"), full_page=True)
    assert grid(page, 0).index(job_id) < grid(page, 0).index(other)  # newest first: the first row
    job_page = None
    for _ in range(3):  # a click that lands while the table is redrawn is lost: try again
        box = frame.bounding_box()
        try:
            with browser.expect_page(timeout=10_000) as opened:  # Streamlit opens link cells in a new tab
                page.mouse.click(box["x"] + 40, box["y"] + 35 + 17)
        except PlaywrightTimeout:
            continue
        job_page = opened.value
        break
    assert job_page is not None, "no Job page opened from the job id"
    expect(status_heading(job_page, job_id, "running")).to_be_visible(timeout=WAIT_MS)
    assert f"/job?id={job_id}" in job_page.url
    question = job_page.get_by_text(f"Cancel job {job_id}?")
    click_until(job_page.get_by_role("button", name="Cancel", exact=True), question)  # likewise for a button
    job_page.screenshot(path=str(SHOTS / "5-confirm.png"), full_page=True)
    assert cli_json(state, "show", job_id)["status"] == "running"  # nothing before the confirmation
    job_page.get_by_role("button", name="Yes, cancel").click()
    expect(status_heading(job_page, job_id, "cancelled")).to_be_visible(timeout=WAIT_MS)
    expect(job_page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0, timeout=10_000)
    expect(job_page.get_by_role("button", name="Retry", exact=True)).to_be_visible()
    job_page.screenshot(path=str(SHOTS / "5-cancelled.png"), full_page=True)
    assert cli_json(state, "show", job_id)["status"] == "cancelled"


def test_the_jobs_page_shows_a_job_submitted_from_the_cli(
    dashboard: str, state: Path, tmp_path: Path, browser: Any
) -> None:
    """Defect 6: with nothing active the Jobs page still refreshes: a CLI submission appears."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(dashboard)
    expect(page.get_by_text("No jobs yet")).to_be_visible(timeout=WAIT_MS)
    page.wait_for_timeout(3_000)  # the page has settled, idle
    job_id = submit(state, make_png(tmp_path / "late.png"), delay=0.0)  # no runner: it stays queued
    expect(page.get_by_test_id("stDataFrame")).to_be_visible(timeout=10_000)
    wait_for(lambda: job_id in grid(page, 0), timeout=10, what="the new job in the table")
    page.screenshot(path=str(SHOTS / "6-appeared.png"), full_page=True)


def test_no_page_reaches_beyond_this_machine_or_logs_an_error(
    dashboard: str, browser: Any, state: Path, tmp_path: Path
) -> None:
    """Issue 17, defect 13: the favicon came from a font host (fails offline, one console error per load)."""
    job_id = submit(state, *images(tmp_path, 1), delay=0)
    page = browser.new_page()
    outside: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if r.url.startswith("http") and dashboard not in r.url else None)
    # Opened at /job, Streamlit's own client first probes /job/_stcore/health (404) to find its base path:
    # upstream behaviour, not ours. Any other failed response, and any other console error, counts.
    probe = re.compile(r"/[a-z_]+/_stcore/(health|host-config)$")

    def on_console(m: Any) -> None:
        if m.type == "error" and "status of 404" not in m.text:
            errors.append(m.text)

    def on_response(r: Any) -> None:
        if r.status >= 400 and not probe.search(r.url.split("?")[0]):
            errors.append(f"{r.status} {r.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    for path in ("/", f"/job?id={job_id}", "/health_page", "/submit_page"):
        page.goto(dashboard + path)
        page.get_by_text("runners:").first.wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(1500)
    assert outside == [] and errors == [], (outside, errors)
