"""Contract: the source dir ``training.sagemaker.launcher`` stages is complete on its own.

The training container gets only the staged tree (and the PyTorch image's site-packages plus
``requirements.txt``), so a staged module that imports an unstaged repository module fails there
with ``ModuleNotFoundError`` before the first epoch. These tests import the staged tree in a fresh
interpreter that sees nothing of the repository, and read every import of the entry point's module
graph (lazy ones too) to check it is staged, in the standard library, or a container requirement.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.sagemaker import launcher

#: The module the entry shim runs (``runpy.run_module("training.train")``).
ENTRY_MODULE = "training.train"

#: Top-level packages of this repository (``bincount`` lives under functions/): an import of one of
#: these must be answered by the staged tree, never by the installed checkout.
REPO_PACKAGES = frozenset({"training", "model", "common", "cli", "bincount", "local", "functions", "tests"})

# Run by a fresh ``python -I`` (no PYTHONPATH, no cwd, no user site): the staged dir is the only
# place repository modules may come from. The editable install's finder would answer any import of
# ``common``/``local``/... from the checkout, so it goes first; then every module that did load must
# lie inside the staged dir.
_IMPORT_ALL = """
import importlib, json, sys
staged, modules, repo_packages = sys.argv[1], json.loads(sys.argv[2]), set(json.loads(sys.argv[3]))
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(getattr(f, "__module__", ""))]
sys.path.insert(0, staged)
for name in modules:
    importlib.import_module(name)
outside = sorted(
    f"{name} ({getattr(module, '__file__', None)})"
    for name, module in list(sys.modules.items())
    if name.split(".")[0] in repo_packages
    and not str(getattr(module, "__file__", None) or "").startswith(staged)
)
if outside:
    sys.exit("loaded from outside the staged dir: " + ", ".join(outside))
"""


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return launcher.stage_source_dir(tmp_path_factory.mktemp("sourcedir"))


def module_name(staged: Path, path: Path) -> str:
    parts = path.relative_to(staged).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def staged_modules(staged: Path) -> list[str]:
    return sorted(module_name(staged, p) for p in staged.rglob("*.py") if p.name != launcher.ENTRY_SCRIPT)


def import_in_isolation(staged: Path, modules: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            _IMPORT_ALL,
            str(staged),
            json.dumps(modules),
            json.dumps(sorted(REPO_PACKAGES)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_staged_module_imports_with_only_the_staged_dir(staged: Path) -> None:
    modules = staged_modules(staged)
    assert ENTRY_MODULE in modules
    done = import_in_isolation(staged, modules)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_isolated_import_fails_when_a_module_is_not_staged(staged: Path, tmp_path: Path) -> None:
    """The check above can fail: without common/errors.py the entry point does not import."""
    broken = tmp_path / "broken"
    launcher.stage_source_dir(broken)
    (broken / "common" / "errors.py").unlink()
    done = import_in_isolation(broken, [ENTRY_MODULE])
    assert done.returncode != 0
    assert "No module named 'common.errors'" in done.stderr


# --- static reading: lazy imports and third-party requirements --------------------------------------
@dataclass(frozen=True)
class Import:
    module: str  # ``a.b`` of ``import a.b`` / ``from a.b import c``
    names: tuple[str, ...]  # ``c`` of ``from a.b import c`` (maybe submodules)
    optional: bool  # inside ``try: ... except ImportError``: the code copes without it
    where: str


def _catches_import_error(node: ast.Try) -> bool:
    caught = set()
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        caught |= {k.id for k in kinds if isinstance(k, ast.Name)}
    return bool(caught & {"ImportError", "ModuleNotFoundError"})


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> Iterator[Import]:
    """Every import the module runs, at import time or later; ``if TYPE_CHECKING`` ones are not run."""

    def walk(nodes: Iterable[ast.AST], optional: bool) -> Iterator[Import]:
        for node in nodes:
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse, optional)
            elif isinstance(node, ast.Import):
                yield from (Import(a.name, (), optional, where) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield Import(node.module, tuple(a.name for a in node.names), optional, where)
            elif isinstance(node, ast.Try):
                yield from walk(node.body, optional or _catches_import_error(node))
                yield from walk([*node.handlers, *node.orelse, *node.finalbody], optional)
            else:
                yield from walk(ast.iter_child_nodes(node), optional)

    yield from walk([ast.parse(path.read_text(encoding="utf-8"))], False)


def staged_file(staged: Path, module: str) -> Path | None:
    base = staged.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Graph:
    modules: set[str]
    unstaged: list[str]  # repository modules imported but not staged
    third_party: dict[str, list[Import]]  # top-level import name -> where it is imported


def entry_graph(staged: Path, entry: str = ENTRY_MODULE, *, optional: bool = True) -> Graph:
    """The staged modules ``entry`` reaches through any import, and what else they import.

    With ``optional=False`` only imports outside ``try/except ImportError`` are followed: what the
    entry point cannot run without."""
    graph = Graph(set(), [], {})
    todo = [entry]
    while todo:
        module = todo.pop()
        path = staged_file(staged, module)
        if module in graph.modules or path is None:
            continue
        graph.modules.add(module)
        for imp in imports_of(path):
            if imp.optional and not optional:
                continue
            top = imp.module.split(".")[0]
            if top in REPO_PACKAGES:
                if staged_file(staged, imp.module) is None:
                    graph.unstaged.append(f"{imp.module} ({imp.where})")
                    continue
                todo.append(imp.module)
                todo += [f"{imp.module}.{n}" for n in imp.names if staged_file(staged, f"{imp.module}.{n}")]
            elif top not in sys.stdlib_module_names:
                graph.third_party.setdefault(top, []).append(imp)
    return graph


def _distribution(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]).lower()


def test_the_entry_points_lazy_imports_are_staged_too(staged: Path) -> None:
    graph = entry_graph(staged)
    assert {"training.data", "training.dataset", "training.checkpoints", "model.network"} <= graph.modules
    assert "model.preprocess" in graph.modules  # imported inside a function of training.dataset
    assert graph.unstaged == []


def test_requirements_cover_the_entry_points_third_party_imports(staged: Path) -> None:
    """Each third-party import the entry point needs is in the image or in requirements.txt; only
    what the code reaches through ``except ImportError`` (training.reporting.plots' matplotlib,
    onnx...) may be
    missing in the container."""
    requirements = (staged / "requirements.txt").read_text().split("\n")
    available = {_distribution(r) for r in requirements if r.strip()} | set(launcher._IMAGE_PROVIDES)
    distributions = importlib.metadata.packages_distributions()
    needed = entry_graph(staged, optional=False).third_party
    missing = [
        f"{top} ({', '.join(i.where for i in imports)})"
        for top, imports in sorted(needed.items())
        if not {_distribution(d) for d in distributions.get(top, [top])} & available
    ]
    assert missing == [], f"third-party imports the container lacks: {missing}"
    assert {"torch", "PIL", "numpy", "tqdm"} <= set(needed)
