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
#: Repository modules the Lambda tests may import although their package may not: each stands on
#: the standard library and the functions-test group alone (checked below). ``local.emulator.template``
#: reads template.yaml's CloudFormation tags; the deployment tests read the template through it.
TEST_HELPERS = frozenset({"local.emulator.template"})
#: Files under tests/ that the Lambda tests load as well.
SHARED_TEST_FILES = ("conftest.py", "moto_baseline.py")


def imported_modules(statements: list[ast.stmt]) -> set[str]:
    modules: set[str] = set()
    for statement in statements:
        if isinstance(statement, ast.Import):
            modules.update(alias.name for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
            modules.add(statement.module)
    return modules


def imported_roots(statements: list[ast.stmt], allowed: frozenset[str] = frozenset()) -> set[str]:
    return {module.split(".")[0] for module in imported_modules(statements) - allowed}


def everywhere(tree: ast.Module) -> list[ast.stmt]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.stmt)]


@pytest.mark.parametrize(
    "path", sorted((REPO / "functions").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_lambda_code_imports_nothing_the_lambda_lacks(path: Path) -> None:
    assert not imported_roots(everywhere(ast.parse(path.read_text()))) & NOT_IN_LAMBDA


@pytest.mark.parametrize(
    "path",
    [*sorted((REPO / "tests" / "functions").glob("*.py")), *(REPO / "tests" / n for n in SHARED_TEST_FILES)],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_lambda_tests_import_only_the_functions_dependencies_when_loaded(path: Path) -> None:
    """Module level only: a fixture in tests/conftest.py may import Pillow when a model test asks."""
    assert not imported_roots(ast.parse(path.read_text()).body, TEST_HELPERS) & NOT_IN_LAMBDA


@pytest.mark.parametrize("module", sorted(TEST_HELPERS))
def test_test_helpers_stand_on_the_functions_dependencies(module: str) -> None:
    """The helper and its package's ``__init__`` import nothing the functions' virtualenv lacks."""
    path = REPO.joinpath(*module.split(".")).with_suffix(".py")
    for source in (path, path.parent / "__init__.py"):
        assert not imported_roots(everywhere(ast.parse(source.read_text()))) & NOT_IN_LAMBDA, source
