"""The registry stores and resolves models and runs none: no module of it imports a runtime or calls a model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fasttrack.registry

REGISTRY = Path(fasttrack.registry.__file__).parent
#: What running a model takes: FastTrack's runtimes and export, and the ONNX libraries themselves.
RUNS_MODELS = ("fasttrack.runtime", "fasttrack.export", "onnxruntime", "onnx", "skl2onnx", "onnxmltools")


def imported(tree: ast.AST) -> set[str]:
    """Every module a source file imports, at its top or inside a function, type-checking imports included."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def runs_models(module: str) -> bool:
    """Whether ``module`` is, or is inside, one of :data:`RUNS_MODELS`."""
    return any(module == name or module.startswith(f"{name}.") for name in RUNS_MODELS)


def predictions(tree: ast.AST) -> list[int]:
    """Lines calling ``.predict(...)`` or ``.predict_proba(...)`` on anything."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("predict", "predict_proba")
    ]


@pytest.mark.parametrize("module", sorted(REGISTRY.glob("*.py")), ids=lambda path: path.name)
def test_no_registry_module_runs_a_model(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    forbidden = sorted(
        n for n in imported(tree) if n.startswith(tuple(f"{p}." for p in RUNS_MODELS)) or n in RUNS_MODELS
    )
    assert forbidden == []
    assert predictions(tree) == []


def test_the_rule_sees_what_it_forbids() -> None:
    source = "def f(m):\n    from fasttrack.runtime.select import open_runtime\n    return m.predict_proba(x)\n"
    tree = ast.parse(source)
    assert [name for name in imported(tree) if runs_models(name)] == ["fasttrack.runtime.select.open_runtime"]
    assert predictions(tree) == [3]
