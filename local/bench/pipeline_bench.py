"""``make bench-pipeline``: photos through the local pipeline at scale, photos/s and CPU per photo.

A scale check, not a test: the batching window and the images per job are shrunk so jobs stay
small and many, every image must still end as exactly one count or error record, and the
reports (build/bench-pipeline/<design>/report.json, summary.json) hold the per-stage rates.

The pipeline as shipped: the collector's batched path (one batched read, LATEST once per bin,
records and LATEST in transactions of <= 100, events in PutEvents of <= 10),
``local.emulator.moto_launcher``, progress polling that reads each record once, transform jobs side
by side up to ``MaxJobsInFlight``. docs/local.md holds the figures it measured.

Besides photos/s, the CPU seconds per photo per process are measured
(``local.bench.cpu_meter``): on a shared machine they move far less with the load than photos/s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.errors import UsageError, one_line_errors
from local.bench.cpu_meter import CpuMeter
from local.demo import RunFailed, check_run_files, configure_logging, quiet_handlers, run
from local.emulator.pipeline import REPO_ROOT, PipelineOptions
from local.emulator.template import load_template
from local.report import Upload, write_report
from local.uploads import synthetic_uploads


def shrunk_parameters(template: Path, images_per_job: int, window_s: int) -> dict[str, str]:
    declared = (load_template(template).get("Parameters") or {}).keys()
    wanted = {"MaxImagesPerJob": str(images_per_job), "BatchingWindowSeconds": str(window_s)}
    return {name: value for name, value in wanted.items() if name in declared}


DESIGNS: dict[str, dict[str, Any]] = {"batched": {}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "build/model/model.tar.gz")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--images-per-job", type=int, default=100)
    parser.add_argument("--window", type=int, default=1, help="batching window, seconds")
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build/bench-pipeline/summary.json")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument(
        "--designs",
        default="batched",
        help=f"comma-separated, run in this order (of {', '.join(DESIGNS)})",
    )
    args = parser.parse_args(argv)
    check_arguments(args)
    return args


def check_arguments(args: argparse.Namespace) -> None:
    """Paths and numbers checked before any server starts: one line for each mistake."""
    check_run_files(args)
    for flag, value in (("--count", args.count), ("--images-per-job", args.images_per_job)):
        if value < 1:
            raise UsageError(f"{flag} {value}: give a whole number above 0")
    if args.window < 0:
        raise UsageError(f"--window {args.window}: give the batching window in seconds, 0 or more")
    args.designs = [name.strip() for name in args.designs.split(",") if name.strip()]
    unknown = [name for name in args.designs if name not in DESIGNS]
    if unknown or not args.designs:
        raise UsageError(f"--designs: unknown {unknown or 'empty'}; choose from {', '.join(DESIGNS)}")


def bench_uploads(count: int) -> Callable[[str], list[Upload]]:
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
            for i in range(count)
        ]

    return make_uploads


def run_design(args: argparse.Namespace, design: str) -> dict[str, Any]:
    out_dir = args.out.parent / design
    out_dir.mkdir(parents=True, exist_ok=True)
    design_options = dict(DESIGNS[design])
    meter = CpuMeter()
    prepare_design = design_options.pop("prepare", None)

    def prepare() -> None:  # the stack and servers are up: count CPU from here
        meter.start()
        if prepare_design is not None:
            prepare_design()

    options = PipelineOptions(
        model_artifact=args.model,
        template=args.template,
        stack_name="bincount-bench",
        parameters=shrunk_parameters(args.template, args.images_per_job, args.window),
        batching_window_s=float(args.window),
        log_dir=out_dir,
        environment_overrides=quiet_handlers(False),
        prepare=prepare,
        **design_options,
    )
    try:
        report = run(options, bench_uploads(args.count), args.timeout, label=f"recorded ({design})")
    finally:
        cpu = meter.stop()
    report.pop("events", None)
    report["cpu_s"] = cpu
    write_report(out_dir / "report.json", report)
    images = report["totals"]["uploaded"]
    return {
        "cpu_s": cpu,
        "cpu_ms_per_image": {role: round(1000 * s / images, 1) for role, s in cpu.items()},
        "images_per_cpu_s": round(images / sum(cpu.values()), 2) if sum(cpu.values()) else None,
        "images": report["totals"]["uploaded"],
        "end_to_end_images_per_s": report["totals"]["images_per_s"],
        "elapsed_s": report["totals"]["elapsed_s"],
        "stages": {stage: rate["images_per_s"] for stage, rate in report["stages"].items()},
        "stage_busy_s": {stage: rate["busy_s"] for stage, rate in report["stages"].items()},
        "transform_jobs": len(report["transform_jobs"]),
        "accounting": report["accounting"]["every_image_exactly_one_record"],
        "events_received": report["events_received"],
    }


def comparison(summaries: dict[str, dict[str, Any]]) -> str:
    """A fixed-width table: end to end and each stage's photos/s per design, and the ratio."""
    names = list(summaries)
    rows = [("end to end", {n: summaries[n]["end_to_end_images_per_s"] for n in names})]
    stages = summaries[names[0]]["stages"]
    rows += [(stage, {n: summaries[n]["stages"][stage] for n in names}) for stage in stages]
    header = f"{'photos/s':<18}" + "".join(f"{n:>12}" for n in names)
    if len(names) > 1:
        header += f"  {names[-1] + ' / ' + names[0]:>14}"
    lines = [header]
    for label, values in rows:
        line = f"{label:<18}" + "".join(f"{values[n]:>12}" for n in names)
        if len(names) > 1 and values[names[0]]:
            line += f"{values[names[-1]] / values[names[0]]:>15.2f}x"
        lines.append(line)
    cpu_rows = [("images/CPU-s", {n: summaries[n]["images_per_cpu_s"] for n in names})]
    roles = sorted({role for n in names for role in summaries[n]["cpu_ms_per_image"]})
    cpu_rows += [
        (f"ms {role}", {n: summaries[n]["cpu_ms_per_image"].get(role, 0.0) for n in names}) for role in roles
    ]
    lines.append("CPU per photo (all processes of the pipeline, from the stack being up to the end)")
    for label, values in cpu_rows:
        line = f"{label:<18}" + "".join(f"{values[n]:>12}" for n in names)
        if len(names) > 1 and values[names[0]]:
            line += f"{values[names[-1]] / values[names[0]]:>15.2f}x"
        lines.append(line)
    return "\n".join(lines)


@one_line_errors("local.bench.pipeline_bench")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(False, args.out.parent)
    summaries: dict[str, dict[str, Any]] = {}
    for design in args.designs:
        try:
            summaries[design] = run_design(args, design)
        except RunFailed as failure:
            print(f"BENCH FAILED ({design}): {failure}", file=sys.stderr)
            return 1
    args.out.write_text(json.dumps(summaries, indent=2) + "\n")
    print(json.dumps(summaries, indent=2))
    print(f"\n{args.count} photos, same machine, one run:\n" + comparison(summaries))
    return 0 if all(summary["accounting"] for summary in summaries.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
