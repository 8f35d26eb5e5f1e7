"""Bounded fuzzing of the input loaders with hypothesis: random and mutated images, PDFs, ZIPs,
CSVs and workbooks, job ids and manifest paths. The only exceptions allowed out are InputError
and SubmitError (or JobNotFound for ids); each test runs a few seconds (max_examples, deadline)
and the process's peak memory stays bounded.
"""

from __future__ import annotations

import io
import resource
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from PIL import Image

from jobs.errors import InputError, JobNotFound, SubmitError
from jobs.exports.cells import csv_safe, formula_like
from jobs.intake import excel
from jobs.intake.decode import item_path, load_item
from jobs.intake.inputs import expand
from jobs.store import Store
from jobs.store.job import JOB_ID
from tests.test_inputs import handmade_pdf, pdf_bytes, png_bytes, zip_bytes

FAST = settings(
    max_examples=200, deadline=3000, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)
#: Peak RSS of this test process must stay under this (decoders must not inflate a bomb).
MAX_RSS_MB = 1500


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(buf, "JPEG")
    return buf.getvalue()


def _tiff() -> bytes:
    buf = io.BytesIO()
    pages = [Image.new("L", (20, 10)), Image.new("L", (10, 20))]
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def _xlsx() -> bytes:
    wb = Workbook()
    wb.active.append(["file", "n"])
    wb.active.append(["a.png", 1])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


SEEDS = {
    ".png": png_bytes((20, 10)),
    ".jpg": _jpeg(),
    ".tif": _tiff(),
    ".pdf": pdf_bytes([(50, 40), (40, 50)]),
    ".zip": zip_bytes([("a.png", png_bytes((20, 10))), ("b.pdf", handmade_pdf(False))]),
}


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few bytes overwritten, a slice cut out, or cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        a = draw(st.integers(0, len(data)))
        b = draw(st.integers(a, min(len(data), a + 64)))
        del data[a:b]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def inputs() -> st.SearchStrategy[tuple[str, bytes]]:
    per_type = [st.tuples(st.just(ext), mutated(seed) | st.binary(max_size=512)) for ext, seed in SEEDS.items()]
    return st.one_of(per_type)


def _run_loaders(ext: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp)
        path = job / "inputs" / f"000-x{ext}"
        path.parent.mkdir()
        path.write_bytes(data)
        items = expand(job, path, f"x{ext}")  # never raises: a bad file becomes an error item
        assert items and all(isinstance(i["source"], str) for i in items)
        for item in items[:4]:
            try:
                load_item(job, item, dpi=72)
            except InputError as e:
                assert str(e) and "Traceback" not in str(e)


@pytest.mark.filterwarnings("ignore::UserWarning")
@FAST
@given(inputs())
def test_media_loaders_raise_only_input_errors(case: tuple[str, bytes]) -> None:
    _run_loaders(*case)


@FAST
@given(st.one_of(mutated(_xlsx()), st.binary(max_size=512)), st.sampled_from([".xlsx", ".csv"]))
def test_table_loaders_raise_only_submit_errors(data: bytes, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"book{ext}"
        path.write_bytes(data)
        for call in (lambda: excel.select(path, None, "file"), lambda: excel.inspect(path)):
            try:
                call()
            except SubmitError as e:
                assert str(e) and "Traceback" not in str(e)


@FAST
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=60), st.sampled_from([",", ";", "\t"]))
def test_csv_text_raises_only_submit_errors(body: str, sep: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "book.csv"
        path.write_text(f"file{sep}n\n{body}", encoding="utf-8")
        try:
            excel.select(path, None, "file")
        except SubmitError:
            pass


_STORE = Store(tempfile.mkdtemp(prefix="fuzz-state-"))


@settings(max_examples=300, deadline=500, derandomize=True, database=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(JOB_ID, fullmatch=True)))
def test_job_ids_never_leave_the_jobs_folder(job_id: str) -> None:
    try:
        d = _STORE.job_dir(job_id)
    except JobNotFound:
        assert not JOB_ID.fullmatch(job_id)
        return
    assert d.parent == _STORE.jobs_dir and d.name == job_id


_JOB = Path(tempfile.mkdtemp(prefix="fuzz-job-"))


@settings(max_examples=300, deadline=500, derandomize=True, database=None)
@given(
    st.one_of(st.text(max_size=40), st.lists(st.sampled_from(["..", ".", "inputs", "/", "a.png", "~"])).map("/".join))
)
def test_manifest_paths_never_leave_the_job(rel: Any) -> None:
    try:
        path = item_path(_JOB, rel)
    except InputError:
        return
    assert path.is_relative_to(_JOB.resolve()) and path != _JOB.resolve()


@settings(max_examples=300, deadline=500, derandomize=True, database=None)
@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False), st.none()))
def test_csv_safe_output_is_never_a_formula(value: Any) -> None:
    out = csv_safe(value)
    assert not formula_like(out)
    if isinstance(value, str):
        assert out in (value, "'" + value)


def test_memory_stayed_bounded() -> None:
    """Runs after the fuzz tests above (file order): ru_maxrss is this process's peak, in KiB."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mb < MAX_RSS_MB, peak_mb
