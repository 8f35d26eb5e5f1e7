"""The default engine routes each page by its script (issue 20): Latin-only pages to Tesseract's page
layout (columns in reading order, paragraph breaks kept), CJK pages to RapidOCR, mixed pages to the
line-level merge; each result says which (``route``). Pages are rendered small so OCR stays quick."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from jobs.engines.route import confident_latin, script_of
from tests.conftest import CJK_FONT

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_cjk = pytest.mark.skipif(not CJK_FONT.is_file(), reason=f"{CJK_FONT} missing: `make setup` installs it")

ENGLISH = [
    "The committee approved the new budget.",
    "Please sign the attached form today.",
    "Backups run every night at two.",
    "The warehouse received many boxes.",
]
CHINESE = ["今天天气很好，我们去公园散步。", "光学字符识别系统可以批量处理文件。", "北京上海广州深圳杭州南京"]
MIXED = ["订单 Order 2024 合计 Total 1,280 元", "会议 Meeting 下午三点 Room B204", "请使用 Chrome 或 Firefox 浏览器。"]


def page(rows: list[tuple[str, int, int]], size: tuple[int, int] = (1100, 420), px: int = 30) -> Image.Image:
    """``rows``: (text, x, y); CJK text in the CJK font."""
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    latin, cjk = ImageFont.truetype(str(LATIN_FONT), px), None
    for text, x, y in rows:
        if any("\u4e00" <= ch <= "\u9fff" for ch in text):
            cjk = cjk or ImageFont.truetype(str(CJK_FONT), px)
            draw.text((x, y), text, fill="black", font=cjk)
        else:
            draw.text((x, y), text, fill="black", font=latin)
    return im


def stacked(lines: list[str], gap: int = 55) -> Image.Image:
    return page([(t, 30, 30 + i * gap) for i, t in enumerate(lines)], size=(1100, 60 + gap * len(lines)))


@pytest.fixture(scope="module")
def auto() -> Iterator[Any]:
    from jobs.engines.auto import AutoEngine

    engine = AutoEngine()
    engine.load("cpu")
    yield engine
    engine.close()


def read(engine: Any, image: Image.Image) -> dict[str, Any]:
    (out,) = engine.recognize([image])
    assert set(out) >= {"text", "confidence", "boxes", "route"}
    for b in out["boxes"]:  # the result shape every engine keeps
        assert set(b) == {"box", "text", "confidence"} and len(b["box"]) == 4
    return out


def words(text: str) -> str:
    return " ".join(text.split())


def test_a_latin_page_goes_to_tesseract_and_keeps_its_spaces(auto: Any) -> None:
    out = read(auto, stacked(ENGLISH))
    assert out["route"] == "latin", out
    assert words(out["text"]) == " ".join(ENGLISH), out["text"]


@needs_cjk
def test_a_cjk_page_goes_to_rapidocr(auto: Any) -> None:
    out = read(auto, stacked(CHINESE))
    assert out["route"] == "cjk", out
    assert out["text"].replace("\n", "") == "".join(CHINESE), out["text"]


@needs_cjk
def test_a_mixed_page_keeps_both_scripts_and_the_spaces(auto: Any) -> None:
    out = read(auto, stacked(MIXED + ENGLISH[:1]))
    assert out["route"] == "mixed", out
    assert "Order 2024" in out["text"] and "订单" in out["text"] and "Chrome 或 Firefox" in out["text"], out["text"]


@needs_cjk
def test_one_chinese_line_on_a_latin_page_is_not_lost(auto: Any) -> None:
    out = read(auto, stacked(ENGLISH[:2] + CHINESE[:1] + ENGLISH[2:]))
    assert out["route"] == "mixed", out
    assert CHINESE[0].rstrip("。") in out["text"] and ENGLISH[2] in out["text"], out["text"]


@needs_cjk
def test_after_a_cjk_page_a_latin_page_still_goes_to_tesseract(auto: Any) -> None:
    """After a CJK page RapidOCR reads first; finding no CJK, the page goes to Tesseract after all."""
    assert read(auto, stacked(CHINESE))["route"] == "cjk"
    out = read(auto, stacked(ENGLISH))
    assert out["route"] == "latin" and words(out["text"]) == " ".join(ENGLISH), out
    assert read(auto, stacked(ENGLISH[:2]))["route"] == "latin"


def test_two_columns_come_out_left_column_first(auto: Any) -> None:
    """Tesseract's layout analysis finds columns from their aligned edges: it needs a few lines (5 here)."""
    left = ["Alpha column one starts here", "with these few words that", "run on for a little while"]
    left += ["until the column is over", "and it ends right here."]
    right = ["Bravo column two begins now", "on the right hand side of", "the page with other words"]
    right += ["that we can tell apart", "and it finishes the page."]
    rows = [(t, 30, 30 + i * 45) for i, t in enumerate(left)] + [(t, 615, 30 + i * 45) for i, t in enumerate(right)]
    out = read(auto, page(rows, size=(1150, 285), px=26))
    assert out["route"] == "latin", out
    assert words(out["text"]) == " ".join(left + right), out["text"]


def test_paragraph_breaks_are_kept_as_blank_lines(auto: Any) -> None:
    first = ["The first paragraph has two", "lines of text in it."]
    second = ["The second one comes after", "a wide gap on the page."]
    rows = [(t, 30, 30 + i * 45) for i, t in enumerate(first)] + [(t, 30, 230 + i * 45) for i, t in enumerate(second)]
    out = read(auto, page(rows, size=(900, 340), px=28))
    assert out["text"] == "\n".join(first) + "\n\n" + "\n".join(second), out["text"]


@needs_cjk
@pytest.mark.parametrize(("lang", "route"), [("en", "latin"), ("zh", "cjk")])
def test_a_set_lang_skips_routing_and_says_so(lang: str, route: str) -> None:
    from jobs.engines.auto import AutoEngine

    engine = AutoEngine(lang=lang)
    engine.load("cpu")
    try:
        out = read(engine, stacked(ENGLISH[:1] if lang == "en" else CHINESE[:1]))
    finally:
        engine.close()
    assert out["route"] == route


def test_the_route_is_kept_in_the_items_result(auto: Any) -> None:
    """What the worker stores for an item (jobs/worker/batch.py) carries the engine's ``route``."""
    from jobs.worker.batch import recognize_task

    items = [{"index": 0, "source": "en.png"}, {"index": 1, "source": "bad.png"}]
    task = {"items": items, "retries": 0, "engine": "auto"}
    rows = recognize_task(auto, task, [stacked(ENGLISH[:2]), ValueError("bad")], lambda n: None, lambda: False)
    assert rows[0]["status"] == "done" and rows[0]["route"] == "latin", rows[0]
    assert words(rows[0]["text"]) == " ".join(ENGLISH[:2])
    assert rows[1]["status"] == "failed" and "route" not in rows[1]


def _line(text: str, conf: float) -> dict[str, Any]:
    return {"box": [[0, 0], [1, 0], [1, 1], [0, 1]], "text": text, "confidence": conf}


def test_the_first_pass_trusts_only_a_confident_page_without_junk_lines() -> None:
    good = [_line("Shared MIME-info Database", 0.9), _line("1.3. Language used", 0.8), _line(".", 0.05)]
    assert confident_latin(good, 0.88)  # a stray speck read as "." is not a CJK line
    assert not confident_latin(good, 0.70)  # unsure overall: CJK or mixed
    assert not confident_latin([*good, _line("iii FER", 0.1)], 0.86)  # one line of junk: a CJK line in English
    assert not confident_latin([], 0.0)


def test_script_from_rapidocr_reading() -> None:
    assert script_of(["The quick brown fox", "jumps over the lazy dog", "・ item"]) == "latin"  # a bullet as 「・」
    assert script_of(["今天天气很好", "北京上海广州", "第 3 页"]) == "cjk"  # a page number is not a mix
    assert script_of(["订单 Order 2024", "The quick brown fox", "今天天气很好"]) == "mixed"
    assert script_of([]) == "latin"


def test_the_real_document_bench_reports_each_goal_against_its_reference() -> None:
    """bench/real_docs.py's table and verdicts, on a made-up measurement (the OCR itself is too slow here)."""
    from bench.real_docs import Page, report

    pages = [
        Page("a p1", "latin", Image.new("L", (1, 1)), "the cat sat"),
        Page("c 0", "cjk", Image.new("L", (1, 1)), "猫"),
    ]
    m = {
        "pages": pages,
        "missing": ["/usr/share/doc/x.pdf"],
        "texts": {"auto": ["the cat sat", "猫"], "tesseract": ["the cat sat", "狗"], "rapid": ["thecatsat", "猫"]},
        "routes": {"auto": ["latin", "cjk"], "tesseract": ["", ""], "rapid": ["", ""]},
        "seconds": {"auto": [2.0, 1.0], "tesseract": [1.0, 1.0], "rapid": [4.0, 1.0]},
    }
    out = report(m)
    assert "| latin | 1 | `auto` | 0.0000 | 0.500 | latin 1 |" in out, out
    assert "| latin | 1 | `rapid` | 0.1818 | 0.250 | - |" in out, out
    assert "| Latin CER | 0.0000 | 0.0000 (better plain) | - | <= better | met |" in out, out
    assert "| Latin pages/s | 0.500 | 1.000 (Tesseract) | 0.50x | >= 0.8x | **missed** |" in out, out
    assert "| CJK CER | 0.0000 | 0.0000 (RapidOCR) | - | <= RapidOCR | met |" in out, out
    assert "skipped: /usr/share/doc/x.pdf" in out, out


def test_dust_is_removed_before_tesseract_but_full_stops_stay() -> None:
    from jobs.engines.route import despeckle

    im = page([("End of line.", 30, 30)], size=(400, 100), px=30)
    clean = np.asarray(despeckle(im))
    assert (clean == np.asarray(im.convert("L"))).all()  # nothing to remove: the text is untouched
    dusty = im.copy()
    for x, y in ((300, 20), (350, 80), (10, 90)):  # 2-pixel specks, as bench/dataset.py and scanners make them
        dusty.putpixel((x, y), (0, 0, 0))
        dusty.putpixel((x, y + 1), (0, 0, 0))
    assert (np.asarray(despeckle(dusty)) == clean).all()


@needs_cjk
def test_a_page_whose_ink_looks_cjk_skips_the_tesseract_pass() -> None:
    from jobs.engines.route import Ink

    assert Ink(stacked(CHINESE)).looks_cjk()
    assert not Ink(stacked(ENGLISH)).looks_cjk()
    assert not Ink(stacked(MIXED + ENGLISH[:1])).looks_cjk()  # a wrong yes would cost time, not text
