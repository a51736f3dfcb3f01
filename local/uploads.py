"""What the demo and the benchmark put into the ingest bucket, in the template's key layout.

Keys follow ``<ingest prefix><bin id>/<name>.<ext>`` (the batcher's default key pattern).
Generated runs add a few deliberately bad uploads (a corrupt JPEG, an empty file) and upload
one photo twice, so the report shows error records and at-least-once delivery being absorbed.

Your own photos (``make demo IMAGES=...``) are found by :func:`find_photos` before anything
starts, so a wrong path costs one line, not a server start-up: a single photo, a flat folder
(each photo its own bin, as in ABID) or ``<bin>/<photo>`` subfolders (the bin taken from the
folder, as in the S3 key). The layouts are `bincount upload`'s too: cli/photos.py defines them.
"""

from __future__ import annotations

from pathlib import Path

from bincount.image_formats import IMAGE_SUFFIXES, content_type_for

from cli.photos import LAYOUTS, BinPhoto, find_bin_photos
from local.report import Upload
from local.synthetic import generate

Photo = BinPhoto  # one of your photos, found on disk before anything starts
WHAT_WORKS = f"give {LAYOUTS} ({'/'.join(IMAGE_SUFFIXES)}), or leave IMAGES empty for generated photos"


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


def find_photos(images: Path, limit: int | None = None) -> list[Photo]:
    """The photos behind ``IMAGES`` (cli.photos.find_bin_photos: the layouts `bincount upload`
    takes too, labels.csv found beside them); :class:`UsageError` (one line) when there are none."""
    return find_bin_photos(images, f"IMAGES={images}", WHAT_WORKS, limit)


def photo_uploads(photos: list[Photo], prefix: str) -> list[Upload]:
    """The S3 uploads for photos found by :func:`find_photos`, under ``<prefix><bin>/<name>``."""
    return [
        Upload(
            f"{prefix}{photo.bin_id}/{photo.path.name}",
            photo.bin_id,
            photo.path.read_bytes(),
            content_type_for(photo.path.name),
            photo.expected,
        )
        for photo in photos
    ]
