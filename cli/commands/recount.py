"""``bincount recount``: count stored photos again with the model the stack serves now.

The photos go through the normal batch path (the batcher's manifest, images.json and
CreateTransformJob, under MaxJobsInFlight); the collector writes the new result onto each
photo's record and keeps the previous one in its ``model_history``. Human labels stay; a bin's
latest count moves only for its newest photo. Running it again submits nothing for photos
already at the target version or already in a re-count job: it is how an interrupted or capped
re-count resumes (exit 1 while photos are left).
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bincount.adapters.s3_versions import S3VersionCopier
from bincount.batching import Chunk
from bincount.ports import JobStore, ObjectStore
from bincount.recounts import (
    Selection,
    Skipped,
    recount_chunks,
    recount_image,
    recount_prefix,
    select_records,
)
from bincount.settings import Settings, SettingsError, environment_from_outputs
from bincount.staging import stage_images
from bincount.submission import Submitted, Submitter, available_slots, submit_chunks
from bincount.timefmt import canonical_time
from bincount.uploads import ImageObject
from bincount.wiring import Clients, build_submitter
from botocore.exceptions import ClientError

from cli.arguments import Subcommands
from cli.output import emit
from cli.queries import image_items, image_items_of_bin
from cli.stack import StackResources, stack_for
from common.errors import EXIT_OK, EXIT_REFUSED, Refused, UsageError


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "recount",
        run,
        help="count stored photos again with the served model (history kept)",
        doc=__doc__,
        examples=[
            "bincount recount --dry-run",
            "bincount recount --since 2026-11-01 --bins A-1 A-2 --json",
            "bincount recount --model-version bincount-efficientnet_lite0-2026.12.01-1200",
        ],
    )
    parser.add_argument("--since", help="only photos captured at or after this time (ISO date or time, UTC)")
    parser.add_argument("--bins", nargs="+", default=[], metavar="BIN", help="only these bins")
    parser.add_argument(
        "--model-version",
        help="the version that counts them (default: what the stack's real-time endpoint answers with)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be submitted, submit nothing")


# -- the work ------------------------------------------------------------------------------------
# The photos go through the batcher's own Submitter (manifest, images.json, CreateTransformJob,
# jobs table) under its MaxJobsInFlight cap; only their chunks are re-counts (bincount.recounts),
# so the collector updates the existing records instead of creating them. Each job reads the
# photo's staged copy (the one the first count read); a copy that is gone is made again from the
# ingest bucket's version, as the batcher does, or the photo is skipped with the reason.


@dataclass
class RecountReport:
    model_version: str
    dry_run: bool = False
    selected: int = 0  # records not at the target version
    submitted: int = 0  # photos in jobs started now (dry run: that would be started)
    already_current: int = 0
    in_flight: int = 0  # photos already in a re-count job of this version
    left: int = 0  # photos not submitted because MaxJobsInFlight is full: run again
    jobs: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = [asdict(item) for item in self.skipped]
        return data


# -- the stack's settings and served model ------------------------------------------------------


def batcher_settings(stack: StackResources) -> Settings:
    """The batcher's own settings (its Lambda environment) where Lambda has them, else the
    stack's outputs with the defaults (the local stack, whose functions run in its daemon)."""
    function = stack.output("BatcherFunctionName")
    if function and not stack.is_local:
        try:
            config = stack.client("lambda").get_function_configuration(FunctionName=function)
            return Settings.from_env((config.get("Environment") or {}).get("Variables") or {})
        except (ClientError, SettingsError):
            pass
    try:
        return Settings.from_env(environment_from_outputs(stack.outputs()))
    except SettingsError as error:
        raise Refused(f"stack {stack.stack}: {error}") from error


def probe_photo() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def served_model_version(stack: StackResources) -> str:
    """The version the stack's model answers with: one tiny photo through its real-time endpoint."""
    from cli.counting import HttpEndpointCounter, Photo, SageMakerEndpointCounter

    endpoint = stack.realtime_endpoint
    if not endpoint:
        raise UsageError(
            f"stack {stack.stack} has no real-time endpoint to ask which model it serves: "
            "pass --model-version"
        )
    counter = (
        HttpEndpointCounter(endpoint)
        if endpoint.startswith("http")
        else SageMakerEndpointCounter(endpoint, stack.client("sagemaker-runtime"))
    )
    record = counter.count([Photo("probe", probe_photo(), "image/png")])[0]
    version = str(record.get("model_version") or "")
    if not version:
        raise Refused(f"the endpoint {endpoint} did not say its model version: pass --model-version")
    return version


# -- the re-count ---------------------------------------------------------------------------------


def read_records(stack: StackResources, bins: Sequence[str]) -> list[dict[str, Any]]:
    dynamodb = stack.client("dynamodb")
    if bins:
        return [item for bin_id in bins for item in image_items_of_bin(dynamodb, stack.counts_table, bin_id)]
    return image_items(dynamodb, stack.counts_table)


def in_flight_identities(jobs: JobStore, objects: ObjectStore, prefix: str) -> set[tuple[str, str, str]]:
    """Uploads already in a re-count job of this version that is not collected yet."""
    identities: set[tuple[str, str, str]] = set()
    for job in jobs.in_flight():
        uri = str(job.get("images_uri") or "")
        if not str(job.get("job_name", "")).startswith(prefix) or not uri.startswith("s3://"):
            continue
        bucket, _, key = uri[len("s3://") :].partition("/")
        document = objects.get_json(bucket, key)
        identities |= {ImageObject.from_dict(image).identity for image in document["images"]}
    return identities


def stage(
    images: list[ImageObject], stack: StackResources, settings: Settings, report: RecountReport
) -> list[ImageObject]:
    """The staged copies (made again where gone); photos whose version is gone are skipped."""
    staging = stage_images(
        images, S3VersionCopier(stack.client("s3")), settings.results_bucket, settings.staging_prefix
    )
    for image, error in staging.unavailable:
        report.skipped.append(Skipped(image.key, image.bin_id, f"no staged copy and {error.message}"))
    for image, failure in staging.failed:
        report.skipped.append(Skipped(image.key, image.bin_id, f"staging failed ({failure}): run again"))
    return staging.staged


def stack_clients(stack: StackResources) -> Clients:
    """The stack's clients (its endpoint and region) for the handlers' wiring: none of boto3's defaults."""
    return Clients(
        s3=stack.client("s3"),
        sagemaker=stack.client("sagemaker"),
        dynamodb=stack.resource("dynamodb"),
        events=stack.client("events"),
        sqs=stack.client("sqs"),
    )


def submit(chunks: list[Chunk], submitter: Submitter, settings: Settings, report: RecountReport) -> None:
    outcome = submit_chunks(chunks, submitter, settings.max_jobs_in_flight, f"{settings.job_name_prefix}-")
    for chunk in chunks:
        result = outcome.outcomes[chunk.job_name]
        if result is Submitted.STARTED:
            report.submitted += len(chunk.images)
            report.jobs.append(chunk.job_name)
        elif result is Submitted.EXISTS:
            report.in_flight += len(chunk.images)
        elif result is Submitted.DEFERRED:
            report.left += len(chunk.images)
        else:
            reason = f"job {chunk.job_name} refused by SageMaker"
            report.skipped += [Skipped(image.key, image.bin_id, reason) for image in chunk.images]


def recount(
    stack: StackResources,
    settings: Settings,
    model_version: str,
    since: str | None,
    bins: Sequence[str],
    dry_run: bool,
) -> RecountReport:
    """Select, leave out what is in flight, stage, chunk, submit under the cap (or only say so)."""
    report = RecountReport(model_version=model_version, dry_run=dry_run)
    selection: Selection = select_records(read_records(stack, bins), model_version, since, bins)
    report.selected, report.already_current = len(selection.candidates), selection.current
    report.skipped.extend(selection.skipped)
    submitter = build_submitter(settings, stack_clients(stack))
    objects, jobs, transforms = submitter.objects, submitter.jobs, submitter.transforms
    prefix = recount_prefix(settings.job_name_prefix, model_version)
    running = in_flight_identities(jobs, objects, f"{prefix}-")
    images = [recount_image(item) for item in selection.candidates]
    waiting = [image for image in images if image.identity not in running]
    report.in_flight = len(images) - len(waiting)
    if not dry_run:
        waiting = stage(waiting, stack, settings, report)
    chunks = recount_chunks(waiting, settings.max_images_per_job, settings.job_name_prefix, model_version)
    if not dry_run:
        submit(chunks, submitter, settings, report)
        return report
    slots = available_slots(transforms, settings.max_jobs_in_flight, f"{settings.job_name_prefix}-")
    report.jobs = [chunk.job_name for chunk in chunks[:slots]]
    report.submitted = sum(len(chunk.images) for chunk in chunks[:slots])
    report.left = sum(len(chunk.images) for chunk in chunks[slots:])
    return report


def skipped_lines(skipped: Iterable[Skipped], limit: int = 10) -> list[str]:
    items = list(skipped)
    lines = [f"  skipped {item.bin_id} {item.key}: {item.reason}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more skipped (--json lists them all)")
    return lines


def summary(report: RecountReport, max_in_flight: int) -> str:
    verb = "would submit" if report.dry_run else "submitted"
    lines = [
        f"recount to {report.model_version}: {report.submitted} {verb} in {len(report.jobs)} jobs, "
        f"{report.already_current} already current, {report.in_flight} in flight, "
        f"{len(report.skipped)} skipped"
    ]
    lines += skipped_lines(report.skipped)
    if report.left:
        lines.append(f"{report.left} photos left; run again (MaxJobsInFlight {max_in_flight} reached)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = canonical_time(args.since)
        except ValueError as error:
            raise UsageError(f"--since {args.since!r} is not a date or time (e.g. 2026-11-01)") from error
    if args.model_version is not None and not args.model_version.strip():
        raise UsageError("--model-version must not be empty")
    stack = stack_for(args)
    settings = batcher_settings(stack)
    version = args.model_version.strip() if args.model_version else served_model_version(stack)
    report = recount(stack, settings, version, since, args.bins, args.dry_run)
    emit({"stack": stack.stack, **report.to_dict()}, summary(report, settings.max_jobs_in_flight), args.json)
    return EXIT_REFUSED if report.left else EXIT_OK
