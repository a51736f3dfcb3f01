"""The promotion gate: does a retrained model beat the one being served, on the same photos?

``python -m training.promotion.gate --candidate NEW.tar.gz --current OLD.tar.gz --gate-set DIR
[--reference DIR]``

Both artifacts count every photo of the gate set (and of the reference set) through their own
serving handlers (``training.evaluate``: ``code/inference.py`` of each artifact, as Batch
Transform would run it), and the two answers are compared photo by photo:

* **accuracy**: McNemar's exact test on the discordant pairs (photos one model gets right and the
  other wrong) -- the paired test for two classifiers on the same items -- and a paired bootstrap
  95 % interval of the accuracy difference;
* **RMSE**: a paired bootstrap 95 % interval of the RMSE difference (photos resampled together).

The candidate is **promoted** only if, on the gate set, it is better in a way unlikely to be chance
-- accuracy higher with McNemar p < ``alpha`` (0.05), or an RMSE interval entirely below zero --
while the other figure is not worse than the tolerance (accuracy -0.02, RMSE +0.05), it fails on
no photo the current model serves, and on the reference set (a fixed set, e.g. the base test
split, that guards against forgetting) neither accuracy drops by more than 0.02 nor RMSE rises
by more than 0.05. Refusal is a normal outcome and comes with its reasons; the exit code is 0
either way (1 only for inputs that cannot be read), so a pipeline reads the verdict from the JSON.

The verdict and its numbers go to ``--out`` (JSON) and, with ``--registry``, into the candidate's
registry entry (``training.promotion.registry``), approved or rejected; an approved candidate is promoted
there unless ``--no-promote``. ``render_markdown`` gives the model card's section.

Photo sets (``--gate-set`` / ``--reference``): reviewed photos from ``bincount export-labels``
(their gate split: a hash of each photo's id, the same rule training uses, so training never saw
them), a prepared split folder or its ``manifest.json`` (``--split``, default test), a CSV
``image,count`` or a folder with ``labels.csv``, or count folders ``<count>/*.jpg``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.errors import NotFound, UsageError, one_line_errors
from training.data import MANIFEST, discover_local, hash_split, is_prepared, is_reviewed
from training.evaluate import (
    LabelledImage,
    labels_from_csv,
    labels_from_folders,
    labels_from_manifest,
    load_handlers,
    run_handlers,
)
from training.promotion.artifact import unpack_artifact

PROG = "python -m training.promotion.gate"
ALPHA = 0.05
ACCURACY_TOLERANCE = 0.02  # a drop of more than 2 points of accuracy is a regression
RMSE_TOLERANCE = 0.05  # a rise of more than 0.05 in RMSE is a regression
BOOTSTRAP_SAMPLES = 2000


# --- photo sets ---------------------------------------------------------------------------------
def load_photo_set(path: Path, split: str = "test") -> list[LabelledImage]:
    """The labelled photos of a gate or reference set, in any of the layouts the module doc lists."""
    if not path.exists():
        raise NotFound(f"{path}: no such photo set")
    try:
        if path.is_file():
            if path.suffix == ".csv":
                return labels_from_csv(path)
            return labels_from_manifest(path, split)
        if is_reviewed(path):
            return _gate_split_of_reviewed(path)
        if is_prepared(path):
            return labels_from_manifest(path / MANIFEST, split)
        if (path / "labels.csv").is_file():
            return labels_from_csv(path / "labels.csv")
        return labels_from_folders(path)
    except (ValueError, KeyError, OSError) as exc:
        raise UsageError(f"{path}: not a photo set ({exc})") from exc


def _gate_split_of_reviewed(root: Path) -> list[LabelledImage]:
    samples, _ = discover_local(root)
    held_out = hash_split(samples)["test"]
    if not held_out:
        raise ValueError("no reviewed photo falls in the gate split yet")
    return [
        LabelledImage(Path(s.source), s.count, Path(s.source).relative_to(root).as_posix()) for s in held_out
    ]


# --- paired statistics ----------------------------------------------------------------------------
def mcnemar_exact(only_current_right: int, only_candidate_right: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against 1/2."""
    n = only_current_right + only_candidate_right
    if n == 0:
        return 1.0
    k = min(only_current_right, only_candidate_right)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def _rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(errors**2))) if errors.size else float("nan")


def paired_bootstrap(
    truth: np.ndarray, current: np.ndarray, candidate: np.ndarray, samples: int, seed: int
) -> dict[str, list[float]]:
    """95 % percentile intervals of the accuracy and RMSE differences (candidate - current),
    resampling photos with both models' answers together."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, truth.size, size=(samples, truth.size))
    t, a, b = truth[index], current[index], candidate[index]
    accuracy = (b == t).mean(axis=1) - (a == t).mean(axis=1)
    rmse = np.sqrt(((b - t) ** 2).mean(axis=1)) - np.sqrt(((a - t) ** 2).mean(axis=1))
    return {
        "accuracy_ci": [float(v) for v in np.percentile(accuracy, [2.5, 97.5])],
        "rmse_ci": [float(v) for v in np.percentile(rmse, [2.5, 97.5])],
    }


@dataclass
class Answers:
    """One model's counts on a photo set: ``counts[name]`` or an error per photo."""

    version: str | None
    counts: dict[str, int]
    errors: list[str]
    top_class: int  # the open top class ("5 or more"): truths above it count as it


def serve(artifact: Path, photos: Sequence[LabelledImage], workdir: Path) -> Answers:
    """Count every photo with the artifact's own handlers."""
    model_dir = artifact if artifact.is_dir() else unpack_artifact(artifact, workdir)
    run = run_handlers(load_handlers(model_dir), model_dir, photos, batch_size=16)
    counts = {p.item.name: int(p.record["count"]) for p in run.predictions if p.ok}
    widths: list[int] = [len(p.record.get("probabilities") or []) for p in run.predictions if p.ok]
    widest = max(widths, default=0)
    top = widest - 1 if widest else max(counts.values(), default=0)
    errors = [p.item.name for p in run.predictions if not p.ok]
    return Answers(run.model_version, counts, errors, top)


def compare(
    photos: Sequence[LabelledImage],
    current: Answers,
    candidate: Answers,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired figures on the photos both models answered: each model's, the differences, the tests."""
    names = [p.name for p in photos if p.name in current.counts and p.name in candidate.counts]
    top = min(current.top_class, candidate.top_class)
    truth_of = {p.name: min(p.count, top) for p in photos}
    truth = np.array([truth_of[n] for n in names], dtype=float)
    a = np.array([current.counts[n] for n in names], dtype=float)
    b = np.array([candidate.counts[n] for n in names], dtype=float)
    only_current = int(((a == truth) & (b != truth)).sum())
    only_candidate = int(((b == truth) & (a != truth)).sum())

    def figures(pred: np.ndarray) -> dict[str, float]:
        return {
            "accuracy": float((pred == truth).mean()) if names else float("nan"),
            "rmse": _rmse(pred - truth),
            "mae": float(np.abs(pred - truth).mean()) if names else float("nan"),
        }

    mine, theirs = figures(b), figures(a)
    difference = {"accuracy": mine["accuracy"] - theirs["accuracy"], "rmse": mine["rmse"] - theirs["rmse"]}
    if names:
        difference.update(paired_bootstrap(truth, a, b, samples, seed))  # type: ignore[arg-type]
    return {
        "n": len(names),
        "n_photos": len(photos),
        "errors": {"current": len(current.errors), "candidate": len(candidate.errors)},
        "current": theirs,
        "candidate": mine,
        "difference": difference,
        "mcnemar": {
            "only_current_right": only_current,
            "only_candidate_right": only_candidate,
            "p": mcnemar_exact(only_current, only_candidate),
        },
    }


# --- the decision --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    alpha: float = ALPHA
    accuracy_tolerance: float = ACCURACY_TOLERANCE
    rmse_tolerance: float = RMSE_TOLERANCE


def decide(gate: dict[str, Any], reference: dict[str, Any] | None, rule: Rule = Rule()) -> list[str]:
    """The reasons to refuse; an empty list promotes."""
    reasons: list[str] = []
    if gate["n"] == 0:
        return ["no gate photo was answered by both models"]
    if gate["errors"]["candidate"] > gate["errors"]["current"]:
        reasons.append(f"the candidate failed on {gate['errors']['candidate']} gate photos")
    diff, p = gate["difference"], gate["mcnemar"]["p"]
    accuracy_better = diff["accuracy"] > 0 and p < rule.alpha
    rmse_better = diff["rmse_ci"][1] < 0
    if not (accuracy_better or rmse_better):
        reasons.append(
            f"not better on the gate set beyond chance: accuracy {diff['accuracy']:+.3f} "
            f"(McNemar p={p:.3f}, need < {rule.alpha}), RMSE {diff['rmse']:+.3f} "
            f"(95% CI {diff['rmse_ci'][0]:+.3f}..{diff['rmse_ci'][1]:+.3f}, need below 0)"
        )
    reasons += _regressions("gate set", diff, rule)
    if reference is not None:
        if reference["n"] == 0:
            reasons.append("no reference photo was answered by both models")
        else:
            reasons += _regressions("reference set", reference["difference"], rule)
    return reasons


def _regressions(where: str, diff: dict[str, Any], rule: Rule) -> list[str]:
    out = []
    if diff["accuracy"] < -rule.accuracy_tolerance:
        out.append(
            f"accuracy drops by {-diff['accuracy']:.3f} on the {where} (tolerance {rule.accuracy_tolerance})"
        )
    if diff["rmse"] > rule.rmse_tolerance:
        out.append(f"RMSE rises by {diff['rmse']:.3f} on the {where} (tolerance {rule.rmse_tolerance})")
    return out


def run_gate(args: argparse.Namespace) -> dict[str, Any]:
    """Serve both artifacts on the sets, compare, decide: the verdict as a JSON-ready dict."""
    for flag, path in (("--candidate", args.candidate), ("--current", args.current)):
        if not path.exists():
            raise NotFound(f"{flag} {path}: no such model")
    sets = {"gate_set": load_photo_set(args.gate_set, args.split)}
    if args.reference is not None:
        sets["reference"] = load_photo_set(args.reference, args.split)
    results: dict[str, Any] = {}
    versions: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="bincount-gate-") as tmp:
        for name, photos in sets.items():
            current = serve(args.current, photos, Path(tmp) / "current")
            candidate = serve(args.candidate, photos, Path(tmp) / "candidate")
            versions = {"current": current.version, "candidate": candidate.version}
            results[name] = compare(photos, current, candidate, args.bootstrap, args.seed)
            results[name]["source"] = str(getattr(args, name))
    rule = Rule(args.alpha, args.accuracy_tolerance, args.rmse_tolerance)
    reasons = decide(results["gate_set"], results.get("reference"), rule)
    return {
        "verdict": "promote" if not reasons else "refuse",
        "promoted": not reasons,
        "reasons": reasons,
        "candidate": {"artifact": str(args.candidate), "version": versions.get("candidate")},
        "current": {"artifact": str(args.current), "version": versions.get("current")},
        "gate_set": results["gate_set"],
        "reference": results.get("reference"),
        "rule": rule.__dict__ | {"bootstrap_samples": args.bootstrap, "seed": args.seed},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def render_markdown(verdict: dict[str, Any]) -> str:
    """The model card's gate section: the verdict, the figures and the intervals."""
    lines = [
        f"**Gate verdict: {verdict['verdict']}** ({verdict['when']}): candidate "
        f"`{verdict['candidate']['version']}` against current `{verdict['current']['version']}`.",
        "",
        "| set | n | current acc / RMSE | candidate acc / RMSE | Δ accuracy (95% CI) | McNemar p "
        "| Δ RMSE (95% CI) |",
        "|---|---:|---|---|---|---:|---|",
    ]
    for name in ("gate_set", "reference"):
        block = verdict.get(name)
        if not block or not block["n"]:
            continue
        cur, cand, diff = block["current"], block["candidate"], block["difference"]
        lines.append(
            f"| {name.replace('_', ' ')} | {block['n']} | {cur['accuracy']:.1%} / {cur['rmse']:.3f} "
            f"| {cand['accuracy']:.1%} / {cand['rmse']:.3f} "
            f"| {diff['accuracy']:+.1%} ({diff['accuracy_ci'][0]:+.1%}..{diff['accuracy_ci'][1]:+.1%}) "
            f"| {block['mcnemar']['p']:.3f} "
            f"| {diff['rmse']:+.3f} ({diff['rmse_ci'][0]:+.3f}..{diff['rmse_ci'][1]:+.3f}) |"
        )
    if verdict["reasons"]:
        lines += ["", "Refused because: " + "; ".join(verdict["reasons"]) + "."]
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--candidate", type=Path, required=True, help="the retrained model.tar.gz (or folder)")
    p.add_argument("--current", type=Path, required=True, help="the model being served")
    p.add_argument("--gate-set", type=Path, required=True, help="photos training never saw")
    p.add_argument("--reference", type=Path, default=None, help="a fixed set that must not regress")
    p.add_argument("--split", default="test", help="split of a prepared folder / manifest (default test)")
    p.add_argument("--out", type=Path, default=Path("build/gate/verdict.json"), help="the verdict (JSON)")
    p.add_argument("--registry", type=Path, default=None, help="record the verdict in this registry")
    p.add_argument("--no-promote", action="store_true", help="with --registry: approve, do not serve")
    p.add_argument("--approved-by", default="training.gate", help="who approves a promotion")
    p.add_argument("--alpha", type=float, default=ALPHA)
    p.add_argument("--accuracy-tolerance", type=float, default=ACCURACY_TOLERANCE)
    p.add_argument("--rmse-tolerance", type=float, default=RMSE_TOLERANCE)
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP_SAMPLES, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    return p


@one_line_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verdict = run_gate(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(verdict, indent=1) + "\n", encoding="utf-8")
    if args.registry is not None:
        from training.promotion import registry

        entry = registry.record_gate(args.registry, args.candidate, verdict, args.approved_by)
        if verdict["promoted"] and not args.no_promote:
            registry.promote(args.registry, entry["version"], args.approved_by)
    print(render_markdown(verdict))
    print(f"verdict written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
