"""OCR engines: one small interface, several implementations, picked by name or import path."""

from jobs.engines.base import Engine, Recognition, runner_threads
from jobs.engines.registry import ENGINES, load_engine_class, normalize

__all__ = ["ENGINES", "Engine", "Recognition", "load_engine_class", "normalize", "runner_threads"]
