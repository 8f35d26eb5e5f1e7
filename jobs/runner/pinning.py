"""Version pinning: a job finishes with the engine it started with, or a user says otherwise.

A job that crashed and is resumed on a runner whose model or libraries changed would mix two
engines' output in one result set, silently. So the first claim records the engine's identity
in the job's state; a later claim that sees a different identity pauses the job with the
difference, until ``resume --accept-engine-change`` (which sets ``engine_change_accepted``).

The identity is cheap: config files, the weights' index or safetensors headers and sizes, a
hub snapshot's commit hash, package versions. Gigabytes of weights are never hashed.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from importlib import metadata
from pathlib import Path
from typing import Any

from jobs.store.lease import Claim, log_event, save
from jobs.store.store import Store

ACCEPTED = "engine_change_accepted"
IDENTITY = "engine_identity"
PAUSE_REASON = "engine_changed"

#: The packages whose versions make up each registered engine's identity.
PACKAGES: dict[str, tuple[str, ...]] = {
    "transformers": ("transformers", "torch", "tokenizers"),
    "ppocr": ("transformers", "torch", "opencv-python", "opencv-python-headless"),
    "rapid": ("rapidocr", "rapidocr-onnxruntime", "onnxruntime"),
    "tesseract": ("pytesseract", "tesserocr"),
    "auto": ("rapidocr", "rapidocr-onnxruntime", "onnxruntime", "pytesseract", "tesserocr"),
}
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})(?:/|$)")


def engine_identity(engine_name: str, options: dict[str, Any]) -> dict[str, Any]:
    """What must stay the same for a job's results to come from one engine."""
    ident: dict[str, Any] = {"engine": engine_name}
    versions = {p: v for p in PACKAGES.get(engine_name, ()) if (v := _version(p))}
    if versions:
        ident["versions"] = versions
    if engine_name == "transformers" and options.get("model"):
        ident.update(model_identity(str(options["model"]), options.get("revision")))
    if engine_name == "ppocr":  # its two model folders
        ident.update({k: model_identity(str(options[k])) for k in ("det_model", "rec_model") if options.get(k)})
    return ident


def model_identity(model: str, revision: str | None = None) -> dict[str, Any]:
    """A model folder's (or cached hub snapshot's) fingerprint: a commit hash or a sha256 of small files."""
    out: dict[str, Any] = {"model": model}
    folder = Path(os.path.expanduser(model))
    if not folder.is_dir():
        folder_or_none = _hub_snapshot(model, revision)
        if folder_or_none is None:
            out["model_sha256"] = None  # not found: differs from any recorded fingerprint
            return out
        folder = folder_or_none
    if m := _SNAPSHOT.search(folder.resolve().as_posix()):
        out["revision"] = m.group(1)
    try:
        out["model_sha256"] = fingerprint(folder)
    except OSError:  # unreadable: differs from any recorded fingerprint, so the job pauses and says so
        out["model_sha256"] = None
    return out


def fingerprint(folder: Path) -> str:
    """sha256 over config.json, generation_config.json, the weights index and each safetensors header + size."""
    h = hashlib.sha256()
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json"):
        p = folder / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(p.name.encode() + b"\0" + str(p.stat().st_size).encode() + b"\0")
        if p.suffix == ".safetensors":
            h.update(_safetensors_header(p))
    return h.hexdigest()


def enforce(store: Store, claim: Claim, spec: dict[str, Any]) -> str | None:
    """Call right after a claim. Records the identity on a first claim; returns a pause reason if it changed."""
    current = engine_identity(str(spec.get("engine", "")), dict(spec.get("engine_options") or {}))
    state = claim.state
    recorded = state.get(IDENTITY)
    if recorded == current:
        return None
    if recorded is None or state.get(ACCEPTED):
        if recorded is not None:
            log_event(store, claim.job_id, "engine_change_accepted", old=recorded, new=current)
        state[IDENTITY] = current
        state.pop(ACCEPTED, None)
        save(store, claim)
        return None
    return (
        f"engine changed since this job started: {describe_change(recorded, current)}; "
        "resume with --accept-engine-change to continue"
    )


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``model sha256 ab12.. -> cd34..; transformers 5.23.0 -> 5.24.0``: only what differs."""
    parts = []
    for key, label in (("engine", "engine"), ("model", "model"), ("revision", "model revision")):
        if old.get(key) != new.get(key):
            parts.append(f"{label} {old.get(key)} -> {new.get(key)}")
    if old.get("model_sha256") != new.get("model_sha256"):
        parts.append(f"model sha256 {_short(old.get('model_sha256'))} -> {_short(new.get('model_sha256'))}")
    ov, nv = old.get("versions") or {}, new.get("versions") or {}
    for pkg in sorted(set(ov) | set(nv)):
        if ov.get(pkg) != nv.get(pkg):
            parts.append(f"{pkg} {ov.get(pkg, 'absent')} -> {nv.get(pkg, 'absent')}")
    return "; ".join(parts) or "engine identity differs"


def _short(digest: Any) -> str:
    return f"{digest[:4]}.." if isinstance(digest, str) else "missing"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _safetensors_header(path: Path) -> bytes:
    """The JSON header (tensor names, dtypes, shapes, offsets): a few KB, whatever the file's size."""
    try:
        with path.open("rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            return f.read(min(size, 64 * 1024 * 1024))
    except (OSError, struct.error):
        return b"unreadable"


def _hub_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The cached snapshot folder of a hub id, without any network access."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - a malformed id is just "not cached"
        return None
    return Path(found).parent if isinstance(found, str) else None
