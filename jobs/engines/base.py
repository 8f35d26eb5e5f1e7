"""The engine interface every OCR backend implements.

An engine is created once per worker process, loaded once (models stay in memory or on
the GPU), then asked to recognise many images. Workers are separate processes, so an
engine may hang or crash without taking the runner down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image


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
        self._stop: Callable[[], bool] = lambda: False

    def load(self, device: str = "auto") -> None:
        """Load models onto ``device`` ("auto", "cpu" or "cuda"). Called once per worker."""

    def recognize(self, images: list[Image.Image]) -> list[Recognition | dict[str, Any]]:
        """Return one result per image, in order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release models (called before a worker loads another engine)."""

    # The soft timeout: long-running engines should poll this and return early.
    def stop_requested(self) -> bool:
        return self._stop()

    def set_stop_check(self, check: Callable[[], bool]) -> None:
        self._stop = check
