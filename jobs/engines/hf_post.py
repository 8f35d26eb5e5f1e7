"""Turning a model's generated tokens into what a job stores: text, line/region boxes, fields.

Each family's raw output carries more than text: Florence-2 ``<loc_N>`` regions, DeepSeek grounding
``<|ref|>..<|det|>[[x1, y1, x2, y2]]<|/det|>``, Unlimited-OCR detections, Donut's field tags. Those are
special tokens, so such families are decoded with them kept and parsed here; boxes come out in the
image's pixel coordinates, as ``Recognition.boxes`` has them: ``{"box": [[x, y] x4], "text": str}``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from jobs.engines.hf_families import Family

log = logging.getLogger(__name__)

GROUNDING = re.compile(r"<\|ref\|>(.*?)<\|/ref\|><\|det\|>(.*?)<\|/det\|>(.*?)(?=<\|ref\|>|\Z)", re.DOTALL)
DETECTION = re.compile(
    r"<\|det\|>(\S+) \[(\d+), ?(\d+), ?(\d+), ?(\d+)\]<\|/det\|>(.*?)(?=<\|det\|>|<PAGE>|\Z)", re.DOTALL
)
BOX = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\]")
NORM = 999.0  # DeepSeek and Unlimited-OCR coordinates: 0..999 of the image's width and height


def decode(fam: Family, processor: Any, new: Any, sizes: list[tuple[int, int]], prompt: str) -> list[dict[str, Any]]:
    """One result per row of ``new`` (generated token ids): ``text``, plus ``boxes`` / ``fields`` when found.

    ``sizes`` are the images' (width, height); ``prompt`` is the task prompt sent (Florence-2 parses by it)."""
    tok = getattr(processor, "tokenizer", processor)
    if not fam.keep_special:
        texts = processor.batch_decode(new, skip_special_tokens=True)
        return [_plain(fam, processor, t) for t in texts]
    drop = {i for i in (tok.pad_token_id,) if i is not None}
    rows = [[int(i) for i in row if int(i) not in drop] for row in new]
    texts = [tok.decode(row, skip_special_tokens=False) for row in rows]
    out = []
    for text, size in zip(texts, sizes, strict=True):
        post = POSTS.get(fam.post, _special_free)
        out.append(post(text, size, processor=processor, prompt=prompt))
    return out


def _plain(fam: Family, processor: Any, text: str) -> dict[str, Any]:
    if fam.post == "nougat":
        try:
            text = processor.post_process_generation(text, fix_markdown=False)
        except (ImportError, AttributeError) as e:  # nltk / Levenshtein missing, or not Nougat's tokenizer
            log.warning("nougat post-processing skipped: %s", e)
    if fam.post == "front-matter":
        return front_matter(text)
    return {"text": text.strip()}


FRONT = re.compile(r"\A\s*---\n(.*?)\n---\n?", re.DOTALL)


def front_matter(text: str) -> dict[str, Any]:
    """olmOCR: a YAML front matter (language, rotation, table/diagram flags) before the text -> ``fields``."""
    match = FRONT.match(text)
    if not match:
        return {"text": text.strip()}
    fields = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    out: dict[str, Any] = {"text": text[match.end() :].strip()}
    if fields:
        out["fields"] = fields
    return out


def _specials(processor: Any) -> list[str]:
    tok = getattr(processor, "tokenizer", processor)
    return sorted(set(getattr(tok, "all_special_tokens", [])), key=len, reverse=True)


def _clean(text: str, processor: Any) -> str:
    """The text without special tokens (end of sequence, padding...) left in by a keep-special decode."""
    for token in _specials(processor):
        text = text.replace(token, "")
    return text.strip()


def _special_free(text: str, size: tuple[int, int], *, processor: Any, prompt: str) -> dict[str, Any]:
    return {"text": _clean(text, processor)}


def quad(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    """An axis-aligned box as four corners, clockwise from the top left (Recognition.boxes' shape)."""
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def _pixels(coords: tuple[str, ...], size: tuple[int, int]) -> list[list[float]]:
    w, h = size
    x1, y1, x2, y2 = (float(c) for c in coords)
    return quad(*(round(v, 1) for v in (x1 / NORM * w, y1 / NORM * h, x2 / NORM * w, y2 / NORM * h)))


def grounding(text: str, size: tuple[int, int], *, processor: Any, prompt: str) -> dict[str, Any]:
    """DeepSeek-OCR: ``<|ref|>kind<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>content``; a box per rectangle."""
    boxes = []
    for kind, dets, content in GROUNDING.findall(text):
        body = _clean(content, processor) or kind.strip()
        for coords in BOX.findall(dets):
            boxes.append({"box": _pixels(coords, size), "text": body, "label": kind.strip()})
    plain = GROUNDING.sub(lambda m: m.group(3), text)
    out: dict[str, Any] = {"text": _clean(plain, processor)}
    if boxes:
        out["boxes"] = boxes
    return out


def detections(text: str, size: tuple[int, int], *, processor: Any, prompt: str) -> dict[str, Any]:
    """Unlimited-OCR: ``<|det|>kind [x1, y1, x2, y2]<|/det|>content``, coordinates 0..999."""
    boxes = [
        {"box": _pixels((x1, y1, x2, y2), size), "text": _clean(content, processor), "label": kind}
        for kind, x1, y1, x2, y2, content in DETECTION.findall(text)
    ]
    plain = DETECTION.sub(lambda m: m.group(6), text)
    out: dict[str, Any] = {"text": _clean(plain, processor)}
    if boxes:
        out["boxes"] = boxes
    return out


def florence(text: str, size: tuple[int, int], *, processor: Any, prompt: str) -> dict[str, Any]:
    """Florence-2: the processor's own parser (``<loc_N>`` bins to pixels); regions for ``<OCR_WITH_REGION>``."""
    task = prompt if prompt.startswith("<") and prompt.endswith(">") else "<OCR>"
    try:
        parsed = processor.post_process_generation(text, task=task, image_size=size)[task]
    except (ValueError, KeyError, AttributeError) as e:  # no post_processor_config for this task
        log.debug("florence post-processing skipped: %s", e)
        return {"text": _clean(re.sub(r"<loc_\d+>", "", text), processor)}
    if isinstance(parsed, str):
        return {"text": _clean(parsed, processor)}
    boxes = []
    for flat, label in zip(parsed.get("quad_boxes", []), parsed.get("labels", []), strict=False):
        corners = [[float(flat[i]), float(flat[i + 1])] for i in range(0, 8, 2)]
        boxes.append({"box": corners, "text": _clean(label, processor)})
    out: dict[str, Any] = {"text": "\n".join(b["text"] for b in boxes)}
    if boxes:
        out["boxes"] = boxes
    return out


def donut(text: str, size: tuple[int, int], *, processor: Any, prompt: str) -> dict[str, Any]:
    """Donut: the field tags after the task start token, as ``fields`` (processor.token2json); text = the values."""
    tok = getattr(processor, "tokenizer", processor)
    for token in (tok.eos_token, tok.pad_token):
        if token:
            text = text.replace(token, "")
    text = text.strip()
    for lead in (tok.bos_token, prompt):  # the decoder's start and task tokens, where generate returned them
        if lead and text.startswith(lead):
            text = text[len(lead) :].lstrip()
    try:
        fields = processor.token2json(text)
    except Exception as e:  # noqa: BLE001 - unparsable tags: keep the text
        log.debug("donut token2json failed: %s", e)
        fields = None
    values = _leaves(fields) if fields else []
    plain = "\n".join(values) if values else _clean(re.sub(r"</?s_[^>]*>", " ", text), processor)
    out: dict[str, Any] = {"text": plain.strip()}
    if isinstance(fields, dict) and fields and set(fields) != {"text_sequence"}:
        out["fields"] = fields
    return out


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _leaves(item)]
    if isinstance(value, list):
        return [v for item in value for v in _leaves(item)]
    text = str(value).strip()
    return [text] if text else []


POSTS = {"grounding": grounding, "detections": detections, "florence": florence, "donut": donut}
