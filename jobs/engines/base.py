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
    """

    name = "engine"

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

    def close(self) -> None:
        """Release models (called before a worker loads another engine)."""

    # The soft timeout: long-running engines should poll this and return early.
    def stop_requested(self) -> bool:
        return self._stop()

    def set_stop_check(self, check: Callable[[], bool]) -> None:
        self._stop = check
