"""Configuration read once from environment variables (set by template.yaml or the local stack).

Every variable is listed in docs/pipeline.md. Defaults are what a developer wants locally; the
template sets all of them explicitly. Each field of :class:`Settings` names its variable and the
reader that parses it (``field(metadata=variable(...))``), so adding a setting is one line here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from bincount.admission import AdmissionRules
from bincount.batching import JobLayout, TransformConfig
from bincount.count_decisions import DecisionRules
from bincount.failures import RetryPolicy
from bincount.image_formats import IMAGE_SUFFIXES
from bincount.uploads import DEFAULT_KEY_PATTERN, KeyRules

# SageMaker refuses a transform job whose MaxConcurrentTransforms x MaxPayloadInMB exceeds this.
MAX_CONCURRENCY_TIMES_PAYLOAD_MB = 100


class SettingsError(ValueError):
    """A configuration value is missing or invalid: fail at cold start, not mid-batch."""


def transform_limits(max_concurrent: int, max_payload_mb: int) -> tuple[int, int]:
    """Fit (MaxConcurrentTransforms, MaxPayloadInMB) under SageMaker's product limit of 100.

    The payload limit wins because a photo larger than it fails its record; concurrency is
    lowered instead (at least 1).
    """
    if max_payload_mb < 1 or max_payload_mb > MAX_CONCURRENCY_TIMES_PAYLOAD_MB:
        raise SettingsError(f"MAX_PAYLOAD_MB must be within 1..100, got {max_payload_mb}")
    if max_concurrent < 1:
        raise SettingsError(f"MAX_CONCURRENT_TRANSFORMS must be >= 1, got {max_concurrent}")
    return min(max_concurrent, MAX_CONCURRENCY_TIMES_PAYLOAD_MB // max_payload_mb), max_payload_mb


# -- readers: (environment, variable name, the field's default) -> the field's value ---------------
Reader = Callable[[Mapping[str, str], str, Any], Any]


def required(env: Mapping[str, str], name: str, _default: Any) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is required")
    return value


def text(env: Mapping[str, str], name: str, default: str) -> str:
    """As set (an empty value stays empty), else the default."""
    return env.get(name, default)


def stripped(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default).strip()


def converted(convert: Callable[[str], Any], kind: str) -> Reader:
    """A reader of numbers: blank means the default, anything else must convert."""

    def read(env: Mapping[str, str], name: str, default: Any) -> Any:
        raw = env.get(name, "").strip()
        try:
            return convert(raw) if raw else default
        except ValueError as error:
            raise SettingsError(f"{name} must be {kind}, got {raw!r}") from error

    return read


integer = converted(int, "an integer")
number = converted(float, "a number")


def folder(env: Mapping[str, str], name: str, default: str) -> str:
    """A key prefix ends with ``/`` (an empty one means the whole bucket)."""
    prefix = env.get(name, default)
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def suffix_list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated, case-insensitive, with or without the dot: ``jpg,.PNG``."""
    listed = (s.strip().lower() for s in env.get(name, ",".join(default)).split(","))
    return tuple(s if s.startswith(".") else "." + s for s in listed if s)


def bin_pattern(env: Mapping[str, str], name: str, default: str) -> str:
    """A regular expression with a ``bin_id`` group: refused at cold start, not on the first photo."""
    pattern = env.get(name, "").strip() or default
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise SettingsError(f"{name} is not a valid regular expression: {error}") from error
    if "bin_id" not in compiled.groupindex:
        raise SettingsError(f"{name} must define a named group (?P<bin_id>...)")
    return pattern


def variable(name: str, reader: Reader = text) -> dict[str, Any]:
    """A field's metadata: the environment variable it is read from, and how."""
    return {"env": name, "reader": reader}


@dataclass(frozen=True)
class Settings:
    """Everything both functions need; unused fields are harmless for the other function."""

    results_bucket: str = field(metadata=variable("RESULTS_BUCKET", required))
    counts_table: str = field(metadata=variable("COUNTS_TABLE", required))
    jobs_table: str = field(metadata=variable("JOBS_TABLE", required))
    event_bus_name: str = field(metadata=variable("EVENT_BUS_NAME", required))
    model_name: str = field(metadata=variable("MODEL_NAME", required))
    environment: str = field(default="dev", metadata=variable("ENVIRONMENT"))
    ingest_prefix: str = field(default="incoming/", metadata=variable("INGEST_PREFIX", folder))
    image_suffixes: tuple[str, ...] = field(
        default=IMAGE_SUFFIXES, metadata=variable("IMAGE_SUFFIXES", suffix_list)
    )
    key_pattern: str = field(default=DEFAULT_KEY_PATTERN, metadata=variable("KEY_PATTERN", bin_pattern))
    manifest_prefix: str = field(default="manifests/", metadata=variable("MANIFEST_PREFIX"))
    output_prefix: str = field(default="transform-output/", metadata=variable("OUTPUT_PREFIX"))
    job_name_prefix: str = field(default="bincount", metadata=variable("JOB_NAME_PREFIX"))
    instance_type: str = field(default="ml.g4dn.xlarge", metadata=variable("TRANSFORM_INSTANCE_TYPE"))
    instance_count: int = field(default=1, metadata=variable("TRANSFORM_INSTANCE_COUNT", integer))
    max_images_per_job: int = field(default=500, metadata=variable("MAX_IMAGES_PER_JOB", integer))
    max_jobs_in_flight: int = field(default=4, metadata=variable("MAX_JOBS_IN_FLIGHT", integer))
    max_concurrent_transforms: int = field(default=4, metadata=variable("MAX_CONCURRENT_TRANSFORMS", integer))
    max_payload_mb: int = field(default=20, metadata=variable("MAX_PAYLOAD_MB", integer))
    invocation_timeout_s: int = field(default=600, metadata=variable("INVOCATION_TIMEOUT_S", integer))
    invocation_max_retries: int = field(default=1, metadata=variable("INVOCATION_MAX_RETRIES", integer))
    confidence_threshold: float = field(default=0.5, metadata=variable("CONFIDENCE_THRESHOLD", number))
    false_alarm_rate: float = field(default=0.05, metadata=variable("DISCREPANCY_FALSE_ALARM_RATE", number))
    review_budget: float = field(default=0.10, metadata=variable("REVIEW_BUDGET", number))
    review_range_width: int = field(default=5, metadata=variable("REVIEW_RANGE_WIDTH", integer))
    idempotency_table: str = field(default="", metadata=variable("IDEMPOTENCY_TABLE"))
    ingest_queue_url: str = field(default="", metadata=variable("INGEST_QUEUE_URL"))
    publish_max_attempts: int = field(default=4, metadata=variable("PUBLISH_MAX_ATTEMPTS", integer))
    result_read_workers: int = field(default=8, metadata=variable("RESULT_READ_WORKERS", integer))
    retry_queue_url: str = field(default="", metadata=variable("RETRY_QUEUE_URL"))
    max_transient_retries: int = field(default=3, metadata=variable("MAX_TRANSIENT_RETRIES", integer))
    retry_base_delay_s: int = field(default=60, metadata=variable("RETRY_BASE_DELAY_S", integer))
    parked_retry_delay_s: int = field(default=3600, metadata=variable("PARKED_RETRY_DELAY_S", integer))
    max_unknown_splits: int = field(default=3, metadata=variable("MAX_UNKNOWN_SPLITS", integer))
    reconcile_settle_s: int = field(default=300, metadata=variable("RECONCILE_SETTLE_S", integer))
    job_timeout_minutes: int = field(default=120, metadata=variable("JOB_TIMEOUT_MINUTES", integer))
    ingest_bucket: str = field(default="", metadata=variable("INGEST_BUCKET", stripped))
    max_capture_skew_s: int = field(default=900, metadata=variable("MAX_CAPTURE_SKEW_S", integer))
    staging_prefix: str = field(default="staging/", metadata=variable("STAGING_PREFIX"))
    staging_workers: int = field(default=16, metadata=variable("STAGING_WORKERS", integer))
    ingest_dlq_url: str = field(default="", metadata=variable("INGEST_DLQ_URL", stripped))

    def layout(self) -> JobLayout:
        return JobLayout(self.results_bucket, self.manifest_prefix, self.output_prefix, self.staging_prefix)

    def transform_config(self) -> TransformConfig:
        return TransformConfig(
            model_name=self.model_name,
            instance_type=self.instance_type,
            instance_count=self.instance_count,
            max_concurrent_transforms=self.max_concurrent_transforms,
            max_payload_mb=self.max_payload_mb,
            invocation_timeout_s=self.invocation_timeout_s,
            invocation_max_retries=self.invocation_max_retries,
            environment=self.environment,
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_transient_retries=self.max_transient_retries,
            base_delay_s=self.retry_base_delay_s,
            parked_delay_s=self.parked_retry_delay_s,
            max_unknown_splits=self.max_unknown_splits,
        )

    def decision_rules(self) -> DecisionRules:
        return DecisionRules(
            false_alarm_rate=self.false_alarm_rate,
            review_budget=self.review_budget,
            range_width=self.review_range_width,
            confidence_threshold=self.confidence_threshold,
        )

    def key_rules(self) -> KeyRules:
        return KeyRules(self.ingest_prefix, self.image_suffixes, self.key_pattern)

    def admission_rules(self) -> AdmissionRules:
        return AdmissionRules(
            keys=self.key_rules(),
            ingest_bucket=self.ingest_bucket,
            max_payload_mb=self.max_payload_mb,
            max_capture_skew_s=self.max_capture_skew_s,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every field from its variable, fit the transform limits, then check the whole."""
        env = os.environ if env is None else env
        values = {
            spec.name: spec.metadata["reader"](env, spec.metadata["env"], spec.default)
            for spec in fields(cls)
        }
        values["max_concurrent_transforms"], values["max_payload_mb"] = transform_limits(
            values["max_concurrent_transforms"], values["max_payload_mb"]
        )
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Rules across fields and SageMaker's ranges; raises SettingsError naming the variable."""
        if self.max_capture_skew_s < 0:
            raise SettingsError("MAX_CAPTURE_SKEW_S must be >= 0")
        if not self.staging_prefix.endswith("/") or self.staging_prefix in (
            self.manifest_prefix,
            self.output_prefix,
        ):
            raise SettingsError("STAGING_PREFIX must end with / and differ from the other prefixes")
        if self.max_images_per_job < 1:
            raise SettingsError("MAX_IMAGES_PER_JOB must be >= 1")
        if not 1 <= self.invocation_timeout_s <= 3600:
            raise SettingsError("INVOCATION_TIMEOUT_S must be within 1..3600 (SageMaker's range)")
        retry_numbers = (
            self.max_transient_retries,
            self.retry_base_delay_s,
            self.parked_retry_delay_s,
            self.max_unknown_splits,
            self.reconcile_settle_s,
            self.job_timeout_minutes,
        )
        if min(retry_numbers) < 0:
            raise SettingsError("retry budgets and delays must be >= 0")
        if not 0.0 < self.false_alarm_rate < 1.0:
            raise SettingsError("DISCREPANCY_FALSE_ALARM_RATE must lie in (0, 1)")
        if not 0.0 <= self.review_budget < 1.0:
            raise SettingsError("REVIEW_BUDGET must lie in [0, 1)")
        if self.review_range_width < 1:
            raise SettingsError("REVIEW_RANGE_WIDTH must be >= 1")
        if not 0 <= self.invocation_max_retries <= 3:
            raise SettingsError("INVOCATION_MAX_RETRIES must be within 0..3 (SageMaker's range)")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read on first use (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env()


#: The variables template.yaml fills from a resource that the stack also names in its ``Outputs``:
#: variable -> output. Whoever runs the functions' code against a deployed or local stack (the
#: tests, ``bincount recount``) builds their environment from the outputs with
#: :func:`environment_from_outputs`; tests/e2e/test_local_stack.py checks it against the
#: environment the local stack resolves from template.yaml.
OUTPUT_OF_VARIABLE: dict[str, str] = {
    "INGEST_BUCKET": "IngestBucketName",
    "INGEST_PREFIX": "IngestPrefix",
    "RESULTS_BUCKET": "ResultsBucketName",
    "COUNTS_TABLE": "CountsTableName",
    "JOBS_TABLE": "JobsTableName",
    "IDEMPOTENCY_TABLE": "IdempotencyTableName",
    "EVENT_BUS_NAME": "EventBusName",
    "MODEL_NAME": "ModelName",
    "JOB_NAME_PREFIX": "JobNamePrefix",
    "INGEST_QUEUE_URL": "IngestQueueUrl",
    "RETRY_QUEUE_URL": "RetryQueueUrl",
    "INGEST_DLQ_URL": "IngestDLQUrl",
}


def environment_from_outputs(outputs: Mapping[str, str]) -> dict[str, str]:
    """The functions' variables that a stack's outputs give (an output absent or empty: no variable)."""
    return {name: outputs[output] for name, output in OUTPUT_OF_VARIABLE.items() if outputs.get(output)}
