"""DeepSeek-OCR v1: its remote code's own ``infer()`` API, run under the job's generation limits.

v1 ships no processor transformers knows; its model class has ``infer(tokenizer, prompt, image_file, ...)``,
which reads an image file, calls the model's ``generate`` itself (8,192 new tokens at most, no time limit)
and returns the decoded text. While ``infer()`` runs, the model's ``generate`` is routed through
:func:`hf_generate.generate`, so the job's ``max_new_tokens`` and ``max_time``, the runner's soft stop, the
confidence and the truncation flag hold for v1 as for every other family.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from PIL import Image

from jobs.engines import hf_families, hf_generate

#: v1's own infer() settings (its model card's "Gundam" mode: a 1024 view plus 640 tiles).
INFER_KW = {"base_size": 1024, "image_size": 640, "crop_mode": True, "save_results": False, "eval_mode": True}


def infer(
    model: Any,
    tokenizer: Any,
    image: Image.Image,
    prompt: str,
    *,
    max_new_tokens: int | None,
    max_time_s: float | None,
    stop: Callable[[], bool],
) -> tuple[str, hf_generate.Generated | None]:
    """The raw answer for one image, and how its generation ended (None: infer() never called generate).

    ``max_new_tokens``: the job's limit; None keeps the one infer() asks for."""
    rows: list[hf_generate.Generated] = []
    with tempfile.TemporaryDirectory(prefix="ocrjobs-infer-") as tmp:
        path = os.path.join(tmp, "image.png")
        image.convert("RGB").save(path)
        with bounded_generate(model, rows, max_new_tokens, max_time_s, stop):
            raw = model.infer(tokenizer, prompt=prompt, image_file=path, output_path=tmp, **INFER_KW)
    return str(raw or ""), (rows[0] if rows else None)


@contextlib.contextmanager
def bounded_generate(
    model: Any,
    rows: list[hf_generate.Generated],
    max_new_tokens: int | None,
    max_time_s: float | None,
    stop: Callable[[], bool],
) -> Iterator[None]:
    """While in the block, ``model.generate(input_ids, **kw)`` runs bounded and leaves its rows in ``rows``;
    it returns what infer() decodes: the prompt, then the new tokens."""
    import torch

    real = model.generate
    own = model.__dict__.get("generate")  # an instance's own generate, if something set one

    def bounded(*args: Any, **kw: Any) -> Any:
        ids = args[0] if args else kw.pop("input_ids")
        asked = kw.pop("max_new_tokens", None)
        limit = int(max_new_tokens or asked or hf_families.PAGE)
        target = SimpleNamespace(generate=real, generation_config=model.generation_config)
        got = hf_generate.generate(
            target, {"input_ids": ids}, max_new_tokens=limit, max_time_s=max_time_s, stop=stop, **kw
        )
        rows[:] = got
        new = torch.tensor([got[0].tokens], dtype=ids.dtype, device=ids.device)
        return torch.cat([ids[:1], new], dim=1)

    model.generate = bounded
    try:
        yield
    finally:
        if own is None:
            del model.generate  # the class's again
        else:
            model.generate = own
