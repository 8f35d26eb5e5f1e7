"""Which engines a job may name: the one policy that submit, the runner, its workers and the dashboard share.

An engine is code the runner imports, and the runner is often another Unix user than whoever submits
(through a shared job folder or the dashboard). So a job may name only code its operator chose:

* the built-in names (``auto``, ``rapid``, ``tesseract``, ``transformers``, ``ppocr``);
* the names of entry points in the ``ocrjobs.engines`` group (an installed package that says
  ``[project.entry-points."ocrjobs.engines"] myocr = "mypkg.engine:MyEngine"``);
* import paths allowed by ``OCRJOBS_ALLOWED_ENGINES``: comma-separated ``package.module:Class``,
  or ``package.module:*`` for every class of that module.

Whatever is allowed, a module found inside the job folder is never imported (:func:`check_origin`).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path

from jobs.errors import EngineError

ALLOW_ENV = "OCRJOBS_ALLOWED_ENGINES"
ENTRY_POINT_GROUP = "ocrjobs.engines"
#: Registered engines, by import path so that naming one never imports its dependencies.
BUILTIN: dict[str, str] = {
    "auto": "jobs.engines.auto:AutoEngine",
    "rapid": "jobs.engines.rapid:RapidEngine",
    "tesseract": "jobs.engines.tesseract:TesseractEngine",
    "transformers": "jobs.engines.hf:TransformersEngine",
    "ppocr": "jobs.engines.ppocr:PPOCREngine",
}
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_ALLOW_ENTRY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:([A-Za-z_]\w*|\*)$")
HOW_TO_ALLOW = (
    f"the runner's operator allows engines by import path with {ALLOW_ENV} "
    f"(e.g. {ALLOW_ENV}=mypkg.engine:MyEngine or mypkg.engine:*, comma-separated), "
    f"or by installing them as entry points in the {ENTRY_POINT_GROUP!r} group"
)


class EngineNotAllowed(EngineError):
    """The job names an engine its runner's operator did not allow."""


def allow_list(environ: Mapping[str, str] | None = None) -> list[str]:
    """The entries of ``OCRJOBS_ALLOWED_ENGINES``; a malformed one is an error, not silently ignored."""
    raw = (os.environ if environ is None else environ).get(ALLOW_ENV, "")
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    bad = [e for e in entries if not _ALLOW_ENTRY.match(e)]
    if bad:
        raise EngineError(
            f"{ALLOW_ENV} has {', '.join(map(repr, bad))}: each entry must be package.module:Class or package.module:*"
        )
    return entries


def is_set(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was given an allow-list (submit checks early only then)."""
    return ALLOW_ENV in (os.environ if environ is None else environ)


def entry_point_engines() -> dict[str, str]:
    """Installed engines: entry point name -> its ``module:Class``."""
    return {ep.name: f"{ep.module}:{ep.attr}" for ep in entry_points(group=ENTRY_POINT_GROUP)}


def resolve(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The ``module:Class`` to import for ``name``; raises EngineNotAllowed (or EngineError) otherwise.

    Only strings are compared here: nothing is imported, so a refused name never runs."""
    if not isinstance(name, str):  # a job.json written by hand
        raise EngineError(f"the engine must be a name or package.module:ClassName, got {name!r:.80}")
    if name in BUILTIN:
        return BUILTIN[name]
    installed = entry_point_engines()
    if name in installed:
        return installed[name]
    if not IMPORT_PATH.match(name):
        raise EngineError(
            f"unknown engine {name!r}: use one of {', '.join(choices(environ))} "
            "or an allowed import path like package.module:ClassName"
        )
    module = name.partition(":")[0]
    if name in installed.values() or any(e in (name, f"{module}:*") for e in allow_list(environ)):
        return name
    raise EngineNotAllowed(f"engine {name!r} is not allowed on this runner: {HOW_TO_ALLOW}")


def choices(environ: Mapping[str, str] | None = None) -> list[str]:
    """What a user may pick by name: the built-ins, the entry points, the allowed classes (not ``:*``)."""
    named = [*BUILTIN, *sorted(set(entry_point_engines()) - set(BUILTIN))]
    return named + [e for e in allow_list(environ) if not e.endswith(":*") and e not in named]


def wildcards(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``package.module:*`` entries (any class of these modules may be named)."""
    return [e for e in allow_list(environ) if e.endswith(":*")]


def check_origin(module_name: str, forbidden: Iterable[Path]) -> None:
    """Refuse a module, or any package above it, that would be loaded from inside ``forbidden`` (the job
    folder: anyone who can submit can write there). Each package is located before its parent's code
    could run from there, so nothing in a forbidden folder runs, even for an allowed name."""
    roots = [Path(f).resolve() for f in forbidden]
    if not roots:
        return
    parts = module_name.split(".")
    for n in range(1, len(parts) + 1):
        prefix = ".".join(parts[:n])
        try:
            spec = importlib.util.find_spec(prefix)
        except (ImportError, ValueError):
            return  # the import that follows reports it
        if spec is None:
            return
        places = [spec.origin] if spec.origin and spec.has_location else []
        places += list(spec.submodule_search_locations or [])
        for place in places:
            where = Path(place).resolve()
            if any(where == r or r in where.parents for r in roots):
                raise EngineNotAllowed(
                    f"engine module {module_name!r} would be imported from {where}, inside the job folder; "
                    "code in the job folder is never run"
                )


def check_at_submit(name: str, environ: Mapping[str, str] | None = None) -> None:
    """Submit's early check: the full policy when this process has ``OCRJOBS_ALLOWED_ENGINES`` (the same
    setting as the runner's, presumably); without it only the form, and the runner decides at claim."""
    if not isinstance(name, str) or is_set(environ) or name in BUILTIN or not IMPORT_PATH.match(name):
        resolve(name, environ)
