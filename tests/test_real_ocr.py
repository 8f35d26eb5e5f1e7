"""Real OCR end to end with the default engine (auto: RapidOCR + Tesseract on CPU): rendered English
and Chinese text, as PNG and as PDF pages, through submit, ``runner.py --once`` and the json export.

Accuracy is the character error rate (edit distance / reference length, after NFKC).
RapidOCR's Chinese recogniser may drop the spaces between English words, so English is
held to a tight bound with spaces ignored and a looser one with them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance.Levenshtein import distance as edit_distance

from tests.conftest import CJK_FONT, Runners, cli, cli_json

pytestmark = pytest.mark.slow

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
NO_CJK = f"{CJK_FONT} is missing: install Debian's fonts-wqy-zenhei (`make setup` does) to test Chinese"

ENGLISH = [
    "The quick brown fox jumps over",
    "the lazy dog near the river bank.",
    "Invoice 2024-0315 total 1,280.50 USD",
]
CHINESE = [
    "今天天气很好，我们去公园散步。",
    "光学字符识别系统可以批量处理文件。",
    "北京上海广州深圳杭州南京",
]
DPI = 200


# -- scoring -------------------------------------------------------------------------------------
def normalize(text: str, spaces: bool) -> str:
    """NFKC; whitespace runs (line breaks too) become one space, or vanish with ``spaces=False``."""
    text = unicodedata.normalize("NFKC", text).strip()
    return re.sub(r"\s+", " " if spaces else "", text)


def cer(hyp: str, ref: str, spaces: bool = True) -> float:
    h, r = normalize(hyp, spaces), normalize(ref, spaces)
    return edit_distance(h, r) / max(len(r), 1)


def test_scoring_helpers() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3 and edit_distance("同", "同") == 0
    assert cer("the lazydog", "the lazy dog", spaces=False) == 0.0
    assert cer("the  lazy\ndog", "the lazy dog") == 0.0
    assert cer("今天天气很好,", "今天天气很好，") == 0.0  # NFKC folds the full-width comma
    assert cer("abcd", "abce") == 0.25


# -- the job -------------------------------------------------------------------------------------
def render(lines: list[str], font: Path, size: tuple[int, int] = (1000, 300)) -> Image.Image:
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    face = ImageFont.truetype(str(font), 40)
    for i, line in enumerate(lines):
        draw.text((40, 30 + i * 85), line, fill="black", font=face)
    return im


@pytest.fixture(scope="module")
def ocr_rows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """One job: english.png, chinese.png and a two-page PDF of the same (rapid loads once)."""
    tmp = tmp_path_factory.mktemp("ocr")
    state = tmp / "state"
    state.mkdir()
    pages = {"english": render(ENGLISH, LATIN_FONT)}
    if CJK_FONT.is_file():
        pages["chinese"] = render(CHINESE, CJK_FONT)
    files = []
    for name, im in pages.items():
        im.save(tmp / f"{name}.png")
        files.append(tmp / f"{name}.png")
    first, *rest = pages.values()
    # At DPI dots per inch, each PDF page renders back to the 1000x300 pixels it was drawn at.
    first.save(tmp / "pages.pdf", resolution=float(DPI), save_all=True, append_images=rest)
    files.append(tmp / "pages.pdf")

    job_id = cli_json(state, "submit", *map(str, files), "--dpi", str(DPI))["id"]
    runners = Runners(tmp)
    try:
        runners.run_once(state, "--device", "cpu")
    finally:
        runners.cleanup()
    cli(state, "export", job_id, "--format", "json", "-o", str(tmp / "out.json"))
    rows = json.loads((tmp / "out.json").read_text())
    assert cli_json(state, "show", job_id)["status"] == "succeeded", rows
    names = list(pages)
    keyed = {r["source"].removesuffix(".png"): r for r in rows if r["page"] is None}
    keyed.update({f"pdf-{names[r['page'] - 1]}": r for r in rows if r["page"] is not None})
    yield keyed


def _check(row: dict[str, Any]) -> None:
    assert row["status"] == "done" and row["error"] is None, row
    assert 0.5 <= row["confidence"] <= 1.0, row
    assert row["device"] == "cpu"


@pytest.mark.parametrize("key", ["english", "pdf-english"])
def test_english(ocr_rows: dict[str, dict[str, Any]], key: str) -> None:
    row = ocr_rows[key]
    _check(row)
    ref = "\n".join(ENGLISH)
    no_spaces, with_spaces = cer(row["text"], ref, spaces=False), cer(row["text"], ref)
    measured = f"{key}: CER without spaces {no_spaces:.3f}, with spaces {with_spaces:.3f}; text {row['text']!r}"
    print(measured)
    assert no_spaces <= 0.05 and with_spaces <= 0.15, measured
    printed = [line for line in row["text"].splitlines() if line.strip()]  # a blank line ends a paragraph
    assert len(printed) == len(ENGLISH), f"one output line per printed line: {measured}"


@pytest.mark.parametrize("key", ["chinese", "pdf-chinese"])
def test_chinese(ocr_rows: dict[str, dict[str, Any]], key: str) -> None:
    if not CJK_FONT.is_file():
        pytest.skip(NO_CJK)
    row = ocr_rows[key]
    _check(row)
    score = cer(row["text"], "".join(CHINESE), spaces=False)
    measured = f"{key}: CER {score:.3f}; text {row['text']!r}"
    print(measured)
    assert score <= 0.1, measured


def test_boxes_on_one_line_join_with_single_spaces() -> None:
    """The recogniser may return a box text with a leading space; lines must not get double spaces."""
    from jobs.engines.rapid import RapidEngine

    def box(x: float, y: float) -> list[list[float]]:
        return [[x, y], [x + 100, y], [x + 100, y + 40], [x, y + 40]]

    engine = RapidEngine()
    found = [
        (box(240, 125), " near the river bank.", 0.9),
        (box(40, 123), "the lazy dog", 0.8),
        (box(40, 37), "The quick brown fox", 1.0),
    ]
    engine._ocr = lambda bgr: (found, None)  # no model needed to check the layout
    rec = engine.recognize([Image.fromarray(np.zeros((300, 1000, 3), np.uint8))])[0]
    assert rec.text == "The quick brown fox\nthe lazy dog near the river bank."
    assert [b["text"] for b in rec.boxes] == ["The quick brown fox", "the lazy dog", "near the river bank."]
    assert rec.confidence == pytest.approx(0.9)
