"""``model/`` is what ships inside the artifact and the serving container: it imports neither the
training code nor the local tools (the benchmark that needs both: ``local/bench/serving_bench.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"
FORBIDDEN_ROOTS = frozenset({"training", "local"})


def imported_roots(source: str) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(MODEL_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_model_imports_neither_training_nor_local(path: Path) -> None:
    assert not imported_roots(path.read_text(encoding="utf-8")) & FORBIDDEN_ROOTS


def test_the_check_sees_a_lazy_import() -> None:
    assert imported_roots("def f():\n    from training.promotion.artifact import unpack_artifact\n") == {
        "training"
    }
