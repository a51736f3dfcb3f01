"""Which files a command works on, what they are, and the ingest keys they are uploaded under.

Pure functions (plus reading files): expanding folders, telling an image from a text file by its
first bytes, and building keys in the layout the pipeline parses (functions/bincount/uploads.py:
``<prefix><bin_id>/<capture time>-<name>.<ext>``, the capture time a compact UTC timestamp the
key pattern reads back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bincount.image_formats import IMAGE_SUFFIXES as DEFAULT_IMAGE_SUFFIXES
from bincount.timefmt import canonical_time
from bincount.uploads import KeyRules, bin_and_capture_time

from cli.errors import UsageError

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
    """The ingest key for one photo; checked to parse back to the same bin and capture time."""
    stem, suffix = Path(file_name).stem, Path(file_name).suffix.lower()
    name = SAFE_NAME.sub("-", stem).strip("-") or "photo"
    key = f"{prefix}{bin_id}/{compact_time(captured_at)}-{name}{suffix}"
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
