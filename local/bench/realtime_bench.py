"""``make bench-realtime``: one photo at a time through the local real-time endpoint vs in process.

What an operator waits for when counting one photo on request (``bincount count --endpoint
local`` vs ``bincount count``): per-photo latency (p50, p95) and photos/s, one request after the
other, the same photos through both paths in one run. The endpoint is the model server
``make up`` starts (the container's ``POST /invocations`` contract, our handlers behind it);
in process is ``code/inference.py``'s ``input_fn -> predict_fn -> output_fn`` called directly.
Both use the same number of torch threads. This is a benchmark, not a test: numbers depend on
the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from common.stack_state import REPO_ROOT
from local.emulator.serving_server import extract_model, serving_process
from local.emulator.torchserve_server import torchserve_process

SHARED_IMAGES = REPO_ROOT.parent / "shared" / "abid" / "images"


@dataclass(frozen=True)
class Latency:
    path: str
    photos: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    photos_per_s: float


def summarise(path: str, seconds: list[float]) -> Latency:
    """p50/p95/mean of per-photo latencies; photos/s over their sum (one request at a time)."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive") if len(seconds) > 1 else seconds * 99
    return Latency(
        path=path,
        photos=len(seconds),
        p50_ms=round(cuts[49] * 1000, 1),
        p95_ms=round(cuts[94] * 1000, 1),
        mean_ms=round(statistics.fmean(seconds) * 1000, 1),
        photos_per_s=round(len(seconds) / sum(seconds), 2),
    )


def one_at_a_time(
    count_one: Callable[[bytes], dict[str, object]], photos: list[bytes], warmup: int
) -> list[float]:
    """Latency of each photo, after ``warmup`` untimed ones; every answer must be a count."""
    for body in photos[:warmup]:
        count_one(body)
    seconds = []
    for body in photos:
        started = time.perf_counter()
        record = count_one(body)
        seconds.append(time.perf_counter() - started)
        if "count" not in record:
            raise SystemExit(f"the benchmark photo was not counted: {record}")
    return seconds


@contextlib.contextmanager
def endpoint(artifact: Path, server: str, threads: int, log_dir: Path) -> Iterator[str]:
    """The model server `make up` runs, started from ``artifact`` for this run; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        model_dir = extract_model(artifact, Path(tmp))
        log_dir.mkdir(parents=True, exist_ok=True)
        if server == "torchserve":
            serving = torchserve_process(model_dir, workers=1, log_path=log_dir / "torchserve.log")
        else:
            serving = serving_process(model_dir, threads, log_dir / "serving.log")
        with serving as url:
            yield url


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "build/model/model.tar.gz")
    parser.add_argument(
        "--images", type=Path, help=f"photos (default: {SHARED_IMAGES} if present, else generated)"
    )
    parser.add_argument("--count", type=int, default=52, help="photos timed per path")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both paths")
    parser.add_argument("--server", choices=("python", "torchserve"), default="python")
    parser.add_argument("--url", help="time an endpoint already up (e.g. make up's) instead of starting one")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build/bench/realtime.json")
    return parser.parse_args(argv)


def load_photos(args: argparse.Namespace) -> tuple[list[bytes], str]:
    from local.bench.serving_bench import folder_images, synthetic_jpegs

    folder = args.images or (SHARED_IMAGES if SHARED_IMAGES.is_dir() else None)
    if folder is not None:
        if not folder.is_dir():
            raise SystemExit(f"bench-realtime: error: --images {folder} is not a folder")
        return folder_images(folder, args.count), str(folder)
    return synthetic_jpegs(args.count), "generated photos"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        print(f"bench-realtime: error: {args.model} is missing: run `make model`", file=sys.stderr)
        return 2
    if args.count < 2 or args.threads < 1:
        print("bench-realtime: error: --count must be >= 2 and --threads >= 1", file=sys.stderr)
        return 2
    from cli.counting import HttpEndpointCounter, InProcessCounter, Photo

    photos, source = load_photos(args)

    def as_one(counter: HttpEndpointCounter | InProcessCounter) -> Callable[[bytes], dict[str, object]]:
        return lambda body: counter.count([Photo("bench.jpg", body, "image/jpeg")])[0]

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(
            endpoint(args.model, args.server, args.threads, args.out.parent)
        )
        remote = one_at_a_time(as_one(HttpEndpointCounter(url)), photos, args.warmup)
    local = one_at_a_time(as_one(InProcessCounter(args.model, args.threads, batch=1)), photos, args.warmup)
    results = [
        summarise(f"local endpoint ({'given URL' if args.url else args.server} server, HTTP)", remote),
        summarise("in process (same handlers)", local),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"photos": source, "threads": args.threads, "results": [asdict(r) for r in results]}, indent=2
        )
    )
    print(f"{len(photos)} photos from {source}, one at a time, {args.threads} torch threads\n")
    print(f"{'path':<48} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'photos/s':>9}")
    for r in results:
        print(f"{r.path:<48} {r.p50_ms:>8} {r.p95_ms:>8} {r.mean_ms:>8} {r.photos_per_s:>9}")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
