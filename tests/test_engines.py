"""Engine pieces that need no OCR run: language data lookup and its errors, script detection,
merging two readings of a line, option checks, and the runner's workers x threads choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.engines import tessdata
from jobs.engines.script import has_cjk, has_latin, merge_line, tidy_cjk
from jobs.engines.tesseract import side_by_side
from jobs.errors import EngineError
from jobs.runner import sizing


@pytest.mark.parametrize(
    ("rapid", "tess", "merged"),
    [
        (
            "订单0rder2024-0315合计Total1,280:50元",
            "订 单 Order 2024-0315 合 计 Total 1,280.50 元",
            "订单 Order 2024-0315 合计 Total 1,280.50 元",
        ),
        (
            "联系人Contact:王小明WangXiaoming",
            "联系 人 Contact: 王小 朋 Wang Xiaoming",
            "联系人 Contact: 王小明 Wang Xiaoming",
        ),
        ("Thequickbrownfox", "The quick brown fox", "The quick brown fox"),
        ("今天天气很好", "", "今天天气很好"),
        ("", "Hello world", "Hello world"),
    ],
)
def test_merge_takes_cjk_from_rapid_and_latin_and_spaces_from_tesseract(rapid: str, tess: str, merged: str) -> None:
    assert merge_line(rapid, tess) == merged


def test_script_detection() -> None:
    assert has_cjk("Total 合计") and has_latin("Total 合计")
    assert not has_cjk("Invoice 2024-0315, 1,280.50 USD") and has_latin("Café")
    assert has_cjk("，") and not has_latin("2024-0315")
    assert tidy_cjk("今 天 天 气 Total 1 元") == "今天天气 Total 1 元"


@pytest.mark.parametrize(
    ("lang", "codes"),
    [(None, "chi_sim+eng"), ("auto", "chi_sim+eng"), ("en", "eng"), ("zh", "chi_sim"), ("eng+chi_tra", "eng+chi_tra")],
)
def test_lang_means_tesseract_codes(lang: str | None, codes: str) -> None:
    assert tessdata.tesseract_langs(lang) == codes


def test_a_bad_lang_is_refused() -> None:
    with pytest.raises(EngineError, match="use en, zh, auto or Tesseract codes"):
        tessdata.tesseract_langs("english; rm -rf")


def test_missing_language_data_names_the_debian_package(tmp_path: Path) -> None:
    (tmp_path / "eng.traineddata").write_bytes(b"")
    tessdata.check_langs("eng", tmp_path)
    with pytest.raises(EngineError) as e:
        tessdata.check_langs("chi_sim+eng+chi_tra", tmp_path)
    assert "apt-get install tesseract-ocr-chi-sim tesseract-ocr-chi-tra" in str(e.value)
    assert str(tmp_path) in str(e.value)


def test_engine_load_reports_missing_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the engine, as a worker loads it: TESSDATA_PREFIX is honoured and checked first."""
    from jobs.engines.tesseract import TesseractEngine

    (tmp_path / "eng.traineddata").write_bytes(b"")
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))
    assert tessdata.find_tessdata() == tmp_path
    with pytest.raises(EngineError, match="install the Debian package tesseract-ocr-chi-sim"):
        TesseractEngine(lang="zh").load()


def test_no_language_data_at_all(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tessdata, "candidates", lambda: [tmp_path / "nothing"])
    with pytest.raises(EngineError, match="install Debian's tesseract-ocr and tesseract-ocr-eng"):
        tessdata.find_tessdata()


def test_the_newest_debian_tessdata_is_found_without_naming_a_version() -> None:
    found = tessdata.find_tessdata()
    assert (found / "eng.traineddata").is_file(), "run `make setup`: it installs Debian's tesseract-ocr-eng"


def test_unknown_options_fail_with_the_accepted_ones() -> None:
    from jobs.engines.auto import AutoEngine
    from jobs.engines.rapid import RapidEngine
    from jobs.engines.tesseract import TesseractEngine

    with pytest.raises(EngineError, match="rapid: unknown option.*det_limit_type"):
        RapidEngine(det_limit_typo="max").load()
    with pytest.raises(EngineError, match="tesseract: unknown option.*takes lang, psm"):
        TesseractEngine(langs="en").load()
    with pytest.raises(EngineError, match="psm must be auto or"):
        TesseractEngine(psm=42).load()
    with pytest.raises(EngineError, match="lang must be en, zh or auto"):
        AutoEngine(lang="fr").load()


def test_side_by_side_spots_lines_cut_into_columns() -> None:
    def line(x1: float, y1: float, x2: float, y2: float) -> dict[str, object]:
        return {"box": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "text": "x"}

    stacked = [line(0, 0, 500, 30), line(0, 40, 480, 70), line(0, 80, 300, 110)]
    cut = [line(0, 0, 200, 30), line(260, 2, 500, 31), line(0, 40, 480, 70)]
    assert side_by_side(stacked) == 0
    assert side_by_side(cut) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("kwargs", "workers", "threads"),
    [
        ({"cores": 2, "free_mb": 20_000}, 2, 1),  # the measured best on 2 cores
        ({"cores": 16, "free_mb": 6_000}, 4, 4),  # memory-bound: fewer workers, more threads each
        ({"cores": 8, "free_mb": 500}, 1, 8),  # never fewer than one worker
        ({"cores": 2, "free_mb": 20_000, "workers": 3}, 3, 1),  # the user's number is kept
        ({"cores": 8, "free_mb": 20_000, "threads": 2}, 4, 2),  # threads set: workers fill the cores left
    ],
)
def test_workers_and_threads_from_cores_and_memory(kwargs: dict[str, int], workers: int, threads: int) -> None:
    chosen = sizing.plan(**kwargs)
    assert (chosen.workers, chosen.threads) == (workers, threads)
    assert "override with --workers N --threads T" in chosen.describe()


def test_sizing_warns_when_the_user_asks_for_more_memory_than_there_is() -> None:
    assert "may swap" in sizing.plan(workers=8, cores=2, free_mb=2000).describe()
    assert "may swap" not in sizing.plan(cores=2, free_mb=2000).describe()
