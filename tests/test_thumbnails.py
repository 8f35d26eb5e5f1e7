"""jobs/dashboard/thumbnails.py on its own: what is never decoded, never followed, and what is made once."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from jobs.dashboard.thumbnails import thumbnail_png
from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from tests.conftest import make_png
from tests.hostile.dashboard import huge_png

SPEC = JobSpec(engine="tests.engines:SizeEngine")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every image PIL decodes from now on."""
    seen: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def counting(self: ImageFile.ImageFile) -> object:
        if self.tile:  # still to be decoded
            seen.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return seen


def one_item_job(store: Store, path: Path) -> tuple[Path, dict]:
    job_id = submit(store, [path], SPEC)
    return store.job_dir(job_id), store.manifest(job_id)[0]


def test_a_150_mp_png_is_refused_from_its_header(store: Store, tmp_path: Path, decodes: list) -> None:
    job_dir, item = one_item_job(store, huge_png(tmp_path / "huge.png", 15_000, 10_000))
    assert thumbnail_png(job_dir, item) is None
    assert decodes == []  # not one pixel decoded
    assert not (job_dir / "thumbs").exists()  # a refusal is not cached: a raised limit takes effect


def test_a_big_png_is_not_decoded_but_a_big_jpeg_is_drafted(store: Store, tmp_path: Path, decodes: list) -> None:
    big_png = huge_png(tmp_path / "big.png", 8000, 6000)  # 48 MP: the runner takes it, a preview does not
    jpeg = tmp_path / "big.jpg"
    Image.new("L", (8000, 6000), 200).save(jpeg, quality=50)
    job_id = submit(store, [big_png, jpeg], SPEC)
    job_dir, (png_item, jpeg_item) = store.job_dir(job_id), store.manifest(job_id)
    assert thumbnail_png(job_dir, png_item) is None and decodes == []
    thumb = thumbnail_png(job_dir, jpeg_item)
    assert thumb is not None and Image.open(io.BytesIO(thumb)).size == (160, 120)
    assert decodes == [(1000, 750)]  # decoded at 1/8 scale, never at 8000 x 6000


def test_a_preview_is_decoded_once(store: Store, tmp_path: Path, decodes: list) -> None:
    job_dir, item = one_item_job(store, make_png(tmp_path / "a.png", (640, 480)))
    first = thumbnail_png(job_dir, item)
    assert first is not None and len(decodes) == 1
    assert thumbnail_png(job_dir, item) == first and len(decodes) == 1


def test_a_damaged_input_is_tried_once(store: Store, tmp_path: Path, decodes: list) -> None:
    data = make_png(tmp_path / "a.png", (640, 480)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    job_dir, item = one_item_job(store, tmp_path / "cut.png")
    assert thumbnail_png(job_dir, item) is None and thumbnail_png(job_dir, item) is None
    assert len(decodes) == 1


def test_a_job_folder_this_process_may_not_write_still_gets_a_preview(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job folder of another user (a shared group folder the dashboard may only read): no cache."""
    import jobs.dashboard.thumbnails

    def refused(path: Path, data: bytes, *, durable: bool = True) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(jobs.dashboard.thumbnails, "atomic_write_bytes", refused)
    job_dir, item = one_item_job(store, make_png(tmp_path / "a.png"))
    assert thumbnail_png(job_dir, item) is not None
    assert not (job_dir / "thumbs" / "000000.png").exists()


def test_a_planted_cache_file_is_not_trusted(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2")
    job_dir, item = one_item_job(store, make_png(tmp_path / "a.png"))
    (job_dir / "thumbs").mkdir()
    (job_dir / "thumbs" / "000000.png").symlink_to(secret)
    png = thumbnail_png(job_dir, item)
    assert png is not None and png.startswith(b"\x89PNG") and b"hunter2" not in png
    assert secret.read_text() == "password=hunter2"  # the planted link was replaced, not written through
    os.mkfifo(job_dir / "inputs" / "fifo.png")  # an open() of it would wait forever
    assert thumbnail_png(job_dir, {**item, "index": 1, "path": "inputs/fifo.png"}) is None


def test_a_deleted_job_folder_is_not_made_again(store: Store, tmp_path: Path) -> None:
    import shutil

    job_dir, item = one_item_job(store, make_png(tmp_path / "a.png"))
    shutil.rmtree(job_dir)
    assert thumbnail_png(job_dir, item) is None
    assert not job_dir.exists()


def test_the_cache_folder_has_its_job_folder_s_mode(store: Store, tmp_path: Path) -> None:
    """A group-shared job folder (2770): the runner, another user of the group, can delete the cache."""
    job_dir, item = one_item_job(store, make_png(tmp_path / "a.png"))
    job_dir.chmod(0o2770)
    assert thumbnail_png(job_dir, item) is not None
    assert (job_dir / "thumbs").stat().st_mode & 0o7777 == 0o2770
