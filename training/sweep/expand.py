"""On the GPU machine: turn the carried WebP pack back into ``<dir>/images/<count>/<id>.jpg``.

Standalone (Pillow only) so it runs before anything of the project is importable there.
"""

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image


def main(source: Path, target: Path) -> None:
    files = sorted(source.glob("images/*/*.webp"))

    def one(path: Path) -> None:
        out = target / path.relative_to(source).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").save(out, "JPEG", quality=95)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, files))
    shutil.copy(source / "labels.csv", target / "labels.csv")
    print("expanded", len(files))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
