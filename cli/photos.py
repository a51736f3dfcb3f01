"""Which files a command works on, what they are, and the ingest keys they are uploaded under.

Pure functions (plus reading files): expanding folders, telling an image from a text file by its
first bytes, and building keys in the layout the pipeline parses (functions/bincount/uploads.py:
``<prefix><bin_id>/<capture time>-<name>.<ext>``, the capture time a compact UTC timestamp the
key pattern reads back, taken from the file's name when it starts with one).

The bin layouts are one definition for `bincount upload` and `make demo IMAGES=`
(:func:`find_bin_photos`): a photo is its own bin (named after the file), so is each photo of a
flat folder (as in ABID), and ``<bin>/<photo>`` subfolders name the bin. Known counts come from a
``labels.csv`` (``image,count``, ``image`` relative to the CSV's folder), the form ABID and
`bincount export-labels` use.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bincount.image_formats import IMAGE_SUFFIXES as DEFAULT_IMAGE_SUFFIXES
from bincount.timefmt import canonical_time
from bincount.uploads import KeyRules, bin_and_capture_time

from common.errors import UsageError

LABELS_FILE = "labels.csv"
LAYOUTS = "a photo, a folder of photos (each its own bin), or a folder of <bin>/<photo> subfolders"
SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
BIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass
class Selection:
    """Files named on the command line: found ones, missing ones, and folder entries left out."""

    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # non-image files inside a named folder


def select_photos(arguments: list[str], suffixes: tuple[str, ...] = DEFAULT_IMAGE_SUFFIXES) -> Selection:
    """Files as given (a named file is always taken) and a folder's image files, in name order."""
    selection = Selection()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            for entry in sorted(path.iterdir()):
                if entry.is_file() and entry.suffix.lower() in suffixes:
                    selection.files.append(entry)
                elif entry.is_file():
                    selection.skipped.append(entry)
        elif path.is_file():
            selection.files.append(path)
        else:
            selection.missing.append(argument)
    return selection


def sniff_image(head: bytes) -> str | None:
    """``image/jpeg`` / ``image/png`` from a file's first bytes, None for anything else."""
    return next((kind for signature, kind in SIGNATURES.items() if head.startswith(signature)), None)


def check_bin_id(bin_id: str) -> str:
    if not BIN_ID.match(bin_id):
        raise UsageError(
            f"--bin {bin_id!r} is not a bin id: letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit, at most 128 characters"
        )
    return bin_id


def compact_time(moment: datetime) -> str:
    """``20261126T101500Z``: the capture-time form the key pattern recognises at a name's start."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def upload_key(prefix: str, bin_id: str, captured_at: datetime, file_name: str) -> str:
    """The ingest key for one photo; checked to parse back to the same bin and capture time.
    A name that already starts with this capture time keeps it once (``20261126T101500Z-cam1``)."""
    stem, suffix = Path(file_name).stem, Path(file_name).suffix.lower()
    name = SAFE_NAME.sub("-", stem).strip("-") or "photo"
    stamp = compact_time(captured_at)
    name = name.removeprefix(stamp).lstrip("-") or "photo"
    key = f"{prefix}{bin_id}/{stamp}-{name}{suffix}"
    parsed_bin, parsed_time = bin_and_capture_time(key, KeyRules(prefix=prefix))
    if parsed_bin != bin_id or parsed_time != canonical_time(compact_time(captured_at)):
        raise UsageError(f"key {key} would not read back as bin {bin_id}: pick another bin id or file name")
    return key


def parse_capture_time(text: str) -> datetime:
    """``--captured-at``: ISO 8601 (UTC unless an offset is given) or a compact timestamp."""
    from bincount.timefmt import parse_time

    try:
        return parse_time(text)
    except ValueError as error:
        raise UsageError(f"--captured-at {text!r} is not a time (e.g. 2026-11-26T10:15:00Z)") from error


def file_time(path: Path) -> datetime:
    """When the photo was taken, as far as the file says: its modification time."""
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def checked_photos(arguments: list[str], metavar: str) -> list[Path]:
    """The photos named on a command line, every one read as JPEG or PNG by its first bytes; else
    one :class:`UsageError` naming the argument (``metavar``) and what is wrong, before any work
    (a text file is refused before a model loads or anything is uploaded)."""
    selection = select_photos(arguments)
    if selection.missing:
        raise UsageError(f"{metavar} {', '.join(selection.missing)}: no such file or folder")
    if not selection.files:
        raise UsageError(f"{metavar} {', '.join(arguments)}: no .jpg/.jpeg/.png photos in it")
    not_images = [str(path) for path in selection.files if not is_image_file(path)]
    if not_images:
        shown = ", ".join(not_images[:5]) + (
            f" and {len(not_images) - 5} more" if len(not_images) > 5 else ""
        )
        raise UsageError(f"{metavar} {shown}: not a JPEG or PNG photo (give photos or folders of them)")
    return selection.files


def is_image_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return sniff_image(handle.read(16)) is not None
    except OSError:
        return True  # unreadable: the command's own error record says why


# -- bins of photos on disk (the demo's and `bincount upload`'s layouts) --------------------------


@dataclass(frozen=True)
class BinPhoto:
    """A photo on disk, the bin it shows and its known count (from a labels file), if any."""

    path: Path
    bin_id: str
    expected: int | None = None


def is_photo_name(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in DEFAULT_IMAGE_SUFFIXES and not path.name.startswith(".")


def read_labels(path: Path) -> dict[Path, int]:
    """Known counts from a labels file (``image,count``; ``image`` relative to the file's folder)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return {
                (path.parent / row["image"]).resolve(): int(row["count"])
                for row in csv.DictReader(handle)
                if row.get("image") and row.get("count")
            }
    except (KeyError, ValueError) as error:
        raise UsageError(
            f"{path} is not a labels file ({error}): it needs the columns image,count "
            "with whole-number counts"
        ) from error
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from error


def labels_near(where: Path) -> dict[Path, int]:
    """``labels.csv`` in ``where`` or its parent (the ABID layout: images/ beside labels.csv)."""
    for folder in (where, where.parent):
        candidate = folder / LABELS_FILE
        if candidate.is_file():
            return read_labels(candidate)
    return {}


def expected_of(labels: dict[Path, int], path: Path) -> int | None:
    """The label of ``path``: by its place relative to the labels file, else by file name alone
    (when exactly one labelled photo has that name)."""
    resolved = path.resolve()
    if resolved in labels:
        return labels[resolved]
    by_name = {count for labelled, count in labels.items() if labelled.name == path.name}
    return by_name.pop() if len(by_name) == 1 else None


def find_bin_photos(
    images: Path, named: str, works: str, limit: int | None = None, labels: dict[Path, int] | None = None
) -> list[BinPhoto]:
    """The photos behind one path and their bins; ``labels`` None: a labels.csv found beside them.

    ``named`` is how the message calls the path (``IMAGES=x``, ``DIR_OR_PHOTO x``), ``works`` what
    would work; :class:`UsageError` (one line) when there is no photo to take.
    """
    if not images.exists():
        raise UsageError(f"{named}: no such file or folder; {works}")
    if images.is_file():
        if not is_photo_name(images):
            raise UsageError(f"{named} is not a photo; {works}")
        known = labels_near(images.parent) if labels is None else labels
        return [BinPhoto(images, images.stem, expected_of(known, images))]
    flat = sorted(p for p in images.iterdir() if is_photo_name(p))
    nested = sorted(p for sub in images.iterdir() if sub.is_dir() for p in sub.iterdir() if is_photo_name(p))
    if not flat and not nested:
        what = "is empty" if not any(images.iterdir()) else "holds no photos (nor do its subfolders)"
        raise UsageError(f"{named} {what}; {works}")
    known = labels_near(images) if labels is None else labels
    photos = [BinPhoto(p, p.stem, expected_of(known, p)) for p in flat]
    photos += [BinPhoto(p, p.parent.name, expected_of(known, p)) for p in nested]
    return photos[:limit] if limit else photos


def name_time(file_name: str) -> datetime | None:
    """The capture time a file's name starts with (``20261126T101500Z-cam1.jpg``, the key layout's
    form), None when it has none; a stamp that is no date is a :class:`UsageError`."""
    from bincount.timefmt import parse_time

    try:
        _, text = bin_and_capture_time(f"bin/{file_name}", KeyRules(prefix=""))
    except ValueError as error:
        raise UsageError(f"{file_name}: its name starts with a time that is no date ({error})") from error
    return parse_time(text) if text else None
