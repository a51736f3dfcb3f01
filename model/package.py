"""Pack a counting model into the ``model.tar.gz`` SageMaker's PyTorch serving container expects.

Layout (docs/ARCHITECTURE.md): ``model.pt``, ``config.json`` (with the weights' sha256),
``code/inference.py``, ``code/model/*.py`` (the serving modules), ``code/bincount/count_ranges.py``
(the range rule the pipeline shares), ``code/requirements.txt``, ``model.torchscript`` (the same
weights traced and frozen: what the container's CPU serves without ONNX Runtime, see
model/runtime.py); with ``--onnx`` also ``model.onnx``, and with ``--onnxruntime-wheel`` ONNX
Runtime itself under ``code/lib/`` (unpacked from the wheel for the container's Python), so that
the PyTorch container, which has no ONNX Runtime and cannot install one in a network-isolated
job, serves the ONNX graph anyway (docs/serving-cost.md measures both).

``model.pt`` must load on the inference container's torch 2.6 whatever torch packs it: a plain
``dict`` of plain tensors in the zip format, whose pickle names only what torch
2.6's ``weights_only`` loader allows (tests/model/test_model_package.py checks the records).

The shipped model's ONNX graph is kept next to its weights (``model/weights/model.onnx``, made by
``--refresh-shipped-onnx``), so the local artifact (``make demo``: ``--onnx --no-torchscript``)
packs without torch installed.

Usage::

    python -m model.package --out build/model/model.tar.gz [--weights FILE] [--arch NAME]
        [--config FILE] [--onnx] [--onnxruntime-wheel auto|FILE] [--no-torchscript]
    python -m model.package --refresh-shipped-onnx

Without ``--weights`` it packs the shipped trained model (``model/weights/``) when present,
otherwise the default backbone's ImageNet weights with a fresh, untrained head (offline).
"""

from __future__ import annotations

import argparse
import io
import logging
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import UsageError, one_line_errors
from model.config import (
    ARCHS,
    CONFIG_FILE,
    DEFAULT_ARCH,
    WEIGHTS_FILE,
    ModelConfig,
    ModelLoadError,
    load_config,
    sha256_file,
)
from model.runtime import ONNX_FILE, TORCHSCRIPT_FILE, other_weights

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODEL_PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_WEIGHTS_DIR = MODEL_PACKAGE_DIR / "weights"
SERVING_MODULES = (
    "__init__.py",
    "config.py",
    "network.py",
    "preprocess.py",
    "ranges.py",
    "runtime.py",
    "torch_runtime.py",
)
#: The pipeline's range rule (stdlib only), which model/ranges.py serves with: one definition. No
#: ``__init__.py`` on purpose: ``code/bincount`` is then a namespace package, which a regular
#: ``bincount`` package elsewhere on the path (functions/, in a process that runs both) outranks.
BINCOUNT_DIR = MODEL_PACKAGE_DIR.parent / "functions" / "bincount"
SERVING_BINCOUNT_MODULES = ("count_ranges.py",)
REQUIREMENTS = (
    "# Intentionally empty: the SageMaker PyTorch container's torch/Pillow/numpy suffice, and\n"
    "# anything listed here is pip-installed at start-up, which fails without internet access.\n"
    "# ONNX Runtime, when packed, travels unpacked under code/lib/ (see code/lib/PYTHON).\n"
)
#: Where the artifact carries ONNX Runtime, and the file naming the Python it was built for.
VENDOR_DIR = "code/lib"
VENDOR_PYTHON_FILE = "PYTHON"
#: The serving container's Python (template.yaml: pytorch-inference:2.6-*-py312) and platform.
CONTAINER_PYTHON = "3.12"
CONTAINER_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux2014_x86_64")
#: The ONNX Runtime carried when none is installed here to take the version from.
DEFAULT_ONNXRUNTIME_VERSION = "1.32.0"
#: Parts of the ONNX Runtime package that serving never imports (model tools: 9 MB unpacked).
VENDOR_SKIP = ("onnxruntime/tools/", "onnxruntime/transformers/", "onnxruntime/quantization/")


def package_model(
    out: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    config: ModelConfig,
    *,
    fp16: bool = True,
    onnx: bool = False,
    torchscript: bool = True,
    onnxruntime_wheel: Path | None = None,
) -> Path:
    """Write ``model.tar.gz`` for ``state_dict`` (of ``build_model(config)``); returns its path.

    ``config.weights_sha256`` is set to the hash of the written ``model.pt``. The weights are
    stored in fp16 by default (half the size; loaded back as fp32). ``model.onnx`` is added
    when ``onnx`` is true and the exporter is installed, ``model.torchscript`` unless
    ``torchscript`` is false; ``onnxruntime_wheel``: ONNX Runtime to carry under ``code/lib/``.
    """
    import torch

    from model.network import build_model
    from model.torch_runtime import export_onnx, export_torchscript

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = portable_state_dict(state_dict, fp16=fp16)
    network = build_model(config, pretrained=False)
    network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    network.eval()
    with tempfile.TemporaryDirectory(prefix="bincount-package-") as tmp:
        staging = Path(tmp)
        # The zip format (torch >= 1.6) with the default pickle protocol: what torch 2.6 reads.
        torch.save(state, staging / WEIGHTS_FILE, _use_new_zipfile_serialization=True)
        config.weights_sha256 = sha256_file(staging / WEIGHTS_FILE)
        config.save(staging / CONFIG_FILE)
        members: list[tuple[Path, str]] = [
            (staging / WEIGHTS_FILE, WEIGHTS_FILE),
            (staging / CONFIG_FILE, CONFIG_FILE),
        ]
        if torchscript:
            # Traced from the (rounded) shipped weights too: the same logits as eager serving.
            export_torchscript(network, config, staging / TORCHSCRIPT_FILE)
            members.append((staging / TORCHSCRIPT_FILE, TORCHSCRIPT_FILE))
        shipped_onnx = SHIPPED_WEIGHTS_DIR / ONNX_FILE
        if onnx and shipped_onnx.is_file() and _exported_from(shipped_onnx, config.weights_sha256):
            members.append((shipped_onnx, ONNX_FILE))  # the shipped weights' graph, exported once
        elif onnx and _onnx_exporter_available():
            # The exported graph computes with the (rounded) shipped weights, exactly as torch serving would.
            export_onnx(network, config, staging / ONNX_FILE)
            members.append((staging / ONNX_FILE, ONNX_FILE))
        _write_artifact(out, members, onnxruntime_wheel)
    return out


def pack_prebuilt(out: str | Path, model_dir: Path, onnxruntime_wheel: Path | None = None) -> Path:
    """The artifact of a model directory that already holds ``model.onnx`` (the shipped model):
    its files as they are, no torch needed. Serves with ONNX Runtime only (no ``model.torchscript``)."""
    out = Path(out)
    config = load_config(model_dir)
    onnx_file = model_dir / ONNX_FILE
    if not onnx_file.is_file():
        raise ModelLoadError(f"{onnx_file} is missing: packing without torch needs the exported graph")
    recorded = onnx_metadata(onnx_file).get("weights_sha256", "")
    foreign = other_weights(ONNX_FILE, recorded, config.weights_sha256, unnamed_ok=False)
    if foreign is not None:
        raise ModelLoadError(
            f"{model_dir}: {foreign}; run python -m model.package --refresh-shipped-onnx with torch installed"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    members = [(model_dir / name, name) for name in (WEIGHTS_FILE, CONFIG_FILE, ONNX_FILE)]
    _write_artifact(out, members, onnxruntime_wheel)
    return out


def onnx_metadata(path: Path) -> dict[str, str]:
    """The custom metadata of an ONNX file (which weights it was exported from), via ONNX Runtime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def refresh_shipped_onnx(model_dir: Path = SHIPPED_WEIGHTS_DIR) -> Path:
    """Export ``model_dir/model.onnx`` from ``model_dir``'s weights (after new weights are shipped)."""
    from model.network import load_state
    from model.torch_runtime import export_onnx

    network, config = load_state(model_dir)
    return export_onnx(network, config, model_dir / ONNX_FILE)


def _write_artifact(out: Path, members: list[tuple[Path, str]], onnxruntime_wheel: Path | None) -> None:
    members = [
        *members,
        (MODEL_PACKAGE_DIR / "inference.py", "code/inference.py"),
        *[(MODEL_PACKAGE_DIR / name, f"code/model/{name}") for name in SERVING_MODULES],
        *[(BINCOUNT_DIR / name, f"code/bincount/{name}") for name in SERVING_BINCOUNT_MODULES],
    ]
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz", compresslevel=6) as archive:
        for source, name in members:
            archive.add(source, arcname=name, recursive=False, filter=_normalise_member)
        _add_text(archive, "code/requirements.txt", REQUIREMENTS)
        if onnxruntime_wheel is not None:
            _add_wheel(archive, onnxruntime_wheel)
    partial.replace(out)  # never leave a half-written artifact under the real name


def _add_wheel(archive: tarfile.TarFile, wheel: Path) -> None:
    """Unpack ``wheel``'s ``onnxruntime/`` package under ``code/lib/`` with a note of its Python.

    A wheel is a zip: its package imports from the unpacked folder like any installed one. Only
    the package itself: its declared dependencies (flatbuffers, protobuf, packaging, sympy) serve
    its model tools, not ``InferenceSession``, which needs numpy alone.
    """
    python = _wheel_python(wheel)
    with zipfile.ZipFile(wheel) as source:
        for entry in source.infolist():
            name = entry.filename
            if entry.is_dir() or not name.startswith("onnxruntime/") or name.startswith(VENDOR_SKIP):
                continue
            info = tarfile.TarInfo(f"{VENDOR_DIR}/{name}")
            info.size, info.mode, info.mtime = entry.file_size, 0o644, int(time.time())
            with source.open(entry) as data:
                archive.addfile(info, data)
    _add_text(archive, f"{VENDOR_DIR}/{VENDOR_PYTHON_FILE}", python + "\n")


def _wheel_python(wheel: Path) -> str:
    """``onnxruntime-1.32.0-cp312-cp312-manylinux_2_28_x86_64.whl`` -> ``3.12``."""
    parts = wheel.name.split("-")
    tag = parts[2] if len(parts) >= 5 else ""
    if not tag.startswith("cp") or not tag[2:].isdigit():
        raise UsageError(f"{wheel.name}: not a CPython wheel (want e.g. onnxruntime-*-cp312-*.whl)")
    return f"{tag[2]}.{tag[3:]}"


def fetch_onnxruntime_wheel(cache: Path, python: str = CONTAINER_PYTHON) -> Path:
    """The ONNX Runtime wheel for the serving container's Python, from ``cache`` or the package index.

    The version is the one installed here (the local path measures and tests it), else
    :data:`DEFAULT_ONNXRUNTIME_VERSION`.
    """
    try:
        from importlib.metadata import version

        wanted = version("onnxruntime")
    except Exception:
        wanted = DEFAULT_ONNXRUNTIME_VERSION
    tag = "cp" + python.replace(".", "")
    found = sorted(cache.glob(f"onnxruntime-{wanted}-{tag}-{tag}-*x86_64.whl"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-q", f"onnxruntime=={wanted}", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", python, "--implementation", "cp", "-d", str(cache)]
    for platform in CONTAINER_PLATFORMS:
        command += ["--platform", platform]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(cache.glob(f"onnxruntime-{wanted}-{tag}-{tag}-*x86_64.whl"))
    if result.returncode != 0 or not found:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise UsageError(f"cannot download onnxruntime=={wanted} for Python {python}: {detail[0]}")
    return found[-1]


def portable_state_dict(state_dict: Mapping[str, torch.Tensor], *, fp16: bool) -> dict[str, torch.Tensor]:
    """A plain ``dict`` of plain CPU tensors (no Parameter, subclass or shared storage), so the
    saved pickle holds nothing an older torch's ``weights_only`` loader refuses. Strides are kept
    (``clone`` preserves them): repacking the shipped weights gives the very same bytes."""
    import torch

    state: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        tensor = (
            torch.Tensor(value.detach().cpu()) if type(value) is not torch.Tensor else value.detach().cpu()
        )
        if fp16 and tensor.is_floating_point():
            tensor = tensor.half()
        state[str(key)] = tensor.clone()
    return state


def _exported_from(onnx_file: Path, weights_sha256: str) -> bool:
    try:
        recorded = onnx_metadata(onnx_file).get("weights_sha256", "")
        return other_weights(ONNX_FILE, recorded, weights_sha256, unnamed_ok=False) is None
    except Exception:  # no ONNX Runtime here, or a broken file: export afresh
        return False


def _onnx_exporter_available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        log.info("onnx is not installed: packaging without %s", ONNX_FILE)
        return False
    return True


def _normalise_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Reproducible, owner-neutral entries: the container extracts as another user.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


def _add_text(archive: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
    archive.addfile(info, io.BytesIO(data))


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``--weights``: a bare state dict or a training checkpoint holding one."""
    import torch

    loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return loaded


def resolve_inputs(
    weights: Path | None, arch: str | None, config_path: Path | None
) -> tuple[dict[str, torch.Tensor], ModelConfig, str]:
    """Decide what to pack; the third value says where it came from (printed for the operator)."""
    from model.network import build_model

    if weights is None and config_path is None and arch is None:
        shipped_weights, shipped_config = (
            SHIPPED_WEIGHTS_DIR / WEIGHTS_FILE,
            SHIPPED_WEIGHTS_DIR / CONFIG_FILE,
        )
        if shipped_weights.is_file() and shipped_config.is_file():
            weights, config_path = shipped_weights, shipped_config
    if config_path is not None:
        config = ModelConfig.load(config_path)
        if arch is not None and arch != config.arch:
            raise UsageError(
                f"--arch {arch} contradicts {config_path} (arch {config.arch}): drop one of them"
            )
    else:
        config = ModelConfig.for_arch(arch or DEFAULT_ARCH)
    if weights is not None:
        state = load_weights_file(weights)
        if config.weights_sha256 and sha256_file(weights) != config.weights_sha256:
            # The config's hash names the file it was saved with; repacking rewrites it anyway.
            log.info("%s differs from the file %s was written for; repacking it", weights, config_path)
        return state, config, f"weights {weights} with config {config_path or 'for ' + config.arch}"
    network = build_model(config, pretrained=True)
    if not config.version or config.version.endswith("-untrained"):
        config.version = f"bincount-{config.arch}-imagenet-untrained-head"
    config.training = {**config.training, "note": "ImageNet backbone with a fresh, untrained counting head"}
    return (
        network.state_dict(),
        config,
        f"{config.arch} ImageNet weights with an untrained head (demo/test only)",
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Paths and names checked before torch does any work: one line for each mistake."""
    for flag, path in (("--weights", args.weights), ("--config", args.config)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    if args.arch is not None and args.arch not in ARCHS:
        raise UsageError(f"--arch {args.arch}: choose one of {', '.join(sorted(ARCHS))}")
    if args.out.is_dir():
        raise UsageError(
            f"--out {args.out} is a folder: give the file to write, e.g. {args.out / 'model.tar.gz'}"
        )
    if args.out.parent.exists() and not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: {args.out.parent} is a file, not a folder")


def _load_inputs(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], ModelConfig, str]:
    import pickle

    try:
        return resolve_inputs(args.weights, args.arch, args.config)
    except (ValueError, KeyError, RuntimeError, OSError, pickle.UnpicklingError) as error:
        # a file that is not a state dict / config of this project, or weights of another network
        raise UsageError(f"cannot pack these inputs: {str(error).splitlines()[0]}") from error


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _wheel_argument(value: str | None) -> Path | None:
    if not value:
        return None
    if value == "auto":
        return fetch_onnxruntime_wheel(WHEEL_CACHE)
    wheel = Path(value)
    if not wheel.is_file() or wheel.suffix != ".whl":
        raise UsageError(f"--onnxruntime-wheel {value}: no such wheel file (or say auto)")
    _wheel_python(wheel)
    return wheel


WHEEL_CACHE = Path("build") / "wheels"


@one_line_errors("model.package")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where to write model.tar.gz")
    parser.add_argument("--weights", type=Path, help="state dict (.pt) of build_model(config)")
    parser.add_argument("--arch", help="backbone when no --config is given (default efficientnet_lite0)")
    parser.add_argument("--config", type=Path, help="config.json (ModelConfig) for --weights")
    parser.add_argument("--fp32", action="store_true", help="store fp32 weights instead of fp16")
    parser.add_argument("--onnx", action="store_true", help="also add model.onnx, for ONNX Runtime")
    parser.add_argument(
        "--onnxruntime-wheel",
        metavar="auto|FILE",
        help="carry ONNX Runtime under code/lib/ (implies --onnx): a wheel for the serving container's "
        f"Python, or auto: onnxruntime for Python {CONTAINER_PYTHON} from {WHEEL_CACHE} or the package index",
    )
    parser.add_argument(
        "--no-torchscript", action="store_true", help="leave model.torchscript out (eager PyTorch serves)"
    )
    parser.add_argument(
        "--refresh-shipped-onnx",
        action="store_true",
        help=f"export {SHIPPED_WEIGHTS_DIR.name}/{ONNX_FILE} from the shipped weights (needs torch) and stop",
    )
    parser.add_argument("--no-onnx", action="store_true", help=argparse.SUPPRESS)  # the old default's opt-out
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.refresh_shipped_onnx:
        print(f"wrote {refresh_shipped_onnx()}")
        return 0
    if args.out is None:
        raise UsageError("--out is required: the model.tar.gz to write")
    check_arguments(args)
    started = time.perf_counter()
    wheel = _wheel_argument(args.onnxruntime_wheel)
    onnx = (args.onnx or wheel is not None) and not args.no_onnx
    if not torch_available():
        if args.weights or args.config or args.arch or not onnx:
            raise UsageError(
                "torch is not installed here: only the shipped model packs without it (with --onnx); "
                "other weights, --arch and model.torchscript need the full install (make venv)"
            )
        path = pack_prebuilt(args.out, SHIPPED_WEIGHTS_DIR, wheel)
        config = load_config(SHIPPED_WEIGHTS_DIR)
        source = f"the shipped model with its exported {ONNX_FILE} (no torch here: no {TORCHSCRIPT_FILE})"
    else:
        import torch

        torch.set_num_threads(min(2, torch.get_num_threads()))
        state, config, source = _load_inputs(args)
        try:
            path = package_model(
                args.out,
                state,
                config,
                fp16=not args.fp32,
                onnx=onnx,
                torchscript=not args.no_torchscript,
                onnxruntime_wheel=wheel,
            )
        except RuntimeError as error:  # load_state_dict: the weights belong to another network/config
            raise UsageError(f"the weights do not fit {config.arch}: {str(error).splitlines()[0]}") from error
    print(f"packed {source}" + (f", with {wheel.name} under {VENDOR_DIR}/" if wheel else ""))
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {config.arch}, version {config.version}, "
        f"sha256 {config.weights_sha256[:12]}) in {time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
