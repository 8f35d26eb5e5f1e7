"""Search across jobs (jobs/store/search.py): what a user finds, after commits, rebuilds, deletes and damage."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store, search
from jobs.store.housekeeping import delete_job
from jobs.store.lease import _write_result, claim_next, commit_item, finish
from jobs.store.status import JobStatus
from tests.conftest import cli, cli_json, make_png

SPEC = JobSpec(engine="tests.engines:SizeEngine")
EN = ["Invoice 4711 from ACME Corp, total 99 EUR", "Delivery note 4712 for ACME", "Meeting minutes, nothing due"]
ZH = ["发票号码 4711 上海市浦东新区", "送货单 北京市海淀区", "会议纪要"]


def _job(store: Store, tmp_path: Path, texts: list[str], name: str = "a") -> str:
    """A job whose items' results are ``texts``, committed through the real claim/commit API."""
    pngs = [make_png(tmp_path / name / f"{n}.png", (8, 8)) for n in range(len(texts))]
    job_id = submit(store, pngs, SPEC)
    claim = claim_next(store, "r1", lease_s=60, max_attempts=3)
    assert claim is not None and claim.job_id == job_id
    for i, text in enumerate(texts):
        res = {"index": i, "source": f"{name}-{i}.png", "page": i + 1, "status": "done", "text": text, "error": None}
        assert commit_item(store, claim, res)
    finish(store, claim, JobStatus.SUCCEEDED)
    return job_id


def _found(store: Store, query: str, job_id: str | None = None) -> list[tuple[str, int]]:
    return [(h.job_id, h.item) for h in search.search(store, query, job_id).hits]


@pytest.fixture
def two_jobs(state: Path, tmp_path: Path) -> tuple[Store, str, str]:
    store = Store(state)
    return store, _job(store, tmp_path, EN, "en"), _job(store, tmp_path, ZH, "zh")


def test_english_and_chinese_queries_find_the_right_items(two_jobs: tuple[Store, str, str]) -> None:
    store, en, zh = two_jobs
    assert _found(store, "invoice 4711") == [(en, 0)]  # every word must occur, any case
    assert set(_found(store, "4711")) == {(en, 0), (zh, 0)}
    assert set(_found(store, "acme")) == {(en, 0), (en, 1)}
    assert _found(store, "4711", job_id=zh) == [(zh, 0)]
    assert _found(store, "上海市") == [(zh, 0)]  # trigram: a substring inside an unsegmented run
    assert _found(store, "浦东新区 4711") == [(zh, 0)]
    assert _found(store, "海淀") == [(zh, 1)]  # 2 characters: too short for a trigram, matched by LIKE
    assert _found(store, "纪") == [(zh, 2)]
    assert _found(store, "invoice 47") == [(en, 0)]  # a long and a short term together
    assert _found(store, "missing words") == []
    hit = search.search(store, "上海市").hits[0]
    assert hit.snippet[slice(*hit.highlights[0])] == "上海市"
    assert (hit.source, hit.page, hit.link) == ("zh-0.png", 1, f"job?id={zh}")


def test_a_rebuilt_index_gives_the_same_hits(two_jobs: tuple[Store, str, str], state: Path) -> None:
    store = two_jobs[0]
    queries = ["4711", "acme", "海淀", "上海市"]
    before = {q: search.search(store, q).to_dict()["hits"] for q in queries}
    assert all(before.values())
    for rebuild in ("delete the folder", "reindex"):
        if rebuild == "reindex":
            assert "rebuilt: 6 items of 2 jobs" in cli(state, "reindex").stdout
        else:
            for f in (state / "search").iterdir():
                f.unlink()
            (state / "search").rmdir()
        assert {q: search.search(store, q).to_dict()["hits"] for q in queries} == before


def test_a_deleted_job_leaves_the_results(two_jobs: tuple[Store, str, str], tmp_path: Path) -> None:
    store, en, zh = two_jobs
    assert _found(store, "4711")  # the index exists now, so the delete hook has one to update
    delete_job(store, en)
    idx = search.open_index(store.root)
    try:
        assert idx.conn.execute("SELECT count(*) FROM docs WHERE job_id=?", (en,)).fetchone() == (0,)
    finally:
        idx.close()
    assert _found(store, "4711") == [(zh, 0)]
    os.rename(store.job_dir(zh), tmp_path / "moved-away")  # gone without the hook: the next search sees it
    assert _found(store, "4711") == []


def test_a_result_written_behind_the_index_is_found(two_jobs: tuple[Store, str, str], tmp_path: Path) -> None:
    store, en, _ = two_jobs
    assert _found(store, "zanzibar") == []
    res = {"index": 2, "source": "en-2.png", "page": 3, "status": "done", "text": "Zanzibar shipping", "error": None}
    _write_result(store.result_path(en, 2), res)  # replaces item 2 without the commit hook
    assert _found(store, "zanzibar") == [(en, 2)]
    assert _found(store, "meeting") == []


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _garbage(p: Path) -> None:
    p.write_bytes(b"not a database at all\n" * 100)


def _foreign(p: Path) -> None:
    with sqlite3.connect(p) as db:  # a valid SQLite file with someone else's tables and a trigger
        db.execute("CREATE TABLE docs(x)")
        db.execute("CREATE TRIGGER t AFTER INSERT ON docs BEGIN DELETE FROM docs; END")
    db.close()


@pytest.mark.parametrize("damage", [_garbage, _fifo, _foreign], ids=["garbage", "fifo", "foreign-schema"])
def test_a_damaged_index_is_set_aside_and_rebuilt(two_jobs: tuple[Store, str, str], state: Path, damage) -> None:
    store, en, zh = two_jobs
    (state / "search").mkdir(exist_ok=True)
    path = state / "search" / "index.sqlite"
    path.unlink(missing_ok=True)
    damage(path)
    proc = cli(state, "search", "4711", "--json", timeout=30)
    assert {(h["job_id"], h["item"]) for h in json.loads(proc.stdout)["hits"]} == {(en, 0), (zh, 0)}
    assert "search index was damaged" in proc.stderr and "rebuilt" in proc.stderr
    assert any("search__index.sqlite" in p.name for p in (state / "quarantine").iterdir())
    assert cli_json(state, "search", "acme")["notes"] == []  # the new one is sound


def test_cli_output_and_json_shape(state: Path, tmp_path: Path) -> None:
    store = Store(state)
    job_id = _job(store, tmp_path, ["Invoice 4711 \x1b]0;pwned\x07 paid", "nothing here"], "cli")
    out = cli(state, "search", "invoice 4711").stdout.strip()
    assert out == f"{job_id} #0 cli-0.png p1: **Invoice** **4711** \\x1b]0;pwned\\x07 paid"
    data = cli_json(state, "search", "4711", "--job", job_id, "--limit", "5")
    assert set(data) == {"query", "hits", "notes"} and data["query"] == "4711"
    (hit,) = data["hits"]
    assert set(hit) == {"job_id", "job_name", "item", "source", "page", "snippet", "highlights", "score", "link"}
    assert (hit["job_id"], hit["item"], hit["page"], hit["link"]) == (job_id, 0, 1, f"job?id={job_id}")
    assert [hit["snippet"][a:b] for a, b in hit["highlights"]] == ["4711"]
    assert cli(state, "search", "zanzibar").stdout.strip() == "no item matches 'zanzibar'"
    bad = cli(state, "search", "4711", "--job", "20990101-000000-abcdef", check=False)
    assert bad.returncode == 1 and "no job with id" in bad.stderr
    empty = cli(state, "search", "  ", check=False)
    assert empty.returncode == 1 and "give one or more words" in empty.stderr


def test_runner_commits_update_the_index(state: Path, tmp_path: Path, runners) -> None:
    store = Store(state)
    assert search.search(store, "123x45").hits == []  # makes the index: runners update it, never create it
    pngs = [make_png(tmp_path / "r" / f"{n}.png", (123 + n, 45)) for n in range(3)]
    job_id = submit(store, pngs, SPEC)
    runners.run_once(state)
    idx = search.open_index(store.root)
    try:
        assert [(h.job_id, h.item) for h in idx.query("124x45")] == [(job_id, 1)]  # no refresh: the hook's work
        assert idx.marks()[job_id] == search._mark(store, job_id)  # current: the next search re-reads nothing
        assert search.refresh(store, idx) == 0
    finally:
        idx.close()


def test_an_index_failure_never_fails_a_commit(state: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    store = Store(state)
    assert _found(store, "4711") == []  # the index exists, so commits update it

    def locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(search.SearchIndex, "add", locked)
    job_id = _job(store, tmp_path, EN, "en")  # commits go through, the index is not updated
    assert "search index not updated" in caplog.text
    assert store.count_results(job_id)["done"] == 3
    monkeypatch.undo()
    assert _found(store, "4711") == [(job_id, 0)]  # the job's results/ changed: the search re-read it


def test_in_a_shared_folder_the_index_is_the_service_groups_alone(state: Path, tmp_path: Path) -> None:
    store = Store(state)
    (state / "jobs").chmod(0o3777)  # what init-folder makes: setgid + sticky (jobs/store/shared_folder.py)
    _job(store, tmp_path, EN, "en")
    assert _found(store, "4711")
    st = os.stat(state / "search")
    assert (st.st_mode & 0o7777, st.st_gid) == (0o2770, os.stat(state / "jobs").st_gid)


def test_forged_rows_in_a_sound_index_are_never_shown(two_jobs: tuple[Store, str, str], state: Path) -> None:
    store, en, zh = two_jobs
    assert _found(store, "4711")
    with sqlite3.connect(state / "search" / "index.sqlite") as db:
        for job, item in (("../../etc", 0), (en, "x")):  # a path for a job id; an item that is no number
            cur = db.execute(
                "INSERT INTO docs(job_id, item, source, page, text) VALUES (?, ?, 's', 'p', '4711')", (job, item)
            )
            db.execute("INSERT INTO fts(rowid, text) VALUES (?, '4711')", (cur.lastrowid,))
    db.close()
    assert set(_found(store, "4711")) == {(en, 0), (zh, 0)}


def test_past_the_rank_cap_hits_come_newest_first(
    two_jobs: tuple[Store, str, str], tmp_path: Path, monkeypatch
) -> None:
    store, en, zh = two_jobs
    monkeypatch.setattr("jobs.store.search_query.RANK_CAP", 1)
    found = search.search(store, "4711")
    assert {(h.job_id, h.item, h.score) for h in found.hits} == {(zh, 0, None), (en, 0, None)}
    assert any("newest first" in n for n in found.notes)
    new = _job(store, tmp_path, ["Reminder: invoice 4711 is overdue"], "new")
    assert [(h.job_id, h.item) for h in search.search(store, "4711").hits][0] == (new, 0)
    assert [(h.job_id, h.item) for h in search.search(store, "4711", en).hits] == [(en, 0)]


def test_a_user_who_cannot_open_the_index_still_finds_their_items(
    two_jobs: tuple[Store, str, str], monkeypatch
) -> None:
    store, en, zh = two_jobs

    def refused(root: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(root / "search"))

    monkeypatch.setattr("jobs.store.search_index._prepare_dir", refused)  # a team member outside the runners' group
    found = search.search(store, "4711")
    assert {(h.job_id, h.item) for h in found.hits} == {(en, 0), (zh, 0)}
    assert any("cannot open the search index" in n for n in found.notes)
    assert not (store.root / "search").exists()
