"""``submit --folder``: every image and PDF below a folder under an allowed root, in a stable order;
symlinks out of the roots refused, the folder itself refused outside them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jobs.errors import SubmitError
from jobs.intake.folder import natural_key, scan
from jobs.intake.submit import JobSpec, submit_folder
from jobs.store import Store
from tests.conftest import PY, REPO, cli, cli_json, make_png


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shared"
    root.mkdir()
    monkeypatch.setenv("OCRJOBS_ALLOWED_ROOTS", f"{tmp_path / 'elsewhere'}:{root}")
    return root


@pytest.fixture
def tree(root: Path, tmp_path: Path) -> Path:
    """jobA/ with nested scans, a PDF, stray files, hidden files and links in and out of the root."""
    job = root / "jobA"
    for rel, w in [
        ("p10.png", 30),
        ("p2.png", 31),
        ("p1.png", 32),
        ("sub/b.jpg", 33),
        ("sub/A.png", 34),
        ("sub/deeper/z.PNG", 35),
        ("archive/old.png", 36),
    ]:
        make_png(job / rel, (w, 20))
    (job / "report.pdf").write_bytes(_pdf())
    (job / "readme.txt").write_text("not a scan")
    (job / "Thumbs.db").write_bytes(b"x")
    (job / ".DS_Store").write_bytes(b"x")
    make_png(job / ".hidden" / "skip.png")
    secret = make_png(tmp_path / "private" / "secret.png")
    (job / "leak.png").symlink_to(secret)
    (job / "leakdir").symlink_to(secret.parent)
    (job / "inside.png").symlink_to(job / "p1.png")
    (job / "sub" / "loop").symlink_to(job)
    (job / "broken.png").symlink_to(job / "nothing.png")
    return job


def test_scan_is_recursive_natural_and_refuses_links_out_of_the_root(tree: Path, tmp_path: Path) -> None:
    found = scan(tree)
    assert [rel for rel, _ in found.files] == [
        "archive/old.png",
        "inside.png",
        "p1.png",
        "p2.png",
        "p10.png",
        "report.pdf",
        "sub/A.png",
        "sub/b.jpg",
        "sub/deeper/z.PNG",
    ]
    refused = dict(found.refused)
    assert set(refused) == {"leak.png", "leakdir", "broken.png"}
    assert refused["leak.png"] == f"symbolic link to {tmp_path / 'private' / 'secret.png'} leaves the allowed folders"
    assert refused["broken.png"] == "broken symbolic link"
    assert found.skipped == 2  # readme.txt, Thumbs.db; hidden files are not even counted


def test_natural_order_is_stable() -> None:
    names = ["b/1.png", "a10.png", "a2.png", "A1.png", "a/9.png", "a/10.png", "a1.png"]
    assert sorted(names, key=natural_key) == ["a/9.png", "a/10.png", "A1.png", "a1.png", "a2.png", "a10.png", "b/1.png"]


def test_folder_job_items_and_errors(tree: Path, state: Path) -> None:
    job_id = submit_folder(Store(state), tree, JobSpec(engine="tests.engines:SizeEngine"))
    manifest = Store(state).manifest(job_id)
    assert [(i["source"], i.get("page")) for i in manifest] == [
        ("archive/old.png", None),
        ("broken.png", None),
        ("inside.png", None),
        ("leak.png", None),
        ("leakdir", None),
        ("p1.png", None),
        ("p2.png", None),
        ("p10.png", None),
        ("report.pdf", 1),
        ("report.pdf", 2),
        ("sub/A.png", None),
        ("sub/b.jpg", None),
        ("sub/deeper/z.PNG", None),
    ]
    assert [i["source"] for i in manifest if i.get("error")] == ["broken.png", "leak.png", "leakdir"]
    copied = [state / "jobs" / job_id / i["path"] for i in manifest if not i.get("error")]
    assert all(p.is_file() and not p.is_symlink() for p in copied), "inputs are copies inside the job"
    spec = Store(state).get(job_id).spec
    assert spec["folder"] == str(tree) and spec["skipped"] == 2
    subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once"], cwd=REPO, check=True, capture_output=True, timeout=120
    )
    shown = cli_json(state, "show", job_id)
    assert (shown["progress"]["done"], shown["progress"]["failed"]) == (10, 3)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("outside", "folder refused: {p} is outside the allowed folders"),
        ("link", "folder refused: {p} (it leads to {outside}) is outside the allowed folders"),
        ("missing", "no such folder: {p}"),
        ("file", "{p} is not a folder"),
        ("empty", "no images or PDFs below {p} (1 other files skipped)"),
    ],
)
def test_unusable_folders_are_one_clear_line(root: Path, tmp_path: Path, state: Path, where: str, message: str) -> None:
    outside = tmp_path / "outside"
    make_png(outside / "a.png")
    paths = {
        "outside": outside,
        "link": root / "link",
        "missing": root / "nope",
        "file": root / "f.png",
        "empty": root / "empty",
    }
    (root / "link").symlink_to(outside)
    make_png(root / "f.png")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("x")
    p = paths[where]
    proc = cli(state, "submit", "--folder", str(p), check=False)  # the env reaches the CLI process
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: " + message.format(p=p, outside=outside))
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list((state / "jobs").iterdir()) == []


def test_no_roots_configured_refuses_every_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRJOBS_ALLOWED_ROOTS", "")
    make_png(tmp_path / "a.png")
    with pytest.raises(SubmitError, match="none are configured \\(an admin sets OCRJOBS_ALLOWED_ROOTS\\)"):
        scan(tmp_path)


def test_files_and_folder_together_are_refused(root: Path, state: Path) -> None:
    png = make_png(root / "x" / "a.png")
    proc = cli(state, "submit", str(png), "--folder", str(png.parent), check=False)
    assert proc.stderr.strip() == "error: give files or --folder, not both"


def _pdf() -> bytes:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for w in (100, 110):
        doc.new_page(w, 80)
    import io

    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()
