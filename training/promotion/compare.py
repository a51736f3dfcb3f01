"""Compare trained runs, and ensembles of them, from their saved per-photo logits.

Every training run writes ``predictions.json`` (the shipped weights' logits on valid and test);
a GPU sweep's ``summary.json`` holds them for all its runs. This answers "which candidate, and
would averaging several help?" without the photos or a GPU::

    python -m training.promotion.compare build/train-a build/train-b   # run folders
    python -m training.promotion.compare summary.json --ensembles 3     # a sweep, best 2..3-model ensembles

Ensembles average the temperature-calibrated probabilities of their members. They are ranked by
the validation score (``valid_accuracy - 0.25 * valid_rmse``, as training chooses checkpoints);
test figures are printed beside them, never used to rank. With many candidates, the best of many
ensembles on 380 validation photos is optimistic: read the test column before believing a gain.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from common.errors import Refused, UsageError, one_line_errors
from training.reporting.metrics import compute_metrics, validation_score
from training.reporting.report import PREDICTIONS_FILE


@dataclass
class Run:
    """One run's calibrated probabilities and true counts per split."""

    name: str
    probabilities: dict[str, torch.Tensor]
    counts: dict[str, list[int]]
    ids: dict[str, list[str]]


def run_from_predictions(name: str, data: dict) -> Run:
    temperature = float(data.get("temperature", 1.0))
    probabilities, counts, ids = {}, {}, {}
    for split, values in data["splits"].items():
        logits = torch.tensor(values["logits"], dtype=torch.float32)
        probabilities[split] = torch.softmax(logits / temperature, dim=1)
        counts[split] = [int(c) for c in values["counts"]]
        ids[split] = list(values["ids"])
    return Run(name, probabilities, counts, ids)


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Run folders (with ``predictions.json``) and sweep summaries, in the order given."""
    runs: list[Run] = []
    for path in paths:
        if path.is_dir():
            file = path / PREDICTIONS_FILE
            if not file.is_file():
                raise UsageError(
                    f"{path} has no {PREDICTIONS_FILE} (trained before it was written?): give run folders "
                    "of training.train or sweep summary.json files"
                )
            runs.append(run_from_predictions(path.name, json.loads(file.read_text())))
        elif not path.is_file():
            raise UsageError(f"{path}: no such run folder or summary file")
        else:
            summary = _read_json(path)
            for name, entry in sorted(summary.get("runs", {}).items()):
                if "predictions" in entry:
                    runs.append(run_from_predictions(name, entry["predictions"]))
    if not runs:
        raise UsageError("no runs with predictions found: give run folders of training.train")
    reference = runs[0]
    for run in runs[1:]:
        if run.ids != reference.ids:
            raise Refused(f"{run.name} was evaluated on other photos than {reference.name}: not comparable")
    return runs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path} is not a sweep summary.json ({error.__class__.__name__})") from error
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a sweep summary.json (no runs in it)")
    return data


def score(probabilities: torch.Tensor, counts: list[int], num_classes: int) -> dict[str, float]:
    labels = [min(c, num_classes - 1) for c in counts]  # the open top class
    metrics = compute_metrics(labels, probabilities.argmax(dim=1).tolist(), num_classes)
    return {
        "accuracy": metrics.accuracy,
        "rmse": metrics.rmse,
        "score": validation_score(metrics.accuracy, metrics.rmse),
    }


def score_ensemble(members: Sequence[Run]) -> dict[str, dict[str, float]]:
    """Each split's figures for the members' averaged probabilities (one member: that run alone)."""
    first = members[0]
    out = {}
    for split in first.probabilities:
        mean = torch.stack([m.probabilities[split] for m in members]).mean(dim=0)
        out[split] = score(mean, first.counts[split], mean.shape[1])
    return out


def compare(runs: Sequence[Run], max_members: int = 1, top: int = 5) -> list[dict]:
    """Every single run, then the ``top`` best ensembles of each size up to ``max_members``."""
    rows: list[dict[str, Any]] = [{"members": [r.name], **score_ensemble([r])} for r in runs]
    for size in range(2, max_members + 1):
        candidates: list[dict[str, Any]] = [
            {"members": [r.name for r in combo], **score_ensemble(combo)}
            for combo in itertools.combinations(runs, size)
        ]
        candidates.sort(key=lambda row: row["valid"]["score"], reverse=True)
        rows += candidates[:top]
    return rows


def format_rows(rows: Sequence[dict]) -> str:
    lines = [f"{'members':<58} {'valid acc':>9} {'RMSE':>6} {'test acc':>9} {'RMSE':>6}"]
    for row in rows:
        valid, test = row["valid"], row.get("test")
        test_text = f"{test['accuracy']:>9.3f} {test['rmse']:>6.3f}" if test else f"{'-':>9} {'-':>6}"
        lines.append(
            f"{' + '.join(row['members']):<58} {valid['accuracy']:>9.3f} {valid['rmse']:>6.3f} {test_text}"
        )
    return "\n".join(lines)


@one_line_errors("training.promotion.compare")
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.promotion.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders and/or sweep summary.json files")
    parser.add_argument("--ensembles", type=int, default=1, metavar="N", help="also ensembles of 2..N runs")
    parser.add_argument("--top", type=int, default=5, help="ensembles shown per size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for flag, value in (("--ensembles", args.ensembles), ("--top", args.top)):
        if value < 1:
            raise UsageError(f"{flag} {value}: give a whole number above 0")
    rows = compare(load_runs(args.runs), args.ensembles, args.top)
    print(json.dumps(rows, indent=1) if args.json else format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
