"""Engine lookup: a built-in name (``auto``, ``rapid``, ``tesseract``, ``transformers``, ``ppocr``), an installed entry
point's name, or an allowed import path (``pkg.module:Class``); which ones are allowed is jobs/engines/allow.py's."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jobs.engines.allow import BUILTIN, check_origin, resolve
from jobs.engines.base import Engine, Recognition
from jobs.errors import EngineError

#: Registered engines, by import path so that naming one never imports its dependencies.
ENGINES: dict[str, str] = BUILTIN


def load_engine_class(name: str, forbidden: Iterable[Path] = ()) -> type[Engine]:
    """Import an allowed engine's class. ``forbidden``: folders no module may come from (the job folder)."""
    target = resolve(name)  # raises before anything is imported if the name is not allowed
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise EngineError(f"engine {name!r}: {target!r} is not of the form package.module:ClassName")
    if name not in BUILTIN:  # ours, wherever this checkout lies
        check_origin(module_name, forbidden)
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
