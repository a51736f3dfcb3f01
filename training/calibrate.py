"""Calibrate the count ranges of a trained model on its held-out photos: ``python -m training.calibrate``.

For a model trained before training runs kept a calibration split of their own (the shipped
``model/weights``): the command rebuilds the run's split of ``--data`` exactly as
``training.data`` made it (stratified 80/10/10 with the seed in ``config.json``'s
``training.hyperparameters``, checked against the recorded ``training.data.split_counts``),
takes the photos the run never used (its test split, and the counts the split never held, like
ABID's 6-47), cuts them into a calibration half and a test half
(:func:`training.uncertainty.conformal.calibration_halves`), serves them through the model's handlers,
calibrates on the first half, measures coverage on the second for both groupings, and writes the
``conformal`` calibration into the weights' ``config.json`` (``model.pt`` and its sha256 are left
as they are). ``training.uncertainty.conformal`` records which photos it used (rule, seed, id digests), so the
calibration can be rebuilt.

    python -m training.calibrate --weights model/weights --data abid-train

(``abid-train``: the photos the weights were trained on, the folder of ``images/<count>/*.jpg`` +
``labels.csv`` you gave ``training.train --data``.)

It also writes ``<out>/photos.json`` (each held-out photo's half, count and served probabilities)
and ``<out>/test_half.csv`` (image,count), the photos to evaluate the ranges on:
``python -m training.evaluate --model build/model/model.tar.gz --labels build/calibrate/test_half.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import UsageError, one_line_errors
from model.config import ModelConfig, sha256_file
from training.data import Sample, discover_local, stratified_split
from training.evaluate import LabelledImage, load_handlers, run_handlers
from training.uncertainty import conformal

LOG = logging.getLogger("training.calibrate")
LEVELS = (0.8, 0.9, 0.95)


def held_out_samples(data: Path, config: ModelConfig) -> tuple[list[Sample], str]:
    """The photos of ``data`` the model's run never trained on nor selected with, and how they were found."""
    recorded = config.training.get("data", {}).get("split_counts")
    hyper = config.training.get("hyperparameters", {})
    if not recorded or "seed" not in hyper:
        raise UsageError("config.json records no split (training.data.split_counts, hyperparameters.seed)")
    if "calibration" in recorded:
        raise UsageError("this run kept a calibration split: its config.json already carries its ranges")
    seed = int(hyper["seed"])
    samples, _ = discover_local(data)
    used_counts = {int(k) for split in recorded.values() for k in split}
    split = stratified_split([s for s in samples if s.count in used_counts], seed)
    for name, counts in recorded.items():
        rebuilt = {str(k): v for k, v in sorted(Counter(s.count for s in split[name]).items())}
        if rebuilt != counts:
            raise UsageError(f"{data}: the rebuilt {name} split {rebuilt} is not the recorded {counts}")
    never = [s for s in samples if s.count not in used_counts]
    rule = (
        f"test split of {data.name} (training.data: stratified 80/10/10 per count, seed {seed}) "
        f"+ the {len(never)} photos with counts the split never held"
    )
    return split["test"] + never, rule


def serve(weights: Path, samples: Sequence[Sample], batch_size: int) -> list[dict[str, Any]]:
    items = [LabelledImage(Path(s.source), s.count, s.id) for s in samples]
    run = run_handlers(load_handlers(weights), weights, items, batch_size, progress=sys.stderr.isatty())
    failed = [p.item.name for p in run.predictions if not p.ok]
    if failed:
        raise UsageError(f"{len(failed)} photos could not be served, e.g. {failed[:3]}")
    return [p.record for p in run.predictions]


def measure(
    calibration: conformal.Conformal, records: Sequence[dict[str, Any]], counts: Sequence[int], top: int
) -> dict[str, Any]:
    rows = [conformal.p_values(calibration, r["probabilities"], r["count"]) for r in records]
    out: dict[str, Any] = {}
    for level in LEVELS:
        found = conformal.coverage(rows, counts, level, top).to_dict()
        found["harder_mix_coverage"] = conformal.harder_mix_coverage(
            found["per_true_count"], conformal.HARDER_MIX
        )
        out[f"{level:.2f}"] = found
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.calibrate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", type=Path, default=Path("model/weights"), help="model.pt + config.json")
    parser.add_argument("--data", type=Path, required=True, help="the folder the model was trained on")
    parser.add_argument("--groups", choices=conformal.GROUPINGS, default=conformal.DEFAULT_GROUPS)
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration/test halves")
    parser.add_argument(
        "--out", type=Path, default=Path("build/calibrate"), help="report.json, test_half.csv"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dry-run", action="store_true", help="measure only; leave config.json as it is")
    return parser


@one_line_errors("training.calibrate")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config_path = args.weights / "config.json"
    if not config_path.is_file() or not args.data.is_dir():
        raise UsageError(f"need {config_path} and the folder --data {args.data}")
    config = ModelConfig.load(config_path)
    top = config.num_classes - 1
    samples, rule = held_out_samples(args.data, config)
    cal, test = conformal.calibration_halves(samples, lambda s: s.count, lambda s: s.id, args.seed)
    print(f"held out {len(samples)} photos: calibration {len(cal)}, test {len(test)}", flush=True)
    records = serve(args.weights, cal + test, args.batch_size)
    cal_records, test_records = records[: len(cal)], records[len(cal) :]
    labels = [min(s.count, top) for s in cal]
    calibrations = {
        groups: conformal.calibrate(
            [r["probabilities"] for r in cal_records], labels, [r["count"] for r in cal_records], groups
        )
        for groups in conformal.GROUPINGS
    }
    measured = {
        groups: measure(c, test_records, [s.count for s in test], top) for groups, c in calibrations.items()
    }
    chosen = calibrations[args.groups]
    report = {
        "groups": args.groups,
        "held_out": rule,
        "halves": conformal.HALVES_RULE,
        "seed": args.seed,
        "n_calibration": len(cal),
        "n_test": len(test),
        "calibration_ids_sha256": conformal.ids_digest([s.id for s in cal]),
        "test_ids_sha256": conformal.ids_digest([s.id for s in test]),
        "min_group": conformal.MIN_GROUP,
        "test_half": measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    photos = [
        {
            "id": s.id,
            "count": s.count,
            "half": half,
            "predicted": r["count"],
            "probabilities": r["probabilities"],
        }
        for half, group, served in (("calibration", cal, cal_records), ("test", test, test_records))
        for s, r in zip(group, served, strict=True)
    ]
    (args.out / "photos.json").write_text(json.dumps(photos) + "\n")
    with (args.out / "test_half.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "count"])
        writer.writerows([str(Path(s.source).resolve()), s.count] for s in test)
    for groups, by_level in measured.items():
        at = by_level["0.90"]
        per = "  ".join(f"{k}:{v['coverage']:.2f}" for k, v in at["per_true_count"].items())
        print(
            f"{groups:>15} at 90 %: coverage {at['coverage']:.3f}  width {at['mean_width']:.2f}  "
            f"harder mix {at['harder_mix_coverage']:.3f}  per true count {per}",
            flush=True,
        )
    if args.dry_run:
        return 0
    sha = sha256_file(args.weights / "model.pt")
    if sha != config.weights_sha256:
        raise UsageError(f"{args.weights}/model.pt does not match config.json's sha256: not writing")
    config.conformal = chosen.to_dict()
    config.training["conformal"] = {
        **{k: v for k, v in report.items() if k != "test_half"},
        "command": "python -m training.calibrate " + " ".join(argv if argv is not None else sys.argv[1:]),
        "test_half_at_0.90": {
            k: v for k, v in measured[args.groups]["0.90"].items() if k in ("n", "coverage", "mean_width")
        },
    }
    config.save(config_path)
    print(f"wrote the {args.groups} calibration ({len(cal)} photos) into {config_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
