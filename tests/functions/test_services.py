"""Submission and collection rules with in-memory fakes: fast, and free to script failures."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
from bincount.adapters.sqs import backoff_seconds
from bincount.batching import output_key_for, plan_chunks
from bincount.count_decisions import DecisionRules
from bincount.job_events import TransformJobEvent
from bincount.ports import JobSubmissionError
from bincount.settings import Settings, SettingsError, transform_limits
from bincount.submission import Submitted, submit_chunks
from pipeline_fakes import (
    LAYOUT,
    FakePipeline,
    photo,
)

RULES = DecisionRules(confidence_threshold=0.5)


class World(FakePipeline):
    def finish(self, name: str, status: str, poison: set[str]) -> None:
        """Play Batch Transform: every manifest entry (a witness first) gets its .out unless it is
        poison or the job failed before reaching it (everything after the first poison photo)."""
        document = self.objects.get_json("results", LAYOUT.images_key(name))
        key_of = {
            item["staged_key"]: item["key"]
            for item in [*document["images"], document.get("witness") or {}]
            if item
        }
        for entry in self.objects.get_json("results", LAYOUT.manifest_key(name))[1:]:
            if key_of[entry] in poison and status == "Failed":
                break
            record = {"count": 1, "confidence": 0.9, "probabilities": [], "model_version": "v"}
            self.objects.put_bytes(
                "results", output_key_for(LAYOUT, name, entry), json.dumps(record).encode()
            )


def test_redrive_isolates_a_poison_image() -> None:
    world = World()
    images = [photo(i) for i in range(8)]
    poison = {images[5].key}
    (chunk,) = plan_chunks(images, max_images=8)
    assert world.submitter.submit(chunk) is Submitted.STARTED
    pending = [chunk.job_name]
    rounds = 0
    while pending:
        rounds += 1
        name = pending.pop(0)
        images_in_job = {
            i["key"] for i in world.objects.get_json("results", LAYOUT.images_key(name))["images"]
        }
        status = "Failed" if images_in_job & poison else "Completed"
        world.finish(name, status, poison)
        reason = "ClientError: See job logs for more information" if status == "Failed" else ""
        report = world.collector.collect(
            TransformJobEvent(job_name=name, status=status, failure_reason=reason)
        )
        pending.extend(report.redriven_jobs)
    records = {item["image_key"]: item for item in world.counts.images()}
    assert set(records) == {image.key for image in images}  # every image: exactly one record
    assert records[images[5].key]["error_code"] == "transform_failed"
    assert sum(1 for r in records.values() if r["outcome"] == "count") == 7
    assert rounds <= 8


def test_cap_and_throttling_in_submit_chunks() -> None:
    world = World()
    chunks = plan_chunks({photo(i): {f"m{i}"} for i in range(3)}, max_images=1)
    world.transforms.in_progress = 2
    report = submit_chunks(chunks, world.submitter, max_in_flight=3, name_prefix="bincount-")
    assert report.count(Submitted.STARTED) == 1 and report.deferred_messages == {"m1", "m2"}

    world = World()
    world.transforms.errors = [JobSubmissionError("ValidationException", "no model", retryable=False)]
    report = submit_chunks(chunks, world.submitter, max_in_flight=9, name_prefix="bincount-")
    assert report.failed_messages == {"m0"} and report.count(Submitted.STARTED) == 2


def test_settings_limits_and_validation() -> None:
    assert transform_limits(8, 20) == (5, 20)
    assert transform_limits(4, 20) == (4, 20)
    base = {
        "RESULTS_BUCKET": "r",
        "COUNTS_TABLE": "c",
        "JOBS_TABLE": "j",
        "EVENT_BUS_NAME": "b",
        "MODEL_NAME": "m",
    }
    settings = Settings.from_env({**base, "INGEST_PREFIX": "in", "IMAGE_SUFFIXES": "jpg,.PNG"})
    assert settings.ingest_prefix == "in/" and settings.image_suffixes == (".jpg", ".png")
    with pytest.raises(SettingsError):
        Settings.from_env({**base, "KEY_PATTERN": "(?P<bin>x)"})
    with pytest.raises(SettingsError):
        Settings.from_env({k: v for k, v in base.items() if k != "MODEL_NAME"})
    with pytest.raises(SettingsError, match=r"^MAX_IMAGES_PER_JOB must be an integer, got 'many'$"):
        Settings.from_env({**base, "MAX_IMAGES_PER_JOB": "many"})
    concurrency = Settings.from_env({**base, "MAX_CONCURRENT_TRANSFORMS": "9", "MAX_PAYLOAD_MB": "50"})
    assert (concurrency.max_concurrent_transforms, concurrency.max_payload_mb) == (2, 50)
    assert [backoff_seconds(n) for n in (1, 2, 6, 99)] == [30, 60, 900, 900]


def test_every_setting_is_read_from_its_own_documented_variable() -> None:
    """A field without its variable would silently keep its default in every deployment."""
    names = [spec.metadata.get("env") for spec in fields(Settings)]
    assert all(names) and len(set(names)) == len(names)
    documented = (Path(__file__).resolve().parents[2] / "docs" / "pipeline.md").read_text()
    assert [name for name in names if f"`{name}`" not in documented] == []
