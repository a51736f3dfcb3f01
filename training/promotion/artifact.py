"""A ``model.tar.gz`` opened the way SageMaker opens it: unpacked, then its ``code/inference.py`` imported.

The one home for both steps (training, evaluation, the gate, the local model server, the CLI's
in-process counter, the benchmarks). It imports neither torch nor the repository's ``model``
package on purpose: the artifact's own ``code/model/`` can only shadow that package (as it does in
the container) while nothing in this process has imported it yet.
"""

from __future__ import annotations

import importlib.util
import sys
import tarfile
from pathlib import Path
from types import ModuleType

INFERENCE_MODULE = "inference"  # the name the container imports code/inference.py under


def unpack_artifact(artifact: str | Path, dest: str | Path, names: tuple[str, ...] | None = None) -> Path:
    """Extract ``model.tar.gz`` (all of it, or only ``names``) into ``dest``; returns ``dest``.

    SageMaker's model directory, the trainer's copy of ``model.pt`` + ``config.json`` beside the
    artifact, a model to fine-tune from, a model to evaluate or serve.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(artifact, "r:gz") as archive:
        members = archive.getmembers() if names is None else [archive.getmember(n) for n in names]
        try:
            archive.extractall(dest, members=members, filter="data")
        except TypeError:  # Python without extraction filters (< 3.10.12): our own, trusted archive
            archive.extractall(dest, members=members)
    return dest


def load_inference_module(model_dir: Path) -> ModuleType:
    """Import ``code/inference.py`` of an unpacked artifact with ``code/`` first on ``sys.path``.

    Registered in ``sys.modules`` as ``inference``, as the container does, because dataclasses and
    pickling look their module up by name. Raises ``FileNotFoundError`` when the artifact has none.
    """
    code_dir = model_dir / "code"
    script = code_dir / "inference.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found in the model artifact")
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location(INFERENCE_MODULE, script)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{script} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[INFERENCE_MODULE] = module
    spec.loader.exec_module(module)
    return module
