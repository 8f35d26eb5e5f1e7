"""Workbook and CSV input: inspect, validation at submit, per-row errors, pictures, write-back.

Workbooks are generated with openpyxl; the runner runs with ``--once`` and the SizeEngine,
whose text is the image size, so each row's result says which image it came from.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.drawing.image import Image as XImage
from PIL import Image

from jobs.errors import SubmitError
from jobs.intake import excel
from jobs.intake.submit import submit_table
from jobs.store import Store
from tests.conftest import PY, REPO, cli, cli_json

SIZE = "tests.engines:SizeEngine"


# -- helpers (also used by test_excel_job.py) ------------------------------------------------------
def png_bytes(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, 255).save(buf, "PNG")
    return buf.getvalue()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_book(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def cache_formula(path: Path, cell: str, value: str, sheet_xml: str = "xl/worksheets/sheet1.xml") -> None:
    """Give a formula cell the cached value Excel would have saved (openpyxl never computes)."""
    with zipfile.ZipFile(path) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    xml = parts[sheet_xml].decode()
    xml, n = re.subn(
        rf'<c r="{cell}"><f>(.*?)</f>(?:<v\s*/>|<v></v>)', rf'<c r="{cell}" t="str"><f>\1</f><v>{value}</v>', xml
    )
    assert n == 1, xml
    parts[sheet_xml] = xml.encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)


def run_once(state: Path) -> None:
    subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once"], cwd=REPO, check=True, capture_output=True, timeout=120
    )


def sheet_values(path: Path, sheet: str) -> list[list[Any]]:
    ws = openpyxl.load_workbook(path)[sheet]
    return [[c.value for c in row] for row in ws.iter_rows()]


@pytest.fixture
def book(tmp_path: Path) -> Path:
    return make_book(
        tmp_path / "book.xlsx",
        {
            "Data": [["id", "file", "note"], [1, "a.png", "x"], [2, "b.png", "y"]],
            "Notes": [["just", "text"]],
            "Empty": [],
            "HeaderOnly": [["id", "file"]],
        },
    )


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return make_zip(tmp_path / "files.zip", {"a.png": png_bytes((30, 20)), "b.png": png_bytes((31, 20))})


# -- inspect -----------------------------------------------------------------------------------------
def test_inspect_lists_sheets_headers_pictures_and_first_rows(tmp_path: Path, book: Path) -> None:
    data = excel.inspect(book, preview=1)
    assert [s["name"] for s in data["sheets"]] == ["Data", "Notes", "Empty", "HeaderOnly"]
    first = data["sheets"][0]
    assert [(c["letter"], c["header"]) for c in first["columns"]] == [("A", "id"), ("B", "file"), ("C", "note")]
    assert first["rows"] == 2 and first["preview"] == [["1", "a.png", "x"]]
    assert data["sheets"][2]["rows"] == 0 and data["sheets"][2]["columns"] == []


def test_inspect_command_prints_and_answers_json(state: Path, book: Path) -> None:
    text = cli(state, "inspect", str(book)).stdout
    assert "sheet 'Data': 2 data row(s), 3 column(s)" in text and "  B  file" in text and "a.png" in text
    data = cli_json(state, "inspect", str(book), "--rows", "0")
    assert data["format"] == "xlsx" and data["sheets"][0]["preview"] == []


# -- one clear error before anything is queued ------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sheet", "Nope", "--column", "file"],
            "no sheet 'Nope' in book.xlsx; sheets: 'Data', 'Notes', 'Empty', 'HeaderOnly'",
        ),
        (
            ["--sheet", "Data", "--column", "photo"],
            "no column 'photo' in sheet 'Data' of book.xlsx; columns: A 'id', B 'file', C 'note'",
        ),
        (["--sheet", "Data", "--column", "F"], "no column 'F' in sheet 'Data' of book.xlsx; columns: A 'id', B 'file'"),
        (
            ["--sheet", "Data"],
            "choose a column of sheet 'Data' with --column (header text or letter): A 'id', B 'file'",
        ),
        (["--column", "file"], "book.xlsx has 4 sheets; choose one with --sheet: 'Data', 'Notes', 'Empty'"),
        (["--sheet", "Empty", "--column", "A"], "sheet 'Empty' of book.xlsx is empty; sheets: 'Data', 'Notes'"),
        (
            ["--sheet", "HeaderOnly", "--column", "file"],
            "sheet 'HeaderOnly' of book.xlsx has no data rows below the header row 1; nothing to OCR",
        ),
        (["--sheet", "Data", "--column", "file", "--header-row", "-1"], "header row must be 0 (no header)"),
        (["--sheet", "Data", "--column", "file", "--images", "MISSING"], "cannot read the images ZIP"),
    ],
)
def test_bad_choices_are_one_clear_line(state: Path, book: Path, images: Path, args: list[str], message: str) -> None:
    if "--images" not in args:
        args += ["--images", str(images)]
    args = [str(images.parent / "nope.zip") if a == "MISSING" else a for a in args]
    proc = cli(state, "submit", str(book), *args, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert list((state / "jobs").iterdir()) == [], "a refused submit leaves nothing behind"


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"PK\x03\x04 this is not really a workbook", "bad.xlsx", "cannot read bad.xlsx as an Excel workbook"),
        (b"", "empty.xlsx", "cannot read empty.xlsx as an Excel workbook"),
        (
            b"\xd0\xcf\x11\xe0 old binary",
            "old.xls",
            "old.xls: .xls files are not supported; open it in Excel and save it",
        ),
        (b"id,file\n1,caf\xe9.png\n", "latin1.csv", "latin1.csv is not UTF-8 text"),
    ],
)
def test_unreadable_workbooks(
    state: Path, tmp_path: Path, images: Path, content: bytes, name: str, message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    proc = cli(state, "submit", str(tmp_path / name), "--column", "file", "--images", str(images), check=False)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_more_validation(tmp_path: Path, state: Path, images: Path) -> None:
    store = Store(state)
    dup = make_book(tmp_path / "dup.xlsx", {"S": [["file", "file"], ["a.png", "b.png"]]})
    with pytest.raises(SubmitError, match="header 'file' is in columns A, B of sheet 'S'; give the column letter"):
        submit_table(store, dup, column="file", images=images)
    blank = make_book(tmp_path / "blank.xlsx", {"S": [["id", "file"], [1, None], [2, None]]})
    with pytest.raises(SubmitError, match=r"column B \('file'\) of sheet 'S' is empty in every data row"):
        submit_table(store, blank, column="file", images=images)
    rel = make_book(tmp_path / "rel.xlsx", {"S": [["file"], ["a.png"]]})
    with pytest.raises(SubmitError, match="holds relative paths \\(like 'a.png'\\) but no images ZIP was given"):
        submit_table(store, rel, column="file")
    proc = cli(state, "submit", str(rel), str(tmp_path / "x.png"), "--column", "A", check=False)
    assert "submit one workbook (.xlsx, .xlsm) or CSV on its own" in proc.stderr
    assert list((state / "jobs").iterdir()) == []


def test_column_by_header_case_or_letter_and_sheet_ignoring_case(tmp_path: Path, book: Path) -> None:
    assert excel.select(book, "Data", "file").column == 2
    assert excel.select(book, "data", "FILE").column == 2
    assert excel.select(book, "Data", "b").column == 2
    no_header = excel.select(book, "Data", "B", header_row=0)
    assert no_header.header is None and [r.value for r in no_header.rows] == ["file", "a.png", "b.png"]


# -- per-row problems are per-item errors; the job goes on -------------------------------------------
def test_row_problems_are_item_errors_in_their_rows(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "shared"
    (root / "scans").mkdir(parents=True)
    (root / "scans" / "ok.png").write_bytes(png_bytes((40, 20)))
    outside = tmp_path / "private.png"
    outside.write_bytes(png_bytes((41, 20)))
    (root / "scans" / "escape.png").symlink_to(outside)
    monkeypatch.setenv("OCRJOBS_ALLOWED_ROOTS", str(root))
    rows = [
        ["name", "file"],
        ["zip", "a.png"],
        ["disk", str(root / "scans" / "ok.png")],
        ["outside", str(outside)],
        ["link out", str(root / "scans" / "escape.png")],
        ["missing in zip", "nope.png"],
        ["missing on disk", str(root / "scans" / "gone.png")],
        ["empty", None],
        ["not an image", "notes.txt"],
        ["url", "https://example.com/x.png"],
        ["windows", "C:\\scans\\x.png"],
        ["error value", "#N/A"],
        ["zip again", "./A.PNG"],
    ]
    book = make_book(tmp_path / "rows.xlsx", {"Data": rows})
    zpath = make_zip(tmp_path / "files.zip", {"a.png": png_bytes((30, 20)), "notes.txt": b"hello"})
    job_id = submit_table(Store(state), book, column="file", images=zpath, spec=_spec())
    manifest = Store(state).manifest(job_id)
    assert [i["row"] for i in manifest] == list(range(2, 14))
    assert [i["index"] for i in manifest] == list(range(12))
    assert manifest[0]["path"] == manifest[11]["path"], "a file named twice is extracted once"
    run_once(state)
    out = tmp_path / "out.xlsx"
    cli(state, "export", job_id, "--format", "xlsx", "-o", str(out))
    got = {r[0]: r[2:5] for r in sheet_values(out, "Data")}
    assert got["name"] == ["OCR text", "OCR status", "OCR error"]
    assert got["zip"] == ["30x20", "done", None] and got["zip again"] == ["30x20", "done", None]
    assert got["disk"] == ["40x20", "done", None]
    expected = {
        "outside": f"{outside} is outside the allowed folders {root} (OCRJOBS_ALLOWED_ROOTS)",
        "link out": f"(it leads to {outside}) is outside the allowed folders",
        "missing in zip": "file not found in the images ZIP: 'nope.png'",
        "missing on disk": f"file not found: {root / 'scans' / 'gone.png'}",
        "empty": "cell Data!B8 is empty",
        "not an image": "notes.txt: unsupported file type '.txt'; a cell must name an image or a PDF",
        "url": "is a URL; URLs are not downloaded",
        "windows": "is a Windows path the server cannot reach",
        "error value": "cell Data!B12 holds the Excel error #N/A, not a file name",
    }
    for name, fragment in expected.items():
        assert got[name][0] is None and got[name][1] == "failed" and fragment in got[name][2], (name, got[name])
    shown = cli_json(state, "show", job_id)
    assert shown["status"] == "completed_with_errors"
    assert (shown["progress"]["done"], shown["progress"]["failed"]) == (3, 9)


def test_no_allowed_roots_means_no_absolute_paths(tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCRJOBS_ALLOWED_ROOTS", raising=False)
    png = tmp_path / "x.png"
    png.write_bytes(png_bytes((10, 10)))
    book = make_book(tmp_path / "abs.xlsx", {"S": [["file"], [str(png)]]})
    with pytest.raises(SubmitError, match=r"none are configured \(an admin sets OCRJOBS_ALLOWED_ROOTS\)"):
        submit_table(Store(state), book, column="file")  # no row resolves: refused at submit (issue 17: defect 4)


def test_formula_cells_use_their_cached_value(tmp_path: Path, state: Path, images: Path) -> None:
    book = make_book(tmp_path / "f.xlsx", {"S": [["id", "file"], [1, '="a"&".png"'], [2, '="b"&".png"']]})
    cache_formula(book, "B2", "a.png")  # B3 keeps no cached value, like a file written by a script
    job_id = submit_table(Store(state), book, column="file", images=images, spec=_spec())
    first, second = Store(state).manifest(job_id)
    assert first["source"] == "a.png" and "error" not in first
    assert second["error"].startswith('formula ="b"&".png" in S!B3 has no computed value')
    run_once(state)
    out = tmp_path / "out.xlsx"
    cli(state, "export", job_id, "--format", "xlsx", "-o", str(out))
    values = sheet_values(out, "S")
    assert values[1] == [1, '="a"&".png"', "30x20", "done", None], "the formula itself is kept in the export"


# -- pictures in the sheet ---------------------------------------------------------------------------
def test_three_anchored_pictures_are_three_items_in_their_rows(tmp_path: Path, state: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Photos"
    ws.append(["id", "photo", "comment"])
    for row, size in ((2, (50, 20)), (4, (51, 20)), (7, (52, 20))):
        ws.cell(row, 1, row)
        Image.new("RGB", size, "white").save(tmp_path / f"p{row}.png")
        ws.add_image(XImage(str(tmp_path / f"p{row}.png")), f"B{row}")
    ws["C3"] = "a row without a picture"
    logo = tmp_path / "logo.png"
    Image.new("RGB", (9, 9), "white").save(logo)
    ws.add_image(XImage(str(logo)), "C1")  # in the header row: not an item
    book = tmp_path / "photos.xlsx"
    wb.save(book)

    info = excel.inspect(book)["sheets"][0]
    assert info["images"] == 3 and [c["images"] for c in info["columns"]] == [0, 3, 0]
    job_id = cli_json(state, "submit", str(book), "--column", "photo", "--engine", SIZE)["id"]
    manifest = Store(state).manifest(job_id)
    pictures = [i for i in manifest if "error" not in i]
    assert [(i["row"], i["source"]) for i in pictures] == [
        (2, "Photos!B2 picture"),
        (4, "Photos!B4 picture"),
        (7, "Photos!B7 picture"),
    ]
    assert [i["row"] for i in manifest if "error" in i] == [3]  # a filled row with an empty cell
    run_once(state)
    out = tmp_path / "out.xlsx"
    cli(state, "export", job_id, "--format", "xlsx", "-o", str(out))
    values = sheet_values(out, "Photos")
    assert [(r[0], r[2], r[3]) for r in values[1:]] == [
        (2, "50x20", "done"),
        (None, None, "failed"),
        (4, "51x20", "done"),
        (None, None, None),
        (None, None, None),
        (7, "52x20", "done"),
    ]
    assert len(openpyxl.load_workbook(out)["Photos"]._images) == 4, "the pictures stay in the exported workbook"


# -- CSV in, CSV and xlsx out -----------------------------------------------------------------------
def test_csv_input_keeps_its_delimiter_and_gains_three_columns(tmp_path: Path, state: Path) -> None:
    src = tmp_path / "list.csv"
    src.write_text("Nr;Datei;Bemerkung\n1;docs/a.png;ä\n\n2;docs/b.png;ö\n", encoding="utf-8-sig")
    zpath = make_zip(
        tmp_path / "scans.zip", {"export/docs/a.png": png_bytes((60, 20)), "export/docs/b.png": png_bytes((61, 20))}
    )
    job_id = cli_json(state, "submit", str(src), "--column", "datei", "--images", str(zpath), "--engine", SIZE)["id"]
    assert [i["row"] for i in Store(state).manifest(job_id)] == [2, 4]
    run_once(state)
    cli(state, "export", job_id, "--format", "csv", "-o", str(tmp_path / "out.csv"))
    text = (tmp_path / "out.csv").read_text(encoding="utf-8-sig")
    assert list(csv.reader(io.StringIO(text), delimiter=";")) == [
        ["Nr", "Datei", "OCR text", "OCR status", "OCR error", "Bemerkung"],
        ["1", "docs/a.png", "60x20", "done", "", "ä"],
        ["", "", "", "", ""],
        ["2", "docs/b.png", "61x20", "done", "", "ö"],
    ]
    cli(state, "export", job_id, "--format", "xlsx", "-o", str(tmp_path / "out.xlsx"))
    assert sheet_values(tmp_path / "out.xlsx", "OCR results")[3] == ["2", "docs/b.png", "61x20", "done", None, "ö"]
    cli(state, "export", job_id, "--format", "json", "-o", str(tmp_path / "o.json"))
    assert [(r["row"], r["text"]) for r in json.loads((tmp_path / "o.json").read_text())] == [
        (2, "60x20"),
        (4, "61x20"),
    ]


def _spec() -> Any:
    from jobs.intake.submit import JobSpec

    return JobSpec(engine=SIZE)


# -- the dashboard: the same inspect() preview, then one job ------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dashboard_previews_a_workbook_and_submits_the_chosen_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("OCRJOBS_STATE", str(tmp_path / "state"))
    monkeypatch.chdir(REPO)
    book = make_book(
        tmp_path / "b.xlsx",
        {
            "Other": [["x"], [1]],
            "Data": [["id", "file"], [1, "a.png"], [2, "b.png"]],
        },
    )
    zpath = make_zip(tmp_path / "z.zip", {"a.png": png_bytes((30, 20)), "b.png": png_bytes((31, 20))})
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30)
    at.run()
    at.switch_page("pages/submit_page.py").run()
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    at.file_uploader[0].set_value([("b.xlsx", book.read_bytes(), xlsx)]).run()
    assert not at.exception, at.exception
    by_label = {b.label: b for b in at.selectbox}
    by_label["Sheet"].set_value("Data").run()
    column = [b for b in at.selectbox if b.label.startswith("Column")][0]
    assert column.options == ["A  id", "B  file"]
    assert at.dataframe[0].value["B"].tolist() == ["a.png", "b.png"]
    column.set_value("B  file").run()
    at.file_uploader[1].set_value([("z.zip", zpath.read_bytes(), "application/zip")]).run()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    store = Store(tmp_path / "state")
    (job,) = store.list_jobs()
    assert job.spec["table"]["sheet"] == "Data" and job.spec["table"]["column"] == "B"
    assert [(i["row"], i["source"], "error" in i) for i in store.manifest(job.id)] == [
        (2, "a.png", False),
        (3, "b.png", False),
    ]
