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

from local.pipeline import REPO_ROOT, LocalPipeline, PipelineOptions, local_pipeline
from local.report import (
    Upload,
    accounting,
    event_summary,
    events_table,
    result_entries,
    results_table,
    totals,
    write_report,
)
from local.torchserve_server import torchserve_unavailable
from local.uploads import folder_uploads, synthetic_uploads

log = logging.getLogger("local.demo")


class RunFailed(RuntimeError):
    """Not every uploaded image was accounted for in time."""


def interactive() -> bool:
    return sys.stderr.isatty()


def wait_for_records(pipeline: LocalPipeline, keys: set[str], timeout_s: float, label: str) -> float:
    """Wait until every key has a record in the counts table; returns when that happened."""
    deadline = time.monotonic() + timeout_s
    done = 0
    last_log = 0.0
    with tqdm(total=len(keys), desc=label, unit="img", disable=not interactive()) as bar:
        while True:
            recorded = keys & set(pipeline.image_records())
            bar.update(len(recorded) - done)
            done = len(recorded)
            if done == len(keys):
                return time.monotonic()
            if not interactive() and time.monotonic() - last_log > 10:
                log.info("%s: %d/%d images recorded", label, done, len(keys))
                last_log = time.monotonic()
            if time.monotonic() > deadline:
                missing = sorted(keys - recorded)
                raise RunFailed(
                    f"{len(missing)} of {len(keys)} images have no record after {timeout_s:.0f} s: "
                    + ", ".join(missing[:20])
                    + (" ..." if len(missing) > 20 else "")
                    + f"\n  dead-letter queues: {pipeline.dead_letters() or 'empty'}"
                    + f"\n  worker errors: {pipeline.worker_errors[-5:] or 'none'}"
                    + f"\n  transform jobs run: {[(o.name, o.status) for o in pipeline.executor.outcomes]}"
                )
            time.sleep(0.5)


def settle_events(pipeline: LocalPipeline, quiet_s: float = 2.0, limit_s: float = 15.0) -> None:
    """Let the consumer queue drain: stop once no new event arrived for ``quiet_s``."""
    deadline = time.monotonic() + limit_s
    seen, quiet_since = len(pipeline.consumed_events), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.3)
        if len(pipeline.consumed_events) != seen:
            seen, quiet_since = len(pipeline.consumed_events), time.monotonic()


def run(
    options: PipelineOptions, make_uploads: Any, timeout_s: float, label: str = "counted"
) -> dict[str, Any]:
    """Upload, wait for every image, and build the report (shared with the benchmark)."""
    started = time.monotonic()
    handler_stdout = options.log_dir / "handlers.log" if options.log_dir else None
    with contextlib.ExitStack() as outputs:
        if handler_stdout is not None and options.environment_overrides:
            # Powertools' JSON logs and EMF metrics go to stdout; keep the terminal for the report.
            outputs.enter_context(contextlib.redirect_stdout(outputs.enter_context(handler_stdout.open("a"))))
        return _run(options, make_uploads, timeout_s, label, started)


def _run(
    options: PipelineOptions, make_uploads: Any, timeout_s: float, label: str, started: float
) -> dict[str, Any]:
    with local_pipeline(options) as pipeline:
        ready = time.monotonic()
        uploads: list[Upload] = make_uploads(pipeline.wiring.ingest_prefix)
        upload_start = time.monotonic()
        for upload in tqdm(uploads, desc="uploaded", unit="img", disable=not interactive()):
            pipeline.upload(upload.key, upload.body, upload.content_type)
        log.info(
            "uploaded %d objects to s3://%s/%s",
            len(uploads),
            pipeline.wiring.ingest_bucket,
            pipeline.wiring.ingest_prefix,
        )
        keys = {upload.key for upload in uploads}
        finished = wait_for_records(pipeline, keys, timeout_s, label)
        settle_events(pipeline)
        records = pipeline.image_records()
        entries = result_entries(uploads, records)
        elapsed = finished - upload_start
        report: dict[str, Any] = {
            "totals": totals(entries, len(uploads), elapsed),
            "accounting": accounting(entries),
            "startup_s": round(ready - started, 2),
            "model_server": options.server,
            "stages": pipeline.stage_rates(len(keys)),
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
    return report


def print_report(report: dict[str, Any], out: Path) -> None:
    print("\nResults by bin\n" + results_table(report["results"]))
    print(f"\nInventory events a downstream consumer received: {report['events_received'] or 'none'}")
    print(events_table(report["events"]))
    print("\nTotals")
    for name, value in report["totals"].items():
        print(f"  {name:<28} {value}")
    ok = report["accounting"]["every_image_exactly_one_record"]
    print(f"  {'one record per image (DynamoDB)':<28} {'yes' if ok else 'NO: ' + str(report['accounting'])}")
    print("\nStages (images/s while busy)")
    for stage, rate in report["stages"].items():
        print(
            f"  {stage:<12} {rate['images_per_s']:>8} img/s  busy {rate['busy_s']:>7} s"
            f"  span {rate['span_s']:>7} s"
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
        raise SystemExit(f"--server torchserve: {reason}")
    log.info("model server: the fallback server (%s)", reason)
    return "python"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "build/model/model.tar.gz")
    parser.add_argument(
        "--images", type=Path, help="a folder of your own photos (labels.csv beside it is read)"
    )
    parser.add_argument(
        "--count", type=int, help="how many photos (default: 24 generated, or all of --images)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build/demo/report.json")
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    parser.add_argument("--timeout", type=float, default=480.0, help="seconds to wait for every image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="show the handlers' own logs")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = args.out.parent
    configure_logging(args.verbose, log_dir)
    if not args.model.is_file():
        print(f"model artifact {args.model} is missing: run `make model` first", file=sys.stderr)
        return 2
    options = PipelineOptions(
        model_artifact=args.model,
        template=args.template,
        log_dir=log_dir,
        environment_overrides=quiet_handlers(args.verbose),
        server=choose_server(args.server),
    )

    def make_uploads(prefix: str) -> list[Upload]:
        if args.images:
            return folder_uploads(args.images, prefix, args.count)
        return synthetic_uploads(args.count or 24, prefix, seed=args.seed)

    try:
        report = run(options, make_uploads, args.timeout)
    except RunFailed as failure:
        print(f"\nDEMO FAILED: {failure}\nLogs: {log_dir}", file=sys.stderr)
        return 1
    write_report(args.out, report)
    print_report(report, args.out)
    if not args.images:
        print(
            "\nThe generated photos are drawn boxes, not ABID bins: the model was trained on real bin"
            "\nphotos, so its counts only mean something on real ones, e.g."
            "\n  make demo IMAGES=../shared/abid/images"
        )
    return 0 if report["accounting"]["every_image_exactly_one_record"] else 1


if __name__ == "__main__":
    sys.exit(main())
