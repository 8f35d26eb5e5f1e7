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


# -- the OCR families of jobs/engines/hf_families.py -------------------------------------------------------
WIDE = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;?!'[]()-_#*|/\n")


def _specials_tokenizer(specials: list[str], cls: Any = None, **kwargs: Any) -> Any:
    """A char-level tokenizer whose ``specials`` (ids 0..) match atomically: <s> </s> <pad> <unk> first."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(specials + WIDE)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    base = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    return (cls or PreTrainedTokenizerFast)(tokenizer_object=tk, **{**base, **kwargs})


def _trocr_model(tok: Any, image: int, start: int | None) -> Any:
    import torch
    from transformers import TrOCRConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

    torch.manual_seed(0)
    enc = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=image, patch_size=8
    )
    dec = TrOCRConfig(
        d_model=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        vocab_size=len(tok),
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **({} if start is None else {"decoder_start_token_id": start}),
    )
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = start, tok.pad_token_id, tok.eos_token_id
    model = VisionEncoderDecoderModel(config=cfg)
    _prefer_text(model.decoder.output_projection.weight, 4)
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id = start, tok.pad_token_id, tok.eos_token_id
    return model


def build_trocr_bare(dest: Path, image: int = 32) -> Path:
    """A TrOCR folder as some checkpoints ship it: a ViTImageProcessor and a plain tokenizer, no processor
    config, no decoder start token (the loader must assemble the processor and start at ``</s>``)."""
    from transformers import ViTImageProcessor

    tok = _specials_tokenizer(["<s>", "<pad>", "</s>", "<unk>"])
    model = _trocr_model(tok, image, None)
    model.save_pretrained(dest)
    ViTImageProcessor(size={"height": image, "width": image}).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def _swin_mbart(tok: Any, image: int) -> Any:
    """donut-swin encoder + mBART decoder: what Donut and Nougat are built from."""
    import torch
    from transformers import DonutSwinConfig, MBartConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    torch.manual_seed(0)
    enc = DonutSwinConfig(
        image_size=[image, image], patch_size=4, embed_dim=16, depths=[1], num_heads=[2], window_size=4
    )
    dec = MBartConfig(
        d_model=32,
        decoder_layers=1,
        encoder_layers=1,
        decoder_attention_heads=2,
        encoder_attention_heads=2,
        decoder_ffn_dim=64,
        encoder_ffn_dim=64,
        vocab_size=len(tok),
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        scale_embedding=True,
    )
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    ids = (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = ids
    model = VisionEncoderDecoderModel(config=cfg)
    _prefer_text(model.decoder.lm_head.weight, len(tok) - len(WIDE))
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id = ids
    return model


DONUT_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<s_cord-v2>", "<s_menu>", "</s_menu>", "<s_nm>", "</s_nm>"]


def build_donut(dest: Path, image: int = 64) -> Path:
    """Donut (cord-v2 style): DonutProcessor, task start token ``<s_cord-v2>``, field tags in the vocabulary."""
    from transformers import DonutImageProcessor, DonutProcessor

    tok = _specials_tokenizer(DONUT_SPECIALS)
    model = _swin_mbart(tok, image)
    images = DonutImageProcessor(size={"height": image, "width": image})
    processor = DonutProcessor(image_processor=images, tokenizer=tok)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


def build_nougat(dest: Path, image: int = 64) -> Path:
    """Nougat: the same swin + mBART, with NougatProcessor (NougatImageProcessor + NougatTokenizer)."""
    from transformers import NougatImageProcessor, NougatProcessor, NougatTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + WIDE + ["Ġ", "Ċ"])}  # byte-level BPE: space, newline
    named = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    tok = NougatTokenizer(vocab=vocab, merges=[], **named)
    model = _swin_mbart(tok, image)
    images = NougatImageProcessor(size={"height": image, "width": image})
    processor = NougatProcessor(image_processor=images, tokenizer=tok)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


GOT_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<imgpad>"]


def build_got_ocr2(dest: Path) -> Path:
    """GOT-OCR2: SAM-style vision tower at its real 1024 px (256 image tokens), a Qwen2 decoder, GotOcr2Processor."""
    import torch
    from transformers import (
        GotOcr2Config,
        GotOcr2ForConditionalGeneration,
        GotOcr2ImageProcessor,
        GotOcr2Processor,
        GotOcr2VisionConfig,
        Qwen2Config,
    )

    torch.manual_seed(0)
    tok = _specials_tokenizer(GOT_SPECIALS)
    vision = GotOcr2VisionConfig(
        hidden_size=16,
        output_channels=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        mlp_dim=32,
        window_size=16,
        global_attn_indexes=[],
    )
    text = Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(tok),
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    cfg = GotOcr2Config(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<imgpad>"))
    model = GotOcr2ForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(GOT_SPECIALS))
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = tok.pad_token_id, tok.eos_token_id, tok.bos_token_id
    images = GotOcr2ImageProcessor(size={"height": 1024, "width": 1024})
    processor = GotOcr2Processor(image_processor=images, tokenizer=tok)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


FLORENCE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<image>"] + [f"<loc_{i}>" for i in range(1000)]
#: The parse rules real Florence-2 checkpoints ship (processor_config.json); None patterns: the parser's defaults.
FLORENCE_POST = {"ocr": {"PATTERN": None, "AREA_THRESHOLD": 0.0}, "pure_text": {}}


def build_florence2(dest: Path, image: int = 128) -> Path:
    """Florence-2 (native): a 4-stage DaViT (stride 32: 16 grid tokens + 1 at 128 px) and a BART encoder-decoder,
    Florence2Processor with ``<loc_0..999>`` tokens and the OCR parse rules."""
    import torch
    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    torch.manual_seed(0)
    tok = _specials_tokenizer(FLORENCE_SPECIALS, extra_special_tokens={"image_token": "<image>"})
    vision = Florence2VisionConfig(
        depths=[1, 1, 1, 1],
        embed_dim=[16, 16, 16, 32],
        num_heads=[1, 1, 1, 2],
        num_groups=[1, 1, 1, 2],
        window_size=2,
        projection_dim=32,
        drop_path_rate=0.0,
    )
    text = BartConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        vocab_size=len(tok),
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=None,
    )
    cfg = Florence2Config(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"))
    model = Florence2ForConditionalGeneration(cfg)
    _prefer_text(model.lm_head.weight, len(FLORENCE_SPECIALS))
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = tok.pad_token_id, tok.eos_token_id, tok.bos_token_id
    gen.decoder_start_token_id = tok.eos_token_id
    images = CLIPImageProcessor(
        size={"height": image, "width": image}, do_center_crop=False, image_seq_length=(image // 32) ** 2 + 1
    )
    processor = Florence2Processor(image_processor=images, tokenizer=tok, post_processor_config=FLORENCE_POST)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


#: DeepSeek-OCR v1 ships its model as remote code with an ``infer()`` API that tokenizes the prompt, calls
#: ``self.generate(input_ids, ..., max_new_tokens=8192, no_repeat_ngram_size=20)`` and decodes the new tokens.
#: This stand-in keeps that API on a 1-layer Llama (and records its last call), so the engine's remote-code
#: path runs through a real ``generate`` without the real 3B model. Its own logits processor makes the answer
#: known: ``config.answer_len`` times "a", then the end token (whatever the random weights say).
DEEPSEEK_V1_CODE = """
import torch
from PIL import Image
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor


class DeepseekOCRConfig(LlamaConfig):
    model_type = "deepseek_vl_v2"

    def __init__(self, answer_len=4, **kwargs):
        self.answer_len = answer_len
        super().__init__(**kwargs)


class _Answer(LogitsProcessor):
    def __init__(self, start, a, eos, n):
        self.start, self.a, self.eos, self.n = start, a, eos, n

    def __call__(self, input_ids, scores):
        forced = self.a if input_ids.shape[1] - self.start < self.n else self.eos
        out = torch.full_like(scores, -1e4)
        out[:, forced] = 0.0
        return out


class DeepseekOCRForCausalLM(LlamaForCausalLM):
    config_class = DeepseekOCRConfig

    def __init__(self, config):
        super().__init__(config)
        self.last_call = None

    def infer(self, tokenizer, prompt="", image_file="", output_path="", base_size=1024, image_size=640,
              crop_mode=True, save_results=False, eval_mode=False):
        w, h = Image.open(image_file).size
        self.last_call = {"prompt": prompt, "base_size": base_size, "image_size": image_size,
                          "crop_mode": crop_mode, "save_results": save_results, "eval_mode": eval_mode}
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        answer = _Answer(ids.shape[1], tokenizer.convert_tokens_to_ids("a"), tokenizer.eos_token_id,
                         self.config.answer_len)
        with torch.no_grad():
            out = self.generate(ids, eos_token_id=tokenizer.eos_token_id, max_new_tokens=8192,
                                no_repeat_ngram_size=20, use_cache=True, logits_processor=[answer])
        read = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return "<|ref|>text<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>" + f"{w}x{h} " + prompt.split(chr(10))[-1] + read
"""


def build_deepseek_ocr_remote(dest: Path) -> Path:
    """A remote-code folder shaped like deepseek-ai/DeepSeek-OCR: auto_map to its own AutoModel class."""
    import importlib.util
    import json

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "modeling_deepseekocr.py").write_text(DEEPSEEK_V1_CODE)
    spec = importlib.util.spec_from_file_location("modeling_deepseekocr_tiny", dest / "modeling_deepseekocr.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    tok = _specials_tokenizer(
        ["<s>", "<pad>", "</s>", "<unk>", "<image>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>"]
    )
    config = module.DeepseekOCRConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = module.DeepseekOCRForCausalLM(config)
    model.save_pretrained(dest)
    cfg = json.loads((dest / "config.json").read_text())
    cfg["architectures"] = ["DeepseekOCRForCausalLM"]
    cfg["auto_map"] = {
        "AutoConfig": "modeling_deepseekocr.DeepseekOCRConfig",
        "AutoModel": "modeling_deepseekocr.DeepseekOCRForCausalLM",
    }
    (dest / "config.json").write_text(json.dumps(cfg))
    tok.save_pretrained(dest)
    return dest
