"""After the epoch loop: the kept weights as they ship, calibrated, tested, described, packaged, reported.

:func:`finish` is a short list of calls into the modules that own each step: the best checkpoint
is rounded to fp16 (as it ships) before anything is measured on it; ``training.uncertainty.calibration`` fits
the temperature and picks the decoding and review threshold on validation; ``training.uncertainty.conformal``
calibrates the count ranges on the calibration split (after the temperature); the test split is
scored with those choices, reported and never used for choosing; ``model.package`` writes the
artifact; ``training.reporting.report`` writes the files and prints the lines SageMaker's metric definitions
read, ``best_valid_score=`` last.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from model.config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from model.network import half_state_dict
from model.package import package_model
from training.checkpoints import LoopState
from training.dataset import ImageSet
from training.promotion.artifact import unpack_artifact
from training.reporting import report
from training.reporting.report import PREDICTIONS_FILE
from training.scoring import ScoringContext, predict_logits, score_logits, score_split
from training.splits import Splits, class_index
from training.train_args import command_line
from training.uncertainty import calibration, conformal


def finish(ctx: ScoringContext, args: argparse.Namespace, splits: Splits, state: LoopState) -> dict[str, Any]:
    """Best checkpoint -> fp16 weights (as shipped) -> calibration, decoding, threshold -> test, artifact."""
    out = Path(args.out)
    half = load_shipped_weights(ctx, state.best["state"])
    valid_labels = class_index(splits.valid.counts, ctx.config)
    valid_logits = predict_logits(ctx, splits.valid.images)
    decodings = ["argmax", "expected"] if args.decoding == "auto" else [args.decoding]
    chosen = calibration.calibrate(
        valid_logits,
        valid_labels,
        decodings,
        lambda decoding, t: score_logits(ctx, splits.valid, valid_logits, decoding, t),
        args.max_flagged,
    )
    test, test_logits = score_test_split(ctx, splits.test, chosen)
    metrics = report.build_metrics(chosen, state.best["epoch"], test, splits)
    describe_model(ctx.config, chosen, metrics, splits, args)
    calibrate_ranges(ctx, splits, chosen, test_logits)
    artifact = package(out, half, ctx.config)  # sets config.weights_sha256
    report.write_run_files(out, metrics, state.history)
    predicted = {"valid": (splits.valid, valid_logits)}
    if splits.test is not None and test_logits is not None:
        predicted["test"] = (splits.test, test_logits)
    report.write_predictions(out / PREDICTIONS_FILE, chosen.temperature, predicted)
    report.plot_run(state.history, metrics, out)
    if args.model_dir:  # SageMaker tars SM_MODEL_DIR into model.tar.gz itself: give it the artifact's files
        unpack_artifact(artifact, args.model_dir)
    print(report.result_line(metrics), flush=True)
    print(report.summary(metrics), flush=True)
    print(report.final_line(metrics), flush=True)  # last: the tuner's objective is its last value
    return {
        "out": str(out),
        "artifact": str(artifact),
        "config": ctx.config.to_dict(),
        "metrics": metrics,
        "history": state.history,
    }


def load_shipped_weights(ctx: ScoringContext, best: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load the kept weights rounded to fp16 (as they ship), so everything after is measured on them."""
    ctx.model.load_state_dict(best)
    half = half_state_dict(ctx.model)
    ctx.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    return half


def score_test_split(
    ctx: ScoringContext, test: ImageSet | None, chosen: calibration.Calibration
) -> tuple[dict[str, Any] | None, torch.Tensor | None]:
    """The test split's figures with the chosen decoding, temperature and review threshold."""
    if test is None:
        return None, None
    result, logits = score_split(ctx, test, chosen.decoding, chosen.temperature)
    result["ece"], result["review"] = calibration.review_on(
        logits, class_index(test.counts, ctx.config), chosen
    )
    return result, logits


def calibrate_ranges(
    ctx: ScoringContext, splits: Splits, chosen: calibration.Calibration, test_logits: torch.Tensor | None
) -> None:
    """Conformal count ranges calibrated on the calibration split, their coverage on the test split.

    Without a calibration split (no test photos) the artifact ships without ranges; serving says so.
    """
    config = ctx.config
    # A fine-tune starts from its parent's config: the parent's calibration says nothing of these weights.
    config.conformal = None
    config.training.pop("conformal", None)
    if splits.calibration is None:
        print(
            "no calibration split (no held-out test photos): the model ships without count ranges", flush=True
        )
        return
    probs = calibration.probabilities(predict_logits(ctx, splits.calibration.images), chosen.temperature)
    labels = class_index(splits.calibration.counts, config)
    ranges = conformal.calibrate(
        probs.tolist(), labels.tolist(), calibration.decode(probs, chosen.decoding).tolist()
    )
    config.conformal = ranges.to_dict()
    record: dict[str, Any] = {
        "split": "calibration",
        "halves": conformal.HALVES_RULE,
        "n_calibration": len(splits.calibration),
        "calibration_ids_sha256": conformal.ids_digest(list(splits.calibration.ids)),
        "groups": ranges.groups,
        "min_group": conformal.MIN_GROUP,
    }
    if splits.test is not None and test_logits is not None:
        test_probs = calibration.probabilities(test_logits, chosen.temperature)
        guesses = calibration.decode(test_probs, chosen.decoding).tolist()
        rows = [
            conformal.p_values(ranges, row, g) for row, g in zip(test_probs.tolist(), guesses, strict=True)
        ]
        found = conformal.coverage(rows, splits.test.counts.tolist(), 0.9, config.num_classes - 1)
        record["test_at_0.90"] = {"n": found.n, "coverage": found.coverage, "mean_width": found.mean_width}
        print(
            f"count ranges at 90 %: coverage {found.coverage:.3f}, mean width {found.mean_width:.2f} "
            f"on {found.n} test photos",
            flush=True,
        )
    config.training["conformal"] = record


def describe_model(
    config: ModelConfig,
    chosen: calibration.Calibration,
    metrics: dict[str, Any],
    splits: Splits,
    args: argparse.Namespace,
) -> None:
    """Write what serving needs (decoding, temperature, version) and the training record into ``config``."""
    excluded = ("data", "train", "validation", "test", "out", "model_dir")
    valid, test = metrics["valid"], metrics["test"]
    config.decoding = chosen.decoding
    config.temperature = chosen.temperature
    # Minute resolution: two models trained the same day must not share a version in the records.
    config.version = f"bincount-{config.arch}-{time.strftime('%Y.%m.%d-%H%M', time.gmtime())}"
    config.training = {
        **config.training,  # the parent model of a fine-tune (--init-from)
        "data": splits.description,
        "command": command_line(args),
        "hyperparameters": {k: v for k, v in vars(args).items() if k not in excluded},
        "best_epoch": metrics["best_epoch"],
        "metrics": {"valid": report.headline(valid), "test": report.headline(test) if test else None},
        "ece": {"before": chosen.report["ece_before"], "after": chosen.report["ece_after"]},
        "review_threshold": chosen.threshold.threshold,
        "review": chosen.threshold.__dict__,
    }


def package(out: Path, state: dict[str, torch.Tensor], config: ModelConfig) -> Path:
    """``model.tar.gz`` via model.package, and its ``model.pt`` + ``config.json`` (same bytes) beside it."""
    artifact = package_model(out / "model.tar.gz", state, config)
    unpack_artifact(artifact, out, (WEIGHTS_FILE, CONFIG_FILE))
    return artifact
