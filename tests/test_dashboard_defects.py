"""Issue 17, defects 7-12 of the dashboard, through Streamlit's AppTest on real job folders.

Each test asserts what a user sees: the text of headings, messages and cells, the columns' formats.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from jobs.intake.submit import submit
from jobs.store import Store
from jobs.store.lease import claim_next, commit_item
from tests.conftest import REPO, make_png
from tests.fakes import running_state, write_heartbeat, write_job
from tests.test_dashboard import finished_job, open_page

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("OCRJOBS_STATE", str(tmp_path / "state"))
    monkeypatch.chdir(REPO)
    return Store(tmp_path / "state")


def column_config(at: AppTest, nth: int = -1) -> dict:
    return json.loads(at.dataframe[nth].proto.columns)


# -- defect 8: numbers sort as numbers, no raw None, human statuses, progress in the status's colour --------
def test_jobs_table_sorts_age_and_eta_as_numbers_and_shows_status_words(store: Store, tmp_path: Path) -> None:
    finished_job(store, tmp_path)
    at = open_page("jobs_page")
    table, config = at.dataframe[0].value, column_config(at, 0)
    assert table["status"].tolist() == ["● completed with errors"]
    assert "color: #e07b00" in str(at.dataframe[0].proto.arrow_data.styler.styles)  # orange, row by row
    assert table["age"].dtype.kind == "f" and config["age"]["type_config"]["format"] == "duration"
    assert config["ETA"]["type_config"]["format"] == "duration" and table["ETA"].isna().all()  # blank, never "None"
    assert at.dataframe[0].proto.placeholder == ""  # a missing value is an empty cell
    assert "completed with errors" in at.multiselect[0].options


def test_job_page_shows_status_words_blank_cells_and_a_coloured_bar(store: Store, tmp_path: Path) -> None:
    job_id = finished_job(store, tmp_path)
    at = open_page("job_page", id=job_id)
    assert at.subheader[0].value == f"{job_id} · completed with errors"
    when = at.caption[0].value  # submitted, started, finished with date and zone, and how long it took
    pattern = r"submitted by \S+ \S+ \S+ \w+ · started \S+ \S+ \w+ · finished \S+ \S+ \w+ · took \d+ s"
    assert re.fullmatch(pattern, when), when
    results = at.dataframe[-1]
    assert results.value["status"].tolist() == ["done", "failed"] and results.proto.placeholder == ""
    assert column_config(at)["page"]["type_config"]["format"] == "%d"
    styles = [h.proto.body for h in at.get("html")]
    assert any("progress-orange" in s and "#e07b00" in s for s in styles), styles  # orange, not red


def test_job_page_warns_about_items_cut_at_the_token_limit(store: Store, tmp_path: Path) -> None:
    job_id = submit(store, [make_png(tmp_path / f"p{i}.png") for i in range(3)])
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    commit_item(store, claim, {"index": 0, "source": "p0.png", "status": "done", "text": "whole"})
    commit_item(store, claim, {"index": 2, "source": "p2.png", "status": "done", "text": "cut", "truncated": True})
    at = open_page("job_page", id=job_id)
    (warning,) = [w.value for w in at.warning if "token limit" in w.value]
    assert warning.startswith("1 item(s) were cut off") and "#2 p2.png" in warning and "p0.png" not in warning


# -- defect 9: an orphaned job ------------------------------------------------------------------------------
def test_orphaned_job_says_it_once_has_no_eta_and_who_takes_over(store: Store) -> None:
    job_id = write_job(store, state=running_state("gone-runner", expires_in=-120, committed=2))
    write_heartbeat(store, "gone-runner", age_s=3000)  # dead: nobody heartbeats
    at = open_page("job_page", id=job_id)
    assert at.subheader[0].value == f"{job_id} · running (orphaned)"
    (error,) = [e.value for e in at.error]
    assert error.startswith("**Orphaned**: its lease") and "orphaned:" not in error.lower()
    assert "ETA" not in at.get("progress")[0].proto.text
    assert [m.value for m in at.metric if m.label == "items/s"] == ["—"]
    assert "the next one started takes it over within 15 s" in at.info[0].value
    advice = " ".join(m.value for m in at.markdown)
    assert "make run" in advice and "systemctl start ocrjobs-runner\\` for a service" in advice  # both setups
    jobs = open_page("jobs_page").dataframe[0].value
    assert jobs["status"].tolist() == ["● running (orphaned)"] and jobs["ETA"].isna().all()
    write_heartbeat(store, "busy", job="20260101-000000-bbbbbb")  # alive, busy with another job
    at = open_page("job_page", id=job_id)
    assert "All 1 runner(s) are busy with other jobs: the first to finish takes this one over." in at.info[0].value


# -- defect 10: the Health page -----------------------------------------------------------------------------
def test_health_page_on_a_fresh_install_says_no_jobs_yet(store: Store) -> None:
    at = open_page("health_page")
    assert any(c.value == "Jobs by status: no jobs yet" for c in at.caption)


def test_health_page_charts_cpu_under_cpu_in_time_order_and_hides_long_dead_runners(store: Store) -> None:
    now = time.time()
    write_heartbeat(store, "live-1", job="j1", workers=[{"item": 3}])
    write_heartbeat(store, "dead-recent", age_s=120, job="j0", workers=[{"item": 7}])
    write_heartbeat(store, "dead-long-ago", age_s=7200, job="j0", workers=[{"item": 9}])
    history = store.runners_dir / "history"
    history.mkdir(exist_ok=True)
    samples = [{"t": now - 60 * m, "cpu_percent": 10.0 + m} for m in (30, 20, 10, 0)]
    (history / "live-1.json").write_text(json.dumps({"samples": samples}))
    at = open_page("health_page")
    runners = at.dataframe[0].value
    assert runners["runner"].tolist() == ["live-1", "dead-recent"]
    assert runners["items"].isna().tolist() == [False, True] and runners["state"].tolist()[1] == "● dead"
    assert any("1 runner(s) dead for over 10 min are not listed" in c.value for c in at.caption)
    headings = [s.value for s in at.subheader]
    assert headings.index("GPU") < headings.index("CPU")
    assert any(c.value.startswith("CPU %, last hour") for c in at.caption)
    assert not any("GPU memory" in c.value for c in at.caption)  # no GPU: no GPU chart
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["encoding"]["x"]["field"] == "minutes (0 = now)" and spec["encoding"]["x"]["scale"]["domain"] == [
        -60,
        0,
    ]
    assert "layer" not in spec  # no hover layer that is empty until a hover ("Infinite extent")


# -- defect 7: confirmations in a dialog, feedback for a retry, downloads that stay valid --------------------
def test_cancel_asks_in_a_dialog_that_closes_with_the_answer(store: Store, tmp_path: Path) -> None:
    job_id = submit(store, [make_png(tmp_path / "a.png")])
    at = open_page("job_page", id=job_id)
    at.button(key="act-cancel").click().run()
    assert any(f"Cancel job {job_id}?" in m.value for m in at.markdown) and store.pending_requests(job_id) == []
    at.button(key="confirm-no").click().run()
    assert not any(b.key == "confirm-yes" for b in at.button) and store.pending_requests(job_id) == []
    at.button(key="act-cancel").click().run()
    at.button(key="confirm-yes").click().run()
    assert [r["kind"] for _, r in store.pending_requests(job_id)] == ["cancel"]
    assert not any(b.key == "confirm-yes" for b in at.button)  # the dialog is gone
    assert any("cancel requested" in t.value for t in at.toast)


def test_retry_says_what_happens_and_downloads_do_not_rerun(store: Store, tmp_path: Path) -> None:
    job_id = finished_job(store, tmp_path)
    at = open_page("job_page", id=job_id)
    at.button(key="act-retry").click().run()
    assert [r["kind"] for _, r in store.pending_requests(job_id)] == ["retry"]
    assert any(s.value.startswith("Retry requested: the failed, timed-out and unfinished items") for s in at.success)
    assert all(d.proto.ignore_rerun for d in at.get("download_button"))


# -- defects 4 and 11: the workbook column ------------------------------------------------------------------
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def id_first_book(tmp_path: Path) -> tuple[Path, Path]:
    """A workbook whose column A holds ids and column B the file names, with the ZIP of those files."""
    from tests.test_excel import make_book, make_zip, png_bytes

    rows = [["id", "file"], ["CL-1001", "a.png"], ["CL-1002", "b.png"]]
    book = make_book(tmp_path / "b.xlsx", {"Data": rows})
    return book, make_zip(tmp_path / "z.zip", {"a.png": png_bytes((30, 20)), "b.png": png_bytes((31, 20))})


def test_submit_page_preselects_the_column_the_zip_matches_and_refuses_one_it_does_not(
    store: Store, tmp_path: Path
) -> None:
    book, zpath = id_first_book(tmp_path)
    at = open_page("submit_page")
    at.file_uploader[0].set_value([("b.xlsx", book.read_bytes(), XLSX)]).run()
    labels = column_config(at, 0)  # no ZIP yet: nothing matches, the first column is chosen
    assert labels["A"]["label"] == "✓ A · id" and labels["B"]["label"] == "B · file"  # header names shown
    at.file_uploader[1].set_value([("z.zip", zpath.read_bytes(), "application/zip")]).run()
    column = next(s for s in at.selectbox if s.label.startswith("Column naming"))
    assert column.value == "B  file"  # preselected: its rows name the ZIP's files
    assert column_config(at, 0)["B"]["label"] == "✓ B · file" and column_config(at, 0)["A"]["label"] == "A · id"
    column.set_value("A  id").run()
    assert column_config(at, 0)["A"]["label"] == "✓ A · id"
    at.button[0].click().run()
    (error,) = [e.value for e in at.error]
    assert "no row of column A (id) names a file in the images ZIP z.zip" in error
    assert "column B does (2 of its first 2 rows): choose that column" in error
    assert store.list_jobs() == []


def test_submit_page_errors_name_the_page_not_the_command_line(store: Store, tmp_path: Path) -> None:
    from tests.test_excel import make_book

    book = make_book(tmp_path / "rel.xlsx", {"Data": [["file"], ["scans/a.png"]]})
    at = open_page("submit_page")
    at.file_uploader[0].set_value([("rel.xlsx", book.read_bytes(), XLSX)]).run()
    at.button[0].click().run()
    (error,) = [e.value for e in at.error]
    assert "upload the files as a ZIP under the workbook" in error and "allowed" in error
    assert "--" not in error and "OCRJOBS_" not in error


def test_cli_refuses_a_column_that_names_no_file_and_names_the_one_that_does(state: Path, tmp_path: Path) -> None:
    from tests.conftest import cli

    book, zpath = id_first_book(tmp_path)
    out = cli(state, "submit", str(book), "--column", "A", "--images", str(zpath), check=False)
    assert out.returncode == 1 and "column B does (2 of its first 2 rows): choose that column" in out.stderr
    assert "no row of column A (id) names a file in the images ZIP z.zip (the first, 'CL-1001'" in out.stderr


# -- defect 12: search inside ZIPs and workbooks; filters and sort in the URL --------------------------------
def test_search_finds_a_file_inside_a_zip_and_filters_survive_a_reload(store: Store, tmp_path: Path) -> None:
    import zipfile

    bundle = tmp_path / "batch.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.write(make_png(tmp_path / "invoice-4711.png"), "march/invoice-4711.png")
    finished_job(store, tmp_path)  # first: it claims the oldest queued job
    zipped = submit(store, [bundle])
    at = open_page("jobs_page")
    at.text_input(key="f-q").set_value("INVOICE-4711").run()
    assert at.dataframe[0].value["id"].tolist() == [f"job?id={zipped}"]
    at.selectbox(key="f-sort").set_value("progress").run()
    at.multiselect(key="f-status").set_value(["queued"]).run()
    assert at.dataframe[0].value["id"].tolist() == [f"job?id={zipped}"]
    url = dict(at.query_params)
    assert url == {"q": "INVOICE-4711", "sort": "progress", "status": "queued"}, url
    again = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30)  # a reload: a new session
    again.query_params.update(url)  # the same URL, from its first run (the Jobs page is the default page)
    again.run()
    assert again.text_input(key="f-q").value == "INVOICE-4711" and again.multiselect(key="f-status").value == ["queued"]
    assert again.selectbox(key="f-sort").value == "progress"
    assert not again.exception, again.exception
    assert [i.value for i in again.info] == [] and again.dataframe[0].value["id"].tolist() == [f"job?id={zipped}"]


# -- what a team expects: each runner's workers, items per minute -------------------------------------------
def test_health_page_shows_each_workers_item_and_cost_and_items_per_minute(store: Store) -> None:
    now = time.time()
    busy = {"slot": 0, "pid": 4242, "engine": "tesseract", "engine_device": "cpu", "item": 4, "source": "scan.png"}
    busy |= {"page": 2, "item_started_at": now - 12, "cpu_percent": 97.0, "rss_bytes": 150 * 2**20}
    idle = {"slot": 1, "pid": 4243, "engine": "tesseract", "engine_device": "cpu", "item": None}
    write_heartbeat(store, "box-1", job="j1", workers=[busy, idle])
    (store.runners_dir / "history").mkdir(exist_ok=True)
    samples = [{"t": now - 60 * (3 - m), "done": 30 * m, "failed": m, "timed_out": 0} for m in range(4)]
    (store.runners_dir / "history" / "box-1.json").write_text(json.dumps({"samples": samples}))
    at = open_page("health_page")
    workers = next(df.value for df in at.dataframe if "doing" in df.value.columns)
    assert workers["doing"].tolist() == ["#4 scan.png p2", "idle"] and workers["pid"].tolist() == [4242, 4243]
    assert 11 <= workers["for (s)"].iloc[0] <= 20 and workers["RSS (MB)"].iloc[0] == 150
    charts = [json.loads(c.proto.spec)["encoding"]["y"]["field"] for c in at.get("vega_lite_chart")]
    assert "items/min" in charts
    assert any(c.value.endswith("(now: 1.0 per minute)") for c in at.caption) and "failed/min" in charts


def test_jobs_page_bulk_retry_of_every_failed_job_and_removal_of_old_finished_ones(
    store: Store, tmp_path: Path
) -> None:
    finished = finished_job(store, tmp_path)
    queued = submit(store, [make_png(tmp_path / "q.png")])
    at = open_page("jobs_page")
    assert at.button(key="bulk-delete").disabled and at.button(key="bulk-retry").label == "Retry all failed (1)"
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[f"job?id={queued}", "queue"] == 1 and table["queue"].isna().sum() == 1  # only queued jobs
    at.button(key="bulk-retry").click().run()
    assert any(f"**Retry 1 job(s)** (failed or completed with errors): {finished}." in m.value for m in at.markdown)
    at.button(key="bulk-yes").click().run()
    assert [r["kind"] for _, r in store.pending_requests(finished)] == ["retry"]
    assert at.success[0].value.startswith("Retry requested for 1 job(s)")
    assert not any(b.key == "bulk-yes" for b in at.button)  # the dialog closed
    at.number_input(key="bulk-days").set_value(1).run()
    assert at.button(key="bulk-old").disabled  # finished seconds ago, not days
    at.number_input(key="bulk-days").set_value(0).run()
    at.button(key="bulk-old").click().run()
    at.button(key="bulk-yes").click().run()
    assert [r["kind"] for _, r in store.pending_requests(finished)] == ["retry", "delete"]
    assert store.pending_requests(queued) == []  # not finished: never removed
    assert at.dataframe[0].value["id"].tolist() == [f"job?id={queued}"]  # the deleted row is gone at once
    assert any("1 job(s) you deleted are left out" in c.value for c in at.caption)


# -- what a team expects: one item in detail ------------------------------------------------------------------
def test_job_page_shows_an_item_large_with_its_boxes_text_and_how_it_was_made(store: Store, tmp_path: Path) -> None:
    import io

    from PIL import Image

    from jobs.dashboard.thumbnails import detail_png

    job_id = submit(store, [make_png(tmp_path / "a.png", (400, 200)), make_png(tmp_path / "b.png")])
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    box = {"box": [[20, 20], [380, 20], [380, 60], [20, 60]], "text": "INVOICE", "confidence": 0.9}
    made = {"attempts": 1, "device": "cpu", "processing_time_ms": 1234.0, "batch_size": 2}
    commit_item(
        store, claim, {"index": 0, "source": "a.png", "status": "done", "text": "INVOICE", "boxes": [box]} | made
    )
    error = {"kind": "engine", "message": "Traceback ...\nRuntimeError: model exploded"}
    commit_item(store, claim, {"index": 1, "source": "b.png", "status": "failed", "text": "", "error": error} | made)
    at = open_page("job_page", id=job_id)
    facts = " ".join(m.value for m in at.markdown)
    assert (
        "**attempts**: 1" in facts and "**device**: cpu" in facts and "**processing time**: 1\\.23 s" in facts
    )  # escaped markdown: shows 1.23 s
    (picture,) = at.get("image")
    assert picture.proto.imgs[0].caption == "1 line box(es) drawn" and at.code[0].value == "INVOICE"
    at.selectbox(key="full-text-1").set_value(1).run()
    assert at.code[-1].value == "Traceback ...\nRuntimeError: model exploded"  # the full error, as text
    item = store.manifest(job_id)[0]
    drawn = Image.open(io.BytesIO(detail_png(store.job_dir(job_id), item, 200, [box]) or b""))
    assert drawn.size == (400, 200) and drawn.getpixel((200, 20))[:3] == (230, 40, 40)  # the box, in red


def test_an_item_link_opens_that_item_with_the_worker_that_made_it(store: Store, tmp_path: Path) -> None:
    job_id = submit(store, [make_png(tmp_path / "a.png"), make_png(tmp_path / "b.png", (300, 100))])
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    commit_item(
        store,
        claim,
        {"index": 1, "source": "b.png", "status": "done", "text": "SECOND", "worker": {"slot": 2, "pid": 4242}},
    )
    at = open_page("job_page", id=job_id, item="1")
    assert "Item #1 b.png" in [s.value for s in at.subheader]
    facts = " ".join(m.value for m in at.markdown)
    assert "**worker**: r1 · worker 2 (pid 4242)" in facts and at.code[0].value == "SECOND"
    assert at.dataframe[-1].value["detail"].tolist() == [f"job?id={job_id}&item={i}" for i in (0, 1)]
    at = open_page("job_page", id=job_id, item="7")  # a link is anyone's: out of range says so, shows no item
    assert any("has no item 7" in w.value for w in at.warning) and not any(
        s.value.startswith("Item #") for s in at.subheader
    )


def test_health_page_charts_failures_and_backlog_over_the_last_hour(store: Store) -> None:
    now = time.time()
    write_heartbeat(store, "live-1", job="j1", workers=[{"item": 3}])
    history = store.runners_dir / "history"
    history.mkdir(exist_ok=True)
    samples = [
        {"t": now - 60 * m, "done": 100 - 2 * m, "failed": 10 - m // 10, "timed_out": 0, "held_items": 5 * m}
        for m in (30, 20, 10, 0)
    ]
    (history / "live-1.json").write_text(json.dumps({"samples": samples}))
    at = open_page("health_page")
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Failed or timed out per minute, last hour") for c in captions)
    assert any(c.startswith("items left in the jobs each runner holds, last hour") for c in captions)
    charted = {json.loads(c.proto.spec)["encoding"]["y"]["field"] for c in at.get("vega_lite_chart")}
    assert {"items/min", "failed/min", "items left in the jobs each runner holds"} <= charted
