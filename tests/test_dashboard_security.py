"""The dashboard password, attacked from a real Chromium and plain HTTP against the real launcher.

The dashboard is started the way `make run` starts it (`python -m jobs.dashboard.gate`) with
OCRJOBS_DASHBOARD_PASSWORD set, over a job folder holding a finished job.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PY, REPO, Runners, cli_json, make_png, wait_for
from tests.test_browser import CHROMIUM, FLAGS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (`make setup` does)"),
]
PASSWORD = "correct horse 7"
#: The SizeEngine "reads" an image as its size, so this is the job's OCR text.
OCR_TEXT = "173x59"
#: Every route a user or an attacker may type; page files by name, then the navigation's names.
ROUTES = [
    "/job_page?id={job}",  # first, while the server is fresh: Streamlit's automatic pages/ routing
    "/",
    "/job?id={job}",
    "/jobs_page",
    "/submit_page",
    "/health_page",
    "/common",
    "/jobs",
    "/submit",
    "/health",
    "/login",
]


@dataclass
class Dashboard:
    url: str
    job_id: str
    shots: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:  # not listening yet
        return 0, b""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    tmp = tmp_path_factory.mktemp("security")
    state = tmp / "state"
    state.mkdir()
    image = make_png(tmp / "secret-invoice.png", size=(173, 59))
    job_id = cli_json(state, "submit", str(image), "--engine", "tests.engines:SizeEngine")["id"]
    runners = Runners(tmp)
    try:
        runners.run_once(state)
    finally:
        runners.cleanup()
    port = free_port()
    log = open(tmp / "dashboard.log", "wb")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "OCRJOBS_STATE": str(state), "OCRJOBS_DASHBOARD_PASSWORD": PASSWORD}
    proc = subprocess.Popen(
        [PY, "-m", "jobs.dashboard.gate", "--server.port", str(port), "--server.headless", "true"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http(f"{url}/_stcore/health")[0] == 200 if proc.poll() is None else True, timeout=60)
        assert proc.poll() is None, (tmp / "dashboard.log").read_text()
        yield Dashboard(url, job_id, tmp)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_session(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A fresh browser context on `url`, and the Streamlit session ids the server gave it."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    sessions: list[str] = []

    def frame(payload: bytes | str) -> None:
        if isinstance(payload, bytes):
            msg = ForwardMsg.FromString(payload)
            if msg.WhichOneof("type") == "new_session" and msg.new_session.initialize.session_id:
                sessions.append(msg.new_session.initialize.session_id)

    page.on("websocket", lambda ws: ws.on("framereceived", frame))
    page.goto(url)
    return page, sessions


def log_in(page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password", exact=True).press("Enter")
    expect(page.get_by_label("Password", exact=True)).to_have_count(0, timeout=30_000)
    expect(page.get_by_test_id("stSidebarNav")).to_be_visible(timeout=30_000)


def put_upload(page: Any, url: str, session_id: str) -> int:
    """The PUT Streamlit's file uploader sends, from this browser (its cookies and XSRF token)."""
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_streamlit_xsrf")
    response = page.request.put(
        f"{url}/_stcore/upload_file/{session_id}/probe-file",
        headers={"X-Xsrftoken": xsrf},
        multipart={"file": {"name": "big.png", "mimeType": "image/png", "buffer": b"\x89PNG" + b"0" * 4096}},
    )
    return response.status


@pytest.mark.parametrize("route", ROUTES)
def test_no_route_shows_anything_but_the_password_box(dashboard: Dashboard, browser: Any, route: str) -> None:
    from playwright.sync_api import expect

    page, _ = open_session(browser, dashboard.url + route.format(job=dashboard.job_id))
    try:
        expect(page.get_by_label("Password", exact=True)).to_be_visible(timeout=30_000)
        expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=30_000)
        if route.startswith("/job_page"):
            page.screenshot(path=str(dashboard.shots / "job_page-without-password.png"), full_page=True)
        body = page.content()
        assert dashboard.job_id not in body and OCR_TEXT not in body and "secret-invoice" not in body
        for title in ("Jobs", "Submit", "Health", "Job"):
            expect(page.get_by_role("heading", name=title, exact=True)).to_have_count(0)
        expect(page.locator("input[type=file]")).to_have_count(0)
    finally:
        page.context.close()


def test_an_upload_from_a_session_without_the_password_is_refused(dashboard: Dashboard, browser: Any) -> None:
    from playwright.sync_api import expect

    page, sessions = open_session(browser, dashboard.url)
    try:
        expect(page.get_by_label("Password", exact=True)).to_be_visible(timeout=30_000)  # events are read meanwhile
        assert sessions, "no new-session message on the websocket"
        assert put_upload(page, dashboard.url, sessions[0]) == 403
        log_in(page)  # the same session, now logged in: the same PUT goes through
        assert put_upload(page, dashboard.url, sessions[0]) in {200, 204}
        other, _ = open_session(browser, dashboard.url)  # another browser that learnt the session id
        expect(other.get_by_label("Password", exact=True)).to_be_visible(timeout=30_000)
        assert put_upload(other, dashboard.url, sessions[0]) == 403
        other.context.close()
    finally:
        page.context.close()


def test_a_link_asks_for_the_password_then_opens_that_job(dashboard: Dashboard, browser: Any) -> None:
    from playwright.sync_api import expect

    page, _ = open_session(browser, f"{dashboard.url}/job?id={dashboard.job_id}")
    try:
        expect(page.get_by_label("Password", exact=True)).to_be_visible(timeout=30_000)
        page.screenshot(path=str(dashboard.shots / "login.png"))
        page.get_by_label("Password", exact=True).fill("wrong guess")
        page.get_by_label("Password", exact=True).press("Enter")
        expect(page.get_by_text("Wrong password.")).to_be_visible(timeout=30_000)
        log_in(page)
        expect(page.locator("code").filter(has_text=OCR_TEXT)).to_be_visible(timeout=30_000)
    finally:
        page.context.close()


def test_a_download_is_served_only_to_the_browser_that_logged_in(dashboard: Dashboard, browser: Any) -> None:
    from playwright.sync_api import expect

    page, _ = open_session(browser, dashboard.url)
    try:
        log_in(page)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Job", exact=True).click()
        expect(page.locator("code").filter(has_text=OCR_TEXT)).to_be_visible(timeout=30_000)
        with page.expect_download(timeout=30_000) as download:
            page.get_by_role("button", name="json").click()
        media_url = download.value.url
        assert "/media/" in media_url and OCR_TEXT in Path(download.value.path()).read_text()
        assert page.request.get(media_url).status == 200
        status, body = http(media_url)  # the same URL, from a client that never logged in
        assert status == 403 and OCR_TEXT.encode() not in body
    finally:
        page.context.close()


def test_requests_for_other_host_names_are_refused(dashboard: Dashboard) -> None:
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 must get nothing."""
    port = dashboard.url.rsplit(":", 1)[1]
    assert http(f"{dashboard.url}/_stcore/health", headers={"Host": f"localhost:{port}"})[0] == 200
    for path in ("/", "/_stcore/health", "/_stcore/host-config", "/static/"):
        status, _ = http(dashboard.url + path, headers={"Host": f"evil.example:{port}"})
        assert status == 403, path
