"""``make bench-pipeline``: 2,000 images through the local pipeline, images/s per stage.

A scale check, not a test: the batching window and the images per job are shrunk so jobs stay
small and many, every image must still end as exactly one count or error record, and the report
(build/bench-pipeline/report.json) holds the per-stage rates printed here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.errors import UsageError, one_line_errors
from local.demo import RunFailed, check_run_files, configure_logging, quiet_handlers, run
from local.pipeline import REPO_ROOT, PipelineOptions
from local.report import Upload, write_report
from local.template import load_template
from local.uploads import synthetic_uploads


def shrunk_parameters(template: Path, images_per_job: int, window_s: int) -> dict[str, str]:
    declared = (load_template(template).get("Parameters") or {}).keys()
    wanted = {"MaxImagesPerJob": str(images_per_job), "BatchingWindowSeconds": str(window_s)}
    return {name: value for name, value in wanted.items() if name in declared}


def check_arguments(args: argparse.Namespace) -> None:
    """Paths and numbers checked before any server starts: one line for each mistake."""
    check_run_files(args)
    for flag, value in (("--count", args.count), ("--images-per-job", args.images_per_job)):
        if value < 1:
            raise UsageError(f"{flag} {value}: give a whole number above 0")
    if args.window < 0:
        raise UsageError(f"--window {args.window}: give the batching window in seconds, 0 or more")


@one_line_errors("local.bench")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "build/model/model.tar.gz")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--images-per-job", type=int, default=100)
    parser.add_argument("--window", type=int, default=1, help="batching window, seconds")
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build/bench-pipeline/report.json")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    check_arguments(args)
    configure_logging(False, args.out.parent)
    options = PipelineOptions(
        model_artifact=args.model,
        template=args.template,
        stack_name="bincount-bench",
        parameters=shrunk_parameters(args.template, args.images_per_job, args.window),
        batching_window_s=float(args.window),
        log_dir=args.out.parent,
        environment_overrides=quiet_handlers(False),
    )

    def make_uploads(prefix: str) -> list[Upload]:
        # photos are reused across bins so generating 2,000 does not dominate the run
        base = synthetic_uploads(20, prefix, bad=False)
        return [
            Upload(
                f"{prefix}BIN-{i:05d}/photo-{i:05d}.jpg",
                f"BIN-{i:05d}",
                base[i % 20].body,
                expected=base[i % 20].expected,
            )
            for i in range(args.count)
        ]

    try:
        report = run(options, make_uploads, args.timeout, label="recorded")
    except RunFailed as failure:
        print(f"BENCH FAILED: {failure}", file=sys.stderr)
        return 1
    report.pop("events", None)
    write_report(args.out, report)
    summary = {
        "images": report["totals"]["uploaded"],
        "end_to_end_images_per_s": report["totals"]["images_per_s"],
        "elapsed_s": report["totals"]["elapsed_s"],
        "stages": report["stages"],
        "transform_jobs": len(report["transform_jobs"]),
        "accounting": report["accounting"]["every_image_exactly_one_record"],
        "events_received": report["events_received"],
    }
    print(json.dumps(summary, indent=2))
    return 0 if report["accounting"]["every_image_exactly_one_record"] else 1


if __name__ == "__main__":
    sys.exit(main())
