"""The tiny image-text-to-text OCR families load like real checkpoints and generate in batches.

Each family's tiny model (tests/hf_tiny_vlm.py) is built once per session, loaded with the auto classes,
prompted with the family's OCR recipe and run on two images of different sizes in one left-padded batch.
What is checked is what the engine will rely on: the prompt precedes the new tokens, the new tokens decode to
characters, and a batched row reads the same as that image alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from tests.hf_tiny_vlm import CHARS, RECIPES, load_processor, prompt_text

pytest.importorskip("transformers")

NEW_TOKENS = 8


def _image(size: tuple[int, int], text: str) -> Image.Image:
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).text((4, 4), text, fill="black")
    return im


IMAGES = [_image((200, 60), "hello 0"), _image((120, 90), "ab 1")]


#: Where each family's image placeholder ends in its prompt text (what follows is sent as is).
IMAGE_ENDS = ("<image>", "<|IMAGE_END|>", "<|image_pad|>", "<|end_of_image|>", "<|vision_end|>")


def _after_image(text: str) -> str:
    cut = max(text.rfind(m) + len(m) for m in IMAGE_ENDS if m in text)
    return text[cut:]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf_tiny_vlm")


_LOADED: dict[str, tuple[Any, Any]] = {}


def _load(family: str, root: Path) -> tuple[Any, Any]:
    """Build + load a family once per session (processor, model)."""
    if family not in _LOADED:
        from transformers import AutoModelForImageTextToText

        folder = RECIPES[family].builder(root / family)
        model = AutoModelForImageTextToText.from_pretrained(folder).eval()
        _LOADED[family] = (load_processor(family, folder), model)
    return _LOADED[family]


def _generate(processor: Any, model: Any, family: str, images: list[Image.Image]) -> tuple[Any, Any]:
    import torch

    text = prompt_text(family, processor)
    inputs = processor(
        images=images,
        text=[text] * len(images),
        return_tensors="pt",
        padding=True,
        padding_side="left",
        **RECIPES[family].call_kwargs,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    return inputs, out


@pytest.mark.parametrize("family", list(RECIPES))
def test_family_batched_generate(family: str, tiny_root: Path) -> None:
    processor, model = _load(family, tiny_root)
    assert type(model).__name__ == RECIPES[family].model_class
    inputs, out = _generate(processor, model, family, IMAGES)
    n = inputs["input_ids"].shape[1]
    assert out.shape == (2, n + NEW_TOKENS)
    # The prompt is returned untouched ahead of the new tokens, left-padded.
    assert (out[:, :n] == inputs["input_ids"]).all()
    assert inputs["attention_mask"][:, -1].all(), "padding must be on the left for generate"
    tok = processor.tokenizer
    for row in range(2):
        prompt = tok.decode(out[row, :n], skip_special_tokens=False)
        assert prompt.endswith(_after_image(prompt_text(family, processor))), prompt[-80:]
        new = tok.decode(out[row, n:], skip_special_tokens=True)
        assert len(new) == NEW_TOKENS and set(new) <= set(CHARS), new
    # Each batched row reads what that image reads alone (left padding does not leak into the result).
    for i, image in enumerate(IMAGES):
        one_in, one_out = _generate(processor, model, family, [image])
        alone = tok.decode(one_out[0, one_in["input_ids"].shape[1] :], skip_special_tokens=True)
        assert alone == tok.decode(out[i, n:], skip_special_tokens=True)


def test_chat_prompts_hold_the_family_markup(tiny_root: Path) -> None:
    expected = {
        "paddleocr_vl": "User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>OCR:\nAssistant: ",
        "lighton_ocr": "<|im_start|>user\n<|image_pad|><|im_end|>\n<|im_start|>assistant\n",
        "glm_ocr": "<|begin_of_image|><|image|><|end_of_image|>Text Recognition:<|assistant|>\n",
        "qwen3_vl": "parameters.<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n",
    }
    for family, tail in expected.items():
        processor, _ = _load(family, tiny_root)
        assert prompt_text(family, processor).endswith(tail), family


def test_grounding_tokens_stay_whole(tiny_root: Path) -> None:
    """DeepSeek / Unlimited-OCR box markup survives tokenising and decoding (the engine parses it)."""
    ds, _ = _load("deepseek_ocr2", tiny_root)
    ref = "<|ref|>hello<|/ref|><|det|>[[10, 20, 500, 80]]<|/det|>"
    ids = ds.tokenizer(ref, add_special_tokens=False).input_ids
    assert ds.tokenizer.convert_ids_to_tokens(ids[0]) == "<|ref|>"
    assert ds.tokenizer.decode(ids, skip_special_tokens=False) == ref
    unlimited, _ = _load("unlimited_ocr", tiny_root)
    raw = "<|det|>text [10, 20, 500, 80]<|/det|>hello world<|det|>title [0, 0, 999, 10]<|/det|>Head"
    ids = unlimited.tokenizer(raw, add_special_tokens=False).input_ids
    text, dets = unlimited.decode(ids, return_detections=True)
    assert text == raw
    assert dets == [
        {"region_type": "text", "box": [10, 20, 500, 80], "text": "hello world"},
        {"region_type": "title", "box": [0, 0, 999, 10], "text": "Head"},
    ]


def test_forced_output_goes_through_generate(tiny_root: Path) -> None:
    """A known grounding answer can be forced through the real generate (for post-processing tests)."""
    import torch

    from tests.hf_tiny_vlm import forced_output

    processor, model = _load("deepseek_ocr2", tiny_root)
    answer = "<|ref|>text<|/ref|><|det|>[[10, 20, 500, 80]]<|/det|>\nhello"
    inputs = processor(
        images=IMAGES, text=["<image>\nFree OCR."] * 2, return_tensors="pt", padding=True, padding_side="left"
    )
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=64, do_sample=False, logits_processor=[forced_output(processor.tokenizer, answer)]
        )
    n = inputs["input_ids"].shape[1]
    for row in out:
        assert (
            processor.tokenizer.decode(row[n:], skip_special_tokens=False).split("<｜end▁of▁sentence｜>")[0] == answer
        )
