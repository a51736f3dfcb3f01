"""Configuration read once from environment variables (set by template.yaml or the local stack).

Every variable is listed in docs/pipeline.md. Defaults are what a developer wants locally; the
template sets all of them explicitly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from bincount.admission import AdmissionRules
from bincount.batching import JobLayout, TransformConfig
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


@dataclass(frozen=True)
class Settings:
    """Everything both functions need; unused fields are harmless for the other function."""

    results_bucket: str
    counts_table: str
    jobs_table: str
    event_bus_name: str
    model_name: str
    environment: str = "dev"
    ingest_prefix: str = "incoming/"
    image_suffixes: tuple[str, ...] = IMAGE_SUFFIXES
    key_pattern: str = DEFAULT_KEY_PATTERN
    manifest_prefix: str = "manifests/"
    output_prefix: str = "transform-output/"
    job_name_prefix: str = "bincount"
    instance_type: str = "ml.g4dn.xlarge"
    instance_count: int = 1
    max_images_per_job: int = 500
    max_jobs_in_flight: int = 4
    max_concurrent_transforms: int = 4
    max_payload_mb: int = 20
    invocation_timeout_s: int = 600
    invocation_max_retries: int = 1
    confidence_threshold: float = 0.5
    idempotency_table: str = ""
    ingest_queue_url: str = ""
    publish_max_attempts: int = 4
    result_read_workers: int = 8
    retry_queue_url: str = ""
    max_transient_retries: int = 3
    retry_base_delay_s: int = 60
    parked_retry_delay_s: int = 3600
    max_unknown_splits: int = 3
    reconcile_settle_s: int = 300
    job_timeout_minutes: int = 120
    ingest_bucket: str = ""
    max_capture_skew_s: int = 900
    staging_prefix: str = "staging/"
    staging_workers: int = 16
    ingest_dlq_url: str = ""

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
        env = os.environ if env is None else env

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise SettingsError(f"environment variable {name} is required")
            return value

        def integer(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            try:
                return int(raw) if raw else default
            except ValueError as error:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from error

        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            try:
                return float(raw) if raw else default
            except ValueError as error:
                raise SettingsError(f"{name} must be a number, got {raw!r}") from error

        concurrent, payload = transform_limits(
            integer("MAX_CONCURRENT_TRANSFORMS", cls.max_concurrent_transforms),
            integer("MAX_PAYLOAD_MB", cls.max_payload_mb),
        )
        suffixes = tuple(
            s.strip().lower() for s in env.get("IMAGE_SUFFIXES", ",".join(IMAGE_SUFFIXES)).split(",")
        )
        key_pattern = env.get("KEY_PATTERN", "").strip() or DEFAULT_KEY_PATTERN
        try:
            compiled = re.compile(key_pattern)
        except re.error as error:
            raise SettingsError(f"KEY_PATTERN is not a valid regular expression: {error}") from error
        if "bin_id" not in compiled.groupindex:
            raise SettingsError("KEY_PATTERN must define a named group (?P<bin_id>...)")
        prefix = env.get("INGEST_PREFIX", cls.ingest_prefix)
        settings = cls(
            results_bucket=required("RESULTS_BUCKET"),
            counts_table=required("COUNTS_TABLE"),
            jobs_table=required("JOBS_TABLE"),
            event_bus_name=required("EVENT_BUS_NAME"),
            model_name=required("MODEL_NAME"),
            environment=env.get("ENVIRONMENT", cls.environment),
            ingest_prefix=prefix if not prefix or prefix.endswith("/") else prefix + "/",
            image_suffixes=tuple(s if s.startswith(".") else "." + s for s in suffixes if s),
            key_pattern=key_pattern,
            manifest_prefix=env.get("MANIFEST_PREFIX", cls.manifest_prefix),
            output_prefix=env.get("OUTPUT_PREFIX", cls.output_prefix),
            job_name_prefix=env.get("JOB_NAME_PREFIX", cls.job_name_prefix),
            instance_type=env.get("TRANSFORM_INSTANCE_TYPE", cls.instance_type),
            instance_count=integer("TRANSFORM_INSTANCE_COUNT", cls.instance_count),
            max_images_per_job=integer("MAX_IMAGES_PER_JOB", cls.max_images_per_job),
            max_jobs_in_flight=integer("MAX_JOBS_IN_FLIGHT", cls.max_jobs_in_flight),
            max_concurrent_transforms=concurrent,
            max_payload_mb=payload,
            invocation_timeout_s=integer("INVOCATION_TIMEOUT_S", cls.invocation_timeout_s),
            invocation_max_retries=integer("INVOCATION_MAX_RETRIES", cls.invocation_max_retries),
            confidence_threshold=number("CONFIDENCE_THRESHOLD", cls.confidence_threshold),
            idempotency_table=env.get("IDEMPOTENCY_TABLE", ""),
            ingest_queue_url=env.get("INGEST_QUEUE_URL", ""),
            publish_max_attempts=integer("PUBLISH_MAX_ATTEMPTS", cls.publish_max_attempts),
            result_read_workers=integer("RESULT_READ_WORKERS", cls.result_read_workers),
            retry_queue_url=env.get("RETRY_QUEUE_URL", ""),
            max_transient_retries=integer("MAX_TRANSIENT_RETRIES", cls.max_transient_retries),
            retry_base_delay_s=integer("RETRY_BASE_DELAY_S", cls.retry_base_delay_s),
            parked_retry_delay_s=integer("PARKED_RETRY_DELAY_S", cls.parked_retry_delay_s),
            max_unknown_splits=integer("MAX_UNKNOWN_SPLITS", cls.max_unknown_splits),
            reconcile_settle_s=integer("RECONCILE_SETTLE_S", cls.reconcile_settle_s),
            job_timeout_minutes=integer("JOB_TIMEOUT_MINUTES", cls.job_timeout_minutes),
            ingest_bucket=env.get("INGEST_BUCKET", "").strip(),
            max_capture_skew_s=integer("MAX_CAPTURE_SKEW_S", cls.max_capture_skew_s),
            staging_prefix=env.get("STAGING_PREFIX", cls.staging_prefix),
            staging_workers=integer("STAGING_WORKERS", cls.staging_workers),
            ingest_dlq_url=env.get("INGEST_DLQ_URL", "").strip(),
        )
        if settings.max_capture_skew_s < 0:
            raise SettingsError("MAX_CAPTURE_SKEW_S must be >= 0")
        if not settings.staging_prefix.endswith("/") or settings.staging_prefix in (
            settings.manifest_prefix,
            settings.output_prefix,
        ):
            raise SettingsError("STAGING_PREFIX must end with / and differ from the other prefixes")
        if settings.max_images_per_job < 1:
            raise SettingsError("MAX_IMAGES_PER_JOB must be >= 1")
        if not 1 <= settings.invocation_timeout_s <= 3600:
            raise SettingsError("INVOCATION_TIMEOUT_S must be within 1..3600 (SageMaker's range)")
        retry_numbers = (
            settings.max_transient_retries,
            settings.retry_base_delay_s,
            settings.parked_retry_delay_s,
            settings.max_unknown_splits,
            settings.reconcile_settle_s,
            settings.job_timeout_minutes,
        )
        if min(retry_numbers) < 0:
            raise SettingsError("retry budgets and delays must be >= 0")
        if not 0 <= settings.invocation_max_retries <= 3:
            raise SettingsError("INVOCATION_MAX_RETRIES must be within 0..3 (SageMaker's range)")
        return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read on first use (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env()
