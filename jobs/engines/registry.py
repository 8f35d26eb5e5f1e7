"""Engine lookup: a registered name (``auto``, ``rapid``, ``tesseract``, ``transformers``) or an import path
(``pkg.module:Class``)."""

from __future__ import annotations

import importlib
from dataclasses import asdict
from typing import Any

from jobs.engines.base import Engine, Recognition
from jobs.errors import EngineError

#: Registered engines, by import path so that naming one never imports its dependencies.
ENGINES: dict[str, str] = {
    "auto": "jobs.engines.auto:AutoEngine",
    "rapid": "jobs.engines.rapid:RapidEngine",
    "tesseract": "jobs.engines.tesseract:TesseractEngine",
    "transformers": "jobs.engines.hf:TransformersEngine",
}


def load_engine_class(name: str) -> type[Engine]:
    target = ENGINES.get(name, name)
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise EngineError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)} or package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EngineError(f"engine {name!r}: cannot import {module_name!r} ({e})") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not callable(getattr(cls, "recognize", None)):
        raise EngineError(f"engine {name!r}: {target} is not a class with a recognize() method")
    return cls


def normalize(result: Any) -> dict[str, Any]:
    """Accept a Recognition or a dict with at least ``text``; return a plain dict."""
    if isinstance(result, Recognition):
        out = asdict(result)
    elif isinstance(result, dict) and isinstance(result.get("text"), str):
        out = {"confidence": None, "boxes": [], **result}
    else:
        raise TypeError(f"engine returned {type(result).__name__}; expected a Recognition or a dict with 'text'")
    conf = out.get("confidence")
    out["confidence"] = None if conf is None else float(conf)
    return out


def validate_options(name: str, options: dict[str, Any]) -> None:
    """Let the engine refuse its options at submit (a model that cannot be found...), cheaply.

    Only registered engines are asked: importing a user's engine class at submit could be slow or
    have side effects. Raises EngineError with a one-line reason."""
    if name not in ENGINES:
        return
    check = getattr(load_engine_class(name), "validate_options", None)
    if callable(check):
        check(options)
