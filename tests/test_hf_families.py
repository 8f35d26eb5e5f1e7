"""The transformers engine per OCR family (jobs/engines/hf_families.py), on tiny random models (CPU, no hub).

Every family with a builder is submitted with nothing but ``--engine transformers --model DIR`` and run
by one real runner; the prompt each family sends is checked on what reaches ``generate``; the
post-processing (Florence-2 regions, DeepSeek grounding, Donut fields) is checked on forced outputs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw

from jobs.cli import main
from jobs.engines import hf_families
from jobs.engines.hf import TransformersEngine
from tests import hf_tiny, hf_tiny_vlm
from tests.conftest import Runners

#: Family name -> builder. The tiny models never end on their own (special tokens are zeroed), so each
#: folder's generation_config caps new tokens, as a checkpoint may: the engine honours it.
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "trocr": hf_tiny.build_trocr_bare,
    "donut": hf_tiny.build_donut,
    "nougat": hf_tiny.build_nougat,
    "got_ocr2": hf_tiny.build_got_ocr2,
    "florence2": hf_tiny.build_florence2,
    "deepseek_ocr2": hf_tiny_vlm.build_deepseek_ocr2,
    "paddleocr_vl": hf_tiny_vlm.build_paddleocr_vl,
    "lighton_ocr": hf_tiny_vlm.build_lighton_ocr,
    "qianfan_ocr": hf_tiny_vlm.build_qianfan_ocr,
    # Their processors need torchvision: PyPI's CUDA build, imported beside the CPU torch (jobs/torchvision_ops.py).
    "glm_ocr": hf_tiny_vlm.build_glm_ocr,
    "qwen2_5_vl": hf_tiny_vlm.build_qwen2_5_vl,
    "qwen3_vl": hf_tiny_vlm.build_qwen3_vl,
    "unlimited_ocr": hf_tiny_vlm.build_unlimited_ocr,
    "minicpm_ocr": hf_tiny_vlm.build_minicpm_ocr,
}
#: Builders named for a model type where the family covers several.
FAMILY_OF = {"qwen2_5_vl": "qwen_vl", "qwen3_vl": "qwen_vl"}
NEW_TOKENS = 6


def cli(capsys: pytest.CaptureFixture[str], state: Path, *args: str) -> tuple[int, str, str]:
    """The real CLI, in this process: importing transformers again per submit costs ~10 s on 2 busy cores."""
    capsys.readouterr()
    rc = main(["--state", str(state), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def cli_json(capsys: pytest.CaptureFixture[str], state: Path, *args: str) -> Any:
    rc, out, err = cli(capsys, state, *args, "--json")
    assert rc == 0, err
    return json.loads(out)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-families")
    out = {}
    for name, build in BUILDERS.items():
        folder = build(root / name)
        path = folder / "generation_config.json"
        gen = json.loads(path.read_text())
        path.write_text(json.dumps({**gen, "max_new_tokens": NEW_TOKENS}))
        out[name] = folder
    return out


def line(text: str = "line 1", size: tuple[int, int] = (120, 32)) -> Image.Image:
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).text((4, 8), text, fill="black")
    return im


def test_every_family_runs_with_no_options_through_a_real_runner(
    models: dict[str, Path], state: Path, tmp_path: Path, runners: Runners, capsys: pytest.CaptureFixture[str]
) -> None:
    pngs = []
    for i in range(2):
        line(f"line {i}", (100 + 20 * i, 32)).save(tmp_path / f"l{i}.png")
        pngs.append(str(tmp_path / f"l{i}.png"))
    ids = {
        name: cli_json(capsys, state, "submit", *pngs, "--engine", "transformers", "--model", str(folder))["id"]
        for name, folder in models.items()
    }
    log = runners.run_once(state, "--device", "cpu", timeout=300)
    for name, job_id in ids.items():
        job = cli_json(capsys, state, "show", job_id)
        assert job["status"] == "succeeded", (name, job, log[-3000:])
        results = [json.loads(p.read_text()) for p in (state / "jobs" / job_id / "results").glob("*.json")]
        assert len(results) == 2 and all(r["status"] == "done" and isinstance(r["text"], str) for r in results), name
        label = hf_families.BY_NAME[FAMILY_OF.get(name, name)].label
        assert f"({label}, task " in log, name  # the worker logged the family it drove


def _engine(folder: Path, **options: Any) -> TransformersEngine:
    e = TransformersEngine(model=str(folder), **options)
    e.load("cpu")
    return e


def _capture(e: TransformersEngine) -> dict[str, Any]:
    """Record the inputs each ``generate`` call gets (what the engine sent)."""
    real = e.loaded.model.generate
    seen: dict[str, Any] = {}

    def generate(**kw: Any) -> Any:
        seen.update(kw)
        return real(**kw)

    e.loaded.model.generate = generate  # type: ignore[method-assign]
    return seen


def _sent(e: TransformersEngine, **options: Any) -> str:
    seen = _capture(e)
    e.recognize([line()])
    tok = getattr(e.loaded.processor, "tokenizer", e.loaded.processor)
    return str(tok.decode(seen["input_ids"][0], skip_special_tokens=False))


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("deepseek_ocr2", {}, "<image>\nFree OCR."),
        ("deepseek_ocr2", {"task": "grounding"}, "<image>\n<|grounding|>Convert the document to markdown."),
        ("paddleocr_vl", {}, "<|IMAGE_END|>OCR:\nAssistant: "),
        ("paddleocr_vl", {"task": "table"}, "<|IMAGE_END|>Table Recognition:\nAssistant: "),
        ("qianfan_ocr", {}, "Parse this document to Markdown.<|im_end|>\n<|im_start|>assistant\n"),
        ("lighton_ocr", {}, "<|image_pad|><|im_end|>\n<|im_start|>assistant\n"),
        ("got_ocr2", {}, "</img>\n OCR: <|im_end|><|im_start|>assistant\n"),
        ("got_ocr2", {"task": "markdown"}, "</img>\n OCR with format: <|im_end|><|im_start|>assistant\n"),
        ("florence2", {}, "<s>What is the text in the image?</s>"),
        ("florence2", {"task": "grounding"}, "<s>What is the text in the image, with regions?</s>"),
        ("paddleocr_vl", {"prompt": "Read it."}, "<|IMAGE_END|>Read it.\nAssistant: "),
        ("glm_ocr", {}, "<|end_of_image|>Text Recognition:<|assistant|>\n"),
        ("glm_ocr", {"task": "formula"}, "<|end_of_image|>Formula Recognition:<|assistant|>\n"),
        ("unlimited_ocr", {}, "<image>document parsing."),
        ("minicpm_ocr", {}, "</image>Text Recognition:<|im_end|>\n<|im_start|>assistant\n"),
        ("minicpm_ocr", {"task": "table"}, "</image>Table Recognition:<|im_end|>\n<|im_start|>assistant\n"),
    ],
)
def test_each_family_sends_its_own_prompt(
    models: dict[str, Path], name: str, options: dict[str, Any], expected: str
) -> None:
    sent = _sent(_engine(models[name], **options))
    assert sent.endswith(expected) or expected in sent, sent[-300:]
    if name == "lighton_ocr":
        assert "OCR" not in sent and "Read" not in sent  # an image-only turn: no instruction at all


def test_encoder_decoders_get_their_decoder_start(models: dict[str, Path]) -> None:
    donut = _engine(models["donut"])
    seen = _capture(donut)
    donut.recognize([line(), line()])
    tok = donut.loaded.processor.tokenizer
    assert [tok.decode(row) for row in seen["decoder_input_ids"]] == ["<s_cord-v2>", "<s_cord-v2>"]
    trocr = _engine(models["trocr"])  # a bare folder: processor assembled, decoder starts at </s>
    assert type(trocr.loaded.processor).__name__ == "TrOCRProcessor"
    assert trocr.loaded.model.generation_config.decoder_start_token_id == trocr.loaded.processor.tokenizer.eos_token_id
    assert trocr.max_new_tokens == NEW_TOKENS and hf_families.BY_NAME["trocr"].max_new_tokens == 64
    assert _engine(models["nougat"]).loaded.family.name == "nougat"  # swin + mBART, told apart by its processor


class Force:
    """A logits processor that makes generate emit ``ids``, one per step, whatever the model thinks."""

    def __init__(self, ids: list[int]) -> None:
        self.ids, self.step = ids, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        forced = torch.full_like(scores, -1e4)
        forced[:, self.ids[min(self.step, len(self.ids) - 1)]] = 0.0
        self.step += 1
        return forced


def _forced(e: TransformersEngine, text: str) -> list[Any]:
    from transformers import LogitsProcessorList

    tok = getattr(e.loaded.processor, "tokenizer", e.loaded.processor)
    ids = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
    real = e.loaded.model.generate

    def generate(**kw: Any) -> Any:
        kw["logits_processor"] = LogitsProcessorList([Force(ids), *(kw.get("logits_processor") or [])])
        return real(**kw)

    e.loaded.model.generate = generate  # type: ignore[method-assign]
    return ids


def test_florence_regions_come_back_as_pixel_boxes(models: dict[str, Path]) -> None:
    e = _engine(models["florence2"], task="grounding", max_new_tokens=40)
    _forced(e, "hello<loc_100><loc_200><loc_300><loc_200><loc_300><loc_400><loc_100><loc_400>")
    (res,) = e.recognize([line(size=(200, 100))])
    assert res["text"] == "hello"
    assert res["boxes"] == [{"box": [[20.0, 20.0], [60.0, 20.0], [60.0, 40.0], [20.0, 40.0]], "text": "hello"}]


def test_deepseek_grounding_boxes_in_pixels(models: dict[str, Path]) -> None:
    e = _engine(models["deepseek_ocr2"], task="grounding", max_new_tokens=80)
    _forced(e, "<|ref|>text<|/ref|><|det|>[[100, 200, 500, 999]]<|/det|>\nhello world")
    (res,) = e.recognize([line(size=(666, 333))])
    assert res["text"] == "hello world"
    (box,) = res["boxes"]
    assert box["text"] == "hello world" and box["label"] == "text"
    assert box["box"] == [[66.7, 66.7], [333.3, 66.7], [333.3, 333.0], [66.7, 333.0]]


def test_donut_fields(models: dict[str, Path]) -> None:
    e = _engine(models["donut"], max_new_tokens=40)
    _forced(e, "<s_menu><s_nm>latte</s_nm></s_menu>")
    (res,) = e.recognize([line()])
    assert res["fields"] == {"menu": {"nm": "latte"}} and res["text"] == "latte"


def test_nougat_output_goes_through_its_own_post_processing(models: dict[str, Path]) -> None:
    e = _engine(models["nougat"], max_new_tokens=120)
    _forced(e, "## 1.\nhello world\n" + "ab cd. " * 30)  # a numbered empty heading, then a loop to the limit
    (res,) = e.recognize([line()])
    assert res["text"] == "hello world\nab cd."  # NougatTokenizer.post_process_generation: both cleaned away
    assert res["truncated"] and res["truncated_by"] == "max_new_tokens"  # and the cut is still reported


def test_unlimited_detections_come_back_as_pixel_boxes(models: dict[str, Path]) -> None:
    e = _engine(models["unlimited_ocr"], max_new_tokens=90)
    _forced(e, "<|det|>title [0, 0, 999, 111]<|/det|>Menu\n<|det|>text [99, 222, 499, 333]<|/det|>tea 2.00")
    (res,) = e.recognize([line(size=(999, 999))])
    assert res["text"] == "Menu\ntea 2.00"
    assert res["boxes"] == [
        {"box": [[0.0, 0.0], [999.0, 0.0], [999.0, 111.0], [0.0, 111.0]], "text": "Menu", "label": "title"},
        {"box": [[99.0, 222.0], [499.0, 222.0], [499.0, 333.0], [99.0, 333.0]], "text": "tea 2.00", "label": "text"},
    ]


def test_submit_refuses_what_a_family_cannot_run(
    models: dict[str, Path], state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "a.png"
    line().save(png)

    def refused(*args: str) -> str:
        rc, out, err = cli(capsys, state, "submit", str(png), "--engine", "transformers", *args)
        assert rc == 1 and out == "", (rc, out, err)
        return err.strip().splitlines()[-1]  # after any warning transformers printed

    llava = hf_tiny.build_llava(tmp_path / "llava")
    msg = refused("--model", str(llava))
    assert msg.startswith("error: model type 'llava' is not an OCR family the transformers engine knows; supported:")
    assert "TrOCR, Donut, Nougat, GOT-OCR2, Florence-2, DeepSeek-OCR-2" in msg and "PaddleOCR-VL" in msg
    assert refused("--model", str(models["donut"]), "--task", "table") == (
        "error: Donut has no task 'table'; its tasks: ocr"
    )
    assert refused("--model", str(models["paddleocr_vl"]), "--task", "grounding") == (
        "error: PaddleOCR-VL has no task 'grounding'; its tasks: ocr, table, formula, chart"
    )
    assert refused("--model", str(models["trocr"]), "--prompt", "Read.") == (
        "error: TrOCR reads the image alone and takes no prompt: submit without --prompt"
    )
    from tests.hf_tiny_ppocr import build_det

    ppocr = refused("--model", str(build_det(tmp_path / "det")))  # the other engine's model: say which engine
    assert "is PP-OCR, which the ppocr engine runs, not the transformers engine: --engine ppocr" in ppocr, ppocr
    broken = shutil.copytree(models["trocr"], tmp_path / "no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).unlink()
    assert refused("--model", str(broken)).startswith(f"error: model '{broken}': its processor cannot be loaded: ")
    real_find_spec = importlib.util.find_spec
    with pytest.MonkeyPatch.context() as mp:  # a box that installed requirements without torchvision
        mp.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torchvision" else real_find_spec(n, *a))
        assert refused("--model", str(models["glm_ocr"])).startswith(
            "error: GLM-OCR needs the Python module 'torchvision', which is not installed"
        )
    ok = cli_json(
        capsys, state, "submit", str(png), "--engine", "transformers", "--model", str(llava), "--prompt", "Read."
    )
    spec = json.loads((state / "jobs" / ok["id"] / "job.json").read_text())["spec"]
    assert spec["engine_options"]["prompt"] == "Read."  # another model runs with its prompt given


def test_deepseek_ocr_v1_runs_its_remote_infer_only_when_trusted(
    tmp_path: Path, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = hf_tiny.build_deepseek_ocr_remote(tmp_path / "deepseek-ocr")
    png = tmp_path / "a.png"
    line().save(png)
    rc, _, err = cli(capsys, state, "submit", str(png), "--engine", "transformers", "--model", str(folder))
    assert rc == 1 and "submit with --trust-remote-code if you trust its source" in err
    job = cli_json(
        capsys, state, "submit", str(png), "--engine", "transformers", "--model", str(folder), "--trust-remote-code"
    )
    assert job["id"]
    e = _engine(folder, trust_remote_code=True, task="grounding")
    assert (e.loaded.family.label, e.max_batch) == ("DeepSeek-OCR", 1)  # infer() reads one image file at a time
    res = e.recognize([line(size=(120, 32)), line(size=(50, 20))])
    assert [r["text"] for r in res] == [  # what the stand-in's infer() saw (image file, task prompt), + its answer
        "120x32 <|grounding|>Convert the document to markdown.aaaa",
        "50x20 <|grounding|>Convert the document to markdown.aaaa",
    ]
    assert [(r["truncated"], r["confidence"]) for r in res] == [(False, 1.0)] * 2  # its generate() went through ours
    assert res[1]["boxes"][0]["box"] == [[0.0, 0.0], [50.0, 0.0], [50.0, 20.0], [0.0, 20.0]]
    assert e.loaded.model.last_call == {
        "prompt": "<image>\n<|grounding|>Convert the document to markdown.",
        "base_size": 1024,
        "image_size": 640,
        "crop_mode": True,
        "save_results": False,
        "eval_mode": True,
    }
    # infer() asks for 8,192 new tokens; the job's --max-new-tokens wins, and a cut answer says so.
    (cut,) = _engine(folder, trust_remote_code=True, max_new_tokens=2).recognize([line()])
    assert cut["text"].endswith("Free OCR.aa") and (cut["truncated"], cut["truncated_by"]) == (True, "max_new_tokens")


def test_olmocr_prompt_is_text_then_image_and_its_front_matter_becomes_fields(models: dict[str, Path]) -> None:
    e = _engine(models["qwen2_5_vl"], max_new_tokens=120)
    prompt = e._prompt()
    assert prompt is not None and prompt.endswith(
        f"<|im_start|>user\n{hf_families.OLMOCR_PROMPT}<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    _forced(e, "---\nprimary_language: en\nis_rotation_valid: True\nrotation_correction: 0\n---\n# Menu\ntea")
    (res,) = e.recognize([line()])
    assert res["text"] == "# Menu\ntea"
    assert res["fields"] == {"primary_language": "en", "is_rotation_valid": "True", "rotation_correction": "0"}
