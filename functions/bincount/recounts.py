"""Re-counting stored photos with the model the stack serves now: which photos, and what the
new result does to their records and to their bin's LATEST.

A re-count goes through the normal batch path (manifest, images.json, CreateTransformJob,
collector); only its images document says ``"purpose": "recount"`` and names the target model
version, and its job names carry a marker derived from that version, so the same photos
re-counted by the same version always make the same jobs (and never collide with the first
count's job of those photos).

Rules of a re-count result (the collector applies them, :func:`recount_attributes`):

* the record keeps its history: the model fields (count, confidence, probabilities,
  ``model_version``, ``job_name``, ``recorded_at``, ...) take the new result, and the previous
  result is appended to ``model_history``; the write is conditional on the model version read,
  so a replay (or a result of the version the record already holds) is a duplicate, ignored;
* human-label fields (``human_count``, ``reviewer``, ``reviewed_at``, ...) are never written:
  a labelled record gets the new model's opinion in its model fields and history, and its human
  label stays the truth;
* LATEST changes only when it holds this very photo (the bin's newest) and no human label:
  a re-count of an older photo never moves it (:func:`recount_latest`);
* only count records are re-counted; error records go through ``bincount redrive``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bincount.batching import Chunk, plan_chunks, sanitize_prefix
from bincount.count_records import (
    DECISION_ATTRIBUTES,
    RANGE_ATTRIBUTES,
    REVIEW_ATTRIBUTES,
    ImageOutcome,
    LatestDecision,
    LatestState,
    LatestWrite,
    image_item,
    version_token,
)
from bincount.image_formats import content_type_for
from bincount.serving_records import CountResult
from bincount.uploads import ImageObject

RECOUNT = "recount"
VERSION_MARKER_HEX = 8
# Fields of an image record that a model result writes (all but the upload's identity).
MODEL_FIELDS = (
    "outcome",
    "count",
    "confidence",
    "probabilities",
    "count_is_lower_bound",
    "needs_review",
    "model_version",
    "job_name",
    "recorded_at",
    *RANGE_ATTRIBUTES,
    *REVIEW_ATTRIBUTES,
    *DECISION_ATTRIBUTES,
)
LATEST_MODEL_FIELDS = (
    "count",
    "confidence",
    "probabilities",
    "count_is_lower_bound",
    "needs_review",
    "model_version",
    "job_name",
    *RANGE_ATTRIBUTES,
    *REVIEW_ATTRIBUTES,
    *DECISION_ATTRIBUTES,
)
HISTORY_FIELDS = ("model_version", "count", "confidence", "job_name", "recorded_at")
HISTORY_ATTRIBUTE = "model_history"


def recount_prefix(base_prefix: str, target_version: str) -> str:
    """``<prefix>-rc<8 hex of the version>``: still under ``<prefix>-`` (the collector's filter and
    ``MaxJobsInFlight`` count it), and a function of the target version."""
    marker = hashlib.sha256(target_version.encode()).hexdigest()[:VERSION_MARKER_HEX]
    return sanitize_prefix(f"{base_prefix}-rc{marker}")


def is_recount(chunk: Chunk) -> bool:
    return chunk.purpose == RECOUNT


def chunk_prefix(chunk: Chunk, base_prefix: str) -> str:
    """The job-name prefix for a chunk's re-drives and retries: a re-count's stay re-counts."""
    return recount_prefix(base_prefix, chunk.target_model_version) if is_recount(chunk) else base_prefix


def as_recount(chunk: Chunk, target_version: str) -> Chunk:
    return replace(chunk, purpose=RECOUNT, target_model_version=target_version)


def recount_chunks(
    images: Iterable[ImageObject], max_images: int, base_prefix: str, target_version: str
) -> list[Chunk]:
    """The normal chunking under the re-count's job names."""
    prefix = recount_prefix(base_prefix, target_version)
    return [as_recount(chunk, target_version) for chunk in plan_chunks(images, max_images, prefix)]


# -- which records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    key: str
    bin_id: str
    reason: str


@dataclass
class Selection:
    candidates: list[Mapping[str, Any]] = field(default_factory=list)  # records to re-count
    current: int = 0  # already counted by the target version
    skipped: list[Skipped] = field(default_factory=list)


def select_records(
    items: Iterable[Mapping[str, Any]],
    target_version: str,
    since: str | None = None,
    bins: Sequence[str] = (),
) -> Selection:
    """Image records to re-count: of ``bins`` (all if empty), captured at or after ``since``
    (canonical UTC text compares as time), whose model version is not the target's."""
    wanted = set(bins)
    selection = Selection()
    for item in items:
        if not str(item.get("sk", "")).startswith("IMAGE#"):
            continue
        if wanted and item.get("bin_id") not in wanted:
            continue
        if since and str(item.get("captured_at", "")) < since:
            continue
        if item.get("outcome") != "count":
            reason = f"error record ({item.get('error_code')}): re-drive it instead"
            selection.skipped.append(Skipped(str(item.get("image_key")), str(item.get("bin_id")), reason))
        elif item.get("model_version") == target_version:
            selection.current += 1
        else:
            selection.candidates.append(item)
    return selection


# -- what a result does ------------------------------------------------------------------------------


def history_entry(item: Mapping[str, Any]) -> dict[str, Any]:
    """The record's current model result, as kept in ``model_history``."""
    return {name: item.get(name) for name in HISTORY_FIELDS}


def recount_attributes(outcome: ImageOutcome, recorded_at: str) -> dict[str, Any]:
    """The model fields a re-count SETs on an existing record (never identity or human fields)."""
    item = image_item(outcome, recorded_at)
    return {name: item[name] for name in MODEL_FIELDS if name in item}


def is_duplicate_recount(item: Mapping[str, Any], outcome: ImageOutcome) -> bool:
    """A result of the version the record holds already: a replay, or the same model twice."""
    return item.get("model_version") == outcome.result.model_version


@dataclass(frozen=True)
class RecountWrite:
    """SET ``attributes`` and append ``history`` to a record if it still holds ``expected_version``."""

    bin_id: str
    sort_key: str
    attributes: dict[str, Any]
    history: dict[str, Any]
    expected_version: str | None


def recount_latest(
    latest_item: Mapping[str, Any] | None, outcome: ImageOutcome, updated_at: str
) -> tuple[LatestWrite | None, LatestDecision, int | None]:
    """What a re-counted photo does to its bin's LATEST: (the write, the decision, the count before).

    LATEST moves (``APPLY``) only when it holds this very upload (the bin's newest photo) with no
    human label; a retry that finds the new result there already sees ``ALREADY_APPLIED`` (its
    event is sent again, nothing written); anything else is ``STALE``: LATEST stays as it is.
    """
    state = LatestState.from_item(dict(latest_item) if latest_item else None)
    result = outcome.result
    previous = state.count if state else None
    if latest_item is None or state is None or not isinstance(result, CountResult):
        return None, LatestDecision.STALE, previous
    if state.version != version_token(outcome.image) or latest_item.get("human_label"):
        return None, LatestDecision.STALE, previous
    if latest_item.get("model_version") == result.model_version:
        return None, LatestDecision.ALREADY_APPLIED, state.previous_count
    new = recount_attributes(outcome, updated_at)
    attributes = {name: new[name] for name in LATEST_MODEL_FIELDS}
    attributes.update(previous_count=previous, updated_at=updated_at)
    return LatestWrite(outcome.image.bin_id, attributes, state.version), LatestDecision.APPLY, previous


def recount_image(item: Mapping[str, Any]) -> ImageObject:
    """The upload a record describes, pointed at its staged copy (``staging.staged_name``: a
    function of the upload, so the copy the first count read)."""
    from bincount.corrections import image_of
    from bincount.staging import staged_name

    image = image_of(item)
    image = replace(image, content_type=content_type_for(image.key))
    return replace(image, staged_key=staged_name(image))
