"""Human corrections of counts: the rules that make a reviewer's label the record of truth.

A reviewer who looks at a photo and saves a count writes a *human label* on the photo's
``IMAGE#`` record -- one upload's record (``bin_id`` + ``image_sk(key, version)``): two uploads of
a key are two photos, each reviewed on its own (``human_count``, ``human_count_is_lower_bound``, ``reviewer``,
``reviewed_at``, and the model count/version it replaces). From then on:

* a model result never overwrites the label: the collector writes a record once per upload
  (``attribute_not_exists(sk)``), so it never replaces one; a re-count (``bincount.recounts``)
  SETs only the model's own fields and appends the old result to ``model_history``, so the label
  stays; a write that replaces a whole record must carry :data:`MODEL_WRITE_GUARD`;
* two reviewers racing on one photo: the first save wins, the second is refused unless it
  saves the same value (the write is conditional on the record version the reviewer saw);
* from the stored change, not from the reviewer: the counts table's stream delivers the record's
  new and old images to the corrections function (functions/corrected), which moves the bin's
  ``LATEST`` when this photo is (or is newer than) the one LATEST holds and publishes
  ``Bin Count Corrected`` (:class:`CorrectionPublisher`).

A reviewer therefore writes only the label fields of one record (:data:`LABEL_FIELDS`, what
``ReviewerPolicy`` lets ``UpdateItem`` touch) and puts no event: what the bus hears is what the
table holds. How the person gave the count is kept as ``label_source``: ``typed`` (they entered a
count) or ``accepted`` (they confirmed the model's own count with a deliberate key). Both are a
person's label; a training set can weigh them apart, since an acceptance is only as good as the
glance behind it. Records labelled before ``label_source`` existed read as ``typed``.

Allowed counts come from the model's classes: ``0..top`` where ``top`` is the model's top class
(``len(probabilities) - 1``; the shipped model's 6 classes give 0..5), plus ``+`` for "more than
the top class", stored as ``top + 1`` with ``human_count_is_lower_bound``. The record write is the
commit point; the stream retries the rest until it succeeds (events are at-least-once; consumers
dedupe on ``image`` + ``reviewed_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from bincount.admission import BATCHER_ERROR_CODES
from bincount.count_records import (
    LatestDecision,
    LatestState,
    decide_latest,
    is_discrepancy,
    upload_attributes,
    version_token,
)
from bincount.inventory_events import BinCountCorrected, ImageRef
from bincount.ports import CountStore, EventSender
from bincount.publishing import put_all
from bincount.serving_records import INTERNAL_ERROR, INVALID_OUTPUT, TRANSFORM_FAILED
from bincount.timefmt import now
from bincount.uploads import ImageObject

# Part of any model write that may replace an IMAGE# record (a re-count): a human label stays.
MODEL_WRITE_GUARD = "attribute_not_exists(human_count)"
# Classes of the shipped model (model/weights/config.json), for records without probabilities.
DEFAULT_NUM_CLASSES = 6
MORE_THAN_TOP = "+"
# Error records whose photo is still a picture a person can look at (the model, not the photo, failed).
READABLE_ERROR_CODES = frozenset({TRANSFORM_FAILED, INVALID_OUTPUT, INTERNAL_ERROR})
MAX_LATEST_ATTEMPTS = 8
TYPED = "typed"  # the person entered the count
ACCEPTED = "accepted"  # the person confirmed the model's count (the console's accept key)
LABEL_SOURCES = (TYPED, ACCEPTED)


class CorrectionRefused(Exception):
    """Nothing was written; ``str(error)`` is the one line the reviewer reads."""

    status = 409


class LabelOutOfRange(CorrectionRefused):
    status = 422


class PhotoGone(CorrectionRefused):
    status = 404


class NotReviewable(CorrectionRefused):
    """Rejected by the batcher before any model saw it (bad name, suffix, size): no count to correct,
    and its capture time may be untrusted (``capture_time_in_future``), so LATEST must not follow."""

    status = 422


def reviewable(item: Mapping[str, Any]) -> bool:
    return item.get("error_code") not in BATCHER_ERROR_CODES


class StaleRecord(CorrectionRefused):
    """The record changed (new model result, another reviewer's label) since the page showed it."""


class AlreadyLabelled(StaleRecord):
    """Another save of a different count came first."""


@dataclass(frozen=True)
class HumanLabel:
    count: int
    is_lower_bound: bool = False

    def __str__(self) -> str:
        """``3``, or ``>5`` for "more than the top class 5" (the model's own ``5+`` reads "5 or more")."""
        return f">{self.count - 1}" if self.is_lower_bound else str(self.count)

    def agrees_with(self, count: int, count_is_lower_bound: bool) -> bool:
        """Whether the model's answer is right by this label: a "5 or more" count is right for 7
        objects and for ">5", an exact 5 is not right for ">5"."""
        if self.is_lower_bound:
            return count_is_lower_bound or count >= self.count
        return not is_discrepancy(self.count, count, count_is_lower_bound)


def top_class(item: Mapping[str, Any], default_num_classes: int = DEFAULT_NUM_CLASSES) -> int:
    """The model's top class for this record: its probabilities name the classes it had."""
    probabilities = item.get("probabilities") or ()
    return (len(probabilities) if probabilities else default_num_classes) - 1


def answer_for(count: int, top: int) -> str:
    """What a person who counted ``count`` objects answers for a record whose classes are 0..top:
    the exact count, or ``+`` beyond the top class (the console has no key for 8)."""
    return MORE_THAN_TOP if count > top else str(count)


def parse_label(value: object, top: int) -> HumanLabel:
    """``"0".."top"`` (or an int) is an exact count, ``"+"`` means more than ``top``."""
    text = str(value).strip()
    if text == MORE_THAN_TOP:
        return HumanLabel(top + 1, is_lower_bound=True)
    if isinstance(value, bool) or not text.isdigit():
        raise LabelOutOfRange(f"count {text!r} is not a number: use 0..{top}, or + for more than {top}")
    count = int(text)
    if count > top:
        raise LabelOutOfRange(f"count {count} is outside 0..{top}: use + for more than {top}")
    return HumanLabel(count)


class MalformedRecord(ValueError):
    """A stored field is not what the pipeline writes (e.g. ``human_count`` = ``"../../abc"``):
    ``str(error)`` is one line naming the record and the field."""


def human_label_of(item: Mapping[str, Any]) -> HumanLabel | None:
    """The record's human label; MalformedRecord when its fields are not a count and a flag."""
    count = item.get("human_count")
    if count is None:
        return None
    lower_bound = item.get("human_count_is_lower_bound", False)
    if isinstance(count, bool) or not isinstance(count, int | Decimal) or count != int(count) or count < 0:
        raise MalformedRecord(f"record {record_name(item)}: human_count {count!r} is not a count")
    if not isinstance(lower_bound, bool):
        raise MalformedRecord(
            f"record {record_name(item)}: human_count_is_lower_bound {lower_bound!r} is not true/false"
        )
    return HumanLabel(int(count), lower_bound)


def record_name(item: Mapping[str, Any]) -> str:
    """How a record is named in a one-line error: its bin and sort key, as stored."""
    return f"{item.get('pk', '?')} {item.get('sk', '?')}"


def label_source_of(item: Mapping[str, Any]) -> str | None:
    """``typed`` or ``accepted`` for a labelled record (``typed`` when the record predates the
    attribute), None for a record without a human label."""
    if item.get("human_count") is None:
        return None
    source = str(item.get("label_source") or TYPED)
    return source if source in LABEL_SOURCES else TYPED


def accepted_label(item: Mapping[str, Any]) -> HumanLabel:
    """The label an acceptance saves: the model's exact count. A record without a count (a rejected
    photo) or with the open top class ("5 or more": which one?) has nothing to accept."""
    count = item.get("count")
    if count is None:
        raise LabelOutOfRange("the model gave no count for this photo: type the count instead")
    if item.get("count_is_lower_bound"):
        raise LabelOutOfRange(
            f"the model says {int(count)} or more: type {int(count)} or + to say which, not accept"
        )
    return HumanLabel(int(count))


@dataclass(frozen=True)
class RecordVersion:
    """What a reviewer saw: the object version, when the model wrote it, and the label's time.

    Rendered into the page as one opaque token and sent back with the save; the write is
    conditional on all three, so any change in between refuses it.
    """

    etag: str
    recorded_at: str
    reviewed_at: str = ""

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> RecordVersion:
        return cls(
            str(item.get("etag", "")), str(item.get("recorded_at", "")), str(item.get("reviewed_at") or "")
        )

    @classmethod
    def parse(cls, token: str) -> RecordVersion:
        parts = str(token).rsplit("|", 2)
        if len(parts) != 3:
            raise StaleRecord("the page sent no valid record version: reload it")
        return cls(*parts)

    def token(self) -> str:
        return f"{self.etag}|{self.recorded_at}|{self.reviewed_at}"


#: The fields a human label sets on an IMAGE# record (label_attributes), the ones the label write's
#: condition reads (RecordVersion) and the key: all that ``ReviewerPolicy`` lets UpdateItem name
#: (``dynamodb:Attributes``; tests/functions/test_template_deploy.py keeps the two equal).
LABEL_FIELDS = (
    "human_count",
    "human_count_is_lower_bound",
    "label_source",
    "reviewer",
    "reviewed_at",
    "replaced_count",
    "replaced_model_version",
)
LABEL_CONDITION_FIELDS = ("etag", "recorded_at", "reviewed_at")


def label_attributes(
    item: Mapping[str, Any], label: HumanLabel, reviewer: str, reviewed_at: str, source: str = TYPED
) -> dict[str, Any]:
    """Attributes SET on the IMAGE# record; the model's own fields (count, ...) stay as they were."""
    return {
        "human_count": label.count,
        "human_count_is_lower_bound": label.is_lower_bound,
        "label_source": source,
        "reviewer": reviewer,
        "reviewed_at": reviewed_at,
        "replaced_count": item.get("count"),  # None for a rejected photo: the model gave no count
        "replaced_model_version": item.get("model_version", ""),
    }


# Identity versions that are not S3 version ids (ImageObject.version's fallbacks).
DERIVED_VERSION_PREFIXES = ("sequencer:", "etag:")


def image_of(item: Mapping[str, Any]) -> ImageObject:
    """The upload an IMAGE# record describes: what LATEST ordering compares and what S3 reads.

    ``image_version`` is ImageObject.version; a real S3 version id comes back as ``version_id``,
    a ``sequencer:``/``etag:`` identity leaves it empty (so ``.version`` is the same again).
    """
    version = str(item.get("image_version") or "")
    return ImageObject(
        bucket=str(item["image_bucket"]),
        key=str(item["image_key"]),
        etag=str(item.get("etag", "")),
        size=0,
        bin_id=str(item["bin_id"]),
        captured_at=str(item["captured_at"]),
        content_type="",
        version_id="" if version.startswith(DERIVED_VERSION_PREFIXES) else version,
        sequencer=str(item.get("sequencer") or ""),
        uploaded_at=str(item.get("uploaded_at") or ""),
    )


def latest_label_attributes(
    item: Mapping[str, Any],
    label: HumanLabel,
    reviewer: str,
    reviewed_at: str,
    decision: LatestDecision,
    held: LatestState | None,
) -> dict[str, Any]:
    """Attributes SET on LATEST when it follows a label (``human_label`` null means a model count)."""
    image = image_of(item)
    attributes: dict[str, Any] = {
        "count": label.count,
        "count_is_lower_bound": label.is_lower_bound,
        "needs_review": False,
        "human_label": {
            "reviewer": reviewer,
            "reviewed_at": reviewed_at,
            "model_count": item.get("count"),
            "label_source": label_source_of(item) or TYPED,
        },
        "updated_at": reviewed_at,
    }
    if decision is LatestDecision.APPLY:  # a photo LATEST did not hold yet (e.g. a rejected one)
        attributes.update(
            bin_id=image.bin_id,
            image_bucket=image.bucket,
            image_key=image.key,
            etag=image.etag,
            **upload_attributes(image),
            captured_at=image.captured_at,
            job_name=item.get("job_name", ""),
            model_version=item.get("model_version", ""),
            previous_count=held.count if held else None,
            latest_version=version_token(image),
        )
    return attributes


class LabelStore(Protocol):
    def put_label(self, bin_id: str, record_sk: str, attributes: dict[str, Any], seen: RecordVersion) -> bool:
        """SET ``attributes`` on the IMAGE# record ``record_sk`` if it is still the version ``seen``."""
        ...


PhotoExists = Callable[[ImageObject], bool]  # the reviewed upload (object version) is still there


class CorrectionStatus(Enum):
    SAVED = "saved"
    ALREADY_SAVED = "already_saved"  # the same count was saved before (by this or another reviewer)


@dataclass(frozen=True)
class CorrectionResult:
    status: CorrectionStatus
    label: HumanLabel
    record: dict[str, Any]  # the IMAGE# record after the save
    latest_followed: bool  # the bin's LATEST holds, or is about to hold, this label
    event: BinCountCorrected  # what the corrections function publishes from the stored change

    @property
    def source(self) -> str:
        return label_source_of(self.record) or TYPED

    @property
    def message(self) -> str:
        """``saved count 3``, ``accepted the model's count 3``: the line a reviewer reads."""
        who = self.record.get("reviewer", "")
        if self.status is CorrectionStatus.ALREADY_SAVED:
            return f"already saved as {self.label} by {who}: nothing changed"
        accepted = self.source == ACCEPTED
        what = f"accepted the model's count {self.label}" if accepted else f"saved count {self.label}"
        return what + (" (bin's latest count updated)" if self.latest_followed else "")


@dataclass
class Corrector:
    """Applies one correction: validate, then one conditional write of the label fields.

    The bin's LATEST and the event follow from the stored change (:class:`CorrectionPublisher`);
    the result says what they will be, read from the same LATEST the publisher decides on.
    """

    counts: CountStore
    labels: LabelStore
    photo_exists: PhotoExists
    clock: Callable[[], str] = now

    def correct(
        self,
        bin_id: str,
        record_sk: str,
        value: object,
        reviewer: str,
        seen: str | None,
        source: str = TYPED,
    ) -> CorrectionResult:
        """Save ``value`` as the human count of one upload's record (``record_sk``); ``seen`` is the
        rendered record version (None: the current one). ``source`` ``accepted``: the person
        confirmed the model's count, so ``value`` must be that count (a page showing an older
        model result is refused as stale by ``seen``)."""
        if source not in LABEL_SOURCES:
            raise LabelOutOfRange(f"label source {source!r} is not one of {', '.join(LABEL_SOURCES)}")
        item = self.counts.get_image(bin_id, record_sk)
        if item is None:
            raise PhotoGone(f"photo {record_sk} of bin {bin_id} no longer exists: nothing saved")
        if not reviewable(item):
            raise NotReviewable(
                f"photo {item.get('image_key')} was rejected before counting ({item.get('error_code')}): "
                "nothing to correct, nothing saved"
            )
        label = parse_label(value, top_class(item))
        if source == ACCEPTED and label != accepted_label(item):
            raise StaleRecord(
                f"the model's count is {accepted_label(item)}, not {label}: nothing saved, reload the photo"
            )
        seen_version = RecordVersion.parse(seen) if seen else RecordVersion.of(item)
        held_label = human_label_or_none(item)
        if held_label == label:
            return self._finish(CorrectionStatus.ALREADY_SAVED, item, label)
        if seen is None and held_label is not None:  # replacing a label takes having seen it
            raise _already_labelled(item, label, hint="pass the record version you saw to replace it")
        image = image_of(item)
        if not self.photo_exists(image):
            raise PhotoGone(f"photo {image.key} ({image.version}) is no longer in its bucket: nothing saved")
        reviewed_at = self.clock()
        attributes = label_attributes(item, label, reviewer, reviewed_at, source)
        if not self.labels.put_label(bin_id, record_sk, attributes, seen_version):
            return self._refused(bin_id, record_sk, label)
        return self._finish(CorrectionStatus.SAVED, {**item, **attributes}, label)

    def _refused(self, bin_id: str, record_sk: str, label: HumanLabel) -> CorrectionResult:
        """The conditional write failed: say why, or accept when the same count is already saved."""
        current = self.counts.get_image(bin_id, record_sk)
        if current is None:
            raise PhotoGone(f"photo {record_sk} of bin {bin_id} no longer exists: nothing saved")
        held = human_label_or_none(current)
        if held == label:
            return self._finish(CorrectionStatus.ALREADY_SAVED, current, label)
        if held is not None:
            raise _already_labelled(current, label, hint="reload to see it")
        raise StaleRecord("this photo's record changed since the page was shown: nothing saved, reload it")

    def _finish(
        self, status: CorrectionStatus, record: dict[str, Any], label: HumanLabel
    ) -> CorrectionResult:
        held = LatestState.from_item(self.counts.get_latest(str(record["bin_id"])))
        follows = decide_latest(held, image_of(record)) is not LatestDecision.STALE
        event = corrected_event(record, label, follows, held.expected_quantity if held else None)
        return CorrectionResult(status, label, record, follows, event)


def human_label_or_none(item: Mapping[str, Any]) -> HumanLabel | None:
    """The label, or None when the stored one is malformed: a correct save replaces it."""
    try:
        return human_label_of(item)
    except MalformedRecord:
        return None


def label_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> HumanLabel | None:
    """The label a stored change of an IMAGE# record saved, or None when no label was saved
    (a model write, a re-count, a deletion: the label fields are as they were)."""
    if not str(new.get("sk", "")).startswith("IMAGE#"):
        return None
    label = human_label_of(new)
    if label is None:
        return None
    same = all(
        old.get(name) == new.get(name)
        for name in ("human_count", "human_count_is_lower_bound", "reviewed_at")
    )
    return None if same else label


class CorrectionNotPublished(Exception):
    """The stored label is not on the bus yet (PutEvents refused it, or LATEST kept moving): the
    stream delivers the change again."""


@dataclass
class CorrectionPublisher:
    """From a stored label to the rest of the save: the bin's LATEST follows, the event is put."""

    counts: CountStore
    sender: EventSender
    bus_name: str

    def publish(self, record: Mapping[str, Any], label: HumanLabel) -> BinCountCorrected:
        followed, expected = self._follow_latest(record, label)
        event = corrected_event(record, label, followed, expected)
        failures = put_all([event.to_eventbridge_entry(self.bus_name)], self.sender.send)
        if failures:
            raise CorrectionNotPublished(
                f"Bin Count Corrected for {record_name(record)} not published ({failures[0].code})"
            )
        return event

    def _follow_latest(self, record: Mapping[str, Any], label: HumanLabel) -> tuple[bool, int | None]:
        """Move LATEST to the label when this is the bin's newest photo; (moved, expected quantity)."""
        bin_id = str(record["bin_id"])
        for _ in range(MAX_LATEST_ATTEMPTS):
            held = LatestState.from_item(self.counts.get_latest(bin_id))
            expected = held.expected_quantity if held else None
            decision = decide_latest(held, image_of(record))
            if decision is LatestDecision.STALE:
                return False, expected
            attributes = latest_label_attributes(
                record, label, str(record["reviewer"]), str(record["reviewed_at"]), decision, held
            )
            if self.counts.put_latest(bin_id, attributes, held.version if held else None):
                return True, expected
        raise CorrectionNotPublished(
            f"bin {bin_id}'s latest count kept changing: {record_name(record)} again"
        )


def _already_labelled(item: Mapping[str, Any], label: HumanLabel, hint: str) -> AlreadyLabelled:
    return AlreadyLabelled(
        f"{item.get('reviewer')} already saved {human_label_or_none(item)} for this photo at "
        f"{item.get('reviewed_at')}; your {label} was not saved ({hint})"
    )


def corrected_event(
    record: Mapping[str, Any], label: HumanLabel, latest_followed: bool, expected: int | None
) -> BinCountCorrected:
    model_count = record.get("count")
    image = image_of(record)
    return BinCountCorrected(
        bin_id=str(record["bin_id"]),
        image=ImageRef(image.bucket, image.key, image.etag, image.version_id),
        captured_at=str(record["captured_at"]),
        model_version=str(record.get("model_version", "")),
        job_name=str(record.get("job_name", "")),
        count=label.count,
        count_is_lower_bound=label.is_lower_bound,
        model_count=None if model_count is None else int(model_count),
        reviewer=str(record["reviewer"]),
        reviewed_at=str(record["reviewed_at"]),
        latest_updated=latest_followed,
        expected_quantity=expected,
    )
