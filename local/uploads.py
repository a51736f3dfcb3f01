"""What the demo and the benchmark put into the ingest bucket, in the template's key layout.

Keys follow ``<ingest prefix><bin id>/<name>.<ext>`` (the batcher's default key pattern).
Generated runs add a few deliberately bad uploads (a corrupt JPEG, an empty file) and upload
one photo twice, so the report shows error records and at-least-once delivery being absorbed.
"""

from __future__ import annotations

import csv
import mimetypes
from pathlib import Path

from bincount.image_formats import IMAGE_SUFFIXES

from local.report import Upload
from local.synthetic import generate


def synthetic_uploads(
    count: int, prefix: str, seed: int = 0, bad: bool = True, photos_per_bin: int = 2
) -> list[Upload]:
    """``count`` generated photos over ``count / photos_per_bin`` bins, plus bad and duplicate uploads."""
    uploads = []
    for index, photo in enumerate(generate(count, seed=seed)):
        bin_id = f"BIN-{index // photos_per_bin + 1:04d}"
        uploads.append(Upload(f"{prefix}{bin_id}/{photo.name}.jpg", bin_id, photo.jpeg, expected=photo.count))
    if bad and uploads:
        good = uploads[0].body
        uploads.append(
            Upload(
                f"{prefix}BIN-BAD1/truncated.jpg",
                "BIN-BAD1",
                good[: len(good) // 3][:200],
                note="corrupt JPEG",
            )
        )
        uploads.append(Upload(f"{prefix}BIN-BAD2/empty.jpg", "BIN-BAD2", b"", note="empty file"))
        uploads.append(
            Upload(f"{prefix}BIN-BAD3/not-a-photo.png", "BIN-BAD3", b"hello, bin", "image/png", note="text")
        )
        uploads.append(uploads[0])  # the same object uploaded twice: one record expected
    return uploads


def read_labels(images_dir: Path) -> dict[str, int]:
    """Known counts from ``labels.csv`` (``image,count``) in the folder or beside it, by file name."""
    for candidate in (images_dir / "labels.csv", images_dir.parent / "labels.csv"):
        if candidate.is_file():
            with candidate.open(newline="", encoding="utf-8") as handle:
                return {
                    Path(row["image"]).name: int(row["count"])
                    for row in csv.DictReader(handle)
                    if row.get("count")
                }
    return {}


def folder_uploads(images_dir: Path, prefix: str, count: int | None = None) -> list[Upload]:
    """Your own photos; each file is its own bin (as in ABID, one photo per bin id)."""
    labels = read_labels(images_dir)
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} files in {images_dir}")
    uploads = []
    for path in files[:count] if count else files:
        bin_id = path.stem
        content_type = mimetypes.guess_type(path.name)[0] or "application/x-image"
        uploads.append(
            Upload(
                f"{prefix}{bin_id}/{path.name}",
                bin_id,
                path.read_bytes(),
                content_type,
                labels.get(path.name),
            )
        )
    return uploads
