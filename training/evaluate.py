"""Evaluate a model artifact through its own serving handlers: ``python -m training.evaluate``.

The handlers are loaded from the artifact's ``code/inference.py`` (so what is measured is exactly
what ships; the repository's ``model.inference`` is the fallback for a bare weights folder), and every
image goes through ``input_fn -> predict_fn -> output_fn`` like a Batch Transform request. The report
puts each figure beside what gives it meaning: the ABID challenge's per-class accuracy, the public
baselines, and the trivial constant predictors on the same labels.

Labels come from a CSV ``image,count,...`` (paths relative to the CSV's folder, like
the ``labels.csv`` of a count folder), from a split manifest written by ``training.data`` (``--manifest``,
test split by default), or from count-class folders ``<images>/<count>/*.jpg``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bincount.image_formats import IMAGE_SUFFIXES, content_type_for

from common.errors import UsageError, one_line_errors
from training.promotion.artifact import load_inference_module, unpack_artifact
from training.reporting.metrics import (
    ABID_CHALLENGE_PER_CLASS_ACCURACY,
    PUBLIC_BASELINES,
    challenge_comparison,
    challenge_expected_on_mix,
    compute_metrics,
    expected_calibration_error,
    trivial_baselines,
)
from training.uncertainty import conformal, discrepancy

LOG = logging.getLogger("training.evaluate")


# --- labelled images ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledImage:
    path: Path
    count: int
    name: str  # how the report names it (the CSV's path, or the path below the images folder)


def _resolve(relative: str, roots: Sequence[Path]) -> Path:
    """First existing ``root/relative`` (then ``root/basename``); else the first candidate, which will
    then fail to read and be reported as an error rather than silently skipped."""
    candidates = [root / relative for root in roots] + [root / Path(relative).name for root in roots]
    return next((c for c in candidates if c.is_file()), candidates[0])


def labels_from_csv(csv_path: Path, images: Path | None = None) -> list[LabelledImage]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"image", "count"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: expected a header with 'image' and 'count' columns")
        roots = [csv_path.parent] + ([images] if images is not None else [])
        return [
            LabelledImage(_resolve(row["image"], roots), int(row["count"]), row["image"])
            for row in reader
            if row.get("image")
        ]


def labels_from_folders(images: Path) -> list[LabelledImage]:
    """``<images>/<count>/*.jpg`` (or ``<images>/images/<count>/``: a count folder with its labels.csv)."""
    root = images / "images" if not _count_dirs(images) and (images / "images").is_dir() else images
    found = [
        LabelledImage(path, int(folder.name), str(path.relative_to(root)))
        for folder in _count_dirs(root)
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not found:
        raise ValueError(f"{images}: no <count>/*.jpg folders and no --labels CSV")
    return found


def _count_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def labels_from_manifest(
    manifest: Path, split: str = "test", images: Path | None = None
) -> list[LabelledImage]:
    """Samples of one split from a ``training.data`` manifest (entries carry ``split``, ``count`` and
    ``path`` relative to the manifest's folder, or a local ``source``)."""
    data = json.loads(manifest.read_text(encoding="utf-8"))
    samples = data.get("samples", data if isinstance(data, list) else [])
    roots = [manifest.parent] + ([images] if images is not None else [])
    out = []
    for sample in samples:
        if split != "all" and sample.get("split") != split:
            continue
        relative = sample.get("path") or sample.get("image") or sample.get("source")
        if relative is None or "count" not in sample:
            continue
        path = _resolve(relative, roots)
        source = sample.get("source")
        if not path.is_file() and source and Path(source).is_file():
            path = Path(source)
        out.append(LabelledImage(path, int(sample["count"]), str(relative)))
    if not out:
        raise ValueError(f"{manifest}: no samples in split {split!r}")
    return out


# --- the artifact's handlers ----------------------------------------------------------------------
@dataclass
class Handlers:
    model_fn: Callable[[str], Any]
    input_fn: Callable[[bytes, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    source: str


def extract_artifact(model: Path, workdir: Path) -> Path:
    """A ``model.tar.gz`` is unpacked into ``workdir``; a folder is used as is."""
    return model if model.is_dir() else unpack_artifact(model, workdir)


def load_handlers(model_dir: Path) -> Handlers:
    """``code/inference.py`` of the artifact, imported with ``code/`` first on ``sys.path``.

    The artifact's ``code/model/`` shadows the repository's ``model`` package only if that package has
    not been imported yet in this process (a fresh ``python -m training.evaluate`` run); otherwise the
    already-imported one serves the artifact's ``inference.py``, and a warning says so when the two
    differ (the gate loads two artifacts of the same code in one process: no warning then).
    """
    code = model_dir / "code"
    script = code / "inference.py"
    if script.is_file():
        imported = getattr(sys.modules.get("model"), "__file__", None)
        if "model" in sys.modules and not _same_code(imported, code / "model"):
            LOG.warning(
                "package 'model' already imported from %s differs from the artifact's code/model, "
                "which is not used",
                imported or "?",
            )
        module: ModuleType = load_inference_module(model_dir)
        source = str(script)
    else:
        import model.inference as module  # the repository's handlers

        source = f"{module.__file__} (artifact has no code/inference.py)"
    return Handlers(module.model_fn, module.input_fn, module.predict_fn, module.output_fn, source)


def _same_code(imported_init: str | None, artifact_package: Path) -> bool:
    """Whether every module of the artifact's ``code/model/`` is byte for byte the imported one."""
    if imported_init is None or not artifact_package.is_dir():
        return False
    imported = Path(imported_init).parent
    return all(
        (imported / source.name).is_file() and (imported / source.name).read_bytes() == source.read_bytes()
        for source in artifact_package.glob("*.py")
    )


def _decode_body(body: Any) -> dict[str, Any]:
    """output_fn may return ``body`` or ``(body, content_type)``; body is JSON (one record) or JSON lines."""
    if isinstance(body, tuple):
        body = body[0]
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8")
    if isinstance(body, dict):
        return body
    text = str(body).strip()
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = json.loads(text.splitlines()[0])
    if isinstance(record, list):
        record = record[0]
    return dict(record)


# --- evaluation -----------------------------------------------------------------------------------
@dataclass
class Prediction:
    item: LabelledImage
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return "error" not in self.record and isinstance(self.record.get("count"), int)


@dataclass
class EvaluationRun:
    predictions: list[Prediction] = field(default_factory=list)
    seconds: float = 0.0
    model_load_seconds: float = 0.0
    handlers: str = ""
    model_version: str | None = None


def _batches(items: Sequence[LabelledImage], size: int) -> Iterator[Sequence[LabelledImage]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_handlers(
    handlers: Handlers,
    model_dir: Path,
    items: Sequence[LabelledImage],
    batch_size: int = 1,
    progress: bool = False,
) -> EvaluationRun:
    """Serve every image. ``batch_size`` 1 is the Batch Transform path (one request per image); larger
    sizes hand ``predict_fn`` a list (the contract's batched path) and fall back to one by one if the
    handlers do not take lists. An exception for one image becomes that image's error record."""
    run = EvaluationRun(handlers=handlers.source)
    started = time.perf_counter()
    model = handlers.model_fn(str(model_dir))
    run.model_load_seconds = time.perf_counter() - started

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="img", desc="evaluate")

    def one(item: LabelledImage) -> dict[str, Any]:
        try:
            content_type = content_type_for(item.path.name)
            data = handlers.input_fn(item.path.read_bytes(), content_type)
            return _decode_body(handlers.output_fn(handlers.predict_fn(data, model), "application/json"))
        except Exception as exc:  # one bad image must not end the evaluation
            return {"error": {"code": "evaluate_exception", "message": f"{type(exc).__name__}: {exc}"}}

    def batched(group: Sequence[LabelledImage]) -> list[dict[str, Any]] | None:
        try:
            inputs = [handlers.input_fn(i.path.read_bytes(), content_type_for(i.path.name)) for i in group]
            outputs = handlers.predict_fn(inputs, model)
            if not isinstance(outputs, list) or len(outputs) != len(group):
                return None
            return [_decode_body(handlers.output_fn(o, "application/json")) for o in outputs]
        except Exception:
            return None

    started = time.perf_counter()
    use_batches = batch_size > 1
    for group in _batches(items, max(1, batch_size)):
        records = batched(group) if use_batches else None
        if records is None:
            if use_batches:
                LOG.info("predict_fn did not take a list: serving one image per request")
                use_batches = False
            records = [one(item) for item in group]
        run.predictions += [Prediction(item, record) for item, record in zip(group, records, strict=True)]
        if bar is not None:
            bar.update(len(group))
    run.seconds = time.perf_counter() - started
    if bar is not None:
        bar.close()
    versions = {p.record.get("model_version") for p in run.predictions if p.record.get("model_version")}
    run.model_version = ",".join(sorted(str(v) for v in versions)) or None
    return run


def _num_classes(run: EvaluationRun, items: Sequence[LabelledImage]) -> int:
    widths = [
        len(p.record["probabilities"]) for p in run.predictions if p.ok and p.record.get("probabilities")
    ]
    top = max([i.count for i in items] + [p.record["count"] for p in run.predictions if p.ok] + [0])
    return max([top + 1, *widths])


def summarise(
    run: EvaluationRun,
    subset: tuple[int, int] | None = None,
    alpha: float = discrepancy.DEFAULT_ALPHA,
    review_budget: float = discrepancy.DEFAULT_REVIEW_BUDGET,
) -> dict[str, Any]:
    """The report as one JSON-ready dict. Images whose request failed are listed under ``errors``
    and left out of the metrics (``n`` counts scored images; ``n_errors`` the others). ``ranges``
    (when the records carry p-values): the ranges' coverage and the discrepancy trade-off at
    ``alpha`` with a review band of ``review_budget``."""
    scored = [p for p in run.predictions if p.ok]
    failed = [p for p in run.predictions if not p.ok]
    num_classes = _num_classes(run, [p.item for p in run.predictions])
    report: dict[str, Any] = {
        "handlers": run.handlers,
        "model_version": run.model_version,
        "n_images": len(run.predictions),
        "n_errors": len(failed),
        "images_per_second": len(run.predictions) / run.seconds if run.seconds > 0 else None,
        "seconds": run.seconds,
        "model_load_seconds": run.model_load_seconds,
    }
    report.update(_block(scored, num_classes))
    report["counts_1_5"] = _block([p for p in scored if 1 <= p.item.count <= 5], num_classes)
    if subset is not None:
        lo, hi = subset
        report["subset"] = {
            "counts": [lo, hi],
            **_block([p for p in scored if lo <= p.item.count <= hi], num_classes),
        }
    report["ranges"] = range_report(scored, alpha, review_budget)
    report["public_baselines"] = [b.__dict__ for b in PUBLIC_BASELINES]
    report["wrong"] = [
        {
            "image": p.item.name,
            "true": p.item.count,
            "predicted": p.record["count"],
            "confidence": p.record.get("confidence"),
        }
        for p in scored
        if p.record["count"] != p.item.count
    ]
    report["errors"] = [{"image": p.item.name, "error": p.record.get("error", p.record)} for p in failed]
    return report


def range_report(preds: Sequence[Prediction], alpha: float, review_budget: float) -> dict[str, Any] | None:
    """Coverage of the served ranges and the simulated discrepancy decision; None without p-values."""
    if not preds or not all(isinstance(p.record.get("count_p_values"), list) for p in preds):
        return None
    rows = [p.record["count_p_values"] for p in preds]
    truth = [p.item.count for p in preds]
    level = float(preds[0].record.get("range_level", 0.9))
    top = len(rows[0]) - 1
    # A record of the top class says whether it is open ("5 or more"); open unless one says otherwise.
    top_open = all(p.record.get("count_is_lower_bound", True) for p in preds if p.record["count"] == top)
    covered = conformal.coverage(rows, truth, level, top).to_dict()
    photos = [discrepancy.Photo(row, t) for row, t in zip(rows, truth, strict=True)]
    return {
        "level": level,
        "coverage": covered,
        "discrepancy": discrepancy.trade_off(photos, alpha, review_budget, top_open),
        "photos": [
            {"image": p.item.name, "true": p.item.count, "count": p.record["count"], "count_p_values": row}
            for p, row in zip(preds, rows, strict=True)
        ],
    }


def _block(preds: Sequence[Prediction], num_classes: int) -> dict[str, Any]:
    truth = [p.item.count for p in preds]
    guess = [p.record["count"] for p in preds]
    metrics = compute_metrics(truth, guess, num_classes)
    block: dict[str, Any] = metrics.to_dict()
    probabilities = [p.record.get("probabilities") for p in preds]
    if preds and all(isinstance(v, list) and len(v) == num_classes for v in probabilities):
        block["ece"] = expected_calibration_error(probabilities, truth)  # type: ignore[arg-type]
    else:
        block["ece"] = None
    block["abid_challenge"] = challenge_comparison(metrics)
    block["abid_challenge_accuracy_on_this_mix"] = challenge_expected_on_mix(metrics.support)
    block["trivial"] = {k: v.to_dict() for k, v in trivial_baselines(truth, num_classes).items()}
    return block


# --- output ---------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def render_text(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model_version']}  handlers {report['handlers']}",
        f"images {report['n_images']}  scored {report['n']}  errors {report['n_errors']}  "
        + (f"{report['images_per_second']:.1f} images/s" if report["images_per_second"] else ""),
        "",
        _headline("all counts", report),
    ]
    if report["counts_1_5"]["n"] and report["counts_1_5"]["n"] != report["n"]:
        lines.append(_headline("counts 1-5", report["counts_1_5"]))
    if "subset" in report:
        lo, hi = report["subset"]["counts"]
        lines.append(_headline(f"counts {lo}-{hi}", report["subset"]))
    lines += _range_lines(report.get("ranges"))
    lines += ["", "count  support  accuracy  ABID-challenge  precision  recall"]
    for row in report["abid_challenge"]:
        k = str(row["count"])
        lines.append(
            f"{row['count']:>5}  {row['support']:>7}  {_pct(row['accuracy']):>8}  "
            f"{_pct(row['abid_challenge_accuracy']):>14}  {_pct(report['precision'][k]):>9}  "
            f"{_pct(report['recall'][k]):>6}"
        )
    mix = report["abid_challenge_accuracy_on_this_mix"]
    if mix is not None:
        lines.append(f"ABID challenge baseline's per-class rates on this mix of counts: {_pct(mix)}")
    lines += ["", "confusion (rows true, columns predicted):"]
    lines += ["       " + " ".join(f"{k:>4}" for k in range(len(report["confusion"])))]
    lines += [f"  {t:>3}  " + " ".join(f"{c:>4}" for c in row) for t, row in enumerate(report["confusion"])]
    lines += ["", "public baselines:"]
    for b in report["public_baselines"]:
        rmse = f", RMSE {b['rmse']:.3f}" if b["rmse"] is not None else ""
        lines.append(f"  {_pct(b['accuracy'])}{rmse}  {b['name']}: {b['note']}")
    if report["wrong"]:
        lines += ["", f"wrong counts ({len(report['wrong'])}):"]
        for w in report["wrong"][:30]:
            conf = f"{w['confidence']:.2f}" if isinstance(w["confidence"], float) else "-"
            lines.append(f"  {w['image']}: true {w['true']}, predicted {w['predicted']} (confidence {conf})")
        if len(report["wrong"]) > 30:
            lines.append(f"  ... {len(report['wrong']) - 30} more in the JSON report")
    if report["errors"]:
        lines += ["", f"errors ({len(report['errors'])}):"]
        lines += [f"  {e['image']}: {e['error']}" for e in report["errors"][:30]]
    return "\n".join(lines)


def _range_lines(ranges: dict[str, Any] | None) -> list[str]:
    """The ranges' coverage and the simulated discrepancy decision, as a consumer reads them."""
    if ranges is None:
        return ["", "ranges: the records carry no count_p_values (the model has no range calibration)"]
    cov, trade = ranges["coverage"], ranges["discrepancy"]
    at, review = trade["at_alpha"], trade["review"]
    per = "  ".join(
        f"{k}: {_pct(v['coverage']).strip()} (n={v['n']})" for k, v in cov["per_true_count"].items()
    )
    held = review["holds_discrepancies"]
    band = f"{at['alpha']:g} < p(expected) <= {at['alpha'] + review['budget']:g}"
    return [
        "",
        f"ranges at {ranges['level']:.0%}: hold the true count on {_pct(cov['coverage']).strip()} of photos, "
        f"{cov['mean_width']:.2f} counts wide on average, {_pct(cov['contiguous']).strip()} without a gap",
        f"  per true count: {per}",
        f"discrepancy events at alpha {at['alpha']:g} (p(expected) <= alpha): inventory right "
        f"{_pct(at['false_alarm']).strip()} false alarms; inventory off by 1 "
        f"{_pct(at['catch_off_by_1']).strip()}, by 2 {_pct(at['catch_off_by_2']).strip()}, "
        f"by 3 {_pct(at['catch_off_by_3']).strip()} caught",
        f"review band ({band}): {_pct(review['share_inventory_right']).strip()} of photos with the inventory "
        f"right, {_pct(review['share_off_by_1']).strip()} / {_pct(review['share_off_by_2']).strip()} / "
        f"{_pct(review['share_off_by_3']).strip()} off by 1 / 2 / 3; in an even mix of right and wrong "
        f"records, {_pct(held['in_review_band']).strip()} of the photos in the band are wrong "
        f"against {_pct(held['passed_quietly']).strip()} of those passed quietly",
    ]


def _headline(title: str, block: dict[str, Any]) -> str:
    trivial = block["trivial"]
    parts = [
        f"{title:>11}: n={block['n']}  accuracy {_pct(block['accuracy'])}  "
        f"RMSE {block['rmse']:.3f}  MAE {block['mae']:.3f}"
    ]
    if block.get("ece") is not None:
        parts.append(f"ECE {block['ece']:.3f}")
    shown: set[int] = set()
    for name in ("majority", "best_rmse_constant"):
        if name in trivial and trivial[name]["constant"] not in shown:
            t = trivial[name]
            shown.add(t["constant"])
            parts.append(f"[{t['name']}: {_pct(t['accuracy'])}, RMSE {t['rmse']:.3f}]")
    return "  ".join(parts)


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, str]:
    from training.reporting.plots import plot_confusion, plot_discrepancy

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "report": str(out / "report.json"),
        "confusion_json": str(out / "confusion.json"),
        "confusion_png": str(out / "confusion.png"),
    }
    Path(files["confusion_json"]).write_text(
        json.dumps({"rows": "true", "columns": "predicted", "confusion": report["confusion"]}) + "\n"
    )
    plot_confusion(
        report["confusion"],
        files["confusion_png"],
        title=f"n={report['n']}  accuracy {100 * report['accuracy']:.1f}%  RMSE {report['rmse']:.2f}",
        dataset=report.get("dataset"),
    )
    ranges = report.get("ranges")
    if ranges is not None:
        files["discrepancy_png"] = str(out / "discrepancy.png")
        trade = ranges["discrepancy"]
        plot_discrepancy(
            trade["curve"],
            files["discrepancy_png"],
            alpha=trade["at_alpha"]["alpha"],
            dataset=report.get("dataset"),
            n=trade["n"],
        )
    Path(files["report"]).write_text(json.dumps({**report, "files": files}, indent=1) + "\n")
    return files


def parse_subset(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        return (int(lo), int(hi)) if sep else (int(lo), int(lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--subset {text!r}: expected LO-HI, e.g. 1-5") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model.tar.gz or its extracted folder")
    parser.add_argument("--images", type=Path, help="folder of images (count-class folders when no --labels)")
    parser.add_argument(
        "--labels", type=Path, help="CSV image,count,... (paths relative to the CSV's folder)"
    )
    parser.add_argument("--manifest", type=Path, help="split manifest from training.data; evaluates --split")
    parser.add_argument("--split", default="test", help="split of --manifest to evaluate (or 'all')")
    parser.add_argument("--subset", type=parse_subset, help="also report counts LO-HI only, e.g. 1-5")
    parser.add_argument(
        "--out", type=Path, default=Path("build/eval"), help="confusion PNG/JSON and report.json"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="1 = one request per image, as Batch Transform"
    )
    parser.add_argument("--limit", type=int, help="evaluate the first N images only")
    parser.add_argument(
        "--alpha",
        type=float,
        default=discrepancy.DEFAULT_ALPHA,
        help="false-alarm budget of the simulated discrepancy events (default 0.05)",
    )
    parser.add_argument(
        "--review-budget",
        type=float,
        default=discrepancy.DEFAULT_REVIEW_BUDGET,
        help="review band width: alpha < p(expected) <= alpha + budget goes to review (default 0.10)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--name", help="the data set's name in the report and figure (default: from the paths)"
    )
    return parser


def dataset_name(args: argparse.Namespace) -> str:
    """What the figure's title calls the photos: ``--name``, else the folder they come from."""
    if args.name:
        return str(args.name)
    if args.manifest:
        return f"{args.manifest.resolve().parent.name}, {args.split} split"
    source = args.labels.resolve().parent if args.labels else args.images.resolve()
    return source.parent.name if source.name == "images" else source.name


WHAT_WORKS = (
    "give --images DIR with <count>/ subfolders, --images DIR --labels CSV (image,count), or --manifest"
)


def check_arguments(args: argparse.Namespace) -> None:
    """Paths and numbers checked before the model loads: one line for each mistake."""
    if not args.model.exists():
        raise UsageError(f"--model {args.model}: no such file (pack one with `make model`)")
    for flag, path, kind in (
        ("--images", args.images, "folder"),
        ("--labels", args.labels, "file"),
        ("--manifest", args.manifest, "file"),
    ):
        if path is not None and not (path.is_dir() if kind == "folder" else path.is_file()):
            raise UsageError(f"{flag} {path}: no such {kind}")
    for flag, value in (("--batch-size", args.batch_size), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: give a whole number above 0")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha {args.alpha}: give a number between 0 and 1, e.g. 0.05")
    if not 0 <= args.review_budget < 1:
        raise UsageError(f"--review-budget {args.review_budget}: give a number from 0 to below 1, e.g. 0.10")
    if args.subset is not None and args.subset[0] > args.subset[1]:
        raise UsageError(f"--subset {args.subset[0]}-{args.subset[1]}: LO must not exceed HI")


def collect(args: argparse.Namespace) -> list[LabelledImage]:
    """The labelled photos the arguments name; :class:`UsageError` (one line) when there are none."""
    try:
        if args.manifest:
            return labels_from_manifest(args.manifest, args.split, args.images)
        if args.labels:
            return labels_from_csv(args.labels, args.images)
        if args.images is None:
            raise UsageError(f"nothing to evaluate: {WHAT_WORKS}")
        if (args.images / "labels.csv").is_file():
            return labels_from_csv(args.images / "labels.csv", args.images)
        if not _count_dirs(args.images) and not (args.images / "images").is_dir():
            raise UsageError(
                f"--images {args.images} has no labels (no <count>/ subfolders, no labels.csv): {WHAT_WORKS}"
            )
        return labels_from_folders(args.images)
    except (ValueError, KeyError) as error:  # a CSV or manifest that is not what it should be
        raise UsageError(f"{str(error).splitlines()[0]}: {WHAT_WORKS}") from error


@one_line_errors("training.evaluate")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_arguments(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    items = collect(args)
    if args.limit:
        items = items[: args.limit]
    with tempfile.TemporaryDirectory(prefix="bincount-eval-") as tmp:
        model_dir = extract_artifact(args.model, Path(tmp))
        handlers = load_handlers(model_dir)
        run = run_handlers(
            handlers, model_dir, items, args.batch_size, progress=sys.stderr.isatty() and not args.json
        )
    report = summarise(run, args.subset, args.alpha, args.review_budget)
    report["model"] = str(args.model)
    report["dataset"] = dataset_name(args)
    report["abid_challenge_per_class_accuracy"] = {
        str(k): v / 100 for k, v in ABID_CHALLENGE_PER_CLASS_ACCURACY.items()
    }
    report["files"] = write_outputs(report, args.out)
    print(json.dumps(report) if args.json else render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
