"""The three built-in engines end to end through submit, ``runner.py --once`` and the json export:
rendered English and Chinese text, a page mixing both scripts, and a language whose data is missing.

CER is edit distance / reference length after NFKC, with spaces kept (whitespace runs count as one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import extractOne

from tests.conftest import CJK_FONT, Runners, cli, cli_json
from tests.test_real_ocr import CHINESE, ENGLISH, LATIN_FONT, cer, normalize, render

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CJK_FONT.is_file(), reason=f"{CJK_FONT} is missing: `make setup` installs it"),
]

ENGINES = ("rapid", "tesseract", "auto")
MIXED = [
    "Invoice 发票 2024-0315",
    "The quick brown fox jumps over the lazy dog.",
    "今天天气很好，我们去公园散步。",
    "Total 合计 1,280.50 元",
    "Please reply before Friday.",
]


@pytest.fixture(scope="module")
def jobs_done(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One job per engine on english.png + chinese.png, auto on the mixed page, auto told the language,
    tesseract asked for German (not installed), rapid given a misspelt option; one runner works
    through them all."""
    tmp = tmp_path_factory.mktemp("engines")
    state = tmp / "state"
    state.mkdir()
    files = {"english": render(ENGLISH, LATIN_FONT), "chinese": render(CHINESE, CJK_FONT)}
    for name, im in files.items():
        im.save(tmp / f"{name}.png")
    render(MIXED, CJK_FONT, (1000, 470)).save(tmp / "mixed.png")
    pair = [str(tmp / "english.png"), str(tmp / "chinese.png")]
    ids = {e: cli_json(state, "submit", *pair, "--engine", e)["id"] for e in ENGINES}
    ids["mixed"] = cli_json(state, "submit", str(tmp / "mixed.png"))["id"]  # the default engine: auto
    ids["german"] = cli_json(state, "submit", pair[0], "--engine", "tesseract", "--engine-option", "lang=deu")["id"]
    ids["typo"] = cli_json(state, "submit", pair[0], "--engine", "rapid", "--engine-option", "det_limit_typo=max")["id"]
    ids["lang-en"] = cli_json(state, "submit", pair[0], "--lang", "en")["id"]
    ids["lang-zh"] = cli_json(state, "submit", pair[1], "--lang", "zh")["id"]
    runners = Runners(tmp)
    try:
        log = runners.run_once(state, "--device", "cpu")
    finally:
        runners.cleanup()
    out: dict[str, Any] = {"log": log, "jobs": {k: cli_json(state, "show", v) for k, v in ids.items()}}
    for key, job_id in ids.items():
        cli(state, "export", job_id, "--format", "json", "-o", str(tmp / f"{key}.json"))
        out[key] = {Path(r["source"]).stem: r for r in json.loads((tmp / f"{key}.json").read_text())}
    yield out


def test_the_runner_says_how_many_workers_and_threads_it_chose(jobs_done: dict[str, Any]) -> None:
    assert "worker(s) x" in jobs_done["log"] and "override with --workers N --threads T" in jobs_done["log"]


@pytest.mark.parametrize("engine", ENGINES)
def test_english(jobs_done: dict[str, Any], engine: str) -> None:
    assert jobs_done["jobs"][engine]["status"] == "succeeded", jobs_done["jobs"][engine]
    row = jobs_done[engine]["english"]
    ref = "\n".join(ENGLISH)
    score, no_spaces = cer(row["text"], ref), cer(row["text"], ref, spaces=False)
    measured = f"{engine}: CER {score:.3f}, without spaces {no_spaces:.3f}; text {row['text']!r}"
    print(measured)
    assert 0.5 <= row["confidence"] <= 1.0 and row["device"] == "cpu", row
    assert len([line for line in row["text"].splitlines() if line.strip()]) == len(ENGLISH), measured  # + blank lines
    if engine == "rapid":  # its Chinese recogniser may run English words together
        assert no_spaces <= 0.05, measured
    else:
        assert score <= 0.02, measured


@pytest.mark.parametrize("engine", ENGINES)
def test_chinese(jobs_done: dict[str, Any], engine: str) -> None:
    row = jobs_done[engine]["chinese"]
    score = cer(row["text"], "".join(CHINESE), spaces=False)
    measured = f"{engine}: CER {score:.3f}; text {row['text']!r}"
    print(measured)
    assert row["status"] == "done" and score <= 0.1, measured
    assert cer(row["text"], "\n".join(CHINESE)) <= 0.1, f"no spaces between Chinese characters: {measured}"


def test_auto_reads_a_mixed_page_in_reading_order(jobs_done: dict[str, Any]) -> None:
    row = jobs_done["mixed"]["mixed"]
    assert jobs_done["jobs"]["mixed"]["spec"]["engine"] == "auto"
    lines = [normalize(line, spaces=True) for line in row["text"].splitlines()]
    measured = f"CER {cer(row['text'], chr(10).join(MIXED)):.3f}; text {row['text']!r}"
    print(measured)
    assert cer(row["text"], "\n".join(MIXED)) <= 0.03, measured
    found = [extractOne(ref, lines, scorer=Levenshtein.normalized_similarity) for ref in MIXED]
    assert [index for _, _, index in found] == list(range(len(MIXED))), f"one line each, in order: {measured}"
    assert all(similarity >= 0.9 for _, similarity, _ in found), measured


def test_missing_language_data_fails_the_job_naming_the_package(jobs_done: dict[str, Any]) -> None:
    job = jobs_done["jobs"]["german"]
    assert job["status"] == "failed", job
    assert "apt-get install tesseract-ocr-deu" in job["error"], job["error"]


def test_engine_options_reach_the_engine_and_a_typo_fails_the_job(jobs_done: dict[str, Any]) -> None:
    job = jobs_done["jobs"]["typo"]
    assert job["status"] == "failed" and "rapid: unknown option(s) det_limit_typo" in job["error"], job
    assert "det_limit_type" in job["error"], "the message lists the options RapidOCR takes"


@pytest.mark.parametrize(("key", "source", "lines"), [("lang-en", "english", ENGLISH), ("lang-zh", "chinese", CHINESE)])
def test_lang_skips_the_detour(jobs_done: dict[str, Any], key: str, source: str, lines: list[str]) -> None:
    job = jobs_done["jobs"][key]
    assert job["spec"]["engine"] == "auto" and job["spec"]["engine_options"] == {"lang": key[-2:]}, job
    row = jobs_done[key][source]
    assert row["status"] == "done" and cer(row["text"], "\n".join(lines)) <= 0.02, row["text"]
