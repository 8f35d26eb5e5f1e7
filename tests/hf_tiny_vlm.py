"""Tiny randomly initialised image-text-to-text OCR models of the families transformers 5.24 ships.

Each ``build_<family>(dest)`` writes a folder laid out like the real checkpoint, which
``AutoModelForImageTextToText.from_pretrained`` loads: the model class and config of the family
(1 layer, hidden 16-32, random weights) and the processor files the real checkpoint ships, with a
character-level tokenizer holding the family's special tokens. The vision towers keep the real image
sizes only where their queries / position tables are fixed. The output rows of special tokens are
zeroed so the random model emits characters, not an instant end of sequence.

``AutoProcessor.from_pretrained`` loads every one; GLM-OCR, Qwen2.5/3-VL (video processor), Unlimited-OCR
and MiniCPM-OCR (torchvision-only image processors) need torchvision, whose CUDA build imports beside the
CPU torch once ``jobs`` is imported (jobs/torchvision_ops.py). ``RECIPES`` holds each family's prompt and call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Characters every tiny vocabulary holds after its special tokens (grounding output needs digits,
#: brackets and commas; prompts need capitals, colons and newlines).
CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;[]()-_#*|/\n")


def _tokenizer(
    specials: list[str],
    *,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str,
    add_bos: bool = False,
    extra: dict[str, str] | None = None,
    chat_template: str | None = None,
) -> Any:
    """A char-level fast tokenizer: ``specials`` first (ids 0..), then ``CHARS``; specials match atomically."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(specials + CHARS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if add_bos and bos is not None:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    kwargs: dict[str, Any] = {"eos_token": eos, "pad_token": pad, "unk_token": unk}
    if bos is not None:
        kwargs["bos_token"] = bos
    if extra:
        kwargs["extra_special_tokens"] = extra
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, **kwargs)
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


def _prefer_text(weight: Any, specials: int) -> None:
    """Zero the output rows of special tokens so random logits pick characters (text, not an instant EOS)."""
    import torch

    with torch.no_grad():
        weight[:specials] = 0.0
        weight[specials:] *= 8.0


def _save(model: Any, processor: Any, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


def _save_parts(
    dest: Path, model: Any, tok: Any, image_processor: Any, processor_class: str, template: str | None
) -> Path:
    """Save a processor as its files (tokenizer, image processor, template, processor_config.json).

    Written as files, not through the processor object, so a builder needs no video processor settings.
    """
    import json

    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    image_processor.save_pretrained(dest)
    if template is not None:
        (dest / "chat_template.jinja").write_text(template)
    (dest / "processor_config.json").write_text(json.dumps({"processor_class": processor_class}) + "\n")
    return dest


# ---------------------------------------------------------------------------------------------- DeepSeek-OCR-2

DEEPSEEK_SPECIALS = [
    "<｜▁pad▁｜>",
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<unk>",
    "<image>",
    "<|grounding|>",
    "<|ref|>",
    "<|/ref|>",
    "<|det|>",
    "<|/det|>",
]


def build_deepseek_ocr2(dest: Path, hidden: int = 32) -> Path:
    """DeepSeek-OCR-2: SAM (1024 px, patch 16) -> Qwen2-style query encoder -> DeepSeek-V2 decoder (dense)."""
    import torch
    from transformers import (
        DeepseekOcr2Config,
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2Processor,
    )
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import DeepseekOcr2ImageProcessorPil

    torch.manual_seed(0)
    specials = DEEPSEEK_SPECIALS
    tok = _tokenizer(
        specials,
        bos=specials[1],
        eos=specials[2],
        pad=specials[0],
        unk="<unk>",
        add_bos=True,
        extra={"image_token": "<image>"},
    )
    vocab = len(specials) + len(CHARS)
    sam = {
        "hidden_size": 16,
        "output_channels": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "global_attn_indexes": [],
        "mlp_dim": 16,
        "downsample_channels": [16, hidden],
        "initializer_range": 0.02,  # the default 1e-10 makes every image look the same
    }
    encoder = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
    }
    text = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "mlp_layer_types": ["dense"],
        "n_routed_experts": 2,
        "n_shared_experts": 1,
        "moe_intermediate_size": hidden,
        "num_experts_per_tok": 1,
        "max_position_embeddings": 8192,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    cfg = DeepseekOcr2Config(
        vision_config={"sam_config": sam, "encoder_config": encoder},
        text_config=text,
        image_token_id=specials.index("<image>"),
    )
    model = DeepseekOcr2ForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = 0, 1, 2
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tok)
    return _save(model, processor, dest)


# ---------------------------------------------------------------------------------------------- PaddleOCR-VL

#: The real checkpoint's template (ERNIE style): ``User: <image>TEXT\nAssistant: ``.
PADDLE_TEMPLATE = (
    "{%- if not add_generation_prompt is defined -%}{%- set add_generation_prompt = true -%}{%- endif -%}"
    "{{- '<|begin_of_sentence|>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- 'User: ' -}}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'image' -%}"
    "{{- '<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>' -}}{%- endif -%}{%- endfor -%}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}{%- endfor -%}"
    "{{- '\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'Assistant: ' -}}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}{%- endfor -%}"
    "{{- '<|end_of_sentence|>' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant: ' -}}{%- endif -%}"
)

PADDLE_SPECIALS = [
    "<unk>",
    "<s>",
    "</s>",
    "<|begin_of_sentence|>",
    "<|end_of_sentence|>",
    "<|IMAGE_START|>",
    "<|IMAGE_PLACEHOLDER|>",
    "<|IMAGE_END|>",
    "<|video_pad|>",
]


def build_paddleocr_vl(dest: Path, hidden: int = 32) -> Path:
    """PaddleOCR-VL: NaViT (patch 14, merge 2, interpolated 384 px position table) -> ERNIE-4.5 decoder (mrope)."""
    import torch
    from transformers import PaddleOCRVLConfig, PaddleOCRVLForConditionalGeneration, PaddleOCRVLProcessor
    from transformers.models.paddleocr_vl.image_processing_pil_paddleocr_vl import PaddleOCRVLImageProcessorPil

    torch.manual_seed(0)
    specials = PADDLE_SPECIALS
    tok = _tokenizer(
        specials,
        bos="<s>",
        eos="</s>",
        pad="<unk>",
        unk="<unk>",
        extra={"image_token": "<|IMAGE_PLACEHOLDER|>"},
        chat_template=PADDLE_TEMPLATE,
    )
    heads = 2
    cfg = PaddleOCRVLConfig(
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
        },
        text_config={
            "vocab_size": len(specials) + len(CHARS),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "head_dim": hidden // heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0, "mrope_section": [2, 3, 3]},
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "tie_word_embeddings": False,
        },
        tie_word_embeddings=False,  # tied, the random model repeats its last input token (a space) for ever
        image_token_id=specials.index("<|IMAGE_PLACEHOLDER|>"),
        video_token_id=specials.index("<|video_pad|>"),
        vision_start_token_id=specials.index("<|IMAGE_START|>"),
        vision_end_token_id=specials.index("<|IMAGE_END|>"),
    )
    model = PaddleOCRVLForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = 0, 1, [2, specials.index("<|end_of_sentence|>")]
    processor = PaddleOCRVLProcessor(
        image_processor=PaddleOCRVLImageProcessorPil(), tokenizer=tok, chat_template=PADDLE_TEMPLATE
    )
    return _save(model, processor, dest)


# ---------------------------------------------------------------------------------------------- Qwen-style chat

#: Qwen2/3 chat markup (LightOnOCR, Qwen-VL, Qianfan): images then text in the user turn.
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<unk>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _qwen_template(image: str) -> str:
    """A Qwen chat template whose image item renders as ``image`` (the family's own image markup)."""
    return (
        "{%- for message in messages -%}"
        "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}"
        "{%- for c in message['content'] -%}"
        "{%- if c['type'] == 'image' -%}{{- '" + image + "' -}}"
        "{%- elif c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{{- '<|im_end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )


# ---------------------------------------------------------------------------------------------- LightOnOCR

LIGHTON_TEMPLATE = _qwen_template("<|image_pad|>")


def build_lighton_ocr(dest: Path, hidden: int = 32) -> Path:
    """LightOnOCR: Pixtral vision tower (patch 14, longest edge 1540, merge 2) -> Qwen3 decoder."""
    import torch
    from transformers import LightOnOcrConfig, LightOnOcrForConditionalGeneration, LightOnOcrProcessor
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    torch.manual_seed(0)
    specials = QWEN_SPECIALS
    tok = _tokenizer(
        specials,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk="<unk>",
        extra={
            "image_token": "<|image_pad|>",
            "image_break_token": "<|vision_pad|>",
            "image_end_token": "<|vision_end|>",
        },
        chat_template=LIGHTON_TEMPLATE,
    )
    heads = 2
    cfg = LightOnOcrConfig(
        vision_config={
            "model_type": "pixtral",
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "head_dim": hidden // heads,
            "image_size": 1540,
            "patch_size": 14,
        },
        text_config={
            "model_type": "qwen3",
            "vocab_size": len(specials) + len(CHARS),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "head_dim": hidden // heads,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": False,
            "pad_token_id": 0,
            "eos_token_id": 2,
        },
        tie_word_embeddings=False,  # tied, the random model repeats its last input token
        image_token_id=specials.index("<|image_pad|>"),
    )
    model = LightOnOcrForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = 0, [2, 0]
    processor = LightOnOcrProcessor(
        image_processor=PixtralImageProcessorPil(size={"longest_edge": 1540}, patch_size=14),
        tokenizer=tok,
        patch_size=14,
        spatial_merge_size=2,
        chat_template=LIGHTON_TEMPLATE,
    )
    return _save(model, processor, dest)


# ---------------------------------------------------------------------------------------------- Qianfan-OCR

#: InternVL markup: the chat template emits ``<image>`` and the processor expands it to ``<img><IMG_CONTEXT>*N</img>``.
QIANFAN_TEMPLATE = _qwen_template("<image>\\n")
QIANFAN_SPECIALS = [*QWEN_SPECIALS, "<img>", "</img>", "<IMG_CONTEXT>", "<image>", "<think>", "</think>"]


def build_qianfan_ocr(dest: Path, hidden: int = 32, max_patches: int = 12) -> Path:
    """Qianfan-OCR: InternVL-style ViT (448 px tiles, 256 tokens each) -> Qwen3 decoder."""
    import torch
    from transformers import QianfanOCRConfig, QianfanOCRForConditionalGeneration, QianfanOCRProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    torch.manual_seed(0)
    specials = QIANFAN_SPECIALS
    tok = _tokenizer(
        specials,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk="<unk>",
        extra={"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"},
        chat_template=QIANFAN_TEMPLATE,
    )
    heads = 2
    cfg = QianfanOCRConfig(
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "drop_path_rate": 0.0,
        },
        text_config={
            "model_type": "qwen3",
            "vocab_size": len(specials) + len(CHARS),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "head_dim": hidden // heads,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
            "pad_token_id": 0,
            "eos_token_id": 2,
        },
        image_token_id=specials.index("<IMG_CONTEXT>"),
    )
    model = QianfanOCRForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = 0, [2, 0]
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 448, "width": 448},
        crop_to_patches=True,
        min_patches=1,
        max_patches=max_patches,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    processor = QianfanOCRProcessor(
        image_processor=image_processor, tokenizer=tok, image_seq_length=256, chat_template=QIANFAN_TEMPLATE
    )
    return _save(model, processor, dest)


# ---------------------------------------------------------------------------------------------- GLM-OCR

GLM_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{- '<|system|>\\n' + m['content'] -}}"
    "{%- elif m['role'] == 'user' -%}{{- '<|user|>\\n' -}}"
    "{%- if m['content'] is string -%}{{- m['content'] -}}{%- else -%}"
    "{%- for c in m['content'] -%}"
    "{%- if c['type'] == 'image' -%}{{- '<|begin_of_image|><|image|><|end_of_image|>' -}}"
    "{%- elif c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- elif m['role'] == 'assistant' -%}{{- '<|assistant|>\\n' -}}"
    "{%- for c in m['content'] -%}{%- if c['type'] == 'text' -%}{{- c['text'] -}}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)
GLM_SPECIALS = [
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<unk>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|video|>",
]


def build_glm_ocr(dest: Path, hidden: int = 32) -> Path:
    """GLM-OCR: GLM-4V style vision tower (patch 14, temporal 2, merge 2) -> GLM decoder (mrope)."""
    import torch
    from transformers import GlmOcrConfig, GlmOcrForConditionalGeneration
    from transformers.models.glm46v.image_processing_pil_glm46v import Glm46VImageProcessorPil

    torch.manual_seed(0)
    specials = GLM_SPECIALS
    tok = _tokenizer(
        specials,
        bos=None,
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        unk="<unk>",
        extra={"image_token": "<|image|>", "video_token": "<|video|>"},
        chat_template=GLM_TEMPLATE,
    )
    heads = 2
    ids = {t: i for i, t in enumerate(specials)}
    cfg = GlmOcrConfig(
        vision_config={
            "depth": 1,
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_heads": heads,
            "out_hidden_size": hidden,
        },
        text_config={
            "vocab_size": len(specials) + len(CHARS),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "max_position_embeddings": 8192,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "pad_token_id": 0,
            "eos_token_id": [0, ids["<|user|>"], ids["<|observation|>"]],
        },
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
    )
    model = GlmOcrForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = 0, [0, ids["<|user|>"], ids["<|observation|>"]]
    return _save_parts(dest, model, tok, Glm46VImageProcessorPil(), "Glm46VProcessor", GLM_TEMPLATE)


# ---------------------------------------------------------------------------------------------- Unlimited-OCR

UNLIMITED_SPECIALS = [
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜▁pad▁｜>",
    "<unk>",
    "<image>",
    "<|det|>",
    "<|/det|>",
    "<PAGE>",
]

#: The real checkpoint's image processor config (UnlimitedOcrImageProcessor defaults), written as it ships.
UNLIMITED_IMAGE_CONFIG = {
    "image_processor_type": "UnlimitedOcrImageProcessor",
    "processor_class": "UnlimitedOcrProcessor",
    "size": {"height": 1024, "width": 1024},
    "tile_size": 640,
    "crop_to_patches": True,
    "min_patches": 2,
    "max_patches": 32,
    "maximum_pad_value": 640,
    "background_color": [127, 127, 127],
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "resample": 3,
    "do_resize": True,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "do_convert_rgb": True,
}


def build_unlimited_ocr(dest: Path, hidden: int = 32) -> Path:
    """Unlimited-OCR (DeepSeek-OCR v1 layout): SAM (1024 px) -> CLIP encoder -> DeepSeek-V2 decoder with R-SWA."""
    import json

    import torch
    from transformers import UnlimitedOcrConfig, UnlimitedOcrForConditionalGeneration

    torch.manual_seed(0)
    specials = UNLIMITED_SPECIALS
    tok = _tokenizer(
        specials,
        bos=specials[0],
        eos=specials[1],
        pad=specials[2],
        unk="<unk>",
        add_bos=True,
        extra={"image_token": "<image>"},
    )
    vocab = len(specials) + len(CHARS)
    cfg = UnlimitedOcrConfig(
        vision_config={
            "sam_config": {
                "hidden_size": 16,
                "output_channels": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 1,
                "global_attn_indexes": [],
                "mlp_dim": 16,
                "downsample_channels": [16, hidden],
                "initializer_range": 0.02,
            },
            "encoder_config": {
                "hidden_size": hidden,
                "intermediate_size": hidden * 2,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
            },
        },
        text_config={
            "vocab_size": vocab,
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "mlp_layer_types": ["dense"],
            "n_routed_experts": 2,
            "n_shared_experts": 1,
            "moe_intermediate_size": hidden,
            "num_experts_per_tok": 1,
            "max_position_embeddings": 8192,
            "pad_token_id": 2,
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        image_token_id=specials.index("<image>"),
    )
    model = UnlimitedOcrForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = 2, 0, 1
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    (dest / "preprocessor_config.json").write_text(json.dumps(UNLIMITED_IMAGE_CONFIG, indent=2) + "\n")
    proc = {"processor_class": "UnlimitedOcrProcessor", "patch_size": 16, "downsample_ratio": 4}
    (dest / "processor_config.json").write_text(json.dumps(proc, indent=2) + "\n")
    return dest


# ---------------------------------------------------------------------------------------------- Qwen2.5-VL / Qwen3-VL

#: olmOCR-2's page prompt (allenai/olmocr, prompts.py build_no_anchoring_v4_yaml_prompt), sent before the image.
OLMOCR_PROMPT = (
    "Attached is one page of a document that you must process. Just return the plain text representation of this "
    "document as if you were reading it naturally. Convert equations to LateX and tables to HTML.\n"
    "If there are any figures or charts, label them with the following markdown syntax "
    "![Alt text describing the contents of the figure](page_startx_starty_width_height.png)\n"
    "Return your output as markdown, with a front matter section on top specifying values for the primary_language, "
    "is_rotation_valid, rotation_correction, is_table, and is_diagram parameters."
)
QWEN_VL_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
#: Qwen2.5-VL's template adds a default system turn; Qwen3-VL's does not.
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}" + _qwen_template(QWEN_VL_IMAGE)
)
QWEN3_TEMPLATE = _qwen_template(QWEN_VL_IMAGE)


def _build_qwen_vl(dest: Path, family: str, hidden: int) -> Path:
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(0)
    specials = QWEN_SPECIALS
    ids = {t: i for i, t in enumerate(specials)}
    template = QWEN25_TEMPLATE if family == "qwen2_5_vl" else QWEN3_TEMPLATE
    tok = _tokenizer(
        specials,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk="<unk>",
        extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        chat_template=template,
    )
    heads = 2
    text = {
        "vocab_size": len(specials) + len(CHARS),
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": 1,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": 8192,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        "pad_token_id": 0,
        "bos_token_id": None,
        "eos_token_id": 2,
    }
    vision = {
        "depth": 1,
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_heads": heads,
        "out_hidden_size": hidden,
    }
    tokens = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    if family == "qwen2_5_vl":
        vision["fullatt_block_indexes"] = [0]
        cfg = transformers.Qwen2_5_VLConfig(vision_config=vision, text_config=text, **tokens)
        model = transformers.Qwen2_5_VLForConditionalGeneration(cfg)
        image_processor = Qwen2VLImageProcessorPil()  # patch 14, CLIP mean/std: Qwen2.5-VL's preprocessor config
        processor_class = "Qwen2_5_VLProcessor"
    else:
        vision["deepstack_visual_indexes"] = [0]
        text["head_dim"] = hidden // heads
        text["rope_parameters"]["mrope_interleaved"] = True
        cfg = transformers.Qwen3VLConfig(vision_config=vision, text_config=text, **tokens)
        model = transformers.Qwen3VLForConditionalGeneration(cfg)
        image_processor = Qwen2VLImageProcessorPil(  # Qwen3-VL's preprocessor config: patch 16, mean/std 0.5
            patch_size=16,
            size={"shortest_edge": 65536, "longest_edge": 16777216},
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        )
        processor_class = "Qwen3VLProcessor"
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = 0, [2, 0]
    return _save_parts(dest, model, tok, image_processor, processor_class, template)


def build_qwen2_5_vl(dest: Path, hidden: int = 32) -> Path:
    """Qwen2.5-VL (olmOCR-2's base): windowed ViT (patch 14, merge 2) -> Qwen2 decoder (mrope)."""
    return _build_qwen_vl(dest, "qwen2_5_vl", hidden)


def build_qwen3_vl(dest: Path, hidden: int = 32) -> Path:
    """Qwen3-VL: ViT with deepstack (patch 16, merge 2) -> Qwen3 decoder (interleaved mrope)."""
    return _build_qwen_vl(dest, "qwen3_vl", hidden)


# ---------------------------------------------------------------------------------------------- MiniCPM-OCR

MINICPM_SPECIALS = [
    *QWEN_SPECIALS,
    "<image>",
    "</image>",
    "<slice>",
    "</slice>",
    "<image_id>",
    "</image_id>",
]
MINICPM_TEMPLATE = _qwen_template("<|image_pad|>")
MINICPM_IMAGE_CONFIG = {
    "image_processor_type": "MiniCPMOcrImageProcessor",
    "processor_class": "MiniCPMOcrProcessor",
    "max_slice_nums": 9,
    "scale_resolution": 448,
    "patch_size": 14,
    "slice_mode": True,
    "downsample_mode": "4x",
    "use_image_id": True,
    "small_image_upsize": "always",
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


def build_minicpm_ocr(dest: Path, hidden: int = 32) -> Path:
    """MiniCPM-OCR: SigLIP-style ViT (patch 14, 448 px slices, window merger) -> Qwen3.5 decoder (full attention)."""
    import json

    import torch
    from transformers import MiniCPMOcrConfig, MiniCPMOcrForConditionalGeneration

    torch.manual_seed(0)
    specials = MINICPM_SPECIALS
    ids = {t: i for i, t in enumerate(specials)}
    extra = {
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "image_start_token": "<image>",
        "image_end_token": "</image>",
        "slice_start_token": "<slice>",
        "slice_end_token": "</slice>",
        "image_id_start_token": "<image_id>",
        "image_id_end_token": "</image_id>",
    }
    tok = _tokenizer(
        specials,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk="<unk>",
        extra=extra,
        chat_template=MINICPM_TEMPLATE,
    )
    heads = 2
    cfg = MiniCPMOcrConfig(
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "patch_size": 14,
            "image_size": 980,
        },
        text_config={
            "model_type": "qwen3_5_text",
            "vocab_size": len(specials) + len(CHARS),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "head_dim": hidden // heads,
            "layer_types": ["full_attention"],
            "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
            "pad_token_id": 0,
            "eos_token_id": 2,
        },
        insert_layer_id=0,
        tie_word_embeddings=False,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    model = MiniCPMOcrForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = 0, [2, 0]
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    (dest / "preprocessor_config.json").write_text(json.dumps(MINICPM_IMAGE_CONFIG, indent=2) + "\n")
    (dest / "chat_template.jinja").write_text(MINICPM_TEMPLATE)
    (dest / "processor_config.json").write_text(json.dumps({"processor_class": "MiniCPMOcrProcessor"}) + "\n")
    return dest


# ---------------------------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """How a family is prompted and called, as verified by hand with the tiny models (batched, left padding)."""

    builder: Callable[[Path], Path]
    model_class: str
    prompt: str  #: the OCR task prompt; "" = image-only turn
    chat: bool  #: True: ``apply_chat_template``; False: plain text with the image placeholder in ``prompt``
    text_first: bool = False  #: chat turn lists the text before the image (olmOCR)
    call_kwargs: dict[str, Any] = field(default_factory=dict)  #: extra processor kwargs (tiling caps)


RECIPES: dict[str, Recipe] = {
    "deepseek_ocr2": Recipe(build_deepseek_ocr2, "DeepseekOcr2ForConditionalGeneration", "<image>\nFree OCR.", False),
    "paddleocr_vl": Recipe(build_paddleocr_vl, "PaddleOCRVLForConditionalGeneration", "OCR:", True),
    "lighton_ocr": Recipe(build_lighton_ocr, "LightOnOcrForConditionalGeneration", "", True),
    "qianfan_ocr": Recipe(
        build_qianfan_ocr,
        "QianfanOCRForConditionalGeneration",
        "Parse this document to Markdown.",
        True,
        call_kwargs={"max_patches": 1},
    ),
    "glm_ocr": Recipe(
        build_glm_ocr, "GlmOcrForConditionalGeneration", "Text Recognition:", True
    ),
    "unlimited_ocr": Recipe(
        build_unlimited_ocr,
        "UnlimitedOcrForConditionalGeneration",
        "<image>document parsing.",
        False,
    ),
    "qwen2_5_vl": Recipe(
        build_qwen2_5_vl,
        "Qwen2_5_VLForConditionalGeneration",
        OLMOCR_PROMPT,
        True,
        text_first=True,
    ),
    "qwen3_vl": Recipe(
        build_qwen3_vl,
        "Qwen3VLForConditionalGeneration",
        OLMOCR_PROMPT,
        True,
        text_first=True,
    ),
    "minicpm_ocr": Recipe(build_minicpm_ocr, "MiniCPMOcrForConditionalGeneration", "Text Recognition:", True),
}


def load_processor(family: str, folder: Path) -> Any:
    """The processor as the engine loads it (torchvision's CUDA build is importable: jobs/torchvision_ops.py)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


def prompt_text(family: str, processor: Any) -> str:
    """The text for one image: the plain prompt, or the chat template applied to the family's user turn."""
    recipe = RECIPES[family]
    if not recipe.chat:
        return recipe.prompt
    content: list[dict[str, str]] = [{"type": "image"}]
    if recipe.prompt:
        content.append({"type": "text", "text": recipe.prompt})
    if recipe.text_first:
        content.reverse()
    return processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )


def forced_output(tokenizer: Any, text: str) -> Any:
    """A logits processor that makes ``generate`` emit ``text`` (then EOS) whatever the random weights say.

    For tests of post-processing through the real ``generate`` call: grounding boxes, detections, loc tokens.
    Pass it as ``model.generate(**inputs, logits_processor=[forced_output(tok, "<|ref|>...")])``.
    """
    import torch
    from transformers import LogitsProcessor

    ids = tokenizer(text, add_special_tokens=False).input_ids
    eos = tokenizer.eos_token_id

    class _Force(LogitsProcessor):
        def __init__(self) -> None:
            self.start: int | None = None

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            self.start = input_ids.shape[1] if self.start is None else self.start
            step = input_ids.shape[1] - self.start
            forced = ids[step] if step < len(ids) else eos
            out = torch.full_like(scores, float("-inf"))
            out[:, forced] = 0.0
            return out

    return _Force()
