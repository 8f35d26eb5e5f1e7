"""One real-browser run: Debian chromium driven by Playwright against `streamlit run` and a real runner."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.conftest import PY, REPO, Runners, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (`make setup` does)"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_image(path: Path) -> Path:
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 48)
    im = Image.new("RGB", (900, 160), "white")
    ImageDraw.Draw(im).text((30, 50), "INVOICE 4711 PAID", font=font, fill="black")
    im.save(path)
    return path


@pytest.fixture
def dashboard(tmp_path: Path, state: Path) -> str:
    port = free_port()
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [PY, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OCRJOBS_STATE": str(state)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=60, what="streamlit to serve")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_upload_in_the_browser_and_read_the_result(
    dashboard: str, state: Path, runners: Runners, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    runners.start(state, "--workers", "1")
    image = text_image(tmp_path / "invoice.png")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{dashboard}/submit_page")
        page.locator("input[type=file]").set_input_files(str(image))
        expect(page.get_by_text("invoice.png")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Submit", exact=True).click()
        expect(page.get_by_text("Submitted job")).to_be_visible(timeout=30_000)
        page.get_by_role("link", name="Open job").click()
        expect(page.get_by_text("succeeded")).to_be_visible(timeout=120_000)
        page.reload()  # the finished job's page, with its results
        nav = page.get_by_test_id("stSidebarNav")
        expect(nav.get_by_role("link", name="Health")).to_be_visible()
        expect(nav.get_by_role("link", name="common")).to_have_count(0)  # never the bare pages/ folder
        expect(page.locator("code").filter(has_text="4711")).to_be_visible(timeout=30_000)
        text = page.locator("code").filter(has_text="4711").inner_text()
        page.screenshot(path=str(tmp_path / "job-page.png"), full_page=True)
        browser.close()
    assert "INVOICE" in text.upper() and "PAID" in text.upper()
    assert (tmp_path / "job-page.png").stat().st_size > 10_000
