"""``make demo``: bin photos through the real pipeline on one machine, then what came out.

Starts moto, creates the stack from template.yaml, uploads photos into the ingest bucket, lets
S3 -> SQS deliver them, plays Lambda (batcher, collector) and SageMaker Batch Transform (our
serving handlers over the container HTTP contract) until every image is accounted for, then
prints the results and writes build/demo/report.json.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cli.inventory import expected_quantities, write_expected_quantities
from common.errors import UsageError, one_line_errors
from local.emulator.pipeline import REPO_ROOT, LocalPipeline, PipelineOptions, local_pipeline
from local.emulator.torchserve_server import torchserve_unavailable
from local.report import (
    Upload,
    accounting,
    count_quality,
    discrepancy_lines,
    discrepancy_summary,
    event_summary,
    events_table,
    mark_discrepancies,
    quality_lines,
    result_entries,
    results_table,
    totals,
    write_report,
)
from local.uploads import Photo, find_photos, photo_uploads, synthetic_uploads

log = logging.getLogger("local.demo")


class RunFailed(RuntimeError):
    """Not every uploaded image was accounted for in time."""


def interactive() -> bool:
    return sys.stderr.isatty()


def wait_for_records(pipeline: LocalPipeline, keys: set[str], timeout_s: float, label: str) -> float:
    """Wait until every key has a record in the counts table; returns when that happened.

    Progress only goes up: a key once recorded stays counted (a scan racing the collector may
    miss it once), and the log repeats a line only when the number moved.
    """
    deadline = time.monotonic() + timeout_s
    recorded: set[str] = set()
    logged = -1
    with tqdm(total=len(keys), desc=label, unit="img", disable=not interactive()) as bar:
        while True:
            before = len(recorded)
            recorded |= keys & set(pipeline.image_records())
            bar.update(len(recorded) - before)
            if not interactive() and len(recorded) > logged:
                log.info("%s: %d/%d images recorded", label, len(recorded), len(keys))
                logged = len(recorded)
            if len(recorded) == len(keys):
                return time.monotonic()
            if time.monotonic() > deadline:
                raise RunFailed(_missing_report(pipeline, keys - recorded, len(keys), timeout_s))
            time.sleep(0.5)


def _missing_report(pipeline: LocalPipeline, missing_keys: set[str], total: int, timeout_s: float) -> str:
    missing = sorted(missing_keys)
    return (
        f"{len(missing)} of {total} images have no record after {timeout_s:.0f} s: "
        + ", ".join(missing[:20])
        + (" ..." if len(missing) > 20 else "")
        + f"\n  dead-letter queues: {pipeline.dead_letters() or 'empty'}"
        + f"\n  worker errors: {pipeline.worker_errors[-5:] or 'none'}"
        + f"\n  transform jobs run: {[(o.name, o.status) for o in pipeline.executor.outcomes]}"
    )


def settle_events(pipeline: LocalPipeline, quiet_s: float = 2.0, limit_s: float = 15.0) -> None:
    """Let the consumer queue drain: stop once no new event arrived for ``quiet_s``."""
    deadline = time.monotonic() + limit_s
    seen, quiet_since = len(pipeline.consumed_events), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.3)
        if len(pipeline.consumed_events) != seen:
            seen, quiet_since = len(pipeline.consumed_events), time.monotonic()


def run(
    options: PipelineOptions,
    make_uploads: Any,
    timeout_s: float,
    label: str = "counted",
    inventory: bool = False,
) -> dict[str, Any]:
    """Upload, wait for every image, and build the report (shared with the benchmark).

    ``inventory``: first write each bin's expected quantity (the uploads' labels) as an inventory
    system would, so counts that disagree raise ``Inventory Discrepancy Detected``.
    """
    started = time.monotonic()
    handler_stdout = options.log_dir / "handlers.log" if options.log_dir else None
    with contextlib.ExitStack() as outputs:
        if handler_stdout is not None and options.environment_overrides:
            # Powertools' JSON logs and EMF metrics go to stdout; keep the terminal for the report.
            outputs.enter_context(contextlib.redirect_stdout(outputs.enter_context(handler_stdout.open("a"))))
        return _run(options, make_uploads, timeout_s, label, started, inventory)


def _run(
    options: PipelineOptions,
    make_uploads: Any,
    timeout_s: float,
    label: str,
    started: float,
    inventory: bool,
) -> dict[str, Any]:
    with local_pipeline(options) as pipeline:
        ready = time.monotonic()
        uploads: list[Upload] = make_uploads(pipeline.wiring.ingest_prefix)
        quantities = expected_quantities(uploads) if inventory else {}
        write_expected_quantities(
            pipeline.endpoint.client("dynamodb"), pipeline.wiring.counts_table, quantities
        )
        upload_start = time.monotonic()
        keys = upload_all(pipeline, uploads)
        finished = wait_for_records(pipeline, keys, timeout_s, label)
        settle_events(pipeline)
        entries = result_entries(uploads, pipeline.image_records())
        return pipeline_report(
            pipeline,
            entries,
            uploaded=len(uploads),
            elapsed=finished - upload_start,
            quantities_written=len(quantities),
            startup_s=round(ready - started, 2),
        )


def upload_all(pipeline: LocalPipeline, uploads: list[Upload]) -> set[str]:
    """Put every upload into the ingest bucket (a repeated key is uploaded again); the keys."""
    keys = {upload.key for upload in uploads}
    for upload in tqdm(uploads, desc="uploaded", unit="img", disable=not interactive()):
        pipeline.upload(upload.key, upload.body, upload.content_type)
    again = len(uploads) - len(keys)
    log.info(
        "uploaded %d photos to s3://%s/%s%s",
        len(keys),
        pipeline.wiring.ingest_bucket,
        pipeline.wiring.ingest_prefix,
        f" (and {again} of them once more, to show a repeated upload gets no second record)" if again else "",
    )
    return keys


def pipeline_report(
    pipeline: LocalPipeline,
    entries: list[dict[str, Any]],
    *,
    uploaded: int,
    elapsed: float,
    quantities_written: int,
    startup_s: float,
) -> dict[str, Any]:
    """The report, read from the running pipeline; ``entries`` holds one per distinct key."""
    mark_discrepancies(entries, pipeline.consumed_events)
    alpha = stack_number(pipeline, "DISCREPANCY_FALSE_ALARM_RATE")
    return {
        "totals": totals(entries, uploaded, elapsed),
        "quality": count_quality(entries),
        "confidence_threshold": confidence_threshold(pipeline),
        "discrepancies": discrepancy_summary(pipeline.consumed_events, entries, alpha),
        "expected_quantities_written": quantities_written,
        "accounting": accounting(entries),
        "startup_s": startup_s,
        "model_server": pipeline.options.server,
        "stages": pipeline.stage_rates(len(entries)),
        "transform_jobs": [
            {
                "name": o.name,
                "status": o.status,
                "records": o.records,
                "written": o.written,
                "seconds": round(o.seconds, 2),
            }
            for o in pipeline.executor.outcomes
        ],
        "events_received": event_summary(pipeline.consumed_events),
        "events": pipeline.consumed_events,
        "dead_letters": pipeline.dead_letters(),
        "worker_errors": pipeline.worker_errors,
        "stack": {"name": pipeline.stack.stack_name, "outputs": pipeline.stack.outputs},
        "results": entries,
    }


def stack_number(pipeline: LocalPipeline, variable: str) -> float | None:
    """A number of the functions' environment, as the stack configured it (template parameters)."""
    for spec in pipeline.stack.functions().values():
        value = spec.environment.get(variable)
        if value is not None:
            return float(value)
    return None


def confidence_threshold(pipeline: LocalPipeline) -> float | None:
    """The collector's review threshold for models without a range (template parameter)."""
    return stack_number(pipeline, "CONFIDENCE_THRESHOLD")


def print_report(report: dict[str, Any], out: Path) -> None:
    print("\nResults by bin\n" + results_table(report["results"]))
    for line in quality_lines(report.get("quality"), report.get("confidence_threshold")):
        print(line)
    for line in discrepancy_lines(report.get("discrepancies")):
        print(line)
    print(f"\nInventory events a downstream consumer received: {report['events_received'] or 'none'}")
    print(events_table(report["events"]))
    print("\nTotals")
    for name, value in report["totals"].items():
        print(f"  {name:<28} {value}")
    ok = report["accounting"]["every_image_exactly_one_record"]
    print(f"  {'one record per image (DynamoDB)':<28} {'yes' if ok else 'NO: ' + str(report['accounting'])}")
    print("\nStages: photos per second of work; working = seconds spent handling photos, first to last =")
    print("from the stage's first photo to its last (stages overlap, so spans add up to more than the run)")
    for stage, rate in report["stages"].items():
        print(
            f"  {stage:<12} {rate['images_per_s']:>8} photos/s  working {rate['busy_s']:>7} s"
            f"  first to last {rate['span_s']:>7} s"
        )
    server = {
        "torchserve": "TorchServe + sagemaker-pytorch-inference, the SageMaker container's code path",
        "python": "the local fallback server (the container's HTTP contract, our handlers)",
    }.get(report.get("model_server", ""), report.get("model_server"))
    print(f"\nModel server: {server}")
    print(f"Report: {out}")


def choose_server(wanted: str) -> str:
    if wanted == "python":
        return wanted
    reason = torchserve_unavailable()
    if reason is None:
        return "torchserve"
    if wanted == "torchserve":
        raise UsageError(f"--server torchserve: {reason}; use --server python (or auto)")
    log.info("model server: the fallback server (%s)", reason)
    return "python"


def positive(text: str) -> int:
    """argparse type: a whole number above zero (a count of photos)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} photos: give at least 1")
    return value


#: DiscrepancyFalseAlarmRate's MinValue and MaxValue in template.yaml
ALPHA_RANGE = (0.001, 0.5)


def false_alarm_rate(text: str) -> float:
    """argparse type: α, a share strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not ALPHA_RANGE[0] <= value <= ALPHA_RANGE[1]:
        low, high = ALPHA_RANGE
        raise argparse.ArgumentTypeError(
            f"{value:g}: α must lie within {low:g}..{high:g} (the template's range)"
        )
    return value


def decision_parameters(alpha: float | None) -> dict[str, str]:
    """Template parameters of a local run's options (``--alpha``); empty keeps the template's."""
    return {} if alpha is None else {"DiscrepancyFalseAlarmRate": f"{alpha:g}"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=REPO_ROOT / "build/model/model-local.tar.gz",
        help="model.tar.gz to serve",
    )
    parser.add_argument(
        "--images",
        type=Path,
        help="your photos: one photo, a folder of photos (each its own bin), or a folder of "
        "<bin>/<photo> subfolders; a labels.csv (image,count) in the folder or beside it adds the "
        "expected counts",
    )
    parser.add_argument(
        "--count", type=positive, help="how many photos (default: 24 generated, or all of --images)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build/demo/report.json")
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    parser.add_argument("--timeout", type=float, default=480.0, help="seconds to wait for every image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="show the handlers' own logs")
    parser.add_argument(
        "--alpha",
        type=false_alarm_rate,
        default=None,
        help="the discrepancy false-alarm rate α (template parameter DiscrepancyFalseAlarmRate, "
        "default its default 0.05): a discrepancy is raised when the expected quantity lies outside "
        "the range at 1 - α",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "python", "torchserve"),
        default="python",
        help="model server: the small server with the container's contract (python), the real SageMaker "
        "PyTorch serving stack (torchserve: Java 17, root, `pip install --group serving`), or torchserve "
        "where it can run (auto)",
    )
    return parser.parse_args(argv)


def configure_logging(verbose: bool, log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(log_dir / "demo.log"), logging.StreamHandler()],
    )
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_handlers(verbose: bool) -> dict[str, str]:
    """Powertools logs and EMF metrics of the handlers are JSON on stdout: keep them for --verbose."""
    return {} if verbose else {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


def check_run_files(args: argparse.Namespace) -> None:
    """``--model``, ``--template`` and ``--timeout`` of a local run (the demo's and the benchmark's)."""
    if not args.model.is_file():
        raise UsageError(
            f"model artifact {args.model} is missing: pack it with "
            f"`python -m model.package --onnx --out {args.model}` (make demo does), or pass --model FILE"
        )
    if not args.template.is_file():
        raise UsageError(f"template {args.template} is missing: pass --template path/to/template.yaml")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: give the seconds to wait, above 0")


def check_inputs(args: argparse.Namespace) -> list[Photo] | None:
    """Everything the user named, checked before any server starts; the photos to upload, if any."""
    check_run_files(args)
    return find_photos(args.images, args.count) if args.images is not None else None


@one_line_errors("local.demo")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = check_inputs(args)
    server = choose_server(args.server)
    log_dir = args.out.parent
    configure_logging(args.verbose, log_dir)
    options = PipelineOptions(
        model_artifact=args.model,
        template=args.template,
        log_dir=log_dir,
        parameters=decision_parameters(args.alpha),
        environment_overrides=quiet_handlers(args.verbose),
        server=server,
    )

    def make_uploads(prefix: str) -> list[Upload]:
        if photos is not None:
            return photo_uploads(photos, prefix)
        return synthetic_uploads(args.count or 24, prefix, seed=args.seed)

    try:
        report = run(options, make_uploads, args.timeout, inventory=True)
    except RunFailed as failure:
        print(f"\nDEMO FAILED: {failure}\nLogs: {log_dir}", file=sys.stderr)
        return 1
    write_report(args.out, report)
    print_report(report, args.out)
    if photos is None:
        print(
            "\nThe generated photos are drawn boxes, not ABID bins: the model was trained on real bin"
            "\nphotos, so its counts only mean something on real ones, e.g."
            "\n  make demo IMAGES=$BINCOUNT_ABID_DIR/images"
        )
    return 0 if report["accounting"]["every_image_exactly_one_record"] else 1


if __name__ == "__main__":
    sys.exit(main())
