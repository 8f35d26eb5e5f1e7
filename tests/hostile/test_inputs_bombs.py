"""Hostile uploads at intake (issue 14, findings 4, 10, 12, 13): each is refused with a message a
user can act on, in bounded memory and disk, through the real CLI (and a real runner where
the worker's decode matters). Limits are scaled down through their environment variables
where a full-size attack would make the test slow; the full-size numbers are in the report.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, TiffImagePlugin

from tests.conftest import PY, REPO, cli, cli_json
from tests.hostile import inputs as hostile

SIZE = "tests.engines:SizeEngine"


#: ``python -m jobs ARGS`` that writes its own peak RSS (VmHWM, KiB) to PEAK_FILE as it exits. Not the
#: rusage of the waited-for child: a child forked from this (large) pytest process starts its
#: ru_maxrss at the parent's size, which would hide what the command itself used.
PEAK_CLI = (
    "import atexit, os, runpy, sys\n"
    "def peak():\n"
    "    hwm = next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "    open(os.environ['PEAK_FILE'], 'w').write(hwm)\n"
    "atexit.register(peak)\n"
    "sys.argv = ['jobs', *sys.argv[1:]]\n"
    "runpy.run_module('jobs', run_name='__main__', alter_sys=True)\n"
)


def measured(state: Path, *args: str, timeout: float = 120) -> tuple[int, str, float]:
    """Run the CLI as a user would; (exit code, stdout + stderr, peak RSS in MB of that process)."""
    out = state.parent / f"out-{time.monotonic_ns()}.txt"
    peak_file = out.with_suffix(".peak")
    env = {**os.environ, "PEAK_FILE": str(peak_file)}
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            [PY, "-c", PEAK_CLI, "--state", str(state), *args], cwd=REPO, stdout=f, stderr=f, env=env
        )
    deadline = time.monotonic() + timeout
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise AssertionError(f"{args} still running after {timeout} s")
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out, "rb") as f:  # what a bomb prints may be huge: the start says enough
        text = f.read(1 << 16).decode(errors="replace")
    out.unlink()
    peak_kib = int(peak_file.read_text())
    peak_file.unlink()
    return proc.returncode, text, peak_kib / 1024


def run_once(state: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once"],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def job_files(state: Path) -> list[Path]:
    return [p for p in state.rglob("*") if p.is_file()]


# -- finding 4: workbook bombs ---------------------------------------------------------------------
def test_a_1_gib_shared_strings_bomb_is_refused_unread_by_inspect_and_submit(state: Path, tmp_path: Path) -> None:
    bomb = hostile.shared_strings_bomb(tmp_path / "bomb.xlsx", 1 << 30)
    assert bomb.stat().st_size < 2_000_000  # ~1 MB upload, 1 GiB inside
    images = hostile.images_zip(tmp_path / "images.zip", {"a.png": hostile.png_bytes()})
    for args in (
        ("inspect", str(bomb)),
        ("submit", str(bomb), "--sheet", "Data", "--column", "A", "--images", str(images)),
    ):
        code, out, rss = measured(state, *args)
        assert code == 1, out
        assert "part 'xl/sharedStrings.xml' expands to 1.1 GB" in out and "OCRJOBS_MAX_XLSX_PART_BYTES" in out, out
        assert "Traceback" not in out
        assert rss < 300, f"{args[0]} peaked at {rss:.0f} MB"
    assert not job_files(state / "jobs") if (state / "jobs").exists() else True


def test_an_entity_expansion_in_a_workbook_part_is_refused(state: Path, tmp_path: Path) -> None:
    book = hostile.billion_laughs(tmp_path / "laughs.xlsx")
    code, out, rss = measured(state, "inspect", str(book))
    assert code == 1 and "part 'xl/sharedStrings.xml' declares a document type or entities" in out, out
    assert rss < 300
    # and openpyxl parses every part with defusedxml, which `make setup` installs
    assert any(line.split(">")[0].strip() == "defusedxml" for line in (REPO / "requirements.txt").read_text().split())
    flag = subprocess.run([PY, "-c", "import openpyxl; print(openpyxl.DEFUSEDXML)"], capture_output=True, text=True)
    assert flag.stdout.strip() == "True"
    import openpyxl
    from defusedxml import DTDForbidden, EntitiesForbidden

    with pytest.raises(ValueError) as refused:  # behind our own check, openpyxl refuses it too
        openpyxl.load_workbook(book)
    assert isinstance(refused.value.__cause__ or refused.value.__context__, (DTDForbidden, EntitiesForbidden))


def test_a_sheet_of_huge_cells_costs_kilobytes_not_gigabytes(state: Path, tmp_path: Path) -> None:
    """One 100,000-character shared string named by 300 rows: the manifest and the preview stay small."""
    book = hostile.long_cell_rows(tmp_path / "long.xlsx", chars=100_000, rows=300)
    preview = cli(state, "inspect", str(book), "--json").stdout
    assert len(preview) < 20_000, len(preview)
    images = hostile.images_zip(tmp_path / "images.zip", {"a.png": hostile.png_bytes()})
    args = ("submit", str(book), "--sheet", "Data", "--column", "name", "--images", str(images))
    refused = cli(state, *args, check=False)  # no row names a file: refused at submit (issue 17, defect 4)
    assert refused.returncode == 1 and len(refused.stderr) < 1_000, refused.stderr[:2000]
    assert "of column A (name) names a file in the images ZIP images.zip" in refused.stderr
    assert "…': not a file name" in refused.stderr
    assert not list(state.glob("jobs/*/manifest.json"))  # no job was made


def test_inspect_shows_at_most_256_columns_of_a_wide_sheet(state: Path, tmp_path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append([f"h{c}" for c in range(300)])
    wb.active.append(list(range(300)))
    wb.save(tmp_path / "wide.xlsx")
    sheet = cli_json(state, "inspect", str(tmp_path / "wide.xlsx"))["sheets"][0]
    assert len(sheet["columns"]) == 256 and all(len(r) == 256 for r in sheet["preview"])


def test_a_workbook_too_large_to_load_whole_is_refused_at_submit_and_at_xlsx_export(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big *other* sheet: submit reads only the chosen one, but the xlsx export loads them all.
    (At full size, 300,000 x 20: export xlsx took 2.8 GB and 204 s; now refused at submit.)"""
    book = hostile.big_other_sheet(tmp_path / "big.xlsx", rows=2_000, cols=20)
    images = hostile.images_zip(tmp_path / "images.zip", {"a.png": hostile.png_bytes()})
    args = ("submit", str(book), "--sheet", "Data", "--column", "name", "--images", str(images))
    job_id = cli_json(state, *args)["id"]  # under the default limit

    monkeypatch.setenv("OCRJOBS_MAX_WORKBOOK_CELLS", "20000")
    refused = cli(state, *args, check=False)
    assert refused.returncode == 1
    assert "has 40,002 cells in all its sheets, above the limit of 20,000" in refused.stderr, refused.stderr
    assert "OCRJOBS_MAX_WORKBOOK_CELLS" in refused.stderr

    # a job submitted before the limit (or with a higher one) is refused by the xlsx export only
    out = cli(state, "export", job_id, "--format", "xlsx", "-o", str(tmp_path / "out.xlsx"), check=False)
    assert out.returncode == 1 and "export as csv" in out.stderr, out.stderr
    assert not (tmp_path / "out.xlsx").exists()
    cli(state, "export", job_id, "--format", "csv", "-o", str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_text(encoding="utf-8-sig").splitlines()[1].startswith("a.png,")


def test_scaled_part_and_total_limits_name_the_part(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = hostile.shared_strings_bomb(tmp_path / "b.xlsx", 3 << 20)
    monkeypatch.setenv("OCRJOBS_MAX_XLSX_PART_BYTES", str(2 << 20))
    out = cli(state, "inspect", str(book), check=False).stderr
    assert "part 'xl/sharedStrings.xml' expands to 3.1 MB, above the 2.1 MB limit per part" in out, out
    monkeypatch.setenv("OCRJOBS_MAX_XLSX_PART_BYTES", str(8 << 20))
    monkeypatch.setenv("OCRJOBS_MAX_XLSX_BYTES", str(2 << 20))
    out = cli(state, "inspect", str(book), check=False).stderr
    assert "b.xlsx expands to 3.2 MB, above the 2.1 MB limit for a workbook (OCRJOBS_MAX_XLSX_BYTES)" in out, out


# -- finding 10: ZIPs, TIFFs, large images, folder walks -------------------------------------------
def test_a_zip_member_named_png_that_is_not_one_is_never_extracted(state: Path, tmp_path: Path) -> None:
    bomb = hostile.zip_with_fake_image(tmp_path / "scans.zip", "scan.png", 200 << 20, {"ok.png": hostile.png_bytes()})
    assert bomb.stat().st_size < 1_000_000
    job_id = cli_json(state, "submit", str(bomb))["id"]
    items = {i["source"]: i for i in json.loads((state / "jobs" / job_id / "manifest.json").read_text())}
    assert "not a PNG file" in items["scans.zip/scan.png"]["error"]
    assert "error" not in items["scans.zip/ok.png"]
    assert max(p.stat().st_size for p in job_files(state)) < 1_000_000

    # the same member named by a workbook's cell, through --images
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["file"])
    wb.active.append(["scan.png"])
    wb.save(tmp_path / "list.xlsx")
    job_id = cli_json(state, "submit", str(tmp_path / "list.xlsx"), "--column", "file", "--images", str(bomb))["id"]
    (item,) = json.loads((state / "jobs" / job_id / "manifest.json").read_text())
    assert "'scan.png' is not a PNG file" in item["error"], item
    assert max(p.stat().st_size for p in job_files(state)) < 1_000_000


def test_the_zip_limit_is_per_job_and_folders_count_as_entries(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    noisy = io.BytesIO()
    Image.frombytes("L", (400, 400), os.urandom(160_000)).save(noisy, "PNG")
    assert 150_000 < len(noisy.getvalue()) < 200_000
    one = hostile.images_zip(tmp_path / "one.zip", {"a.png": noisy.getvalue()})
    two = hostile.images_zip(tmp_path / "two.zip", {"b.png": noisy.getvalue()})
    dirs = hostile.images_zip(tmp_path / "dirs.zip", {"c.png": hostile.png_bytes()}, dirs=10)
    monkeypatch.setenv("OCRJOBS_MAX_ZIP_BYTES", "250000")
    monkeypatch.setenv("OCRJOBS_MAX_ZIP_ENTRIES", "5")
    job_id = cli_json(state, "submit", str(one), str(two), str(dirs))["id"]
    items = {i["source"]: i for i in json.loads((state / "jobs" / job_id / "manifest.json").read_text())}
    assert "error" not in items["one.zip/a.png"]
    assert "left of the job's 250.0 KB limit" in items["two.zip"]["error"], items["two.zip"]
    assert "ZIP has 1 files and 10 folders, above the limit of 5" in items["dirs.zip"]["error"]


def test_each_page_of_a_multipage_tiff_is_read_once_not_from_page_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's decode: page n+1 after page n reads one more page directory, so a 10,000-page
    TIFF is linear (before: each page walked from page 1, ~45 CPU-minutes)."""
    from jobs.intake.decode import load_image

    path = hostile.multipage_tiff(Path(os.environ.get("TMPDIR", "/tmp")) / f"pages-{os.getpid()}.tif", 300)
    reads = 0
    load = TiffImagePlugin.ImageFileDirectory_v2.load

    def counting(self: TiffImagePlugin.ImageFileDirectory_v2, fp: object) -> None:
        nonlocal reads
        reads += 1
        load(self, fp)

    monkeypatch.setattr(TiffImagePlugin.ImageFileDirectory_v2, "load", counting)
    try:
        for page in range(1, 301):
            assert load_image(path, page).size == (64, 32)
    finally:
        path.unlink()
    assert reads <= 4 * 300, reads  # a few a page; from page 1 each time it is ~45,000


def test_a_huge_image_is_scaled_down_before_the_engine_sees_it(state: Path, tmp_path: Path) -> None:
    png = hostile.huge_png(tmp_path / "poster.png", (9000, 6000))
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (8192, 4096), "white").save(jpeg, quality=50)
    job_id = cli_json(state, "submit", str(png), str(jpeg), "--engine", SIZE)["id"]
    run_once(state)
    rows = {r["source"]: r for r in _rows(state, job_id, tmp_path)}
    assert rows["poster.png"]["text"] == "3000x2000", rows["poster.png"]  # reduced 3:1, under 4096
    assert rows["photo.jpg"]["text"] == "4096x2048", rows["photo.jpg"]


def _rows(state: Path, job_id: str, tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / "rows.json"
    cli(state, "export", job_id, "--format", "json", "-o", str(out))
    return json.loads(out.read_text())


def test_a_symlink_diamond_is_walked_once_per_folder(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = hostile.symlink_diamond(tmp_path / "maze", depth=30)  # 2^30 paths to one file
    monkeypatch.setenv("OCRJOBS_ALLOWED_ROOTS", str(tmp_path))
    started = time.monotonic()
    proc = cli(state, "submit", "--folder", str(top), "--json", timeout=60)
    assert json.loads(proc.stdout)["total"] == 1
    assert time.monotonic() - started < 60


def test_a_folder_too_deep_is_refused_with_a_message(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / "deep"
    leaf = deep.joinpath(*["d"] * 70)
    leaf.mkdir(parents=True)
    (leaf / "page.png").write_bytes(hostile.png_bytes())
    monkeypatch.setenv("OCRJOBS_ALLOWED_ROOTS", str(tmp_path))
    out = cli(state, "submit", "--folder", str(deep), check=False)
    assert out.returncode == 1 and "more than 64 folders deep" in out.stderr, out.stderr


# -- finding 12: names with control characters -----------------------------------------------------
EVIL = "\x1b]0;pwned\x07\x1b[2J\nrow\u202e.png"


def test_control_characters_in_names_are_escaped_by_show_inspect_and_the_txt_export(
    state: Path, tmp_path: Path
) -> None:
    bad = tmp_path / EVIL
    bad.write_bytes(b"not an image")
    forged = tmp_path / "a.png\n===== forged.png ====="
    forged.write_bytes(hostile.png_bytes())
    job_id = cli_json(state, "submit", str(bad), str(forged), "--engine", SIZE)["id"]
    run_once(state)

    shown = cli(state, "show", job_id).stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\nrow\\u202e.png" in shown, shown
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown

    out = tmp_path / "out.txt"
    cli(state, "export", job_id, "--format", "txt", "-o", str(out))
    headers = [line for line in out.read_text().splitlines() if line.startswith("=====")]
    assert len(headers) == 2, headers
    assert "===== forged.png =====" not in out.read_text().splitlines()

    import openpyxl

    wb = openpyxl.Workbook()  # XML forbids ESC in a cell; C1 controls (CSI is \x9b) and bidi are allowed
    wb.active.title = "S\x9b31m"
    wb.active.append(["name\u202e"])
    wb.active.append(["x\x9b1m.png"])
    book = tmp_path / "b\x1b[5m.xlsx"
    wb.save(book)
    text = cli(state, "inspect", str(book)).stdout
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text, text
    assert "b\\x1b[5m.xlsx" in text and "S\\x9b31m" in text and "name\\u202e" in text and "x\\x9b1m.png" in text
