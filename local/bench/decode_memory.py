"""Peak memory of decoding the worst image each upload may be: ``python -m local.bench.decode_memory``.

For every format and mode the serving handlers decode, the largest image the decode limits
accept (model.preprocess.DecodeLimits: a square at the mode's pixel limit; for JPEG also the
long strip no DCT scaling can reduce) is generated once, then decoded and resized to the
network's input in a fresh process per case, with the serving processes' malloc settings.
Each line reports the peak resident memory above the process's resident memory just before the
decode (VmHWM, reset just before: everything, Pillow's and torch's allocations included; Linux
only), what stays resident
after it, and the time. The table in docs/model.md ("Memory per request") comes from here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    name: str
    format: str  # "JPEG" or "PNG"
    mode: str  # Pillow mode of the file
    size: tuple[int, int]
    transparency: bool = False


def worst_cases(scale: float = 1.0) -> list[Case]:
    """The largest accepted image of each kind (``scale`` < 1 for a quick look)."""
    from PIL import Image

    from model.preprocess import DEFAULT_LIMITS as limits

    def square(mode: str, format_: str, transparency: bool = False) -> tuple[int, int]:
        header = Image.new(mode if mode != "I;16" else "I;16", (1, 1))
        header.format = format_
        if transparency:
            header.info["transparency"] = 0
        side = math.isqrt(int(limits.pixel_limit(header) * scale))
        return (side, side)

    narrow = max(1, limits.reduce_min_side * 2 - 1)  # too narrow for any DCT scaling
    strip = (narrow, min(limits.max_side, int(limits.max_pixels * scale) // narrow))
    return [
        Case("JPEG RGB", "JPEG", "RGB", square("RGB", "JPEG")),
        Case("JPEG RGB strip", "JPEG", "RGB", strip),
        Case("JPEG grey", "JPEG", "L", square("L", "JPEG")),
        Case("JPEG CMYK", "JPEG", "CMYK", square("CMYK", "JPEG")),
        Case("JPEG CMYK strip", "JPEG", "CMYK", strip),
        Case("PNG RGB", "PNG", "RGB", square("RGB", "PNG")),
        Case("PNG RGBA", "PNG", "RGBA", square("RGBA", "PNG")),
        Case("PNG grey", "PNG", "L", square("L", "PNG")),
        Case("PNG grey+alpha", "PNG", "LA", square("LA", "PNG")),
        Case("PNG 16-bit grey", "PNG", "I;16", square("I;16", "PNG")),
        Case("PNG palette", "PNG", "P", square("P", "PNG")),
        Case("PNG palette+transparency", "PNG", "P", square("P", "PNG", True), transparency=True),
    ]


def write_case(case: Case, folder: Path) -> Path:
    """A compressible picture (a gradient) of the case's size, format and mode."""
    import numpy as np
    from PIL import Image

    width, height = case.size
    grey = Image.linear_gradient("L").resize((width, height))
    if case.mode == "I;16":
        image = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
    elif case.mode == "P":
        image = grey.convert("P")
    else:
        image = grey.convert(case.mode)
    grey.close()
    path = folder / f"{case.name.replace(' ', '_').replace('+', '_')}.{case.format.lower()}"
    options = {"transparency": 0} if case.transparency else {}
    image.save(path, case.format, **({"quality": 90} if case.format == "JPEG" else options))
    return path


def measure_one(path: Path) -> dict[str, object]:
    """Decode + resize ``path`` once in this process; memory in MiB above what was resident before."""
    import gc
    import time

    import psutil

    from model.config import ModelConfig
    from model.preprocess import decode_image, resize_for_model

    data = path.read_bytes()
    config = ModelConfig(arch="efficientnet_lite0", num_classes=6)
    process = psutil.Process()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak so far (imports) is not the decode's
    before = process.memory_info().rss
    started = time.perf_counter()
    error = None
    try:
        resize_for_model(decode_image(data), config)
    except Exception as exc:  # reported, not raised: the table shows refusals too
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    peak = peak_resident_bytes()
    gc.collect()
    after = process.memory_info().rss
    return {
        "peak_mib": round((peak - before) / 2**20),
        "after_mib": round((after - before) / 2**20),
        "seconds": round(seconds, 2),
        "error": error,
    }


def peak_resident_bytes() -> int:
    """The process's peak resident memory since the last reset (VmHWM, Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: Linux only")


def measure(path: Path) -> dict[str, object]:
    """:func:`measure_one` in a fresh process, with the serving processes' environment."""
    from common.malloc import with_malloc_env

    env = {
        **with_malloc_env(os.environ),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "functions")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "local.bench.decode_memory", "--one", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each limit (quick runs)")
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure_one(args.one)))
        return 0
    from model.preprocess import DEFAULT_LIMITS

    budget = DEFAULT_LIMITS.max_decode_bytes // 2**20
    print(f"| image | size | MP | peak MiB (budget {budget}) | resident after, MiB | s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="decode-memory-") as folder:
        for case in worst_cases(args.scale):
            path = write_case(case, Path(folder))
            result = measure(path)
            path.unlink()
            width, height = case.size
            peak = result["peak_mib"] if not result["error"] else f"refused: {result['error']}"
            print(
                f"| {case.name} | {width}x{height} | {width * height / 1e6:.1f} | {peak} "
                f"| {result['after_mib']} | {result['seconds']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
