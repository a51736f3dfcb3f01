"""Which top-level package may import which: the base (``common/``) stands on no front door, the
model and the training code never reach into the operator's CLI, and the CLI never into the local
emulator. A lazy import inside a function counts like one at the top of the file. Within the CLI,
each subcommand's module under ``cli/commands/`` is its one home: it imports the shared modules of
``cli/``, never another subcommand's module.

The Lambda code's own rule (no torch, no repository package) also lives in
tests/functions/test_layering.py, which `make test-functions` runs without the rest of the repository;
it is repeated here so that the whole table reads in one place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: package -> top-level names none of its files may import
FORBIDDEN: dict[str, frozenset[str]] = {
    "common": frozenset({"cli", "local", "training", "model", "bincount", "torch", "boto3"}),
    "model": frozenset({"cli", "local", "training"}),
    "training": frozenset({"cli", "local"}),
    "cli": frozenset({"local"}),
    "functions": frozenset({"torch", "torchvision", "cli", "local", "training", "model", "common"}),
}


def imported_roots(source: str) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


CASES = [(package, path) for package in FORBIDDEN for path in sorted((REPO / package).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), CASES, ids=[str(p.relative_to(REPO)) for _, p in CASES])
def test_package_imports_only_what_its_layer_allows(package: str, path: Path) -> None:
    assert not imported_roots(path.read_text(encoding="utf-8")) & FORBIDDEN[package]


def test_every_package_has_files_to_check() -> None:
    """A renamed folder would leave its rule checking nothing."""
    for package in FORBIDDEN:
        assert any((REPO / package).rglob("*.py")), package


def imported_modules(source: str) -> set[str]:
    """Every module a file imports, by full dotted name (``from a import b`` counts ``a`` and ``a.b``)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


COMMANDS = sorted((REPO / "cli" / "commands").glob("*.py"))


@pytest.mark.parametrize("path", COMMANDS, ids=[path.stem for path in COMMANDS])
def test_a_command_module_imports_no_other_command(path: Path) -> None:
    own = f"cli.commands.{path.stem}"
    others = {
        name
        for name in imported_modules(path.read_text(encoding="utf-8"))
        if name.startswith("cli.commands.") and name != own
    }
    assert not others, f"{path.name} imports {sorted(others)}: move what they share to a module of cli/"


def test_the_command_check_sees_a_command_imported_by_name() -> None:
    source = "def f():\n    from cli.commands import count\n"
    assert "cli.commands.count" in imported_modules(source)


def test_the_check_sees_a_lazy_import() -> None:
    source = "def f():\n    from local.emulator.stack import LocalStack\n"
    assert imported_roots(source) == {"local"}


#: What serves a model where torch is not installed (the light install of ``make demo``, the local
#: model server): these never import torch themselves; they reach the torch runtimes only through
#: ``model.torch_runtime``, lazily and guarded, when ONNX Runtime cannot serve.
TORCH_FREE_SERVING = ["config.py", "inference.py", "preprocess.py", "ranges.py", "runtime.py"]


@pytest.mark.parametrize("name", TORCH_FREE_SERVING)
def test_the_serving_path_imports_no_torch(name: str) -> None:
    roots = imported_roots((REPO / "model" / name).read_text(encoding="utf-8"))
    assert not roots & {"torch", "torchvision"}
    top_level = {
        node.module
        for node in ast.parse((REPO / "model" / name).read_text(encoding="utf-8")).body
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not top_level & {"model.network", "model.torch_runtime"}
