"""``bincount status``: photos waiting, transform jobs in flight, dead-letter depths, last errors,
and on the local stack the model server's restarts (it is started again when it dies)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from cli.arguments import Subcommands
from cli.output import Column, emit, table
from cli.queries import Item, error_items, job_items
from cli.stack import StackResources, stack_for
from common.errors import EXIT_OK


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "status",
        run,
        help="queues, jobs in flight, dead letters, last errors",
        doc=__doc__,
        examples=[
            "bincount status",
            "bincount status --stack prod --region eu-west-1 --json",
        ],
    )
    parser.add_argument("--errors", type=int, default=5, help="how many recent errors to show")


def jobs_in_flight(jobs: Iterable[Item]) -> list[Item]:
    return sorted(
        (job for job in jobs if job.get("status") == "InProgress"), key=lambda j: str(j.get("created_at"))
    )


def last_errors(errors: Iterable[Item], failed_jobs: Iterable[Item], limit: int = 5) -> list[Item]:
    """The most recent rejected photos and failed jobs, newest first."""
    entries = [
        {
            "at": item.get("recorded_at"),
            "what": f"photo {item.get('image_key')}",
            "error": f"{item.get('error_code')}: {item.get('error_message')}",
        }
        for item in errors
    ]
    entries += [
        {
            "at": job.get("updated_at") or job.get("created_at"),
            "what": f"job {job.get('job_name') or job.get('pk')}",
            "error": f"{job.get('status')}: {job.get('failure_reason') or ''}".rstrip(": "),
        }
        for job in failed_jobs
    ]
    return sorted(entries, key=lambda e: str(e["at"] or ""), reverse=True)[:limit]


def queue_depth(sqs: Any, url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return {
        "waiting": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def gather(stack: StackResources, error_limit: int) -> dict[str, Any]:
    sqs, dynamodb = stack.client("sqs"), stack.client("dynamodb")
    jobs = job_items(dynamodb, stack.jobs_table)
    failed_jobs = [job for job in jobs if job.get("status") in ("Failed", "Stopped")]
    return {
        "stack": stack.stack,
        "ingest_queue": queue_depth(sqs, stack.ingest_queue_url),
        "jobs_in_flight": [
            {
                "job_name": job.get("job_name") or job.get("pk"),
                "images": job.get("image_count"),
                "since": job.get("created_at"),
            }
            for job in jobs_in_flight(jobs)
        ],
        "dead_letters": {
            "ingest": queue_depth(sqs, stack.ingest_dlq_url)["waiting"],
            "collector": queue_depth(sqs, stack.collector_dlq_url)["waiting"],
        },
        "last_errors": last_errors(error_items(dynamodb, stack.counts_table), failed_jobs, error_limit),
        **({"model_server_restarts": local_restarts()} if stack.is_local else {}),
    }


def local_restarts() -> list[dict[str, Any]]:
    """The local model server's restarts after it died, from the running stack's state file."""
    from common.stack_state import default_state_path, read_state

    state = read_state(default_state_path())
    return list(state.model_server_restarts) if state is not None else []


def render(status: dict[str, Any]) -> str:
    queue, dead = status["ingest_queue"], status["dead_letters"]
    lines = [
        f"stack {status['stack']}",
        f"photos waiting in the ingest queue: {queue['waiting']} (+{queue['in_flight']} being batched)",
        f"transform jobs in flight: {len(status['jobs_in_flight'])}",
    ]
    lines += [
        f"  {job['job_name']}  {job['images']} image(s) since {job['since']}"
        for job in status["jobs_in_flight"]
    ]
    lines.append(f"dead letters: ingest {dead['ingest']}, collector {dead['collector']}")
    if dead["ingest"] or dead["collector"]:
        lines.append("  move them back with: bincount redrive ingest | bincount redrive collector")
    if "model_server_restarts" in status:
        restarts = status["model_server_restarts"]
        line = f"model server restarts: {len(restarts)}"
        if restarts:
            last = restarts[-1]
            line += f" (last at {last['at']}, exit status {last['exit_code']}, down {last['down_s']} s)"
        lines.append(line)
    if status["last_errors"]:
        lines.append("last errors:")
        lines.append(
            table(
                status["last_errors"], [Column("at", "at"), Column("what", "what"), Column("error", "error")]
            )
        )
    else:
        lines.append("last errors: none")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    status = gather(stack_for(args), max(0, args.errors))
    emit(status, render(status), args.json)
    return EXIT_OK
