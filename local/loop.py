"""``make loop-demo IMAGES=dir LABELS=csv``: the model lifecycle on one machine, end to end.

On a fresh local stack (started and stopped here, tied to a fresh model registry):

1. every photo of IMAGES is uploaded (bin from its subfolder or file name, as ``make demo``)
   and counted by the current model;
2. the photos LABELS names are reviewed through the review console's code path
   (``bincount correct``: :func:`cli.commands.correct.correct_photo`);
3. the reviews are exported (``bincount export-labels``), the current model is fine-tuned on them
   mixed with a stratified subset of the base data (``training.train --recipe finetune`` with a
   step budget), and the gate compares it with the current model on the reviewed photos' gate
   split (hash of the photo, never trained on) and on the base subset's test split (the
   reference set); an approved candidate is promoted in the registry, and the stack's model
   server follows (:mod:`local.emulator.model_swap`);
4. everything is re-counted by the promoted model (``bincount recount``), or the loop says why
   it was not promoted;
5. a before/after table is printed and ``build/loop/report.json`` written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bincount.image_formats import IMAGE_SUFFIXES

from common.errors import NotFound, Refused, UsageError, one_line_errors
from common.files import sha256_file
from common.stack_state import REPO_ROOT, STATE_ENV
from local.loop_report import LoopUpload, build_report, latest_record, read_labels, render_table, review_plan
from local.uploads import find_photos

PROG = "make loop-demo"
REVIEWER = "loop-demo"


def say(message: str) -> None:
    print(f"[loop {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(done: Callable[[], int], total: int, desc: str, timeout_s: float) -> None:
    """Poll ``done()`` until it reaches ``total``: a bar in a terminal, a line every 10 s otherwise."""
    from tqdm import tqdm

    from training.progress import is_terminal

    deadline, last_line, reached = time.monotonic() + timeout_s, 0.0, 0
    with tqdm(total=total, desc=desc, unit="img", disable=not is_terminal(), leave=False) as bar:
        while True:
            reached = done()
            bar.update(reached - bar.n)
            if reached >= total:
                break
            if time.monotonic() > deadline:
                raise Refused(
                    f"{desc}: {reached} of {total} after {timeout_s:.0f} s; logs in build/loop/stack"
                )
            if not is_terminal() and time.monotonic() - last_line > 10:
                say(f"{desc}: {reached}/{total}")
                last_line = time.monotonic()
            time.sleep(1.0)
    say(f"{desc}: {total}/{total}")


# -- the stack ------------------------------------------------------------------------------------


@contextlib.contextmanager
def loop_stack(out: Path, model: Path, registry: Path) -> Iterator[Any]:
    """A fresh local stack serving the registry's version (``make up`` with ``--registry``)."""
    from cli.stack import resolve_local

    state = out / "stack" / "state.json"
    command = [sys.executable, "-m", "local.updown", "--state", str(state)]
    up = [*command[:3], "up", *command[3:], "--model", str(model), "--registry", str(registry)]
    say("starting a fresh local stack (moto + template.yaml + model server)")
    started = subprocess.run(up, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    try:
        if started.returncode != 0:
            raise Refused(
                f"the local stack did not start: {(started.stderr or started.stdout).strip()[-300:]}"
            )
        os.environ[STATE_ENV] = str(state)
        yield lambda: resolve_local(state)
    finally:
        down = [*command[:3], "down", *command[3:]]
        stopped = subprocess.run(down, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        say(stopped.stdout.strip().splitlines()[-1] if stopped.stdout.strip() else "local stack stopped")


def records_by_key(resources: Any) -> dict[str, dict[str, Any]]:
    from cli.queries import image_items

    return latest_record(image_items(resources.client("dynamodb"), resources.counts_table))


def upload_all(resources: Any, photos: Sequence[Any]) -> list[LoopUpload]:
    from local.uploads import photo_uploads
    from training.progress import progress

    s3 = resources.client("s3")
    pairs = list(zip(photos, photo_uploads(list(photos), resources.ingest_prefix), strict=True))
    for _, upload in progress(pairs, desc="uploaded", unit="img"):
        s3.put_object(
            Bucket=resources.ingest_bucket, Key=upload.key, Body=upload.body, ContentType=upload.content_type
        )
    return [LoopUpload(photo.path, upload.key, upload.bin_id) for photo, upload in pairs]


def served_version(resolve: Callable[[], Any], expected: str | None, timeout_s: float = 300) -> str:
    """The version the stack's model server answers with (waiting until it is ``expected``)."""
    from cli.commands.recount import served_model_version

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            version = served_model_version(resolve())
        except Refused:  # read the state file just as the old server stopped: ask again
            if time.monotonic() > deadline:
                raise
            version = ""
        if expected is None or version == expected or time.monotonic() > deadline:
            return version
        time.sleep(1.0)


# -- reviews, retraining, gate ------------------------------------------------------------------


def apply_reviews(
    resources: Any, uploads: Sequence[LoopUpload], labels: dict[Path, int], records: dict[str, dict[str, Any]]
) -> int:
    """Each label as a review through the console's code path, answered as a person at the console
    would (``+`` beyond the model's top class); photos with an error record are not reviewable and
    are said so (they keep human_count null)."""
    from bincount.corrections import answer_for, top_class

    from cli.commands.correct import correct_photo
    from training.progress import progress

    applied = 0
    for review in progress(review_plan(uploads, labels), desc="reviewed", unit="img"):
        answer = answer_for(review.count, top_class(records.get(review.key, {})))
        try:
            correct_photo(resources, review.key, answer, REVIEWER)
            applied += 1
        except UsageError as error:  # an error record, a photo gone, ...: one line each
            say(f"review of {review.key} not applied: {error}")
    return applied


def base_subset(
    base: Path, out: Path, limit: int, seed: int = 0, exclude: frozenset[str] = frozenset()
) -> Path:
    """A stratified subset of the base training data as ``<count>/<photo>`` links (built once).

    Photos whose bytes are in ``exclude`` (the loop's own uploads) are left out: when IMAGES come
    from the base data, a reviewed photo would otherwise reach training through the base subset
    and the gate would judge the candidate on photos it was trained on.
    """
    by_count: dict[str, list[Path]] = {}
    for folder in sorted(p for p in (base / "images" if (base / "images").is_dir() else base).iterdir()):
        if folder.is_dir() and folder.name.isdigit():
            photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            by_count[folder.name] = [p for p in photos if not exclude or sha256_file(p) not in exclude]
    total = sum(len(photos) for photos in by_count.values())
    if not total:
        raise UsageError(f"--base {base}: no <count>/<photo> folders to mix into the retraining")
    shutil.rmtree(out, ignore_errors=True)
    for count, photos in by_count.items():
        random.Random(f"{seed}:{count}").shuffle(photos)
        (out / count).mkdir(parents=True, exist_ok=True)
        for photo in photos[: max(1, round(limit * len(photos) / total))]:
            (out / count / photo.name).symlink_to(photo.resolve())
    return out


def retrain(args: argparse.Namespace, current: Path, labels_dir: Path, base_dir: Path) -> Path:
    """Fine-tune the current model on the reviews (weight 3) and the base subset; the artifact."""
    out = args.out / "retrain"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, "-m", "training.train", "--data", f"{base_dir},{labels_dir}:3",
        "--init-from", str(current), "--recipe", "finetune", "--out", str(out),
        "--work-dir", str(args.out / "work"), "--no-resume", "--epochs", str(args.epochs),
        "--max-steps", str(args.max_steps), "--max-eval-images", str(args.max_eval_images),
        *args.train_args,
    ]  # fmt: skip
    say(f"retraining: {' '.join(command[3:])}")
    tail: list[str] = []
    with (args.out / "retrain.log").open("w") as log:  # its progress lines shown as they come
        done = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert done.stdout is not None
        for line in done.stdout:
            log.write(line)
            print(f"  train | {line.rstrip()}", flush=True)
            tail = [*tail[-2:], line.strip()]
        done.wait()
    if done.returncode != 0 or not (out / "model.tar.gz").is_file():
        raise Refused(f"retraining failed ({done.returncode}): {' | '.join(tail)}")
    return out / "model.tar.gz"


def gate(
    args: argparse.Namespace, candidate: Path, current: Path, labels_dir: Path, base_dir: Path
) -> dict[str, Any]:
    """The promotion gate on the reviews' gate split, the base subset's test split as reference."""
    from training.data import prepare_source
    from training.promotion.gate import build_parser, run_gate

    reference = prepare_source(base_dir, args.out / "work", 0)
    gate_args = build_parser().parse_args(
        [
            "--candidate", str(candidate), "--current", str(current), "--gate-set", str(labels_dir),
            "--reference", str(reference), "--accuracy-tolerance", str(args.accuracy_tolerance),
        ]
    )  # fmt: skip
    say("gate: both models count the gate set and the reference set")
    try:
        verdict = run_gate(gate_args)
    except UsageError as error:  # e.g. no reviewed photo in the gate split yet: a refusal, with why
        verdict = {"verdict": "refuse", "promoted": False, "reasons": [str(error)]}
    (args.out / "gate.json").write_text(json.dumps(verdict, indent=1) + "\n", encoding="utf-8")
    return verdict


def promote(registry: Path, candidate: Path, verdict: dict[str, Any], override: bool) -> bool:
    """Record the verdict in the registry and serve the candidate if the gate (or, with
    ``override``, a person overruling it) approves it; True when it was promoted."""
    from training.promotion import registry as models

    entry = models.record_gate(registry, candidate, verdict, REVIEWER)
    if not verdict["promoted"] and not override:
        return False
    if not verdict["promoted"]:
        models.register(registry, candidate, "approved", f"{REVIEWER} (gate overridden)")
    models.promote(registry, entry["version"], REVIEWER)
    return True


def recount_all(resolve: Callable[[], Any], version: str, keys: Sequence[str]) -> None:
    """``bincount recount --model-version VERSION`` until every count record carries it."""
    from cli.commands.recount import batcher_settings, recount

    resources = resolve()
    settings = batcher_settings(resources)
    submitted_at = [0.0]

    def done(record: dict[str, Any]) -> bool:  # error records are not re-counted (bincount redrive)
        return record.get("outcome") == "error" or record.get("model_version") == version

    def submitted_then_current() -> int:
        if time.monotonic() - submitted_at[0] > 15:  # idempotent: photos in flight are left alone
            submitted_at[0] = time.monotonic()
            report = recount(resources, settings, version, None, [], dry_run=False)
            for skipped in report.skipped:
                say(f"recount skipped {skipped.key}: {skipped.reason}")
        records = records_by_key(resources)
        return sum(1 for key in keys if done(records.get(key, {})))

    wait_for(submitted_then_current, len(keys), f"re-counted by {version}", timeout_s=1800)


# -- the loop -------------------------------------------------------------------------------------


def check_inputs(args: argparse.Namespace) -> tuple[list[Any], dict[Path, int]]:
    """Every path and option checked, one line each, before anything starts."""
    if args.images is None or args.labels is None:
        raise UsageError("give IMAGES=dir (photos, or <bin>/<photo> subfolders) and LABELS=csv (image,count)")
    photos = find_photos(args.images)
    labels = read_labels(args.labels, (photo.path for photo in photos))
    if not args.model.is_file():
        raise NotFound(f"--model {args.model}: no such artifact (make model-local builds it)")
    if args.base is None:
        raise UsageError(
            "give --base: the base training data (<count>/<photo> folders; make loop-demo passes DATA)"
        )
    if not args.base.is_dir():
        raise NotFound(f"--base {args.base}: no base training data (<count>/<photo> folders)")
    for name in ("epochs", "max_steps", "base_photos", "max_eval_images"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    return photos, labels


def first_count(
    resolve: Callable[[], Any], photos: list[Any], timeout_s: float
) -> tuple[list[LoopUpload], dict[str, dict[str, Any]]]:
    resources = resolve()
    uploads = upload_all(resources, photos)
    keys = {upload.key for upload in uploads}
    wait_for(lambda: len(keys & set(records_by_key(resources))), len(keys), "counted", timeout_s)
    return uploads, records_by_key(resources)


def learn(
    args: argparse.Namespace,
    resolve: Callable[[], Any],
    current: Path,
    registry: Path,
    uploaded: frozenset[str],
) -> dict[str, Any]:
    """Export the reviews, retrain, gate, promote: the loop's summary of it."""
    from cli.commands.export_labels import export

    labels_dir = args.out / "labels"
    exported = export(resolve(), labels_dir, "")
    say(exported.summary(labels_dir))
    base_dir = base_subset(args.base, args.out / "base", args.base_photos, exclude=uploaded)
    candidate = retrain(args, current, labels_dir, base_dir)
    verdict = gate(args, candidate, current, labels_dir, base_dir)
    from training.promotion.registry import artifact_config

    version = str(artifact_config(candidate)["version"])
    if not verdict["promoted"]:
        say(f"gate: refused {version}: {'; '.join(verdict['reasons'])}")
    promoted = promote(registry, candidate, verdict, args.override_gate)
    say(
        f"promoted {version}: the stack switches its model server"
        if promoted
        else "the old model keeps serving"
    )
    return {"candidate": version, "gate": verdict, "promoted": promoted}


def run_loop(args: argparse.Namespace) -> dict[str, Any]:
    from training.promotion import registry as models

    started = time.monotonic()
    photos, labels = check_inputs(args)
    say(f"{len(photos)} photos, {len(labels)} labelled; output in {args.out}")
    for stale in ("registry", "labels", "retrain", "stack", "report.json"):
        path = args.out / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    registry = args.out / "registry"
    before = models.register(registry, args.model, "approved", REVIEWER)
    models.promote(registry, before["version"], REVIEWER)
    with loop_stack(args.out, args.model, registry) as resolve:
        uploads, first = first_count(resolve, photos, args.timeout)
        say(f"reviews applied: {apply_reviews(resolve(), uploads, labels, first)}")
        uploaded = frozenset(sha256_file(photo.path) for photo in photos)
        learned = learn(args, resolve, Path(before["artifact"]), registry, uploaded)
        served = served_version(resolve, learned["candidate"] if learned["promoted"] else None)
        if learned["promoted"]:
            recount_all(resolve, served, [upload.key for upload in uploads])
        else:
            say(f"no re-count: the gate refused, {served} still serves")
        final = records_by_key(resolve())
    summary = {
        "model_before": before["version"],
        "model_after": served,
        "promoted": learned["promoted"] and served == learned["candidate"],
        "gate_overridden": learned["promoted"] and not learned["gate"]["promoted"],
        "gate": learned["gate"],
        "candidate": learned["candidate"],
        "wall_s": round(time.monotonic() - started, 1),
    }
    return build_report(uploads, first, final, summary)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=None, help="photos, or <bin>/<photo> subfolders")
    parser.add_argument("--labels", type=Path, default=None, help="CSV image,count (image relative to it)")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "build/model/model-local.tar.gz")
    parser.add_argument(
        "--base",
        type=Path,
        help="base training data: a folder of <count>/*.jpg + labels.csv (make loop-demo passes DATA)",
    )
    parser.add_argument("--base-photos", type=int, default=600, help="stratified subset of the base data")
    parser.add_argument("--epochs", type=int, default=3, help="the finetune recipe's 3")
    parser.add_argument("--max-steps", type=int, default=40, help="training steps per epoch at most")
    parser.add_argument("--max-eval-images", type=int, default=200, help="validation photos (calibration)")
    parser.add_argument(
        "--accuracy-tolerance",
        type=float,
        default=0.02,
        help="gate: the accuracy drop allowed (< 0: demand a gain)",
    )
    parser.add_argument(
        "--override-gate",
        action="store_true",
        help="promote even if the gate refuses (recorded as a person's approval)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build/loop")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the counts")
    parser.add_argument("train_args", nargs="*", help="more training.train flags (after --)")
    return parser.parse_args(argv)


@one_line_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    report = run_loop(args)
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(render_table(report))
    reasons = "; ".join(report["gate"].get("reasons", []))
    verdict = "promoted" if report["gate"].get("promoted") else f"refused ({reasons})"
    served = "promoted anyway (--override-gate)" if report.get("gate_overridden") else ""
    served = served or ("promoted" if report["promoted"] else "the old model keeps serving")
    print(f"gate {verdict}: {served}; report {args.out / 'report.json'} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
