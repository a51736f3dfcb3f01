"""What the demo and the benchmark put into the ingest bucket, in the template's key layout.

Keys follow ``<ingest prefix><bin id>/<name>.<ext>`` (the batcher's default key pattern).
Generated runs add a few deliberately bad uploads (a corrupt JPEG, an empty file) and upload
one photo twice, so the report shows error records and at-least-once delivery being absorbed.

Your own photos (``make demo IMAGES=...``) are found by :func:`find_photos` before anything
starts, so a wrong path costs one line, not a server start-up: a single photo, a flat folder
(each photo its own bin, as in ABID) or ``<bin>/<photo>`` subfolders (the bin taken from the
folder, as in the S3 key).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from bincount.image_formats import IMAGE_SUFFIXES, content_type_for

from cli.errors import UsageError
from local.report import Upload
from local.synthetic import generate

LABELS_FILE = "labels.csv"
WHAT_WORKS = (
    "give a photo, a folder of photos, or a folder of <bin>/<photo> subfolders "
    f"({'/'.join(IMAGE_SUFFIXES)}), or leave IMAGES empty for generated photos"
)


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


@dataclass(frozen=True)
class Photo:
    """One of your photos, found on disk before anything starts."""

    path: Path
    bin_id: str
    expected: int | None = None


def _is_photo(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _labels_near(where: Path) -> dict[Path, int]:
    """Known counts from ``labels.csv`` (``image,count``; ``image`` relative to the CSV's folder)."""
    for folder in (where, where.parent):
        candidate = folder / LABELS_FILE
        if not candidate.is_file():
            continue
        try:
            with candidate.open(newline="", encoding="utf-8") as handle:
                return {
                    (folder / row["image"]).resolve(): int(row["count"])
                    for row in csv.DictReader(handle)
                    if row.get("image") and row.get("count")
                }
        except (KeyError, ValueError) as error:
            raise UsageError(
                f"{candidate} is not a labels file ({error}): it needs the columns image,count "
                "with whole-number counts"
            ) from error
    return {}


def _expected(labels: dict[Path, int], path: Path) -> int | None:
    """The label of ``path``: by its place relative to labels.csv, else by file name alone."""
    resolved = path.resolve()
    if resolved in labels:
        return labels[resolved]
    by_name = {count for labelled, count in labels.items() if labelled.name == path.name}
    return by_name.pop() if len(by_name) == 1 else None


def find_photos(images: Path, limit: int | None = None) -> list[Photo]:
    """The photos behind ``IMAGES``; :class:`UsageError` (one line) when there are none to upload."""
    if not images.exists():
        raise UsageError(f"IMAGES={images}: no such file or folder; {WHAT_WORKS}")
    if images.is_file():
        if not _is_photo(images):
            raise UsageError(f"IMAGES={images} is not a photo; {WHAT_WORKS}")
        return [Photo(images, images.stem, _expected(_labels_near(images.parent), images))]
    flat = sorted(p for p in images.iterdir() if _is_photo(p))
    nested = sorted(p for sub in images.iterdir() if sub.is_dir() for p in sub.iterdir() if _is_photo(p))
    if not flat and not nested:
        what = "is empty" if not any(images.iterdir()) else "holds no photos (nor do its subfolders)"
        raise UsageError(f"IMAGES={images} {what}; {WHAT_WORKS}")
    labels = _labels_near(images)
    photos = [Photo(p, p.stem, _expected(labels, p)) for p in flat]
    photos += [Photo(p, p.parent.name, _expected(labels, p)) for p in nested]
    return photos[:limit] if limit else photos


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
