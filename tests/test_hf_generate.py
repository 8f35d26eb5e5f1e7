"""jobs/engines/hf_generate.py on tiny random models (CPU, no hub): the confidence equals what
output_scores + compute_transition_scores gave, without full-vocabulary scores; a row cut short
(max_new_tokens, max_time, the soft stop) is flagged truncated, a row that ended on EOS or a stop
string is not, and a soft stop keeps the rows that had already finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoProcessor, LogitsProcessor, LogitsProcessorList

from jobs.engines.hf_generate import Generated, generate
from tests.hf_tiny import build_llava, build_ved

EOS = 2


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    """Each family's (model, processor), loaded once."""
    from transformers import AutoModelForImageTextToText, VisionEncoderDecoderModel

    root = tmp_path_factory.mktemp("hf-generate")
    ved, llava = build_ved(root / "ved"), build_llava(root / "llava")
    return {
        "ved": (VisionEncoderDecoderModel.from_pretrained(ved).eval(), AutoProcessor.from_pretrained(ved)),
        "llava": (AutoModelForImageTextToText.from_pretrained(llava).eval(), AutoProcessor.from_pretrained(llava)),
    }


def inputs(family: str, processor: Any, n: int = 3) -> dict[str, Any]:
    images = []
    for i in range(n):
        im = Image.new("RGB", (64 + 8 * i, 24), "white")
        ImageDraw.Draw(im).text((2, 6), f"line {i}", fill="black")
        images.append(im)
    if family == "ved":
        return dict(processor(images=images, return_tensors="pt"))
    return dict(processor(images=images, text=["<image>read:"] * n, return_tensors="pt", padding=True))


class Force(LogitsProcessor):
    """Push chosen tokens at chosen steps ({row: {step: token}}, steps from 1) without making them certain."""

    def __init__(self, plan: dict[int, dict[int, int]]) -> None:
        self.plan, self.start = plan, None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.start is None:
            self.start = input_ids.shape[1]
        step = input_ids.shape[1] - self.start + 1
        scores = scores.clone()
        for row, at in self.plan.items():
            if step in at:
                scores[row, at[step]] += 30.0
        return scores


def old_way(model: Any, batch: dict[str, Any], max_new_tokens: int, force: Force) -> tuple[list[list[int]], list]:
    """What the engine did before: output_scores=True and compute_transition_scores (the reference)."""
    with torch.inference_mode():
        gen = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            return_dict_in_generate=True,
            output_scores=True,
            logits_processor=LogitsProcessorList([force]),
        )
    logp = model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True).float()
    tokens = gen.sequences[:, -logp.shape[1] :]
    pad = model.generation_config.pad_token_id
    confs = []
    for row, toks in zip(logp, tokens, strict=True):
        vals = row[torch.isfinite(row) & (toks != pad)]
        confs.append(float(torch.exp(vals.mean())))
    return tokens.tolist(), confs


def run(model: Any, batch: dict[str, Any], force: Force | None = None, **kw: Any) -> list[Generated]:
    kw.setdefault("max_time_s", 60.0)
    kw.setdefault("stop", lambda: False)
    extra = {"logits_processor": LogitsProcessorList([force])} if force else {}
    return generate(model, batch, do_sample=False, num_beams=1, **extra, **kw)


@pytest.mark.parametrize("family", ["ved", "llava"])
def test_confidence_matches_transition_scores_and_eos_row_is_not_truncated(tiny: dict, family: str) -> None:
    model, processor = tiny[family]
    batch = inputs(family, processor)
    plan = {0: {3: EOS}}  # row 0 ends on EOS at its 3rd token; the others run to max_new_tokens
    old_tokens, old_confs = old_way(model, batch, 7, Force(plan))
    rows = run(model, batch, Force(plan), max_new_tokens=7)
    assert len(rows) == 3
    for row, conf in zip(rows, old_confs, strict=True):
        assert row.confidence == pytest.approx(conf, abs=1e-4)
        assert row.confidence is not None and 0 < row.confidence < 1
    first, *others = rows
    assert first.tokens == old_tokens[0][:2] and EOS not in first.tokens  # EOS and the padding after it dropped
    assert (first.finished, first.truncated, first.stopped, first.ended_by) == (True, False, False, "eos")
    for row, toks in zip(others, old_tokens[1:], strict=True):
        assert row.tokens == toks and len(row.tokens) == 7
        assert (row.finished, row.truncated, row.stopped, row.ended_by) == (False, True, False, "max_new_tokens")


def test_soft_stop_keeps_finished_rows(tiny: dict) -> None:
    model, processor = tiny["ved"]
    batch = inputs("ved", processor)
    calls = []

    def stop() -> bool:  # asked once per generated token: true from the 4th on
        calls.append(1)
        return len(calls) >= 4

    rows = run(model, batch, Force({1: {2: EOS}}), max_new_tokens=20, stop=stop)
    assert (rows[1].finished, rows[1].truncated, rows[1].stopped) == (True, False, False)
    assert len(rows[1].tokens) == 1 and rows[1].confidence is not None
    for row in (rows[0], rows[2]):
        assert (row.finished, row.truncated, row.stopped, row.ended_by) == (False, True, True, "stopped")
        assert len(row.tokens) == 4


def test_max_time_marks_unfinished_rows_truncated(tiny: dict) -> None:
    model, processor = tiny["llava"]
    rows = run(model, inputs("llava", processor, 2), max_new_tokens=20, max_time_s=0.0)
    assert [(r.truncated, r.stopped, r.ended_by, len(r.tokens)) for r in rows] == [(True, False, "max_time", 1)] * 2


def test_stop_string_finishes_a_row(tiny: dict) -> None:
    model, processor = tiny["ved"]
    tok = processor.tokenizer
    x, y = tok.convert_tokens_to_ids(["x", "y"])
    rows = run(
        model,
        inputs("ved", processor, 2),
        Force({0: {2: x, 3: y}}),
        max_new_tokens=9,
        stop_strings=["xy"],
        tokenizer=tok,
    )
    assert rows[0].ended_by == "stop_string" and not rows[0].truncated
    assert rows[0].tokens[-2:] == [x, y] and len(rows[0].tokens) == 3  # the stop string is text: kept
    assert rows[1].truncated and len(rows[1].tokens) == 9


def test_never_asks_generate_for_full_vocabulary_scores(tiny: dict) -> None:
    model, processor = tiny["ved"]
    seen: dict[str, Any] = {}
    real = model.generate

    def spy(**kw: Any) -> Any:
        seen.update(kw)
        return real(**kw)

    model.generate = spy
    try:
        rows = run(model, inputs("ved", processor, 1), max_new_tokens=3)
    finally:
        del model.generate
    assert seen["output_scores"] is False and seen["max_time"] is None  # ours replaces generate's
    assert rows[0].confidence is not None
    with pytest.raises(ValueError, match="output_scores"):
        run(model, inputs("ved", processor, 1), max_new_tokens=3, output_scores=True)


def test_beam_search_flags_truncation_without_confidence(tiny: dict) -> None:
    model, processor = tiny["ved"]
    rows = generate(
        model, inputs("ved", processor, 2), max_new_tokens=4, max_time_s=60.0, stop=lambda: False, num_beams=2
    )
    assert all(r.confidence is None for r in rows)
    assert all(r.finished != r.truncated for r in rows)
    assert all(len(r.tokens) <= 4 for r in rows)


def test_nothing_here_imports_transformers_at_module_import() -> None:
    """The engine module is imported by the CLI (submit checks): the transformers import waits for first use."""
    import subprocess
    import sys

    code = "import sys, jobs.engines.hf_generate; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "False", out.stderr


# -- what a user sees of truncated items: `show`, the exports, the write-back into a workbook ---------


def _commit(store: Any, job_id: str, index: int, truncated_by: str | None = None, status: str = "done") -> None:
    """A result file as the runner commits it; the engine marks an item cut short with truncated/truncated_by."""
    from jobs.store.atomic import atomic_write_json

    res: dict[str, Any] = {"index": index, "source": "-", "status": status, "text": f"text {index}"}
    res.update(confidence=0.9, device="cpu", error=None if status == "done" else {"kind": "input", "message": "bad"})
    if truncated_by:
        res.update(truncated=True, truncated_by=truncated_by)
    atomic_write_json(store.result_path(job_id, index), res, durable=False)


def test_show_and_exports_flag_truncated_items(state: Path, tmp_path: Path) -> None:
    import csv
    import json

    import openpyxl

    from jobs.exports import export
    from jobs.intake.submit import JobSpec, submit
    from jobs.store import Store
    from tests.conftest import cli, cli_json, make_png

    store = Store(state)
    pngs = [make_png(tmp_path / f"p{i}.png", (20 + i, 10)) for i in range(5)]
    job_id = submit(store, pngs, JobSpec(engine="tests.engines:SizeEngine"))
    store.results_dir(job_id).mkdir()
    for i, why in enumerate(["max_new_tokens", None, "max_new_tokens", "max_time"]):
        _commit(store, job_id, i, why)
    _commit(store, job_id, 4, "max_new_tokens", status="failed")  # a failed item is not "truncated"
    want = (
        "warning: 2 items truncated at max_new_tokens: raise --max-new-tokens; 1 item cut short by the "
        "generation time limit (max_time_s, 0.8 x the item timeout): raise --item-timeout"
    )
    shown = cli(state, "show", job_id).stdout.splitlines()
    assert shown[1] == want, shown

    proc = cli(state, "export", job_id, "-o", str(tmp_path / "r.csv"))
    assert want in proc.stderr.splitlines(), proc.stderr
    table = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8-sig")))
    assert [r["truncated"] for r in table] == ["True", "False", "True", "True", "False"]
    assert cli_json(state, "export", job_id, "-o", str(tmp_path / "r.json"))["truncated"] == 3
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [(r["truncated"], r["truncated_by"]) for r in rows[:4]] == [
        (True, "max_new_tokens"),
        (False, None),
        (True, "max_new_tokens"),
        (True, "max_time"),
    ]
    cli(state, "export", job_id, "-o", str(tmp_path / "r.xlsx"))
    ws = openpyxl.load_workbook(tmp_path / "r.xlsx")["OCR results"]
    col = list(export.COLUMNS).index("truncated")
    assert [r[col].value for r in ws.iter_rows(min_row=1)] == ["truncated", True, False, True, True, False]


def test_no_warning_when_nothing_was_cut_short(state: Path, tmp_path: Path) -> None:
    from jobs.intake.submit import JobSpec, submit
    from jobs.store import Store
    from tests.conftest import cli, make_png

    store = Store(state)
    job_id = submit(store, [make_png(tmp_path / "a.png")], JobSpec(engine="tests.engines:SizeEngine"))
    store.results_dir(job_id).mkdir()
    _commit(store, job_id, 0)
    assert "warning" not in cli(state, "show", job_id).stdout
    assert "warning" not in cli(state, "export", job_id, "-o", str(tmp_path / "a.csv")).stderr


def test_workbook_write_back_says_a_row_is_truncated(state: Path, tmp_path: Path) -> None:
    import openpyxl

    from jobs.intake.submit import submit_table
    from jobs.store import Store
    from tests.conftest import cli
    from tests.test_excel import make_book, make_zip, png_bytes

    book = make_book(tmp_path / "b.xlsx", {"S": [["file"], ["a.png"], ["b.png"]]})
    zpath = make_zip(tmp_path / "z.zip", {"a.png": png_bytes((5, 5)), "b.png": png_bytes((6, 5))})
    store = Store(state)
    job_id = submit_table(store, book, column="file", images=zpath)
    store.results_dir(job_id).mkdir()
    _commit(store, job_id, 0, "max_new_tokens")
    _commit(store, job_id, 1)
    out = tmp_path / "o.xlsx"
    cli(state, "export", job_id, "-o", str(out))
    ws = openpyxl.load_workbook(out)["S"]
    assert [c.value for c in ws[2]] == [
        "a.png",
        "text 0",
        "done",
        "truncated at max_new_tokens: raise --max-new-tokens",
    ]
    assert [c.value for c in ws[3]] == ["b.png", "text 1", "done", None]
