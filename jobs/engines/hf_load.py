"""Finding and loading a transformers OCR model without surprises.

Checks are cheap (config.json only) so that submit can refuse a model that will never load,
instead of the job failing later on a runner. Nothing is downloaded unless the job allows it
and ``HF_HUB_OFFLINE`` is not set: a runner on a GPU box must not pull gigabytes mid-job.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.errors import EngineError

#: The model families this engine drives, by how they are prompted.
ENCODER_DECODER = "vision-encoder-decoder"  # image in, text out (TrOCR-style line recognisers)
IMAGE_TEXT_TO_TEXT = "image-text-to-text"  # image + prompt in, text out (GOT-OCR2, Florence-2, llava...)


@dataclass
class Loaded:
    model: Any
    processor: Any
    family: str
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


def family_of(config: Any) -> str:
    return ENCODER_DECODER if getattr(config, "model_type", "") == ENCODER_DECODER else IMAGE_TEXT_TO_TEXT


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
    """Load model and processor through transformers' auto classes onto ``device``."""
    import torch
    import transformers
    from transformers import AutoProcessor

    config = check_model(options)
    ref, kw = model_ref(options), source_kwargs(options)
    dtype = pick_dtype(device)
    try:
        processor = AutoProcessor.from_pretrained(ref, **kw)
        auto = getattr(transformers, _auto_class(config))
        model = auto.from_pretrained(ref, dtype=dtype, **kw)
    except (OSError, ValueError) as e:
        raise EngineError(f"model {ref!r} cannot be loaded: {' '.join(str(e).split())[:300]}") from None
    model.to(device)
    model.eval()
    family = family_of(config)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None and family == IMAGE_TEXT_TO_TEXT:
        tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
    gen = model.generation_config
    if gen.pad_token_id is None:
        gen.pad_token_id = getattr(tokenizer, "pad_token_id", None) or gen.eos_token_id
    if family == ENCODER_DECODER and gen.decoder_start_token_id is None:
        gen.decoder_start_token_id = getattr(model.config, "decoder_start_token_id", None) or getattr(
            tokenizer, "bos_token_id", None
        )
    torch.set_grad_enabled(False)
    return Loaded(model, processor, family, device, dtype)


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
