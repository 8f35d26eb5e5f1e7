"""The package's shape, checked on every run: no import circle between modules, and each layer imports
only the layers below it (docs/architecture.md, "Layers"). A new circle or an upward import fails here.

Every import statement counts, wherever it is: at module level, inside a function (a lazy import) and
under ``if TYPE_CHECKING:``. A lazy import still ties the two modules together (it only moves the
moment it runs), and a circle that works because of import order breaks on the next reordering.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

JOBS = REPO / "jobs"

#: Bottom to top. A module may import modules of its own layer and of the layers before it, never after.
#: ``jobs.errors``, ``jobs.config`` and ``jobs.torchvision_ops`` are the base; ``jobs`` (the public API),
#: ``jobs.cli`` and ``jobs.__main__`` the top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("jobs.errors", "jobs.config", "jobs.torchvision_ops"),
    ("jobs.store",),
    ("jobs.ops",),
    ("jobs.engines",),
    ("jobs.intake",),
    ("jobs.exports",),
    ("jobs.dashboard",),
    ("jobs.worker",),
    ("jobs.ray",),
    ("jobs.runner",),
    ("jobs", "jobs.cli", "jobs.__main__"),
)
TOP_LEVEL = {"__init__.py", "__main__.py", "cli.py", "config.py", "errors.py", "torchvision_ops.py"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(JOBS.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The jobs modules ``name`` imports: ``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer(module: str) -> int:
    best = (-1, -1)  # (length of the matching prefix, layer)
    for n, names in enumerate(LAYERS):
        for prefix in names:
            inside = module == prefix or (prefix != "jobs" and module.startswith(prefix + "."))  # jobs: __init__ only
            if inside and len(prefix) > best[0]:
                best = (len(prefix), n)
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return best[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_re_exports_and_lazy_imports() -> None:
    edges = graph()
    assert "jobs.store" in edges["jobs"] and "jobs.store.store" in edges["jobs.store"]  # a package re-exports
    assert "jobs.ray.cluster" in edges["jobs.runner.heartbeat"]  # a lazy import inside a function
    assert "jobs.engines.allow" in edges["jobs.runner.admission"]  # `from package import submodule`


def test_no_import_circle_between_modules() -> None:
    found = cycles(graph())
    why = "import circles (break them with a callback, a Protocol, or by moving the shared piece down):"
    assert not found, "\n".join([why, *(" <-> ".join(c) for c in found)])


def test_each_layer_imports_only_the_layers_below_it() -> None:
    upward = [
        f"{src} (layer {layer(src)}) imports {dst} (layer {layer(dst)})"
        for src, targets in graph().items()
        for dst in sorted(targets)
        if layer(dst) > layer(src)
    ]
    assert not upward, "\n".join(upward)


def test_the_top_of_jobs_holds_only_the_public_api_the_cli_config_and_errors() -> None:
    loose = {p.name for p in JOBS.glob("*.py")} - TOP_LEVEL
    assert not loose, f"modules directly in jobs/: {sorted(loose)}; put each in the sub-package it belongs to"
    for sub in (p for p in JOBS.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (sub / "__init__.py").is_file(), sub
        layer(f"jobs.{sub.name}")


def test_a_new_sub_package_must_be_placed_in_a_layer() -> None:
    with pytest.raises(AssertionError, match="in no layer"):
        layer("jobs.newthing.module")
    assert layer("jobs.store.lease") == 1 and layer("jobs") == layer("jobs.cli") == len(LAYERS) - 1


def test_the_cycle_check_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
