"""Jobs carry a name and who submitted them: given at submit (CLI, dashboard), shown and filtered on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from jobs.errors import SubmitError
from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from tests.conftest import REPO, cli, cli_json, make_png
from tests.test_dashboard import open_page, store  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SIZE = "tests.engines:SizeEngine"


def test_the_submit_page_records_the_name_and_who_gave_it(store: Store, tmp_path: Path) -> None:  # noqa: F811
    at = open_page("submit_page")
    at.file_uploader[0].set_value(("scan.png", make_png(tmp_path / "s.png").read_bytes(), "image/png")).run()
    next(t for t in at.text_input if t.label == "Job name (optional)").set_value("May invoices").run()
    next(t for t in at.text_input if t.label == "Your name").set_value("Ana").run()
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    (job,) = store.list_jobs()
    assert (job.name, job.submitted_by) == ("May invoices", "Ana")
    at.switch_page("pages/submit_page.py").run()  # back on the page later in the session: the name is kept
    assert next(t for t in at.text_input if t.label == "Your name").value == "Ana"


def test_a_dashboard_submit_without_a_name_says_dashboard(store: Store, tmp_path: Path) -> None:  # noqa: F811
    at = open_page("submit_page")
    at.file_uploader[0].set_value(("scan.png", make_png(tmp_path / "s.png").read_bytes(), "image/png")).run()
    at.button[0].click().run()
    (job,) = store.list_jobs()
    assert (job.name, job.submitted_by) == ("", "dashboard")


def test_the_jobs_page_shows_names_and_filters_by_submitter(store: Store, tmp_path: Path) -> None:  # noqa: F811
    png = make_png(tmp_path / "a.png")
    ana = submit(store, [png], JobSpec(engine=SIZE, name="May invoices", submitted_by="Ana"))
    bo = submit(store, [png], JobSpec(engine=SIZE, name="Contracts", submitted_by="Bo"))
    at = open_page("jobs_page")
    table = at.dataframe[0].value
    assert set(zip(table["name"], table["by"], strict=True)) == {("May invoices", "Ana"), ("Contracts", "Bo")}
    submitted = table["submitted"].tolist()  # a date and time in a zone, sorting as times
    assert all(t.tzinfo is not None and abs(t.timestamp() - time.time()) < 60 for t in submitted)
    assert table["finished"].isna().all()
    at = jobs_page_at(by="Bo")  # the filter lives in the URL: a link shows the same list
    assert list(at.dataframe[0].value["id"].str.split("=").str[-1]) == [bo]
    at = jobs_page_at(q="invoices")  # search finds a job by its name
    assert list(at.dataframe[0].value["id"].str.split("=").str[-1]) == [ana]
    at = open_page("job_page", id=ana)
    assert any("May invoices" in h.value for h in at.subheader)
    assert any("submitted by Ana" in c.value for c in at.caption)


def jobs_page_at(**query: str) -> AppTest:
    """The Jobs page (the default page) opened fresh from a URL carrying ``query``."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def test_names_with_control_characters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="job name must be at most 120 printable characters"):
        JobSpec(engine=SIZE, name="evil\x1b[2Jname").validate()
    with pytest.raises(SubmitError, match="submitter name must be at most 64"):
        JobSpec(engine=SIZE, submitted_by="x" * 65).validate()


def test_the_cli_records_the_os_user_and_shows_and_filters_by_name(tmp_path: Path) -> None:
    import getpass

    state = tmp_path / "state"
    png = str(make_png(tmp_path / "a.png"))
    named = cli_json(state, "submit", png, "--engine", SIZE, "--name", "May invoices")["id"]
    cli_json(state, "submit", png, "--engine", SIZE)
    shown = json.loads(cli(state, "show", named, "--json").stdout)
    assert (shown["name"], shown["submitted_by"]) == ("May invoices", getpass.getuser())
    assert "May invoices" in cli(state, "show", named).stdout
    listed = json.loads(cli(state, "list", "--json", "--name", "invoices").stdout)
    assert [j["id"] for j in listed] == [named]
    mine = json.loads(cli(state, "list", "--json", "--by", getpass.getuser()).stdout)
    assert len(mine) == 2 and json.loads(cli(state, "list", "--json", "--by", "nobody").stdout) == []


def test_the_jobs_page_searches_inside_the_recognised_text(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """Text committed by a runner is found from the Jobs page's search box, its match in bold and a
    link to its job; markup in the text stays literal."""
    from jobs.store.lease import claim_next, commit_item

    submit(store, [make_png(tmp_path / "a.png"), make_png(tmp_path / "b.png")], JobSpec(engine=SIZE, name="May"))
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    texts = ["Invoice 4711 [pay](http://evil.example) now", "发票 total 99"]
    for n, text in enumerate(texts):
        commit_item(store, claim, {"index": n, "source": f"{n}.png", "page": None, "status": "done", "text": text})
    at = jobs_page_at(text="invoice 4711")
    shown = [m.value for m in at.markdown if "4711" in m.value]
    assert len(shown) == 1 and "**Invoice**" in shown[0] and "**4711**" in shown[0]
    assert "\\[pay\\](http" in shown[0]  # the link in the text is escaped: literal text, not a link
    at = jobs_page_at(text="发票")
    assert any("发票" in m.value for m in at.markdown)
    at = jobs_page_at(text="nowhere-to-be-found")
    assert any("No item's text holds" in i.value for i in at.info)


def test_show_and_list_say_when_a_job_was_submitted_started_and_finished_with_date_and_zone(
    tmp_path: Path, store: Store  # noqa: F811
) -> None:
    import re

    from jobs.store.lease import claim_next, commit_item, finish
    from jobs.store.status import JobStatus

    job_id = submit(store, [make_png(tmp_path / "a.png")], JobSpec(engine=SIZE))
    state = store.root
    zone = time.strftime("%Z")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d " + re.escape(zone)
    assert re.search(f"submitted {stamp}", cli(state, "list").stdout)
    claim = claim_next(store, "r1", 30, 5)
    assert claim is not None
    commit_item(store, claim, {"index": 0, "source": "a.png", "status": "done", "text": "x"})
    finish(store, claim, JobStatus.SUCCEEDED)
    shown = cli(state, "show", job_id).stdout
    assert re.search(f"submitted {stamp} · started {stamp} · finished {stamp} · took \\d+\\.\\d s", shown), shown
