"""Pack a counting model into the ``model.tar.gz`` SageMaker's PyTorch serving container expects.

Layout (docs/ARCHITECTURE.md): ``model.pt``, ``config.json`` (with the weights' sha256),
``code/inference.py``, ``code/model/{__init__,network,preprocess,ranges,runtime}.py``,
``code/bincount/count_ranges.py`` (the range rule the pipeline shares),
``code/requirements.txt``, ``model.torchscript`` (the same weights traced and frozen: what the
container's CPU serves, see model/runtime.py); with ``--onnx`` also ``model.onnx`` for ONNX Runtime.

``model.onnx`` is left out by default: SageMaker's PyTorch inference container has no ONNX
Runtime (and a network-isolated job cannot install it), so there the 13.5 MB file would only
double the artifact. It pays where ONNX Runtime is installed, as in the local stack and the
benchmarks here (``make demo``/``make bench`` pack with ``--onnx``).

``model.pt`` must load on the inference container's torch 2.6 whatever torch packs it: a plain
``dict`` of plain tensors in the zip format, whose pickle names only what torch
2.6's ``weights_only`` loader allows (tests/model/test_model_package.py checks the records).

Usage::

    python -m model.package --out build/model/model.tar.gz [--weights FILE] [--arch NAME]
        [--config FILE] [--onnx]

Without ``--weights`` it packs the shipped trained model (``model/weights/``) when present,
otherwise the default backbone's ImageNet weights with a fresh, untrained head (offline).
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from common.errors import UsageError, one_line_errors
from model.network import (
    ARCHS,
    CONFIG_FILE,
    DEFAULT_ARCH,
    WEIGHTS_FILE,
    ModelConfig,
    build_model,
    sha256_file,
)
from model.runtime import ONNX_FILE, TORCHSCRIPT_FILE, export_onnx, export_torchscript

log = logging.getLogger(__name__)

MODEL_PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_WEIGHTS_DIR = MODEL_PACKAGE_DIR / "weights"
SERVING_MODULES = ("__init__.py", "network.py", "preprocess.py", "ranges.py", "runtime.py")
#: The pipeline's range rule (stdlib only), which model/ranges.py serves with: one definition. No
#: ``__init__.py`` on purpose: ``code/bincount`` is then a namespace package, which a regular
#: ``bincount`` package elsewhere on the path (functions/, in a process that runs both) outranks.
BINCOUNT_DIR = MODEL_PACKAGE_DIR.parent / "functions" / "bincount"
SERVING_BINCOUNT_MODULES = ("count_ranges.py",)
REQUIREMENTS = (
    "# Intentionally empty: the SageMaker PyTorch container's torch/torchvision/Pillow/numpy suffice,\n"
    "# and anything listed here is pip-installed at start-up, which fails without internet access.\n"
    "# ONNX Runtime is used when the image already has it and the artifact holds model.onnx (--onnx).\n"
)


def package_model(
    out: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    config: ModelConfig,
    *,
    fp16: bool = True,
    onnx: bool = False,
    torchscript: bool = True,
) -> Path:
    """Write ``model.tar.gz`` for ``state_dict`` (of ``build_model(config)``); returns its path.

    ``config.weights_sha256`` is set to the hash of the written ``model.pt``. The weights are
    stored in fp16 by default (half the size; loaded back as fp32). ``model.onnx`` is added
    when ``onnx`` is true and the exporter is installed, ``model.torchscript`` unless
    ``torchscript`` is false.
    """
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
        if onnx and _onnx_exporter_available():
            # The exported graph computes with the (rounded) shipped weights, exactly as torch serving would.
            export_onnx(network, config, staging / ONNX_FILE)
            members.append((staging / ONNX_FILE, ONNX_FILE))
        members.append((MODEL_PACKAGE_DIR / "inference.py", "code/inference.py"))
        members += [(MODEL_PACKAGE_DIR / name, f"code/model/{name}") for name in SERVING_MODULES]
        members += [(BINCOUNT_DIR / name, f"code/bincount/{name}") for name in SERVING_BINCOUNT_MODULES]
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w:gz", compresslevel=6) as archive:
            for source, name in members:
                archive.add(source, arcname=name, recursive=False, filter=_normalise_member)
            _add_text(archive, "code/requirements.txt", REQUIREMENTS)
        partial.replace(out)  # never leave a half-written artifact under the real name
    return out


def portable_state_dict(state_dict: Mapping[str, torch.Tensor], *, fp16: bool) -> dict[str, torch.Tensor]:
    """A plain ``dict`` of plain CPU tensors (no Parameter, subclass or shared storage), so the
    saved pickle holds nothing an older torch's ``weights_only`` loader refuses. Strides are kept
    (``clone`` preserves them): repacking the shipped weights gives the very same bytes."""
    state: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        tensor = (
            torch.Tensor(value.detach().cpu()) if type(value) is not torch.Tensor else value.detach().cpu()
        )
        if fp16 and tensor.is_floating_point():
            tensor = tensor.half()
        state[str(key)] = tensor.clone()
    return state


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


@one_line_errors("model.package")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write model.tar.gz")
    parser.add_argument("--weights", type=Path, help="state dict (.pt) of build_model(config)")
    parser.add_argument("--arch", help="backbone when no --config is given (default efficientnet_lite0)")
    parser.add_argument("--config", type=Path, help="config.json (ModelConfig) for --weights")
    parser.add_argument("--fp32", action="store_true", help="store fp32 weights instead of fp16")
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also add model.onnx, for servers with ONNX Runtime (not SageMaker's PyTorch container)",
    )
    parser.add_argument(
        "--no-torchscript", action="store_true", help="leave model.torchscript out (eager PyTorch serves)"
    )
    parser.add_argument("--no-onnx", action="store_true", help=argparse.SUPPRESS)  # the old default's opt-out
    args = parser.parse_args(argv)
    check_arguments(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.perf_counter()
    state, config, source = _load_inputs(args)
    try:
        path = package_model(
            args.out,
            state,
            config,
            fp16=not args.fp32,
            onnx=args.onnx and not args.no_onnx,
            torchscript=not args.no_torchscript,
        )
    except RuntimeError as error:  # load_state_dict: the weights belong to another network/config
        raise UsageError(f"the weights do not fit {config.arch}: {str(error).splitlines()[0]}") from error
    print(f"packed {source}")
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {config.arch}, version {config.version}, "
        f"sha256 {config.weights_sha256[:12]}) in {time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
