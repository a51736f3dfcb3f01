"""Serving-path throughput against a seed-style path, in one run on the same machine.

``make bench`` runs ``python -m local.bench.serving_bench --model build/model/model-local.tar.gz
--sagemaker-model build/model/model.tar.gz`` (the artifact with model.onnx, and the one SageMaker
serves). Every path takes JPEG bytes and produces a JSON record:

* ``seed-style``: Pillow full-size decode, torchvision ``Resize``/``ToTensor``/``Normalize``,
  fp32 eager ResNet-50 with a fresh 5-way head, one image at a time (what the seed's handler did).
* ``ours``: the artifact through our handlers (``input_fn -> predict_fn -> output_fn``), one
  request per image as Batch Transform sends them, and as lists (one batched forward); the
  SageMaker artifact when ``--sagemaker-model`` is given, else ``--model``.
* ``ours, torchscript``: the same with ONNX Runtime switched off (what the SageMaker container
  falls back to when the ONNX Runtime the artifact carries cannot load).
* ``resnet50 ours``: ResNet-50 packed by ``model.package`` through the same handlers.
* ``TorchServe``: each artifact through the real serving stack (TorchServe + SageMaker's inference
  toolkit, as in the container; needs root and Java), one photo per HTTP request with
  ``MaxConcurrentTransforms`` requests in flight, per setting (workers x threads per worker; the
  first is the plan ``model.instances`` gives this machine). The SageMaker artifact carries ONNX
  Runtime for the container's Python 3.12 under ``code/lib/``; here (Python 3.11, ONNX Runtime
  installed, the same version) the installed copy serves its ``model.onnx``.

Images are generated bin photos at ABID-like sizes (``local/synthetic.py``) or ``--images DIR``.
A local tool, not part of ``model/``: it needs the demo's synthetic photos and opens the artifact
with ``training.promotion.artifact``, neither of which the serving package may import.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from bincount.image_formats import IMAGE_SUFFIXES

from common.errors import UsageError, one_line_errors
from local.synthetic import draw_bin, encode
from model.config import ModelConfig
from model.inference import SETTINGS, CountingModel, input_fn, load_model, output_fn, predict_fn
from model.instances import ServingPlan, local_plan
from model.network import build_model
from model.package import package_model
from training.promotion.artifact import unpack_artifact

ABID_LIKE_SIZES = ((470, 350), (520, 400), (400, 300), (640, 480), (350, 260))


@dataclass
class Result:
    name: str
    images: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def synthetic_jpegs(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [
        encode(draw_bin(rng.randint(0, 5), seed + i, size=ABID_LIKE_SIZES[i % len(ABID_LIKE_SIZES)]))
        for i in range(n)
    ]


def folder_images(folder: Path, n: int) -> list[bytes]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"--images {folder}: no .jpg/.png photos in it or below it")
    return [files[i % len(files)].read_bytes() for i in range(n)]


def timed(name: str, images: list[bytes], run: Callable[[list[bytes]], None], warmup: int) -> Result:
    run(images[:warmup])
    started = time.perf_counter()
    run(images)
    return Result(name, len(images), time.perf_counter() - started)


def settle_batchnorm(model: torch.nn.Module, steps: int = 3, batch: int = 8) -> torch.nn.Module:
    """Give an untrained network realistic batch-norm statistics.

    With default statistics (mean 0, variance 1) activations of a random ResNet-50 shrink into
    denormal floats, which the CPU handles 10-100x slower; trained weights never do that, so timing
    an untrained network as it comes would measure denormals, not the network.
    """
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the settling batches
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(batch, 3, 224, 224))
    return model.eval()


def seed_style_path(threads: int) -> Callable[[list[bytes]], None]:
    """The seed's serving: full-size Pillow decode, torchvision transforms, fp32 ResNet-50, one by one."""
    import torchvision.models as tvm
    from PIL import Image
    from torchvision import transforms

    model = tvm.resnet50(weights=None)
    model.fc = torch.nn.Linear(model.fc.in_features, 5)
    settle_batchnorm(model)
    transform = transforms.Compose(
        [
            transforms.Resize((224, 224)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )

    def run(images: list[bytes]) -> None:
        torch.set_num_threads(threads)
        for data in images:
            image = Image.open(io.BytesIO(data)).convert("RGB")
            with torch.no_grad():
                probabilities = torch.softmax(model(transform(image).unsqueeze(0)), dim=1)[0]
            json.dumps({"count": int(probabilities.argmax()), "probabilities": probabilities.tolist()})

    return run


def per_request_path(model: CountingModel) -> Callable[[list[bytes]], None]:
    def run(images: list[bytes]) -> None:
        for data in images:
            output_fn(predict_fn(input_fn(data, "image/jpeg"), model), "application/json")

    return run


def batched_path(model: CountingModel, batch: int) -> Callable[[list[bytes]], None]:
    def run(images: list[bytes]) -> None:
        for start in range(0, len(images), batch):
            inputs = [input_fn(data, "image/jpeg") for data in images[start : start + batch]]
            output_fn(predict_fn(inputs, model), "application/jsonlines")

    return run


def workers_path(models: list[CountingModel]) -> Callable[[list[bytes]], None]:
    """One request per image spread over single-threaded workers, as TorchServe runs one worker
    per vCPU and Batch Transform keeps ``MaxConcurrentTransforms`` requests in flight."""
    from concurrent.futures import ThreadPoolExecutor

    def run(images: list[bytes]) -> None:
        with ThreadPoolExecutor(len(models)) as pool:
            shards = [images[i :: len(models)] for i in range(len(models))]
            list(pool.map(lambda pair: per_request_path(pair[0])(pair[1]), zip(models, shards, strict=True)))

    return run


@dataclass(frozen=True)
class TorchServeSetting:
    """A serving plan and TorchServe's dynamic batching (``SAGEMAKER_TS_BATCH_SIZE``: the toolkit
    still calls the handlers once per photo, but the front end hands a worker several at once)."""

    plan: ServingPlan
    batch_size: int = 1
    max_batch_delay_ms: int = 5

    @property
    def in_flight(self) -> int:
        return self.plan.max_concurrent_transforms * self.batch_size

    @property
    def label(self) -> str:
        plan = self.plan
        text = f"{plan.workers} worker(s) x {plan.threads_per_worker} thread(s), {self.in_flight} in flight"
        return text + (f", batches of {self.batch_size}" if self.batch_size > 1 else "")

    def environment(self) -> dict[str, str]:
        if self.batch_size == 1:
            return {}
        workers = str(self.plan.workers)
        return {
            "SAGEMAKER_TS_BATCH_SIZE": str(self.batch_size),
            "SAGEMAKER_TS_MAX_BATCH_DELAY": str(self.max_batch_delay_ms),
            "SAGEMAKER_TS_MIN_WORKERS": workers,
            "SAGEMAKER_TS_MAX_WORKERS": workers,
        }


def torchserve_settings() -> list[TorchServeSetting]:
    """This machine's plan first, then the plan with batches of 4, then one worker using every
    core (the alternative the plan beat)."""
    plan = local_plan()
    cores = plan.workers * plan.threads_per_worker
    settings = [TorchServeSetting(plan), TorchServeSetting(plan, batch_size=4)]
    if plan.workers > 1:
        settings.append(
            TorchServeSetting(ServingPlan(workers=1, threads_per_worker=cores, max_concurrent_transforms=1))
        )
    return settings


def torchserve_rows(
    artifacts: list[tuple[str, Path]], workdir: Path, images: list[bytes], warmup: int, rounds: int
) -> list[Result]:
    """Each artifact through TorchServe, one photo per request, per setting; [] where it cannot run.

    Artifacts take turns under each setting, and the plan's setting is measured ``rounds`` times,
    so that both see the same load on a shared machine; a row adds up all its rounds.
    """
    from local.emulator.torchserve_server import torchserve_unavailable

    reason = torchserve_unavailable()
    if reason:
        print(f"  TorchServe rows skipped: {reason}", flush=True)
        return []
    model_dirs = {
        label: unpack_artifact(path, workdir / f"torchserve-{i}") for i, (label, path) in enumerate(artifacts)
    }
    totals: dict[str, Result] = {}
    for round_ in range(rounds):
        for setting in torchserve_settings()[: None if round_ == 0 else 1]:
            for label, model_dir in model_dirs.items():
                name = f"TorchServe, {label}, {setting.label}"
                try:
                    row = torchserve_row(name, model_dir, setting, images, max(warmup, 2 * setting.in_flight))
                except RuntimeError as error:  # e.g. another TorchServe started meanwhile (one per machine)
                    print(f"  round {round_ + 1}: {name}: skipped ({error})", flush=True)
                    continue
                print(f"  round {round_ + 1}: {row.name}: {row.rate:.1f} img/s", flush=True)
                total = totals.setdefault(name, Result(name, 0, 0.0))
                total.images += row.images
                total.seconds += row.seconds
    return list(totals.values())


def torchserve_row(
    name: str, model_dir: Path, setting: TorchServeSetting, images: list[bytes], warmup: int
) -> Result:
    """One TorchServe on ``model_dir`` with ``setting``; photos sent with its requests in flight."""
    from concurrent.futures import ThreadPoolExecutor

    from common.invocations import http_invoker
    from local.emulator.torchserve_server import torchserve_process

    plan = setting.plan
    with torchserve_process(
        model_dir, workers=plan.workers, threads=plan.threads_per_worker, extra_env=setting.environment()
    ) as url:
        invoke = http_invoker(url)

        def send(data: bytes) -> None:
            status, body = invoke(data, "application/x-image", "application/json", 60.0)
            if status != 200 or b'"count"' not in body:
                raise RuntimeError(f"TorchServe answered {status}: {body[:200]!r}")

        def run(batch: list[bytes]) -> None:
            with ThreadPoolExecutor(setting.in_flight) as pool:
                list(pool.map(send, batch))

        return timed(name, images, run, warmup)


def check_arguments(args: argparse.Namespace) -> None:
    """Paths and numbers checked before any model loads: one line for each mistake."""
    if not args.model.is_file():
        raise UsageError(
            f"--model {args.model}: no such file; pack one with "
            f"`python -m model.package --onnx --out {args.model}`"
        )
    if args.sagemaker_model is not None and not args.sagemaker_model.is_file():
        raise UsageError(
            f"--sagemaker-model {args.sagemaker_model}: no such file; pack one with "
            f"`python -m model.package --out {args.sagemaker_model}`"
        )
    if args.images is not None and not args.images.is_dir():
        raise UsageError(f"--images {args.images}: not a folder (give a folder of .jpg/.png photos)")
    for flag, value in (
        ("--count", args.count),
        ("--seed-count", args.seed_count),
        ("--batch", args.batch),
        ("--threads", args.threads),
        ("--rounds", args.rounds),
    ):
        if value < 1:
            raise UsageError(f"{flag} {value}: give a whole number above 0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.bench.serving_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, required=True, help="model.tar.gz to serve")
    parser.add_argument("--images", type=Path, help="folder of photos (default: generated ABID-size JPEGs)")
    parser.add_argument("--count", type=int, default=96, help="images per path (default 96)")
    parser.add_argument("--seed-count", type=int, default=48, help="images for the slow seed-style path")
    parser.add_argument("--batch", type=int, default=16, help="list size for the batched rows")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--no-resnet", action="store_true", help="skip ResNet-50 through our path")
    parser.add_argument(
        "--sagemaker-model", type=Path, help="the artifact SageMaker serves (make model), through TorchServe"
    )
    parser.add_argument(
        "--no-in-process", action="store_true", help="only the seed-style and TorchServe rows"
    )
    parser.add_argument("--no-torchserve", action="store_true", help="skip the rows through TorchServe")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="turns of the artifacts through TorchServe with this machine's plan",
    )
    return parser


def report_rows(results: list[Result]) -> None:
    for result in results:
        print(f"  {result.name}: {result.rate:.1f} img/s", flush=True)


def artifact_rows(args: argparse.Namespace, model_dir: Path, images: list[bytes]) -> list[Result]:
    """The artifact through our handlers with each runtime: per request, in lists, and (ONNX
    Runtime with several threads) as single-threaded workers."""
    settings = replace(SETTINGS, threads=args.threads)
    warmup = min(4, len(images))
    results: list[Result] = []
    for runtime in ("auto", "torchscript"):
        model = load_model(model_dir, replace(settings, runtime=runtime))
        label = f"ours {model.config.arch} [{model.runtime.name}]"
        rows = [
            timed(f"{label}, 1 per request", images, per_request_path(model), warmup),
            timed(f"{label}, lists of {args.batch}", images, batched_path(model, args.batch), args.batch),
        ]
        if runtime == "auto" and model.runtime.name.startswith("onnxruntime") and args.threads > 1:
            single = [load_model(model_dir, replace(settings, threads=1)) for _ in range(args.threads)]
            name = f"{label}, 1 per request, {args.threads} workers x 1 thread"
            rows.append(timed(name, images, workers_path(single), warmup))
        report_rows(rows)
        results.extend(rows)
    return results


def resnet_rows(args: argparse.Namespace, workdir: Path, images: list[bytes]) -> list[Result]:
    """ResNet-50 (settled batch norm) packed by ``model.package`` through the same handlers."""
    config = ModelConfig.for_arch("resnet50", num_classes=5, version="bench-resnet50")
    network = settle_batchnorm(build_model(config))
    artifact = package_model(workdir / "resnet50.tar.gz", network.state_dict(), config, onnx=True)
    model = load_model(
        unpack_artifact(artifact, workdir / "resnet50"), replace(SETTINGS, threads=args.threads)
    )
    label = f"ours resnet50 [{model.runtime.name}]"
    resnet_images = images[: max(args.seed_count, 2 * args.batch)]
    warmup = min(4, len(images))
    return [
        timed(f"{label}, 1 per request", resnet_images, per_request_path(model), warmup),
        timed(f"{label}, lists of {args.batch}", resnet_images, batched_path(model, args.batch), warmup),
    ]


def print_table(results: list[Result], threads: int) -> None:
    """The markdown table (``x seed-style`` against the first row) and the ratios against the targets."""
    seed = results[0].rate
    cpu = platform.processor() or platform.machine()
    print(f"\n{os.cpu_count()} CPUs ({cpu}), torch {torch.__version__}, Python {platform.python_version()}")
    print("| path | images | img/s | x seed-style |\n|---|---:|---:|---:|")
    for result in results:
        print(f"| {result.name} | {result.images} | {result.rate:.1f} | {result.rate / seed:.2f}x |")
    served = [r for r in results if r.name.startswith("TorchServe")]
    if served:
        print(
            "\nthrough TorchServe, one photo per request (targets: >= 8x seed-style, SageMaker within 10 %):"
        )
        for setting in sorted({r.name.split(", ", 2)[2] for r in served}, key=served_order(served)):
            rows = {r.name.split(", ")[1]: r for r in served if r.name.endswith(setting)}
            sagemaker, onnx = rows.get("SageMaker artifact"), rows.get("local artifact")
            if sagemaker and onnx:
                print(
                    f"  {setting}: SageMaker artifact {sagemaker.rate / seed:.1f}x seed-style, "
                    f"{sagemaker.rate / onnx.rate:.2f}x the ONNX Runtime artifact"
                )
    in_process = [r for r in results[1:] if not r.name.startswith("TorchServe")]
    if not in_process:
        return
    default = in_process[0]
    print(f"\ndefault serving path, 1 per request: {default.rate / seed:.1f}x seed-style (target >= 8x)")
    workers = [r for r in results if "workers x 1 thread" in r.name]
    if workers:
        ratio = workers[0].rate / seed
        print(f"  as TorchServe runs it ({threads} workers x 1 thread): {ratio:.1f}x seed-style")
    resnet = [r for r in results if "resnet50 [" in r.name]
    if resnet:
        print(
            f"ResNet-50 through our path, 1 per request: {resnet[0].rate / seed:.1f}x seed-style "
            "(target >= 1.5x)"
        )


def served_order(served: list[Result]) -> Callable[[str], int]:
    names = [r.name for r in served]
    return lambda setting: next(i for i, name in enumerate(names) if name.endswith(setting))


@one_line_errors("local.bench.serving_bench")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_arguments(args)
    images = folder_images(args.images, args.count) if args.images else synthetic_jpegs(args.count)
    print(
        f"{len(images)} images, median {statistics.median(len(i) for i in images) / 1e3:.0f} kB; "
        f"{args.threads} threads; torch {torch.__version__}",
        flush=True,
    )
    seed_images = images[: args.seed_count]
    results = [
        timed("seed-style (Pillow, fp32 ResNet-50, 1 by 1)", seed_images, seed_style_path(args.threads), 2)
    ]
    report_rows(results)
    with tempfile.TemporaryDirectory(prefix="bincount-bench-") as tmp:
        if not args.no_torchserve:
            artifacts = [("SageMaker artifact", args.sagemaker_model)] if args.sagemaker_model else []
            artifacts.append(("local artifact", args.model))
            results += torchserve_rows(artifacts, Path(tmp), images, warmup=4, rounds=args.rounds)
        if not args.no_in_process:
            # the artifact SageMaker serves when given: its handlers are the production path
            in_process = args.sagemaker_model or args.model
            print(f"  in process: {in_process}", flush=True)
            results += artifact_rows(args, unpack_artifact(in_process, Path(tmp) / "default"), images)
            if not args.no_resnet:
                results += resnet_rows(args, Path(tmp), images)
    print_table(results, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
