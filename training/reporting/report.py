"""What a training run reports: ``metrics.json``, ``history.json``, ``predictions.json``, plots, the
printed summary and the lines SageMaker's metric definitions read.

Kept apart from the loop so the trainer reads as a loop and the files a person or a tuner reads
have one home. The metrics dictionary is built from plain results (dicts of numbers), not from
the model, so it is cheap to test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from training.dataset import ImageSet
from training.reporting.metrics import RMSE_WEIGHT
from training.splits import Splits
from training.uncertainty.calibration import Calibration

PREDICTIONS_FILE = "predictions.json"
#: The one line ``training.train`` prints per epoch, with stable names (values from its ``epoch_record``).
METRIC_LINE_FORMAT = (
    "epoch={epoch} train_loss={train_loss:.4f} train_accuracy={train_accuracy:.4f} "
    "valid_loss={valid_loss:.4f} valid_accuracy={valid_accuracy:.4f} valid_rmse={valid_rmse:.4f} "
    "valid_mae={valid_mae:.4f} valid_score={valid_score:.4f} lr={lr:.6f} "
    "epoch_seconds={epoch_seconds:.1f} images_per_second={images_per_second:.1f}"
)
#: Regexes for SageMaker ``metric_definitions``; no name is a substring of another's ``name=``
#: (``best_valid_score=`` has no word boundary before ``valid_score=``). ``best:valid_score`` is
#: the last line of a run: the kept model's validation score, the tuning objective.
METRIC_DEFINITIONS = [
    {"Name": name.replace("_", ":", 1), "Regex": rf"\b{name}=([-+0-9.eE]+|nan|inf)"}
    for name in (
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_accuracy",
        "valid_rmse",
        "valid_mae",
        "valid_score",
        "best_accuracy",
        "best_rmse",
        "best_score",
        "test_accuracy",
        "test_rmse",
        "best_valid_score",
    )
]
RESULT_LINE_FORMAT = (
    "result best_epoch={best_epoch} best_accuracy={best_accuracy:.4f} best_rmse={best_rmse:.4f} "
    "best_score={best_score:.4f} test_accuracy={test_accuracy:.4f} test_rmse={test_rmse:.4f} "
    "ece_before={ece_before:.4f} ece_after={ece_after:.4f} temperature={temperature:.4f} "
    "review_threshold={review_threshold:.2f}"
)
#: The run's last line: the kept model's validation score, the tuning objective's last value.
FINAL_LINE_FORMAT = "best_valid_score={score:.4f}"


def build_metrics(
    chosen: Calibration, best_epoch: int, test: dict[str, Any] | None, splits: Splits
) -> dict[str, Any]:
    """``metrics.json``: validation (as chosen), test (reported), calibration, review, empty bins."""
    valid = chosen.scores[chosen.decoding]
    keys = ("accuracy", "rmse", "mae", "score")
    return {
        "best_epoch": best_epoch,
        "decoding": chosen.decoding,
        "temperature": chosen.temperature,
        "valid": valid,
        "valid_by_decoding": {d: {k: s[k] for k in keys} for d, s in chosen.scores.items()},
        "test": test,
        "calibration": chosen.report,
        "review_threshold": chosen.threshold.__dict__,
        "class0": {
            "train_photos": int((splits.train.counts == 0).sum()),
            "valid": {"n": valid["support"].get("0"), "recall": valid["recall"].get("0")},
            "test": None
            if test is None
            else {"n": test["support"].get("0"), "recall": test["recall"].get("0")},
        },
        "split_counts": splits.description.get("split_counts"),
        "score_rule": f"valid_accuracy - {RMSE_WEIGHT} * valid_rmse",
    }


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The few figures of a split that go into ``config.json`` (the model card's numbers)."""
    return {k: result[k] for k in ("n", "accuracy", "rmse", "mae", "per_class_accuracy")}


def result_line(metrics: dict[str, Any]) -> str:
    """:data:`RESULT_LINE_FORMAT` filled from :func:`build_metrics`'s metrics."""
    valid, test, calibration = metrics["valid"], metrics["test"], metrics["calibration"]
    return RESULT_LINE_FORMAT.format(
        best_epoch=metrics["best_epoch"],
        best_accuracy=valid["accuracy"],
        best_rmse=valid["rmse"],
        best_score=valid["score"],
        test_accuracy=test["accuracy"] if test else float("nan"),
        test_rmse=test["rmse"] if test else float("nan"),
        ece_before=calibration["ece_before"],
        ece_after=calibration["ece_after"],
        temperature=metrics["temperature"],
        review_threshold=metrics["review_threshold"]["threshold"],
    )


def final_line(metrics: dict[str, Any]) -> str:
    return FINAL_LINE_FORMAT.format(score=metrics["valid"]["score"])


def summary(metrics: dict[str, Any]) -> str:
    """The human-readable end of a run: chosen epoch, decoding, valid/test figures, review flag."""
    valid, test, review = metrics["valid"], metrics["test"], metrics["review_threshold"]
    lines = [
        f"best epoch {metrics['best_epoch']}, decoding {metrics['decoding']}, "
        f"temperature {metrics['temperature']:.3f}",
        f"valid: accuracy {valid['accuracy']:.3f}, RMSE {valid['rmse']:.3f} (n={valid['n']})",
    ]
    if test:
        lines.append(f"test:  accuracy {test['accuracy']:.3f}, RMSE {test['rmse']:.3f} (n={test['n']})")
        lines.append(
            "test per class: "
            + ", ".join(
                f"{k}: {v:.2f}" if v is not None else f"{k}: -" for k, v in test["per_class_accuracy"].items()
            )
        )
    cal = metrics["calibration"]
    lines.append(f"ECE (valid) {cal['ece_before']:.3f} -> {cal['ece_after']:.3f} after temperature scaling")
    lines.append(
        f"review threshold {review['threshold']:.2f}: flags {review['flagged']:.0%} of photos, "
        f"catches {review['wrong_caught']:.0%} of wrong counts (valid)"
    )
    c0 = metrics["class0"]
    lines.append(f"empty bins: {c0['train_photos']} in train; valid {c0['valid']}; test {c0['test']}")
    return "\n".join(lines)


def write_predictions(
    path: Path, temperature: float, splits: dict[str, tuple[ImageSet, torch.Tensor]]
) -> None:
    """The shipped weights' raw logits per photo of each split, for comparing runs and ensembles
    afterwards without the photos (``training.promotion.compare``)."""
    data = {
        "temperature": temperature,
        "splits": {
            name: {
                "ids": images.ids,
                "counts": images.counts.tolist(),
                "logits": [[round(float(v), 5) for v in row] for row in logits.tolist()],
            }
            for name, (images, logits) in splits.items()
        },
    }
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")


def write_run_files(out: Path, metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n", encoding="utf-8")
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")


def plot_run(history: list[dict[str, Any]], metrics: dict[str, Any], out: Path) -> None:
    """Training curves and confusion matrices (training.reporting.plots), skipped where matplotlib
    is absent."""
    # training.reporting.plots imports matplotlib only when it draws, so a missing one raises in
    # the calls, not at the import; the model is not in SM_MODEL_DIR yet, and a figure must not fail the job.
    try:
        from training.reporting.plots import plot_confusion, plot_training_curves

        plot_training_curves(history, out / "training_curves.png")
        plot_confusion(metrics["valid"]["confusion"], out / "confusion_valid.png", "validation split")
        if metrics["test"] is not None:
            plot_confusion(metrics["test"]["confusion"], out / "confusion_test.png", "test split")
    except ImportError as exc:  # matplotlib missing in a slim container: the numbers are in metrics.json
        print(f"no plots: {exc}", flush=True)
