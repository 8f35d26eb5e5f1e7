"""Tiny randomly initialised transformers OCR models, built from configs and saved like real ones.

Used by the transformers engine's tests and by ``bench/batching.py``. No hub: the tokenizer is
a character-level WordLevel vocabulary made here, and everything is written with save_pretrained,
so the engine loads them through the same auto classes as a downloaded model. The output layer
is biased away from special tokens, so a random model still "reads" some characters (a batched
and a one-by-one run can then be compared).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 .:")


def _tokenizer(specials: list[str], **extra: Any) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(specials + CHARS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", **extra
    )


def _prefer_text(weight: Any, specials: int) -> None:
    """Zero the output rows of special tokens so random logits pick characters (text, not an instant EOS)."""
    import torch

    with torch.no_grad():
        weight[:specials] = 0.0
        weight[specials:] *= 8.0


def build_ved(dest: Path, image: int = 32, hidden: int = 32, layers: int = 1) -> Path:
    """A VisionEncoderDecoder: a tiny ViT encoder and a tiny TrOCR decoder, with a TrOCRProcessor."""
    import torch
    from transformers import (
        TrOCRConfig,
        TrOCRProcessor,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tok = _tokenizer(specials)
    enc = ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        image_size=image,
        patch_size=8,
    )
    dec = TrOCRConfig(
        d_model=hidden,
        decoder_layers=layers,
        decoder_attention_heads=2,
        decoder_ffn_dim=hidden * 2,
        vocab_size=len(specials) + len(CHARS),
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 1, 0, 2
    model = VisionEncoderDecoderModel(config=cfg)
    _prefer_text(model.decoder.output_projection.weight, len(specials))
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id = 1, 0, 2
    processor = TrOCRProcessor(image_processor=ViTImageProcessor(size={"height": image, "width": image}), tokenizer=tok)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


CHAT_TEMPLATE = (
    "{% for message in messages %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}:{% endif %}"
)


def build_llava(dest: Path, image: int = 32, hidden: int = 32) -> Path:
    """An image-text-to-text model (llava: a CLIP vision tower and a llama decoder) with a chat template."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(0)
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
    tok = _tokenizer(specials, extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image,
        patch_size=8,
        projection_dim=hidden,
    )
    text = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(specials) + len(CHARS),
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=4, vision_feature_layer=-1)
    model = LlavaForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(specials))
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = 0, 2, 1
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image}, crop_size={"height": image, "width": image}),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest
