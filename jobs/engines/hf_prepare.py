"""The processor side of the transformers engine: resizing, tiling and tokenising, done ahead of the GPU.

The worker's prefetch thread decodes the next task while the engine runs the current one; it then
calls :meth:`Prepared.prepare` through the engine, so the next batches' processor work (tens to
hundreds of milliseconds a page for tiling models) is done before the GPU asks for it. Prepared
batches are keyed by the very image objects (held, so an ``id`` is never reused), taken once, and
dropped if the engine then batches differently (an OOM changed the batch size): the engine simply
runs the processor itself, as without a prefetch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PIL import Image

from jobs.engines import hf_families

#: Prepared batches kept at most (two tasks' worth at the GPU cap); older ones are dropped first.
KEEP = 64


def process(loaded: Any, prompt: str | None, task: str, chunk: list[Image.Image]) -> Any:
    """The processor's batch for ``chunk`` on the CPU: what the family's model takes, before ``.to(device)``."""
    fam = loaded.family
    images = [longest(im.convert("RGB"), fam.longest_side) for im in chunk]
    kw: dict[str, Any] = {"return_tensors": "pt", **fam.processor_kwargs}
    if not fam.encoder_decoder and prompt is not None:
        kw["padding_side"] = "left"  # decoder-only batches must end where generation starts
    if fam.style == hf_families.PROCESSOR and prompt is None:  # GOT-OCR2 builds its prompt itself
        return loaded.processor(images=images, format=task == "markdown", **kw)
    if prompt is None or fam.style == hf_families.DECODER_PROMPT:
        return loaded.processor(images=images, **kw)
    return loaded.processor(images=images, text=[prompt] * len(images), padding=True, **kw)


def longest(image: Image.Image, side: int) -> Image.Image:
    """``image`` scaled so its longest side is ``side`` pixels (0: as it is)."""
    if not side or max(image.size) == side:
        return image
    scale = side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)


class Prepared:
    """Processor batches made ahead, keyed by their images; safe between the prefetch and the engine thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: list[tuple[list[Image.Image], Any]] = []
        self.hits = 0  # batches the engine found ready (seen by tests and the log)

    def put(self, chunk: list[Image.Image], batch: Any) -> None:
        with self._lock:
            self._batches.append((list(chunk), batch))
            del self._batches[:-KEEP]

    def take(self, chunk: list[Image.Image]) -> Any | None:
        """The batch prepared for exactly these images in this order, once; None if there is none."""
        with self._lock:
            for n, (images, batch) in enumerate(self._batches):
                if len(images) == len(chunk) and all(a is b for a, b in zip(images, chunk, strict=True)):
                    del self._batches[n]
                    self.hits += 1
                    return batch
        return None

    def forget(self, images: list[Image.Image]) -> None:
        """Drop batches holding any of ``images`` (their call is over: nobody will take them)."""
        ids = {id(im) for im in images}
        with self._lock:
            self._batches = [(ims, b) for ims, b in self._batches if not any(id(im) in ids for im in ims)]

    def prepare(self, chunks: list[list[Image.Image]], make: Callable[[list[Image.Image]], Any]) -> None:
        for chunk in chunks:
            self.put(chunk, make(chunk))
