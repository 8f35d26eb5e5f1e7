"""What the dashboard shows from files and URLs: as text, never as markdown; previews confined,
size-limited and made once. AppTest for the pages, a subprocess for memory, Chromium for the DOM."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from tests.conftest import PY, REPO, make_png
from tests.hostile.dashboard import (
    PAYLOAD,
    RAW,
    hostile_finished_job,
    hostile_health,
    hostile_stalled_job,
    huge_png,
    pdf_pages,
    point_items_at,
)
from tests.test_browser import CHROMIUM, FLAGS, dashboard  # noqa: F401 - the fixture
from tests.test_dashboard import open_page

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SPEC = JobSpec(engine="tests.engines:SizeEngine")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("OCRJOBS_STATE", str(tmp_path / "state"))
    monkeypatch.chdir(REPO)
    return Store(tmp_path / "state")


def markdown_bodies(at: AppTest) -> list[str]:
    """Every string the page hands to Streamlit's markdown renderer (bodies and labels)."""
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader", "toast"):
        out += [e.value for e in getattr(at, kind)]
    out += [e.label for e in at.expander] + [e.label for e in at.metric]
    return out


def assert_shown_as_text(at: AppTest, must_show: str) -> list[str]:
    """No payload reaches markdown with a character unescaped (a backslash-escaped mark is literal
    text in CommonMark), and the value is still shown."""
    bodies = markdown_bodies(at)
    for body in bodies:
        live = re.sub(r"\\[!-/:-@\[-`{-~]", "\x00", body)  # each escaped mark: no longer markup
        for raw in RAW:
            assert raw not in live, f"{raw!r} reaches markdown unescaped in {body!r}"
    shown = [b for b in bodies if must_show in b]
    assert shown, f"{must_show!r} is not shown at all: {bodies}"
    return shown


def test_job_page_shows_job_and_item_errors_and_sources_as_text(store: Store, tmp_path: Path) -> None:
    job_id = hostile_finished_job(store, tmp_path)
    at = open_page("job_page", id=job_id)
    (warning,) = assert_shown_as_text(at, "Session expired")
    assert "engine options" in warning
    failed = next(df.value for df in at.dataframe if {"source", "error"} <= set(df.value.columns))
    assert failed["error"].tolist() == [PAYLOAD]  # dataframe cells are text: shown verbatim
    assert failed["source"].iloc[0].startswith(PAYLOAD)


def test_job_page_shows_a_hostile_runner_and_zip_member_in_the_diagnosis_as_text(store: Store) -> None:
    job_id = hostile_stalled_job(store)
    at = open_page("job_page", id=job_id)
    assert any("Stalled" in e.value for e in at.error), [e.value for e in at.error]
    shown = assert_shown_as_text(at, "Session expired")
    assert any("check the input" in s for s in shown), shown  # the in-flight item's source, in a tip


def test_health_page_shows_hostile_runner_ids_hosts_and_gpu_names_as_text(store: Store) -> None:
    hostile_health(store)
    at = open_page("health_page")
    shown = assert_shown_as_text(at, "Session expired")
    assert any("heartbeat is" in s for s in shown) and any("memory used" in s for s in shown), shown


def test_job_page_shows_a_hostile_id_link_as_text(store: Store, tmp_path: Path) -> None:
    hostile_finished_job(store, tmp_path)
    at = open_page("job_page", id=PAYLOAD)
    (error,) = assert_shown_as_text(at, "Session expired")
    assert "does not exist" in error and "not a job id" in error
    assert not at.dataframe  # nothing of any job is shown for a link that names none


def previews(at: AppTest) -> list[str | None]:
    """The Results table's previews (a data URI, or None where pandas shows NaN)."""
    return [v if isinstance(v, str) else None for v in at.dataframe[-1].value["preview"].tolist()]


def decode_uri(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_a_manifest_path_outside_the_job_folder_gets_no_preview(
    store: Store,
    tmp_path: Path,
    where: str,
) -> None:
    secret = make_png(tmp_path / "secret" / "secret.png", (120, 80), marker=(255, 0, 0))
    job_id = submit(store, [make_png(tmp_path / "a.png"), make_png(tmp_path / "b.png")], SPEC)
    job_dir = store.job_dir(job_id)
    if where == "absolute":
        bad: str = str(secret)
    elif where == "dotdot":
        bad = os.path.relpath(secret, job_dir)
    else:
        (job_dir / "inputs" / "link.png").symlink_to(secret)
        bad = "inputs/link.png"
    point_items_at(store, job_id, [bad])
    secret.chmod(0o644)  # ctime now after atime: under relatime, a read would move atime
    before = secret.stat().st_atime_ns
    at = open_page("job_page", id=job_id)
    first, second = previews(at)
    assert first is None, "the secret file outside the job folder was read into a preview"
    assert decode_uri(second).size[0] <= 160  # the item inside still has one
    assert not (job_dir / "thumbs" / "000000.png").exists()
    assert secret.stat().st_atime_ns == before or os.statvfs(secret).f_flag & os.ST_NOATIME


def test_a_preview_is_made_once_and_cached_in_the_job_folder(store: Store, tmp_path: Path) -> None:
    job_id = submit(store, [make_png(tmp_path / "a.png", (640, 480), marker=(255, 0, 0))], SPEC)
    at = open_page("job_page", id=job_id)
    (uri,) = previews(at)
    cache = store.job_dir(job_id) / "thumbs" / "000000.png"
    assert cache.exists() and decode_uri(uri).size == (160, 120)
    made = cache.stat().st_mtime_ns
    # The input goes (as if unreadable): the preview still comes, from the cache, not from a decode.
    (store.job_dir(job_id) / json.loads((store.job_dir(job_id) / "manifest.json").read_text())[0]["path"]).unlink()
    at.run()
    assert previews(at) == [uri]
    assert cache.stat().st_mtime_ns == made


def test_a_pdf_page_the_runner_refuses_gets_no_preview(store: Store, tmp_path: Path) -> None:
    pdf = pdf_pages(tmp_path / "plan.pdf", [(3600, 3600), (595, 842)])  # 50 x 50 inches, then A4
    job_id = submit(store, [pdf], JobSpec(engine="tests.engines:SizeEngine", dpi=300))
    at = open_page("job_page", id=job_id)
    huge, a4 = previews(at)
    assert huge is None  # 15000 x 15000 at the job's 300 dpi: above OCRJOBS_MAX_PIXELS, as the runner says
    assert a4 is not None and decode_uri(a4).size[1] == 160


MEASURE = textwrap.dedent(
    """
    import os, sys
    from streamlit.testing.v1 import AppTest
    def peak_mb():  # VmHWM: this process image's own peak (ru_maxrss would start at the forking parent's)
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
    at = AppTest.from_file("dashboard.py", default_timeout=120)
    at.run()
    at.switch_page("pages/job_page.py")
    at.query_params["id"] = sys.argv[1]
    at.run()
    warm = peak_mb()  # every import done; the big item's preview is not asked for until page 2
    at.number_input(key="results-page").set_value(2).run()
    assert not at.exception, at.exception
    print(warm, peak_mb(), [v if isinstance(v, str) else None for v in at.dataframe[-1].value["preview"]])
    """
)


@pytest.mark.slow
def test_a_150_mp_input_gets_no_preview_and_the_dashboard_stays_small(store: Store, tmp_path: Path) -> None:
    small = [make_png(tmp_path / f"s{n:02d}.png") for n in range(50)]  # the Job page's first page (PAGE_SIZE)
    big = huge_png(tmp_path / "huge.png", 15_000, 10_000)  # 150 MP: 450 MB as RGB; the runner refuses it
    job_id = submit(store, [*small, big], SPEC)
    out = subprocess.run(
        [PY, "-c", MEASURE, job_id],
        cwd=REPO,
        env={**os.environ, "OCRJOBS_STATE": str(store.root)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    warm, peak, shown = out.stdout.strip().splitlines()[-1].split(" ", 2)
    assert float(peak) - float(warm) < 100, f"the dashboard grew from {warm} to {peak} MB for one preview"
    assert shown == "[None]"


def to_evil(urls: list[str]) -> list[str]:
    return [u for u in urls if "evil.example" in (urlsplit(u).hostname or "")]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (`make setup` does)")
def test_in_chromium_no_hostile_link_or_image_reaches_the_page(
    dashboard: str,  # noqa: F811 - the fixture imported above
    state: Path,
    tmp_path: Path,
) -> None:
    from urllib.parse import quote

    from playwright.sync_api import expect, sync_playwright

    st = Store(state)
    finished, stalled = hostile_finished_job(st, tmp_path), hostile_stalled_job(st)
    hostile_health(st)
    shots = Path(os.environ.get("OCRJOBS_TEST_SHOTS") or tmp_path)
    pages = {
        "job": f"job?id={finished}",
        "stalled": f"job?id={stalled}",
        "health": "health_page",
        "bad-id": f"job?id={quote(PAYLOAD)}",
    }
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        for name, path in pages.items():
            page.goto(f"{dashboard}/{path}")
            try:
                expect(page.get_by_text("Session expired").first).to_be_visible(timeout=60_000)
                page.wait_for_timeout(1000)  # let every fragment render once
            finally:
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            images = page.eval_on_selector_all("img", "els => els.map(e => e.src)")
            assert not to_evil(links + images), (name, links, images)
            assert page.locator("[data-testid=stMarkdownContainer] img").count() == 0, name
        browser.close()
    assert not to_evil(requested)  # no beacon was fetched


ROUND_TRIP_APP = """
import json, os
import streamlit as st
from pages.literal import md_text
for value in json.loads(open(os.environ["H6_VALUES"]).read()):
    st.markdown(md_text(value))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (`make setup` does)")
def test_in_chromium_every_markdown_construct_renders_as_its_own_text(tmp_path: Path) -> None:
    """md_text through Streamlit's real renderer: each value shows as exactly its text, with no tag
    but <p> and <br> (no link, image, emphasis, code, list, heading, table, icon, emoji, LaTeX)."""
    from playwright.sync_api import sync_playwright

    from tests.hostile.dashboard import MARKDOWN_ATTACKS
    from tests.test_browser import free_port

    (tmp_path / "values.json").write_text(json.dumps(MARKDOWN_ATTACKS))
    (tmp_path / "app.py").write_text(ROUND_TRIP_APP)
    port = free_port()
    env = {**os.environ, "H6_VALUES": str(tmp_path / "values.json"), "PYTHONPATH": str(REPO)}
    with open(tmp_path / "streamlit.log", "wb") as log:
        proc = subprocess.Popen(
            [PY, "-m", "streamlit", "run", str(tmp_path / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            for _ in range(60):  # the server's first seconds
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:  # noqa: BLE001 - not listening yet
                    page.wait_for_timeout(1000)
            selector = "[data-testid=stMarkdownContainer]"
            page.wait_for_function(
                f"document.querySelectorAll('{selector}').length >= {len(MARKDOWN_ATTACKS)}", timeout=60_000
            )
            page.wait_for_timeout(1000)
            shown = page.eval_on_selector_all(selector, "els => els.map(e => [e.innerText, e.innerHTML])")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)

    typography = {"<->": "↔", "->": "→", "<-": "←", "--": "—", ">=": "≥", "<=": "≤", "~=": "≈"}  # between spaces

    def norm(s: str) -> str:
        s = re.sub(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069\u2060]", "", s)
        s = re.sub(r"\s+", " ", s).strip()
        return re.sub(r"(?<= )(<->|->|<-|--|>=|<=|~=)(?= )", lambda m: typography[m.group()], f" {s} ").strip()

    wrong = [
        (value, text, html)
        for value, (text, html) in zip(MARKDOWN_ATTACKS, shown, strict=True)
        if norm(text) != norm(value) or set(re.findall(r"<(\w+)", html)) - {"p", "br"}
    ]
    assert not wrong, "\n".join(f"{v!r}\n  shown as {t!r}\n  html {h[:300]!r}" for v, t, h in wrong)
