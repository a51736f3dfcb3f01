"""The Lambda code and its tests stand on the functions' dependencies alone.

``functions/`` is deployed without torch, Pillow or the other top-level packages, and
``make test-functions`` runs ``tests/functions`` in a virtualenv that has none of them: an import
of one would fail there (or in Lambda) first. This catches it here, in any environment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOT_IN_LAMBDA = frozenset(
    {"torch", "torchvision", "PIL", "numpy", "onnxruntime", "model", "training", "local", "cli"}
)


def imported_roots(statements: list[ast.stmt]) -> set[str]:
    roots: set[str] = set()
    for statement in statements:
        if isinstance(statement, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
            roots.add(statement.module.split(".")[0])
    return roots


def everywhere(tree: ast.Module) -> list[ast.stmt]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.stmt)]


@pytest.mark.parametrize(
    "path", sorted((REPO / "functions").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_lambda_code_imports_nothing_the_lambda_lacks(path: Path) -> None:
    assert not imported_roots(everywhere(ast.parse(path.read_text()))) & NOT_IN_LAMBDA


@pytest.mark.parametrize(
    "path",
    [*sorted((REPO / "tests" / "functions").glob("*.py")), REPO / "tests" / "conftest.py"],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_lambda_tests_import_only_the_functions_dependencies_when_loaded(path: Path) -> None:
    """Module level only: a fixture in tests/conftest.py may import Pillow when a model test asks."""
    assert not imported_roots(ast.parse(path.read_text()).body) & NOT_IN_LAMBDA
