"""The engine interface every OCR backend implements.

An engine is created once per worker process, loaded once (models stay in memory or on
the GPU), then asked to recognise many images. Workers are separate processes, so an
engine may hang or crash without taking the runner down.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

#: Set by the runner for its workers: the intra-op threads each may use (see jobs/runner/sizing.py).
THREADS_ENV = "OCRJOBS_THREADS"


def runner_threads() -> int | None:
    """Threads per worker the runner budgeted, so N workers x T threads fit the cores; None: library default."""
    raw = os.environ.get(THREADS_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


@dataclass
class Recognition:
    text: str
    confidence: float | None = None
    #: One entry per detected line: {"box": [[x, y] x4], "text": str, "confidence": float}.
    boxes: list[dict[str, Any]] = field(default_factory=list)


class Engine:
    """Subclass and implement :meth:`load` and :meth:`recognize`.

    ``options`` are the job's engine options, passed as keyword arguments. ``device`` is
    what the engine actually runs on after :meth:`load` ("cpu", "cuda:0"...).

    The runner needs only ``load(device)`` and ``recognize(images)``: a plug-in class that does not
    subclass this one works too, and what it lacks of the rest defaults (``device``: the device it was
    given, ``max_batch``: 1, ``set_stop_check`` and ``close``: not called). An engine whose first
    ``recognize`` since it loaded raises AttributeError, TypeError, NotImplementedError, NameError or
    ImportError, or that ever returns the wrong number of results, is broken: its job fails with that one
    message, and no item is charged with it (jobs/worker/batch.py).
    """

    name = "engine"
    #: True: the engine runs its model on a GPU when there is one, so the runner gives its jobs one worker
    #: per visible GPU, each pinned with CUDA_VISIBLE_DEVICES (jobs/runner/sizing.py). False: a worker per core.
    uses_gpu = False

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.device = "cpu"
        #: Images the runner sends per ``recognize`` call (set it in :meth:`load`; 1: no batching).
        self.max_batch = 1
        self._stop: Callable[[], bool] = lambda: False

    def load(self, device: str = "auto") -> None:
        """Load models onto ``device`` ("auto", "cpu" or "cuda"). Called once per worker."""

    def recognize(self, images: list[Image.Image]) -> list[Recognition | dict[str, Any]]:
        """Return one result per image, in order. An ``Exception`` in a slot fails that item alone
        (e.g. out of GPU memory even at batch size 1); raising fails, or retries, the whole batch."""
        raise NotImplementedError

    # Optional (the worker calls it only if the engine has it): ``prepare(images)``, called on the worker's
    # prefetch thread with the next task's images while the engine still recognises the current task, for
    # CPU-side work ahead of the device (the transformers engine runs its processor there). It must be
    # safe beside a running ``recognize`` and may be skipped: ``recognize`` must work without it.

    def close(self) -> None:
        """Release models (called before a worker loads another engine)."""

    # The soft timeout: long-running engines should poll this and return early.
    def stop_requested(self) -> bool:
        return self._stop()

    def set_stop_check(self, check: Callable[[], bool]) -> None:
        self._stop = check
