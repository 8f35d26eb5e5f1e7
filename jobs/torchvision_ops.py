"""Let a CUDA build of torchvision import beside a CPU build of torch.

PyPI carries torchvision only as a CUDA build; on a machine with the CPU torch wheel its compiled ops
(``_C.so``, linked against ``libtorch_cuda``) cannot load. torchvision copes with that for all its ops but
two: ``_meta_registrations`` registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms``
without checking, and the import dies with ``operator torchvision::nms does not exist``
(pytorch/vision#9085). transformers imports torchvision for its fast image processors, so every
transformers import would die with it.

:func:`install` puts a finder at the front of ``sys.meta_path`` that, the first time torchvision is
imported, tries to load ``_C.so`` exactly as torchvision will; only when that fails does it declare the two
schemas (no kernels), so the import succeeds. The image transforms the processors use are plain torch and
work; calling ``torchvision.ops.nms`` still fails, with torchvision's own "Couldn't load custom C++ ops"
message. Where the compiled ops load (a GPU box with a matching torch) nothing is declared.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any

#: The ops torchvision registers fake kernels for without first checking that its library loaded.
UNCHECKED_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

_declared: list[Any] = []  # the torch.library.Library must live as long as the process, or its defs go


def _compiled_ops_load(package_dir: Path) -> bool:
    """Load torchvision's ``_C`` library the way ``torchvision.extension`` does; False when it cannot."""
    import torch

    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    lib = next((package_dir / f"_C{s}" for s in suffixes if (package_dir / f"_C{s}").exists()), None)
    if lib is None:
        return False
    try:
        torch.ops.load_library(str(lib))
    except (OSError, RuntimeError):
        return False
    return True


def declare_missing_ops() -> bool:
    """Declare the unchecked ops' schemas when torchvision is installed but its compiled ops cannot load.

    Returns True when it declared them. Safe to call more than once, and a no-op once torchvision is
    imported (whatever happened then has happened).
    """
    if _declared or "torchvision" in sys.modules:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or _compiled_ops_load(Path(spec.origin).parent):
        return False
    import torch

    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in UNCHECKED_OPS:
        lib.define(schema)
    _declared.append(lib)
    return True


class _BeforeTorchvision:
    """A meta-path finder that finds nothing: it only runs :func:`declare_missing_ops` before torchvision loads."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torchvision":
            uninstall()
            declare_missing_ops()
        return None


_FINDER = _BeforeTorchvision()


def install() -> None:
    """Arm the repair for this process's first ``import torchvision`` (cheap: imports nothing now)."""
    if _FINDER not in sys.meta_path and "torchvision" not in sys.modules:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
