"""``bincount export-labels OUT_DIR``: the photos people reviewed, as a training set.

Writes OUT_DIR/images/<count>/<key-derived-name>.jpg, OUT_DIR/labels.csv (image,count,...: the
count-folder layout `make train DATA=OUT_DIR` reads) and OUT_DIR/sources.json (bucket, key,
etag, version id, reviewer, when). Re-running adds only what is new; a re-labelled photo
moves to its new count folder. OUT_DIR is replaced whole once everything is written (a failure
leaves it as it was). Exit 1 when a labelled photo is gone from S3 or a record is malformed (one
line each; the rest is exported).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from bincount.corrections import (
    TYPED,
    MalformedRecord,
    PhotoGone,
    human_label_of,
    image_of,
    label_source_of,
    record_name,
)
from bincount.timefmt import canonical_time, now
from bincount.uploads import ImageObject

from cli.arguments import Subcommands
from cli.output import emit
from cli.review.service import ReviewService
from cli.stack import StackResources, stack_for
from common.errors import EXIT_OK, EXIT_REFUSED, UsageError
from common.files import write_atomically

MANIFEST = "sources.json"  # `manifest.json` would make train.py take OUT_DIR for a prepared split
LABELS = "labels.csv"
MANIFEST_FORMAT = "bincount-labels/2"  # /2: one entry per upload (key + version)
CSV_COLUMNS = (
    "image",
    "count",
    "count_is_lower_bound",
    "label_source",
    "bin_id",
    "source_bucket",
    "source_key",
    "source_etag",
    "source_version",
    "reviewer",
    "reviewed_at",
    "model_count",
    "model_version",
)


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "export-labels",
        run,
        help="write reviewed photos + labels.csv for training",
        doc=__doc__,
        examples=[
            "bincount export-labels build/labels",
            "bincount export-labels build/labels --since 2026-11-26",
            "make train DATA=build/labels",
        ],
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    parser.add_argument("--since", help="only labels saved at or after this date/time (UTC)")


# -- the export ----------------------------------------------------------------------------------
# OUT_DIR/images/<count>/<key-derived-name>.<ext>, labels.csv (image,count,...; label_source is
# `typed`, or `accepted` when the reviewer confirmed the model's count: the count-folder layout
# training/data.py reads) and sources.json: where each photo came from (bucket, key, etag, the
# upload's version), who labelled it and when (not manifest.json: that name marks a prepared split
# for train.py). A photo is one upload: names derive from key + version, so two uploads of a key
# are two files, and the bytes are that object version's. Re-running adds only what is new: a
# photo already exported with the same label is not downloaded again; a re-labelled photo moves to
# its new count folder.
#
# An export is written whole or not at all: it is built in a sibling folder (unchanged photos hard
# linked from the previous export, else copied), then swapped in by renames; a failure leaves
# OUT_DIR as it was. Records are read defensively: one whose label or identity fields are not what
# the pipeline writes (human_count = "../../abc") is named in one line and left out; the others
# are exported.


class PhotoReader(Protocol):
    def get(self, image: ImageObject) -> tuple[bytes, str]:
        """(bytes, content type) of that upload; raises PhotoGone when the version is gone."""
        ...


@dataclass(frozen=True)
class Exported:
    image: str  # path relative to OUT_DIR, as labels.csv names it
    count: int
    count_is_lower_bound: bool
    bin_id: str
    bucket: str
    key: str
    etag: str
    version: str  # the upload (record's image_version: S3 version id, else sequencer:/etag:)
    version_id: str  # the S3 version id read ("" when the identity is not one)
    reviewer: str
    reviewed_at: str
    model_count: int | None
    model_version: str
    exported_at: str
    label_source: str = TYPED  # typed, or accepted: the reviewer confirmed the model's count

    @property
    def source(self) -> str:
        return source_of(self.bucket, self.key, self.version)

    def csv_row(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "count": self.count,
            "count_is_lower_bound": "yes" if self.count_is_lower_bound else "no",
            "label_source": self.label_source,
            "bin_id": self.bin_id,
            "source_bucket": self.bucket,
            "source_key": self.key,
            "source_etag": self.etag,
            "source_version": self.version,
            "reviewer": self.reviewer,
            "reviewed_at": self.reviewed_at,
            "model_count": "" if self.model_count is None else self.model_count,
            "model_version": self.model_version,
        }


@dataclass
class ExportReport:
    added: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # re-labelled since the last export
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)  # labelled, but the photo is gone from S3
    sources: dict[str, int] = field(default_factory=dict)  # labels in OUT_DIR by label_source
    malformed: list[str] = field(default_factory=list)  # one line per record left out

    def summary(self, out_dir: Path) -> str:
        line = (
            f"{out_dir}: {len(self.added)} added, {len(self.moved)} re-labelled, {self.unchanged} unchanged"
        )
        if self.sources:
            by_source = ", ".join(f"{n} {source}" for source, n in sorted(self.sources.items()))
            line += f" (labels: {by_source})"
        if self.missing:
            line += f", {len(self.missing)} photos gone from S3 (not exported): " + ", ".join(
                self.missing[:5]
            )
        if self.malformed:
            line += f", {len(self.malformed)} malformed records left out:\n  " + "\n  ".join(self.malformed)
        return line


def source_of(bucket: str, key: str, version: str) -> str:
    """One upload's identity in sources.json (the manifest's key)."""
    return f"{bucket}/{key}#{version}"


def export_name(key: str, version: str, ingest_prefix: str) -> str:
    """A name that says which photo it is and never collides, also between two uploads of a key:
    ``BIN-1__20261126T101500Z-cam1-3fa2b1c4d5e6`` (the digest covers key and version)."""
    relative = key[len(ingest_prefix) :] if ingest_prefix and key.startswith(ingest_prefix) else key
    stem = str(PurePosixPath(relative).with_suffix("")).replace("/", "__")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "photo"
    digest = hashlib.sha256(f"{key}\0{version}".encode()).hexdigest()[:12]
    return f"{readable[:120]}-{digest}"


def suffix_of(key: str) -> str:
    suffix = PurePosixPath(key).suffix.lower()
    return ".jpg" if suffix in ("", ".jpeg", ".jpg") else suffix


def load_manifest(out_dir: Path) -> dict[str, Exported]:
    path = out_dir / MANIFEST
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    return {entry.source: entry for entry in (Exported(**item) for item in data["photos"])}


def save(out_dir: Path, entries: Mapping[str, Exported]) -> None:
    """sources.json and labels.csv, rewritten whole from the entries (small; photos are not touched)."""
    ordered = sorted(entries.values(), key=lambda entry: entry.image)
    manifest = {
        "format": MANIFEST_FORMAT,
        "updated_at": now(),
        "photos": [asdict(entry) for entry in ordered],
    }
    write_atomically(out_dir / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(entry.csv_row() for entry in ordered)
    write_atomically(out_dir / LABELS, buffer.getvalue().encode())


def _exported(record: Mapping[str, Any], image: str) -> Exported:
    """The manifest entry of a labelled record (MalformedRecord when a field is not as written)."""
    label = human_label_of(record)
    if label is None:
        raise MalformedRecord(f"record {record_name(record)}: no human_count")
    upload = image_of(record)
    model_count = record.get("count")
    if model_count is not None and (isinstance(model_count, bool) or not str(model_count).isdigit()):
        raise MalformedRecord(f"record {record_name(record)}: count {model_count!r} is not a count")
    return Exported(
        image=image,
        count=label.count,
        count_is_lower_bound=label.is_lower_bound,
        bin_id=str(record["bin_id"]),
        bucket=upload.bucket,
        key=upload.key,
        etag=upload.etag,
        version=upload.version,
        version_id=upload.version_id,
        reviewer=str(record.get("reviewer", "")),
        reviewed_at=str(record.get("reviewed_at", "")),
        model_count=None if model_count is None else int(model_count),
        model_version=str(record.get("model_version", "")),
        exported_at=now(),
        label_source=label_source_of(record) or TYPED,
    )


def read_record(record: Mapping[str, Any], ingest_prefix: str) -> tuple[ImageObject, Exported]:
    """The upload and its manifest entry (image path included) of one labelled record."""
    try:
        upload = image_of(record)
        label = human_label_of(record)
        if label is None:
            raise MalformedRecord(f"record {record_name(record)}: no human_count")
        key = upload.key
        image = f"images/{label.count}/{export_name(key, upload.version, ingest_prefix)}{suffix_of(key)}"
        return upload, _exported(record, image)
    except MalformedRecord:
        raise
    except KeyError as error:
        raise MalformedRecord(f"record {record_name(record)}: no {error}") from error
    except (TypeError, ValueError, ArithmeticError) as error:
        raise MalformedRecord(f"record {record_name(record)}: {type(error).__name__}: {error}") from error


def place(source: Path, target: Path) -> None:
    """An unchanged photo into the new export: a hard link (no copy), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def export_labels(
    records: Iterable[Mapping[str, Any]], photos: PhotoReader, out_dir: Path, ingest_prefix: str
) -> ExportReport:
    """Export every labelled record (downloading only those not yet exported with the same label);
    OUT_DIR is replaced whole when everything is written, untouched when anything fails."""
    entries = load_manifest(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        report = _build(records, photos, out_dir, building, entries, ingest_prefix)
        swap_in(building, out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return report


def _build(
    records: Iterable[Mapping[str, Any]],
    photos: PhotoReader,
    out_dir: Path,
    building: Path,
    entries: dict[str, Exported],
    ingest_prefix: str,
) -> ExportReport:
    report = ExportReport()
    fresh: dict[str, Exported] = {}
    for record in records:
        try:
            upload, entry = read_record(record, ingest_prefix)
        except MalformedRecord as error:
            report.malformed.append(str(error))
            continue
        prior = entries.get(entry.source)
        same = prior is not None and (prior.etag, prior.reviewed_at) == (entry.etag, entry.reviewed_at)
        if prior is not None and same and (out_dir / prior.image).is_file():
            place(out_dir / prior.image, building / prior.image)
            fresh[entry.source] = prior
            report.unchanged += 1
            continue
        try:
            body, _ = photos.get(upload)
        except PhotoGone:
            report.missing.append(f"{upload.key} ({upload.version})")
            continue
        write_atomically(building / entry.image, body)
        (report.moved if prior else report.added).append(entry.image)
        fresh[entry.source] = entry
    # photos exported before whose records are not in this read (e.g. --since): kept as they were
    for source, prior in entries.items():
        if source not in fresh and (out_dir / prior.image).is_file():
            place(out_dir / prior.image, building / prior.image)
            fresh[source] = prior
    save(building, fresh)
    for entry in fresh.values():
        report.sources[entry.label_source] = report.sources.get(entry.label_source, 0) + 1
    return report


def swap_in(building: Path, out_dir: Path) -> None:
    """``building`` becomes ``out_dir``: two renames (the previous export removed after)."""
    if not out_dir.exists():
        building.rename(out_dir)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.previous-", dir=out_dir.parent))
    previous.rmdir()
    out_dir.rename(previous)
    try:
        building.rename(out_dir)
    except BaseException:
        previous.rename(out_dir)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def parse_since(value: str | None) -> str:
    """``--since 2026-11-26`` (or any ISO time) as the table's canonical time; "" for everything."""
    if not value:
        return ""
    try:
        return canonical_time(value)
    except ValueError as error:
        raise UsageError(f"--since {value!r} is not a date (e.g. 2026-11-26 or 2026-11-26T10:00Z)") from error


def check_out_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file: OUT_DIR must be a folder (it is created if missing)")
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
        raise UsageError(f"{path} holds other files: pick an empty folder or a previous export's folder")
    return path


def export(resources: StackResources, out_dir: Path, since_time: str) -> ExportReport:
    """Export reviewed photos (labelled at or after ``since_time``, canonical; "" all) into ``out_dir``."""
    service = ReviewService.for_stack(resources, reviewer="export")
    records = service.labels.labelled_images(since_time)
    return export_labels(records, service.photos, out_dir, resources.ingest_prefix)


def run(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    out_dir = check_out_dir(args.out_dir)
    report = export(stack_for(args), out_dir, since)
    emit(asdict(report), report.summary(args.out_dir), args.json)
    return EXIT_REFUSED if report.missing or report.malformed else EXIT_OK
