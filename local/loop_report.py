"""The pure parts of ``make loop-demo`` (:mod:`local.loop`): the reviewer's answers, which
uploads they label, and the before/after report.

Nothing here talks to a stack: the labels are read and checked before anything starts, and the
report is built from the records the loop read back (first count, after the re-count).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bincount.corrections import human_label_of

from cli.output import count_text
from common.errors import UsageError

LABEL_COLUMNS = ("image", "count")


@dataclass(frozen=True)
class LoopUpload:
    """One photo of IMAGES as the loop uploads it."""

    path: Path
    key: str  # its key in the ingest bucket
    bin_id: str


@dataclass(frozen=True)
class Review:
    """One reviewer's answer the loop applies: the upload's key and the human count."""

    key: str
    count: int


def read_labels(labels_csv: Path, photos: Iterable[Path]) -> dict[Path, int]:
    """``image,count`` rows (``image`` relative to the CSV's folder) of the photos in IMAGES.

    Rows of photos that exist but are not among IMAGES are left out, so one labels file can serve
    any subfolder of a data set (``LABELS=abid-train/labels.csv`` with
    ``IMAGES=abid-train/images/7``, for a count folder ``abid-train`` you downloaded). One
    :class:`UsageError` line for a missing or unreadable file, a missing column, a count that is
    not a whole number >= 0, a row naming no file at all (a typo would otherwise silently label
    nothing), or no row for any photo of IMAGES.
    """
    if not labels_csv.is_file():
        raise UsageError(f"LABELS={labels_csv}: no such file; give a CSV image,count (image relative to it)")
    known = {path.resolve() for path in photos}
    labels: dict[Path, int] = {}
    try:
        with labels_csv.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UsageError(
                    f"LABELS={labels_csv} has no column {', '.join(missing)}: it needs image,count"
                )
            for line, row in enumerate(reader, start=2):
                path, count = _label_row(labels_csv, line, row)
                if path in known:
                    labels[path] = count
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UsageError(f"LABELS={labels_csv}: cannot read it ({error})") from error
    if not labels:
        raise UsageError(
            f"LABELS={labels_csv} labels no photo of IMAGES: give at least one row image,count "
            "(image relative to the CSV's folder)"
        )
    return labels


def _label_row(labels_csv: Path, line: int, row: Mapping[str, str]) -> tuple[Path, int]:
    image, count = (row.get("image") or "").strip(), (row.get("count") or "").strip()
    if not count.isdigit():
        raise UsageError(f"LABELS={labels_csv} line {line}: count {count!r} is not a whole number >= 0")
    path = (labels_csv.parent / image).resolve()
    if not image or not path.is_file():
        raise UsageError(f"LABELS={labels_csv} line {line}: {image!r} names no photo (relative to the CSV)")
    return path, int(count)


def review_plan(uploads: Sequence[LoopUpload], labels: Mapping[Path, int]) -> list[Review]:
    """The reviews to apply: one per uploaded photo that has a label, in upload order."""
    by_path = {path.resolve(): count for path, count in labels.items()}
    return [Review(u.key, by_path[u.path.resolve()]) for u in uploads if u.path.resolve() in by_path]


def latest_record(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The record of each image key (the newest upload of a key where it was uploaded twice)."""
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        key = str(record.get("image_key") or "")
        if key and str(record.get("recorded_at", "")) >= str(found.get(key, {}).get("recorded_at", "")):
            found[key] = dict(record)
    return found


def _count_of(record: Mapping[str, Any] | None) -> int | None:
    if record is None or record.get("count") is None:
        return None
    return int(record["count"])


def build_report(
    uploads: Sequence[LoopUpload],
    first: Mapping[str, Mapping[str, Any]],
    final: Mapping[str, Mapping[str, Any]],
    summary: Mapping[str, Any],
) -> dict[str, Any]:
    """``report.json``: the models and the gate (``summary``), then one entry per uploaded photo."""
    images = []
    for upload in uploads:
        before, after = first.get(upload.key), final.get(upload.key) or first.get(upload.key)
        human = (after or {}).get("human_count")
        images.append(
            {
                "key": upload.key,
                "bin_id": upload.bin_id,
                "first_count": _count_of(before),
                "first_count_is_lower_bound": bool((before or {}).get("count_is_lower_bound")),
                "first_model_version": (before or {}).get("model_version"),
                "count": _count_of(after),
                "count_is_lower_bound": bool((after or {}).get("count_is_lower_bound")),
                "model_version": (after or {}).get("model_version"),
                "human_count": None if human is None else int(human),
                "human_count_is_lower_bound": bool((after or {}).get("human_count_is_lower_bound")),
            }
        )
    return {
        "model_before": summary["model_before"],
        "model_after": summary["model_after"],
        "promoted": bool(summary["promoted"]),
        "gate": summary.get("gate") or {},
        **{k: v for k, v in summary.items() if k not in ("model_before", "model_after", "promoted", "gate")},
        "images": images,
    }


def right_by_label(image: Mapping[str, Any], stage: str) -> bool:
    """The model's count before (``first``) or after the re-count, judged by the person's label
    (the open top class "5 or more" is right for 7 objects, as the console's ``+``)."""
    label, count = human_label_of(image), image[f"{stage}count"]
    if label is None or count is None:
        return False
    return label.agrees_with(int(count), bool(image.get(f"{stage}count_is_lower_bound")))


def accuracy_rows(report: Mapping[str, Any]) -> list[tuple[str, int, str, str]]:
    """Accuracy against the human labels, before and after: (photos, n, before, after).

    Only reviewed photos have a truth; the unreviewed ones say how many counts the re-count changed.
    """
    reviewed = [i for i in report["images"] if i["human_count"] is not None]
    others = [i for i in report["images"] if i["human_count"] is None]
    rows = []
    if reviewed:
        before = sum(right_by_label(i, "first_") for i in reviewed) / len(reviewed)
        after = sum(right_by_label(i, "") for i in reviewed) / len(reviewed)
        rows.append(("reviewed (acc.)", len(reviewed), f"{before:.0%}", f"{after:.0%}"))
    changed = sum(i["first_count"] != i["count"] for i in others)
    rows.append(("unreviewed", len(others), "-", f"{changed} changed"))
    return rows


def render_table(report: Mapping[str, Any], limit: int = 20) -> str:
    """The before/after table the loop prints: per photo (the first ``limit``), then a summary."""
    lines = [f"{'bin':<14} {'photo':<28} {'before':>6} {'after':>6} {'human':>6}"]
    for image in report["images"][:limit]:
        label = human_label_of(image)
        human = "-" if label is None else str(label)
        name = image["key"].rsplit("/", 1)[-1][:28]
        lines.append(
            f"{image['bin_id'][:14]:<14} {name:<28} {_cell(image, 'first_'):>6} "
            f"{_cell(image, ''):>6} {human:>6}"
        )
    if len(report["images"]) > limit:
        lines.append(f"... {len(report['images']) - limit} more photos in report.json")
    lines.append(f"model before {report['model_before']}, after {report['model_after']}")
    lines.append("count vs the human label where there is one (5+ is right for 7 objects):")
    for who, n, before, after in accuracy_rows(report):
        lines.append(f"  {who:<16} n={n:<5} before {before:>4}  after {after}")
    return "\n".join(lines)


def _cell(image: Mapping[str, Any], stage: str) -> str:
    """``3``, ``5+`` (the open top class), or ``err`` for an error record."""
    return count_text(image.get(f"{stage}count"), image.get(f"{stage}count_is_lower_bound")) or "err"
