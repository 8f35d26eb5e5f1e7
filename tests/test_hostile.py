"""Hostile inputs (issue 9): a corpus built here (no committed binaries) goes through ``submit`` and a
real ``runner.py --once``; every item ends done or failed with a one-line message, nothing crashes.

Inputs already tested in detail in test_inputs.py are only part of the corpus here. The rest:
the 10,000-page PDF, the 1,048,576-row CSV, a far last row, external links, formula injection in
the csv/xlsx exports, odd filenames, job ids, manifest paths and hand-edited JSON files.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from openpyxl import Workbook, load_workbook

from jobs import config
from jobs.errors import Corrupt, InputError, JobNotFound, SubmitError
from jobs.exports import cells
from jobs.exports import export as export_mod
from jobs.intake import excel
from jobs.intake.decode import load_item
from jobs.intake.inputs import expand
from jobs.intake.submit import JobSpec, submit, submit_table
from jobs.store import Store
from tests.conftest import PY, REPO
from tests.fakes import write_job
from tests.test_inputs import handmade_pdf, jpeg_bytes, pdf_bytes, png_bytes, png_header_only, zip_bytes

ENGINE = "tests.engines:SizeEngine"
INJECTIONS = [
    '=HYPERLINK("http://evil.example/x","a.png")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|x",
    "@SUM(1)",
    "\tb.png",
    "\rc.png",
]


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info


def _broken_xref_pdf() -> bytes:
    data = pdf_bytes([(200, 100)])
    return re.sub(rb"startxref\s+\d+", b"startxref\n999999", data)


def corpus(tmp: Path, zip_limit: int) -> list[tuple[str, bytes, str, str]]:
    """(file name, bytes, "done"/"failed", a fragment of the text or the error) for each hostile input."""
    zeros = zip_bytes([("zeros.png", b"\0" * (2 * zip_limit))])  # real bytes, 1000:1 compressed
    sym = _symlink("link.png")
    traversal = zip_bytes(
        [
            ("../evil.png", png_bytes()),
            ("/abs.png", png_bytes()),
            (sym, b"/etc/passwd"),
            ("fine.png", png_bytes((30, 20))),
        ]
    )
    nested = zip_bytes([("inner.zip", zip_bytes([("deep.png", png_bytes())])), ("ok.png", png_bytes((40, 30)))])
    return [
        ("good.png", png_bytes(), "done", "64x48"),
        ("truncated.png", png_bytes((300, 200), noise=True)[:4000], "failed", "truncated"),
        ("truncated.jpg", jpeg_bytes()[:2000], "failed", "truncated"),
        ("png-named.jpg", png_bytes((33, 22)), "done", "33x22"),
        ("text-named.png", b"hello, not an image\n" * 10, "failed", "not an image"),
        ("notes.txt", b"plain text", "failed", "unsupported file type"),
        ("noext", png_bytes(), "failed", "unsupported file type"),
        ("empty.png", b"", "failed", "empty"),
        ("bomb-50000x50000.png", png_header_only(50_000, 50_000), "failed", "limit"),
        ("zipbomb.zip", zeros, "failed", "zip bomb"),
        ("nested.zip/inner.zip", nested, "failed", "zip inside a zip"),
        ("nested.zip/ok.png", b"", "done", "40x30"),
        ("traversal.zip/../evil.png", traversal, "failed", "refused zip entry (path with '..')"),
        ("traversal.zip//abs.png", b"", "failed", "refused zip entry (absolute path)"),
        ("traversal.zip/link.png", b"", "failed", "refused zip entry (symbolic link)"),
        ("traversal.zip/fine.png", b"", "done", "30x20"),
        ("broken-xref.pdf", _broken_xref_pdf(), "any", ""),
        ("encrypted.pdf", handmade_pdf(encrypted=True), "failed", "encrypted"),
        ("new\nline.png", png_bytes((21, 12)), "done", "21x12"),
        ("文件 ünïcødé.png", png_bytes((22, 13)), "done", "22x13"),
        ("=HYPERLINK(1+2).png", png_bytes((23, 14)), "done", "23x14"),
    ]


def run_once(state: Path) -> None:
    proc = subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("zip_limit", [8 * 1024**2])
def test_hostile_corpus_ends_done_or_failed_and_nothing_crashes(
    state: Path, tmp_path: Path, zip_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "MAX_ZIP_BYTES", zip_limit)  # a 16 MB ZIP bomb stands in for a multi-GB one
    entries = corpus(tmp_path, zip_limit)
    files = []
    for name, data, _, _ in entries:
        if ".zip/" in name and not data:
            continue  # a member of the ZIP before it
        path = tmp_path / "in" / (name.split(".zip/")[0] + ".zip" if ".zip/" in name else name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(path)
    store = Store(state)
    job_id = submit(store, files, JobSpec(engine=ENGINE, dpi=72))
    run_once(state)

    rows = export_mod.rows(store, job_id)
    seen = {r["source"]: r for r in rows}
    assert len(seen) == len(rows) == len(entries), sorted(seen)
    for name, _, status, fragment in entries:
        row = seen[name]
        assert row["status"] in ("done", "failed"), row
        if status == "any":
            assert row["status"] == "done" or (row["error"] and "\n" not in row["error"]), row
            continue
        assert row["status"] == status, row
        if status == "done":
            assert row["text"] == fragment, row
        else:
            assert row["error_kind"] == "input" and "\n" not in row["error"], row
            assert fragment in row["error"].lower(), row
    assert store.get(job_id).status.value == "completed_with_errors"
    assert not list((state / "jobs").glob("*/inputs/**/evil.png")) and not (tmp_path / "evil.png").exists()

    # the odd filename (a formula) is neutralised in csv and xlsx, kept as is in json
    out = tmp_path / "out.csv"
    export_mod.write(store, job_id, "csv", out)
    with open(out, encoding="utf-8-sig", newline="") as f:
        sources = [r["source"] for r in csv.DictReader(f)]
    assert "'" + "=HYPERLINK(1+2).png" in sources and "new\nline.png" in sources
    assert_inert_csv(out)
    export_mod.write(store, job_id, "xlsx", tmp_path / "out.xlsx")
    assert_inert_xlsx(tmp_path / "out.xlsx", "=HYPERLINK(1+2).png")


def assert_inert_csv(path: Path) -> None:
    with open(path, encoding="utf-8-sig", newline="") as f:
        for rec in csv.reader(f, delimiter=";" if path.read_text(encoding="utf-8-sig").count(";") > 5 else ","):
            for value in rec:
                assert not cells.formula_like(value), (value, rec)


def assert_inert_xlsx(path: Path, *must_have: str) -> None:
    wb = load_workbook(path)
    found = set()
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", cell
                if cells.formula_like(cell.value):
                    assert cell.data_type == "s" and cell.quotePrefix, (cell.coordinate, cell.value)
                    found.add(cell.value)
    assert set(must_have) <= found, found


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_formula_injection_in_a_table_is_neutralised_in_csv_and_xlsx_exports(
    state: Path, tmp_path: Path, fmt: str
) -> None:
    book = tmp_path / "book.csv"
    with open(book, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "note"])
        w.writerow(["a.png", "-12.5"])
        for bad in INJECTIONS:
            w.writerow([bad, bad])
    images = tmp_path / "images.zip"
    images.write_bytes(zip_bytes([("a.png", png_bytes())]))
    store = Store(state)
    job_id = submit_table(store, book, column="file", images=images, spec=JobSpec(engine=ENGINE))
    out = tmp_path / f"out.{fmt}"
    export_mod.write(store, job_id, fmt, out)  # a queued job exports too: its items are "pending"
    if fmt == "csv":
        assert_inert_csv(out)
        with open(out, encoding="utf-8-sig", newline="") as f:
            cells = [v for rec in csv.reader(f) for v in rec]
        assert "-12.5" in cells  # a plain number is left alone
        for bad in INJECTIONS:
            assert cells.count("'" + bad) >= 2, bad
    else:
        assert_inert_xlsx(out, *(i for i in INJECTIONS if i[0] != "\r"))  # XML reads a CR back as LF


def test_formula_text_in_a_workbook_stays_text_in_its_xlsx_export(state: Path, tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["file", "note"])
    ws.append(["a.png", None])
    ws["B2"].value = '=HYPERLINK("http://evil")'
    ws["B2"].data_type = "s"
    ws.append(["='[other.xlsx]Sheet1'!A1", "external link, never computed"])
    wb.save(tmp_path / "book.xlsx")
    images = tmp_path / "images.zip"
    images.write_bytes(zip_bytes([("a.png", png_bytes())]))
    store = Store(state)
    job_id = submit_table(store, tmp_path / "book.xlsx", column="file", images=images, spec=JobSpec(engine=ENGINE))
    items = store.manifest(job_id)
    assert [i.get("error") is None for i in items] == [True, False]
    assert "no computed value" in items[1]["error"] and "[other.xlsx]" in items[1]["error"]
    export_mod.write(store, job_id, "xlsx", tmp_path / "out.xlsx")
    out = load_workbook(tmp_path / "out.xlsx")["Sheet"]
    assert out["E2"].value == '=HYPERLINK("http://evil")' and out["E2"].data_type == "s"  # B moved right by 3


def test_a_10000_page_pdf_is_streamed_one_page_an_item(tmp_path: Path) -> None:
    doc = pdfium.PdfDocument.new()
    for _ in range(10_000):
        doc.new_page(200, 100)
    job = tmp_path / "job"
    (job / "inputs").mkdir(parents=True)
    doc.save(job / "inputs" / "big.pdf")
    doc.close()
    tracemalloc.start()
    t = time.monotonic()
    items = expand(job, job / "inputs" / "big.pdf", "big.pdf")
    elapsed, peak = time.monotonic() - t, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(items) == 10_000 and items[-1]["page"] == 10_000
    assert elapsed < 10 and peak < 30e6, (elapsed, peak)  # page count only; nothing is rendered
    image = load_item(job, items[-1], dpi=72)  # a worker renders just the page its item names
    assert image.size == (200, 100)
    with pytest.raises(InputError, match="no page 10001"):
        load_item(job, {**items[-1], "page": 10_001}, dpi=72)


def test_a_1048576_row_csv_is_refused_quickly(tmp_path: Path) -> None:
    book = tmp_path / "rows.csv"
    with open(book, "w") as f:
        f.write("file,n\n" + "a.png,1\n" * 1_048_575)
    t = time.monotonic()
    with pytest.raises(SubmitError, match=f"more than {config.MAX_TABLE_ROWS:,} data rows"):
        excel.select(book, None, "file")
    assert time.monotonic() - t < 10


def test_a_far_last_row_is_read_in_bounded_time(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws["A1"], ws["A2"] = "file", "a.png"
    ws.cell(1_048_576, 1, "z.png")
    wb.save(tmp_path / "far.xlsx")
    t = time.monotonic()
    sel = excel.select(tmp_path / "far.xlsx", None, "file")
    assert [r.row for r in sel.rows] == [2, 1_048_576]
    assert time.monotonic() - t < 10


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "/etc/passwd", "inputs/../../x.png", "", None, 7, "inputs/a\0.png", "."]
)
def test_a_manifest_path_outside_the_job_is_an_input_error(tmp_path: Path, bad: Any) -> None:
    job = tmp_path / "job"
    (job / "inputs").mkdir(parents=True)
    with pytest.raises(InputError):
        load_item(job, {"index": 0, "source": "x", "path": bad, "page": None, "kind": "image"}, dpi=72)


def test_a_symlink_in_the_job_leading_out_is_refused(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "inputs").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(png_bytes())
    os.symlink(tmp_path / "secret.png", job / "inputs" / "000-a.png")
    with pytest.raises(InputError, match="outside the job folder"):
        load_item(job, {"index": 0, "source": "a.png", "path": "inputs/000-a.png", "kind": "image"}, dpi=72)


@pytest.mark.parametrize(
    "job_id",
    [
        "..",
        "../state",
        "a/b",
        "20260101-000000-aaaaaa/..",
        "20260101-000000-AAAAAA",
        "20260101-000000-aaaaaa\n",
        "",
        "x" * 300,
        "20260101-000000-aaaaa\0",
    ],
)
def test_job_ids_with_path_characters_are_refused(state: Path, job_id: str) -> None:
    with pytest.raises(JobNotFound):
        Store(state).job_dir(job_id)


def test_odd_folders_in_jobs_are_ignored_and_hand_made_ids_still_work(state: Path) -> None:
    store = Store(state)
    write_job(store)
    write_job(store, "20260101-000000-00000a")
    (store.jobs_dir / "not-a-job").mkdir()
    assert store.job_ids() == ["20260101-000000-00000a", "20260101-000000-aaaaaa"]
    assert len(store.list_jobs()) == 2


def test_hand_edited_json_is_refused_or_quarantined(state: Path) -> None:
    store = Store(state).as_runner()  # a runner's: it quarantines (a reader's only refuses)
    job_id = write_job(store, total=2)
    d = store.job_dir(job_id)
    (d / "results").mkdir()
    (d / "results" / "000000.json").write_text(json.dumps({"status": "done"}))  # no index
    (d / "results" / "000001.json").write_text(json.dumps({"index": 1, "status": "done", "text": "ok"}))
    assert [r["index"] for r in store.iter_results(job_id)] == [1]
    assert any("000000.json" in p.name for p in (state / "quarantine").iterdir())
    (d / "manifest.json").write_text(json.dumps([{"index": 0, "source": "a"}, {"index": "1", "source": "b"}]))
    with pytest.raises(Corrupt, match="item 1"):
        store.manifest(job_id)
    other = write_job(store, "20260101-000000-bbbbbb")
    raw = json.loads((store.job_dir(other) / "job.json").read_text())
    (store.job_dir(other) / "job.json").write_text(json.dumps({**raw, "id": "20260101-000000-aaaaaa"}))
    with pytest.raises(JobNotFound):
        store.get(other)  # a copied job.json naming another job is quarantined, not trusted


def test_no_pickle_anywhere() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|marshal|shelve|dill)\b", re.M)
    sources = [p for p in REPO.rglob("*.py") if ".venv" not in p.parts]
    assert sources and not [p for p in sources if pattern.search(p.read_text(errors="replace"))]


@pytest.mark.slow
def test_a_damaged_item_list_fails_its_job_not_the_runner(state: Path, tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import PY, REPO, cli, cli_json, make_png

    bad = cli_json(state, "submit", str(make_png(tmp_path / "a.png")), "--engine", "tests.engines:SizeEngine")["id"]
    good = cli_json(state, "submit", str(make_png(tmp_path / "b.png")), "--engine", "tests.engines:SizeEngine")["id"]
    (state / "jobs" / bad / "manifest.json").write_text('[{"index": "zero"}]')
    proc = subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once", "--workers", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    failed = cli_json(state, "show", bad)
    assert failed["status"] == "failed" and "item list is unreadable" in failed["error"]
    assert cli_json(state, "show", good)["status"] == "succeeded"
    assert cli(state, "list").returncode == 0
