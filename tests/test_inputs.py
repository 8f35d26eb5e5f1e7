"""Inputs: every bad file becomes one failed item with a clear message, and the job goes on.

End-to-end tests submit a good PNG next to the bad inputs, drain the queue with a real
``runner.py --once`` (fast SizeEngine: text = "WxH") and read the json export. Unit tests
drive jobs.intake.inputs.expand and jobs.intake.decode.load_image directly, including small seeded fuzzes.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import secrets
import stat
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image

from jobs import config
from jobs.errors import InputError
from jobs.intake.decode import load_image, load_item, render_pdf_page
from jobs.intake.inputs import expand, extract_bounded
from tests.conftest import PY, REPO, Runners, cli, cli_json, make_png

ENGINE = "tests.engines:SizeEngine"


# -- building inputs -------------------------------------------------------------------------
def png_bytes(size: tuple[int, int] = (64, 48), noise: bool = False) -> bytes:
    im = Image.effect_noise(size, 60).convert("RGB") if noise else Image.new("RGB", size, "white")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (200, 100)) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares ``w`` x ``h`` (1-bit) but holds almost no data: huge, yet cheap to write."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def pdf_bytes(page_sizes: list[tuple[int, int]]) -> bytes:
    """One page per size, in points (saved at 72 dpi, so ``--dpi 72`` renders them at that many pixels)."""
    pages = [Image.new("RGB", s, "white") for s in page_sizes]
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", resolution=72.0, save_all=True, append_images=pages[1:])
    return buf.getvalue()


def handmade_pdf(encrypted: bool) -> bytes:
    """A one-page PDF written by hand; with ``encrypted`` it carries a Standard /Encrypt dictionary
    whose user password is not empty (its /U does not match), so it cannot be opened without one."""
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
    ]
    if encrypted:
        objs.append(b"<< /Filter /Standard /V 1 /R 2 /P -44 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    trailer = b"/Size %d /Root 1 0 R /ID [<%s> <%s>]" % (len(objs) + 1, b"ab" * 16, b"ab" * 16)
    if encrypted:
        trailer += b" /Encrypt 4 0 R"
    out += b"trailer\n<< " + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def zip_bytes(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def patch_central(
    data: bytes, name: str, *, flags: int | None = None, method: int | None = None, size: int | None = None
) -> bytes:
    """Rewrite fields of ``name``'s central-directory record (what zipfile trusts) to craft lying ZIPs."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos != -1:
        nlen = struct.unpack_from("<H", out, pos + 28)[0]
        if out[pos + 46 : pos + 46 + nlen] == name.encode():
            if flags is not None:
                struct.pack_into("<H", out, pos + 8, flags)
            if method is not None:
                struct.pack_into("<H", out, pos + 10, method)
                struct.pack_into("<H", out, _local_header(out, pos) + 8, method)
            if size is not None:
                struct.pack_into("<I", out, pos + 24, size)
            return bytes(out)
        pos = out.find(b"PK\x01\x02", pos + 4)
    raise KeyError(name)


def _local_header(out: bytearray, central: int) -> int:
    return struct.unpack_from("<I", out, central + 42)[0]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- running a job ---------------------------------------------------------------------------
def submit(state: Path, *files: Path, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [PY, "-m", "jobs", "--state", str(state), "submit", *map(str, files), "--engine", ENGINE, "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, f"submit exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)["id"]


def run_once(runners: Runners, state: Path, env: dict[str, str] | None = None) -> None:
    proc = runners.start(state, "--once", env=env)
    try:
        rc = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"runner --once did not finish:\n{runners.log(proc)}") from None
    assert rc == 0, f"runner exited {rc}:\n{runners.log(proc)}"


def export(state: Path, job_id: str, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / f"{job_id}.json"
    cli(state, "export", job_id, "--format", "json", "-o", str(out))
    return json.loads(out.read_text())


def by_source(rows: list[dict[str, Any]]) -> dict[tuple[str, int | None], dict[str, Any]]:
    keyed = {(r["source"], r["page"]): r for r in rows}
    assert len(keyed) == len(rows), f"duplicate (source, page) in {rows}"
    return keyed


def assert_failed(row: dict[str, Any], *fragments: str) -> None:
    assert row["status"] == "failed" and row["error_kind"] == "input", row
    assert row["text"] == "" and row["error"], row
    assert "Traceback" not in row["error"] and "\n" not in row["error"], row
    for fragment in fragments:
        assert fragment.lower() in row["error"].lower(), f"{fragment!r} not in {row['error']!r}"


def assert_done(row: dict[str, Any], text: str) -> None:
    assert (row["status"], row["text"], row["error"]) == ("done", text, None), row


# -- end to end: bad files ---------------------------------------------------------------------
@pytest.mark.slow
def test_bad_files_fail_one_by_one_and_the_job_goes_on(state: Path, runners: Runners, tmp_path: Path) -> None:
    src = tmp_path / "in"
    rng = random.Random(7)
    png, jpg = png_bytes((200, 100), noise=True), jpeg_bytes()
    big_side = math.isqrt(int(config.MAX_PIXELS * 1.2))  # between the limit and PIL's own 2x guard
    files = [
        make_png(src / "good.png", (64, 48)),
        write(src / "cut.png", png[: len(png) // 2]),
        write(src / "cut-header.png", png[:30]),
        write(src / "cut.jpg", jpg[: len(jpg) // 2]),
        write(src / "cut-header.jpg", jpg[:120]),
        write(src / "text.png", b"this is a text file, not an image\n" * 20),
        write(src / "empty.png", b""),
        write(src / "locked.pdf", handmade_pdf(encrypted=True)),
        write(src / "garbage.pdf", b"%PDF-1.7\n" + rng.randbytes(2000)),
        write(src / "cut.pdf", pdf_bytes([(100, 100)] * 3)[:-300]),
        write(src / "notes.txt", b"hello"),
        write(src / "garbage.zip", b"PK\x03\x04" + rng.randbytes(500)),
        write(src / "huge.png", png_header_only(big_side, big_side)),
        write(src / "bomb.png", png_header_only(100_000, 100_000)),
    ]
    job_id = submit(state, *files)
    run_once(runners, state)
    rows = by_source(export(state, job_id, tmp_path))
    assert [r["source"] for r in rows.values()] == [f.name for f in files], "one item per file, in order"

    assert_done(rows["good.png", None], "64x48")
    assert_failed(rows["cut.png", None], "truncated or damaged")
    assert_failed(rows["cut-header.png", None])
    assert_failed(rows["cut.jpg", None], "truncated or damaged")
    assert_failed(rows["cut-header.jpg", None], "truncated or damaged")
    assert_failed(rows["text.png", None], "not an image", ".png")
    assert_failed(rows["empty.png", None], "empty", "0 bytes")
    assert_failed(rows["locked.pdf", None], "encrypted", "password")
    assert_failed(rows["garbage.pdf", None], "not a readable PDF")
    assert_failed(rows["cut.pdf", None], "not a readable PDF", "complete")
    assert_failed(rows["notes.txt", None], "unsupported file type '.txt'", ".png", ".pdf", ".zip")
    assert_failed(rows["garbage.zip", None], "not a readable ZIP")
    assert_failed(rows["huge.png", None], f"{big_side}x{big_side}", "above the", "OCRJOBS_MAX_PIXELS")
    assert_failed(rows["bomb.png", None], "more than twice", "limit", "OCRJOBS_MAX_PIXELS")

    shown = cli_json(state, "show", job_id)
    assert shown["status"] == "completed_with_errors", shown
    assert shown["progress"]["done"] == 1 and shown["progress"]["failed"] == len(files) - 1, shown


@pytest.mark.slow
def test_pixel_limit_from_the_runner_env(state: Path, runners: Runners, tmp_path: Path) -> None:
    """OCRJOBS_MAX_PIXELS set for the runner: images, each TIFF page and each PDF page are checked."""
    src = tmp_path / "in"
    tif = src / "pages.tif"
    tif.parent.mkdir(parents=True)
    Image.new("L", (100, 100), 255).save(tif, save_all=True, append_images=[Image.new("L", (1100, 1000), 255)])
    files = [
        make_png(src / "good.png", (64, 48)),
        make_png(src / "over.png", (1200, 1000)),  # 1.2 MP
        write(src / "far-over.png", png_header_only(3000, 1000)),  # 3 MP: PIL's own guard fires first
        tif,  # page 1 small, page 2 over the limit
        write(src / "doc.pdf", pdf_bytes([(100, 80), (1500, 800)])),
    ]
    job_id = submit(state, *files, args=("--dpi", "72"))
    run_once(runners, state, env={"OCRJOBS_MAX_PIXELS": "1000000"})
    rows = by_source(export(state, job_id, tmp_path))

    assert_done(rows["good.png", None], "64x48")
    assert_failed(rows["over.png", None], "1200x1000 = 1.2 MP", "above the 1.0 MP limit", "OCRJOBS_MAX_PIXELS")
    assert_failed(rows["far-over.png", None], "more than twice the 1.0 MP limit", "OCRJOBS_MAX_PIXELS")
    assert_done(rows["pages.tif", 1], "100x100")
    assert_failed(rows["pages.tif", 2], "page 2 is 1100x1000", "above the 1.0 MP limit")
    assert_done(rows["doc.pdf", 1], "100x80")
    assert_failed(rows["doc.pdf", 2], "PDF page 2 at 72 dpi is 1500x800", "lower the dpi")


# -- end to end: ZIPs --------------------------------------------------------------------------
def _tree(root: Path, skip: Path) -> set[Path]:
    """Files under ``root`` outside ``skip``, less the test's own logs and exports."""
    return {p for p in root.rglob("*") if skip not in p.parents and p != skip and p.suffix not in (".log", ".json")}


@pytest.mark.slow
def test_unsafe_zip_entries_are_refused_and_nothing_lands_outside_the_job(
    state: Path, runners: Runners, tmp_path: Path
) -> None:
    token = secrets.token_hex(4)
    outside = Path("/tmp") / f"ocrjobs-evil-{token}"
    link = zipfile.ZipInfo("link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    png = png_bytes()
    data = zip_bytes(
        [
            ("ok.png", png),
            (f"../../../../evil-{token}.png", png),
            (f"sub/../../evil2-{token}.png", png),
            (f"..\\..\\evil3-{token}.png", png),
            (f"{outside}/abs.png", png),
            (f"C:/evil4-{token}.png", png),
            (link, b"/etc/passwd"),
            ("secret.png", png),
            ("inner.zip", zip_bytes([("x.png", png)])),
            ("readme.txt", b"hi"),
        ]
    )
    data = patch_central(data, "secret.png", flags=0x1)  # marked encrypted
    zpath = write(tmp_path / "in" / "batch.zip", data)
    good = make_png(tmp_path / "in" / "good.png", (64, 48))
    before = _tree(tmp_path, state)

    job_id = submit(state, good, zpath)
    run_once(runners, state)
    rows = by_source(export(state, job_id, tmp_path))

    assert_done(rows["good.png", None], "64x48")
    assert_done(rows["batch.zip/ok.png", None], "64x48")
    for name in (f"../../../../evil-{token}.png", f"sub/../../evil2-{token}.png", f"..\\..\\evil3-{token}.png"):
        assert_failed(rows[f"batch.zip/{name}", None], "refused ZIP entry", "'..'", "nothing was extracted")
    for name in (f"{outside}/abs.png", f"C:/evil4-{token}.png"):
        assert_failed(rows[f"batch.zip/{name}", None], "refused ZIP entry", "absolute path")
    assert_failed(rows["batch.zip/link.png", None], "refused ZIP entry", "symbolic link")
    assert_failed(rows["batch.zip/secret.png", None], "refused ZIP entry", "encrypted")
    assert_failed(rows["batch.zip/inner.zip", None], "ZIP inside a ZIP")
    assert_failed(rows["batch.zip/readme.txt", None], "unsupported file type '.txt' in ZIP")

    # Nothing was written outside the job folder (the runner's own files stay under state/).
    after = _tree(tmp_path, state)
    assert after == before, after ^ before
    assert not outside.exists()
    everything = [p.name for p in Path("/tmp").glob(f"*{token}*")] + [p.name for p in state.rglob(f"*{token}*")]
    assert everything == [], everything
    extracted = sorted(p.name for p in (state / "jobs" / job_id / "inputs").rglob("*") if p.is_file())
    assert len(extracted) == 4, extracted  # good.png, batch.zip, its ok.png and inner.zip; nothing else


@pytest.mark.slow
def test_lying_and_damaged_zips(state: Path, runners: Runners, tmp_path: Path) -> None:
    src = tmp_path / "in"
    png, noisy = png_bytes(), png_bytes((200, 150), noise=True)
    # Declares ~8 GB (two entries of ~4 GB each) while holding a few bytes: refused whole.
    absurd = zip_bytes([("a.png", png), ("b.png", png)])
    for name in ("a.png", "b.png"):
        absurd = patch_central(absurd, name, size=0xF000_0000)
    # One entry declares 100 bytes but inflates to more; one is not inflatable; one uses deflate64.
    compressible = b"not really an image, but it compresses well " * 2000
    liar = zip_bytes([("ok.png", png), ("liar.png", noisy), ("corrupt.png", compressible), ("method.png", png)])
    liar = patch_central(liar, "liar.png", size=100)
    liar = patch_central(liar, "method.png", method=9)  # deflate64: zipfile cannot inflate it
    start = liar.find(b"corrupt.png") + len("corrupt.png")  # its deflate stream follows its local header
    liar = liar[: start + 20] + bytes(b ^ 0x5A for b in liar[start + 20 : start + 60]) + liar[start + 60 :]
    files = [make_png(src / "good.png", (64, 48)), write(src / "absurd.zip", absurd), write(src / "liar.zip", liar)]

    job_id = submit(state, *files)
    run_once(runners, state)
    rows = by_source(export(state, job_id, tmp_path))

    assert_done(rows["good.png", None], "64x48")
    assert_failed(rows["absurd.zip", None], "ZIP would expand to 8.1 GB", "limit", "zip bomb")
    assert_done(rows["liar.zip/ok.png", None], "64x48")
    assert_failed(rows["liar.zip/liar.png", None], "could not be extracted", "CRC")
    assert_failed(rows["liar.zip/corrupt.png", None], "could not be extracted", "while decompressing")
    assert_failed(rows["liar.zip/method.png", None], "could not be extracted", "compression method")
    job_inputs = state / "jobs" / job_id / "inputs"
    assert not list(job_inputs.glob("*absurd.zip.d")), "a refused ZIP is not extracted at all"
    leftovers = sorted(p.name for p in job_inputs.glob("*liar.zip.d/*"))
    assert leftovers == ["00003.png"], f"failed entries leave no partial file: {leftovers}"


@pytest.mark.slow
def test_zip_limits_from_the_submit_env(state: Path, runners: Runners, tmp_path: Path) -> None:
    src = tmp_path / "in"
    data = png_bytes((300, 300), noise=True)
    assert len(data) > 100_000
    big = write(src / "big.zip", zip_bytes([("a.png", data)], zipfile.ZIP_STORED))
    many = write(src / "many.zip", zip_bytes([(f"{i}.png", png_bytes()) for i in range(3)]))
    small = write(src / "small.zip", zip_bytes([("a.png", png_bytes((64, 48)))]))
    good = make_png(src / "good.png", (64, 48))
    env = {"OCRJOBS_MAX_ZIP_BYTES": "100000", "OCRJOBS_MAX_ZIP_ENTRIES": "2"}
    job_id = submit(state, good, big, many, small, env=env)
    run_once(runners, state)
    rows = by_source(export(state, job_id, tmp_path))

    assert_done(rows["good.png", None], "64x48")
    assert_done(rows["small.zip/a.png", None], "64x48")
    expected = f"ZIP would expand to {len(data) / 1000:.1f} KB, above the 100.0 KB limit"
    assert_failed(rows["big.zip", None], expected, "zip bomb")
    assert_failed(rows["many.zip", None], "ZIP has 3 files, above the limit of 2")


# -- end to end: good inputs --------------------------------------------------------------------
@pytest.mark.slow
def test_pages_zip_members_and_copied_inputs(state: Path, runners: Runners, tmp_path: Path) -> None:
    src = tmp_path / "in"
    tif = src / "scan.tif"
    tif.parent.mkdir(parents=True)
    sizes = [(50, 40), (60, 40), (70, 40)]
    first, *rest = (Image.new("L", s, 255) for s in sizes)
    first.save(tif, save_all=True, append_images=rest)
    pdf = write(src / "report.pdf", pdf_bytes([(100, 80), (110, 80), (120, 80)]))
    batch = write(
        src / "batch.zip",
        zip_bytes(
            [
                ("b.png", png_bytes((21, 20))),
                ("docs/", b""),
                ("docs/c.pdf", pdf_bytes([(30, 20), (31, 20)])),
                ("a.png", png_bytes((20, 20))),
                ("sub/d.JPG", jpeg_bytes((22, 20))),
            ]
        ),
    )
    one = make_png(src / "one.png", (64, 48))
    job_id = submit(state, one, tif, pdf, batch, args=("--dpi", "72"))
    for f in (one, tif, pdf, batch):
        f.unlink()  # the job folder has its own copies
    run_once(runners, state)
    rows = export(state, job_id, tmp_path)

    got = [(r["index"], r["source"], r["page"], r["status"], r["text"]) for r in rows]
    assert got == [
        (0, "one.png", None, "done", "64x48"),
        (1, "scan.tif", 1, "done", "50x40"),
        (2, "scan.tif", 2, "done", "60x40"),
        (3, "scan.tif", 3, "done", "70x40"),
        (4, "report.pdf", 1, "done", "100x80"),
        (5, "report.pdf", 2, "done", "110x80"),
        (6, "report.pdf", 3, "done", "120x80"),
        (7, "batch.zip/a.png", None, "done", "20x20"),
        (8, "batch.zip/b.png", None, "done", "21x20"),
        (9, "batch.zip/docs/c.pdf", 1, "done", "30x20"),
        (10, "batch.zip/docs/c.pdf", 2, "done", "31x20"),
        (11, "batch.zip/sub/d.JPG", None, "done", "22x20"),
    ]
    assert cli_json(state, "show", job_id)["status"] == "succeeded"


# -- submit errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("missing.png",), "no such file"),
        (("DIR",), "is not a file"),
        (("good.png", "--engine", "nosuch"), "unknown engine 'nosuch'"),
        (("good.png", "--engine", "no such:thing"), "unknown engine"),
        (("good.png", "--dpi", "5"), "dpi must be between 36 and 1200, got 5"),
        (("good.png", "--dpi", "5000"), "dpi must be between 36 and 1200, got 5000"),
    ],
)
def test_submit_errors_are_one_line(state: Path, tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    make_png(tmp_path / "good.png")
    (tmp_path / "DIR").mkdir()
    argv = [str(tmp_path / a) if a in ("missing.png", "DIR", "good.png") else a for a in args]
    proc = cli(state, "submit", *argv, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert list((state / "jobs").iterdir()) == [], "a refused submit leaves nothing behind"


# -- unit tests: jobs.intake.inputs / jobs.intake.decode -------------------------------------------------------
@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    d = tmp_path / "job"
    (d / "inputs").mkdir(parents=True)
    return d


def test_encrypted_pdf_is_recognised(job_dir: Path) -> None:
    plain = write(job_dir / "inputs" / "plain.pdf", handmade_pdf(encrypted=False))
    assert [(i["page"], i.get("error")) for i in expand(job_dir, plain, "plain.pdf")] == [(1, None)]
    locked = write(job_dir / "inputs" / "locked.pdf", handmade_pdf(encrypted=True))
    with pytest.raises(pdfium.PdfiumError, match="(?i)password"):
        pdfium.PdfDocument(str(locked))
    [item] = expand(job_dir, locked, "locked.pdf")
    assert "encrypted" in item["error"] and item["page"] is None
    with pytest.raises(InputError, match="encrypted"):
        load_item(job_dir, item, 200)


def test_expand_never_writes_outside_the_extraction_folder(job_dir: Path) -> None:
    png = png_bytes()
    zpath = write(job_dir / "inputs" / "000-x.zip", zip_bytes([("../../escape.png", png), ("/abs.png", png)]))
    items = expand(job_dir, zpath, "x.zip")
    assert [i["source"] for i in items] == ["x.zip/../../escape.png", "x.zip//abs.png"]
    assert all("refused ZIP entry" in i["error"] for i in items)
    assert sorted(p.relative_to(job_dir).as_posix() for p in job_dir.rglob("*")) == ["inputs", "inputs/000-x.zip"]


def test_extraction_is_bounded_by_real_bytes(job_dir: Path) -> None:
    """The running budget counts bytes actually inflated, whatever the headers claimed."""
    zpath = write(job_dir / "z.zip", zip_bytes([("a.png", b"\0" * 300_000)]))
    with zipfile.ZipFile(zpath) as zf:
        info = zf.getinfo("a.png")
        with pytest.raises(ValueError, match="expands past the .* ZIP limit"):
            extract_bounded(zf, info, job_dir / "out.png", budget=100_000)
        assert (job_dir / "out.png").stat().st_size <= 100_000
        assert extract_bounded(zf, info, job_dir / "out2.png", budget=300_000) == 300_000


def test_disk_full_while_extracting_fails_the_submit(job_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import jobs.intake.inputs

    def full(*_: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jobs.intake.inputs, "extract_bounded", full)
    zpath = write(job_dir / "inputs" / "z.zip", zip_bytes([("a.png", png_bytes())]))
    with pytest.raises(OSError) as caught:
        expand(job_dir, zpath, "z.zip")
    assert caught.value.errno == errno.ENOSPC


def test_damaged_zips_never_raise(job_dir: Path) -> None:
    """Truncations and seeded byte flips of a ZIP give error items, never an exception at submit."""
    rng = random.Random(1234)
    png = png_bytes((60, 40), noise=True)
    data = zip_bytes([("a.png", png), ("b.png", png)])
    cases = [data[:n] for n in range(1, len(data), max(1, len(data) // 60))]
    for _ in range(300):
        d = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(d)) if rng.random() < 0.4 else len(d) - 1 - rng.randrange(200)
            d[i] = rng.randrange(256)
        cases.append(bytes(d))
    for n, case in enumerate(cases):
        path = write(job_dir / "inputs" / f"{n:04d}.zip", case)
        items = expand(job_dir, path, "z.zip")
        assert items and all(i.get("error") or i["kind"] == "image" for i in items)


def _variants(data: bytes, rng: random.Random, flips: int) -> list[bytes]:
    cases = [data[:n] for n in range(1, len(data), max(1, len(data) // 50))]
    for _ in range(flips):
        d = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            d[rng.randrange(min(len(d), 300))] = rng.randrange(256)
        cases.append(bytes(d))
    return cases


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF"])
def test_damaged_images_raise_input_errors_only(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever PIL raises on a damaged file (OSError, TypeError, KeyError...) becomes an InputError."""
    monkeypatch.setattr(config, "MAX_PIXELS", 1_000_000)  # a flipped header byte must not cost 100 MP
    im = Image.effect_noise((60, 40), 60).convert("RGB")
    buf = io.BytesIO()
    if fmt == "TIFF":
        im.save(buf, fmt, save_all=True, append_images=[im], compression="tiff_deflate")
    else:
        im.save(buf, fmt)
    path = tmp_path / f"x.{fmt.lower()}"
    pages = [1, 2] if fmt == "TIFF" else [None]
    for case in _variants(buf.getvalue(), random.Random(fmt), 150):
        path.write_bytes(case)
        for page in pages:
            try:
                load_image(path, page)
            except InputError as e:
                assert str(e) and "\n" not in str(e)


def test_load_item_messages(job_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="^refused for a reason$"):
        load_item(job_dir, {"error": "refused for a reason", "kind": "image", "path": "x"}, 200)
    with pytest.raises(InputError, match="input file is missing: gone.png"):
        load_item(job_dir, {"kind": "image", "path": "inputs/gone.png", "page": None}, 200)
    pdf = write(job_dir / "inputs" / "a.pdf", pdf_bytes([(720, 360)]))
    assert render_pdf_page(pdf, 1, 100).size == (1000, 500)
    monkeypatch.setattr(config, "MAX_PIXELS", 400_000)
    with pytest.raises(InputError, match=r"PDF page 1 at 100 dpi is 1000x500 = 0\.5 MP, above the 0\.4 MP limit"):
        render_pdf_page(pdf, 1, 100)
    assert render_pdf_page(pdf, 1, 72).size == (720, 360)


def test_16_bit_and_palette_images_decode(tmp_path: Path) -> None:
    for mode, size in (("I;16", (30, 20)), ("P", (31, 20)), ("LA", (32, 20)), ("1", (33, 20)), ("CMYK", (34, 20))):
        path = tmp_path / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.new(mode, size).save(path)
        im = load_image(path)
        assert (im.mode, im.size) == ("RGB", size)
