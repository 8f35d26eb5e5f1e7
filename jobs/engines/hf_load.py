"""Finding and loading a transformers OCR model without surprises.

Checks are cheap (config, processor files and the family table; no weights) so that submit can
refuse a model that will never load, with the reason, instead of the job failing later on a runner.
Nothing is downloaded unless the job allows it and ``HF_HUB_OFFLINE`` is not set: a runner on a GPU
box must not pull gigabytes mid-job.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.engines import hf_families
from jobs.engines.hf_families import Family
from jobs.errors import EngineError

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    model: Any
    processor: Any
    family: Family
    device: str
    dtype: Any


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def source_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """from_pretrained keywords every load uses: local only unless downloads are allowed."""
    kw: dict[str, Any] = {
        "local_files_only": offline() or not bool(options.get("allow_download", False)),
        "trust_remote_code": bool(options.get("trust_remote_code", False)),
    }
    if options.get("revision"):
        kw["revision"] = str(options["revision"])
    return kw


def model_ref(options: dict[str, Any]) -> str:
    model = options.get("model")
    if not isinstance(model, str) or not model.strip():
        raise EngineError("the transformers engine needs a model: --model PATH_OR_HUB_ID (engine option model)")
    return os.path.expanduser(model.strip())


def check_model(options: dict[str, Any]) -> Any:
    """What submit asks: config, family, task and processor as the loader will read them (no weights).

    Returns the config; raises EngineError with the one-line reason the runner would fail with."""
    config = read_config(options)
    load_processor(options, config)
    return config


def read_config(options: dict[str, Any]) -> Any:
    """Read the model's config the way the loader will; raise EngineError with a one-line reason. Cheap."""
    ref = model_ref(options)
    kw = source_kwargs(options)
    path = Path(ref)
    looks_local = path.is_absolute() or ref.startswith(".") or path.exists()
    if looks_local:
        if not path.is_dir():
            raise EngineError(f"model folder {ref} does not exist")
        if not (path / "config.json").is_file():
            raise EngineError(f"model folder {ref} has no config.json (save it with save_pretrained)")
        raw = _read_config(path / "config.json")
        if raw.get("auto_map") and not kw["trust_remote_code"] and not _known_type(raw.get("model_type")):
            raise EngineError(_remote_code_message(ref))
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref, **kw)
    except (OSError, ValueError, KeyError) as e:
        text = " ".join(str(e).split())
        if "trust_remote_code" in text:
            raise EngineError(_remote_code_message(ref)) from None
        if not looks_local and kw["local_files_only"]:
            why = "HF_HUB_OFFLINE is set" if offline() else "downloads are off (engine option allow_download=true)"
            raise EngineError(
                f"model {ref!r} is not a local folder and not in the Hugging Face cache, and {why}; "
                f"download it first (`hf download {ref}`) or give a folder path"
            ) from None
        raise EngineError(f"model {ref!r} cannot be loaded: {text[:300]}") from None


def load_processor(options: dict[str, Any], config: Any) -> tuple[Any, Family]:
    """The model's processor and family, checked against the job's options (task, modules, remote code).

    Families known from the config alone are checked before the processor loads (a missing torchvision
    is then named, not a traceback); vision-encoder-decoders are told apart by their processor classes.
    A bare encoder-decoder folder (image processor + tokenizer, no processor config) gets a TrOCRProcessor."""
    ref, kw = model_ref(options), source_kwargs(options)
    fam = hf_families.family_for(config, options=options)
    ved = fam.model_types == hf_families.VED
    if not ved:
        hf_families.check(fam, options)
    try:
        if fam.style == hf_families.INFER:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(ref, **kw), fam
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(ref, **kw)
        if ved and not hasattr(processor, "image_processor"):
            processor = _assembled(ref, kw)
    except EngineError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to build the processor is the model's problem
        raise EngineError(f"model {ref!r}: its processor cannot be loaded: {' '.join(str(e).split())[:300]}") from None
    if ved:
        fam = hf_families.family_for(config, _class_names(processor), options)
        hf_families.check(fam, options)
    return processor, fam


def _assembled(ref: str, kw: dict[str, Any]) -> Any:
    """TrOCRProcessor from a folder's image processor and tokenizer (what a bare checkpoint ships)."""
    from transformers import AutoImageProcessor, AutoTokenizer, TrOCRProcessor

    try:
        image_processor = AutoImageProcessor.from_pretrained(ref, **kw)
    except (OSError, ValueError) as e:
        raise EngineError(
            f"model {ref!r} has a tokenizer but no image processor (preprocessor_config.json): {str(e)[:200]}"
        ) from None
    return TrOCRProcessor(image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(ref, **kw))


def _class_names(processor: Any) -> set[str]:
    parts = [processor, getattr(processor, "tokenizer", None), getattr(processor, "image_processor", None)]
    return {type(p).__name__ for p in parts if p is not None}


def pick_device(requested: str) -> str:
    """``auto``: CUDA when torch sees a GPU, else CPU. Asking for CUDA without one is an error, not a silent CPU run."""
    import torch

    requested = (requested or "auto").lower()
    if requested not in ("auto", "cpu", "cuda") and not requested.startswith("cuda:"):
        raise EngineError(f"device must be auto, cpu or cuda, got {requested!r}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError("device cuda was asked for but torch sees no GPU (CPU-only torch, or no driver)")
    return requested


def pick_dtype(device: str) -> Any:
    """bf16 where the GPU supports it, else fp16 on GPU; fp32 on CPU (half precision is slow there)."""
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load(options: dict[str, Any], device: str) -> Loaded:
    """Load model and processor through the family's auto class, the weights straight onto ``device``."""
    import torch
    import transformers

    config = read_config(options)
    processor, fam = load_processor(options, config)
    ref, kw = model_ref(options), source_kwargs(options)
    dtype = pick_dtype(device)
    placed = device.startswith("cuda") and _has_accelerate()
    auto = getattr(transformers, fam.auto_class if fam.remote_code else _auto_class(config))
    extra: dict[str, Any] = {"device_map": device} if placed else {}  # no full host copy first (needs accelerate)
    attn = attention_choices(device)
    while True:
        try:
            model = auto.from_pretrained(
                ref, dtype=dtype, **extra, **kw, **({"attn_implementation": attn[0]} if attn else {})
            )
            break
        except (OSError, ValueError) as e:
            text = " ".join(str(e).split())
            if attn and "attention" in text.lower():  # this architecture lacks that kernel: try the next one
                log.info("model %s: attention %s not supported (%s)", ref, attn.pop(0), text[:120])
                continue
            raise EngineError(f"model {ref!r} cannot be loaded: {text[:300]}") from None
    log.info("model %s: attention implementation %s", ref, getattr(model.config, "_attn_implementation", "default"))
    if not placed:
        model.to(device)
    model.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    if not fam.encoder_decoder:
        tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
    gen = getattr(model, "generation_config", None)
    if gen is None:  # remote code with its own infer() (DeepSeek-OCR v1) may not be generate-able at all
        torch.set_grad_enabled(False)
        return Loaded(model, processor, fam, device, dtype)
    if gen.pad_token_id is None:
        gen.pad_token_id = getattr(tokenizer, "pad_token_id", None) or gen.eos_token_id
    if fam.encoder_decoder and gen.decoder_start_token_id is None:
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:  # TrOCR's decoder starts at </s>, others at <s>
            start = tokenizer.eos_token_id if fam.name == "trocr" else tokenizer.bos_token_id
        gen.decoder_start_token_id = start
    torch.set_grad_enabled(False)
    return Loaded(model, processor, fam, device, dtype)


def attention_choices(device: str) -> list[str]:
    """Attention kernels to ask for, best first: FlashAttention-2 on a GPU where it is installed, then
    PyTorch's fused SDPA; the model's own default when it supports neither (chosen explicitly, never by luck)."""
    import importlib.util

    out = ["sdpa"]
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        out.insert(0, "flash_attention_2")
    return out


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def _auto_class(config: Any) -> str:
    """AutoModelForImageTextToText (VisionEncoderDecoder included); a remote-code model may only map another."""
    auto_map = getattr(config, "auto_map", None) or {}
    for name in AUTO_CLASSES:
        if name in auto_map:
            return name
    return AUTO_CLASSES[0]


AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EngineError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise EngineError(f"{path} is not a JSON object")
    return data


def _known_type(model_type: Any) -> bool:
    from transformers import CONFIG_MAPPING

    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def _remote_code_message(ref: str) -> str:
    return (
        f"model {ref} needs code that ships with the model (trust_remote_code); "
        "submit with --trust-remote-code if you trust its source"
    )
