"""What the launcher sends to SageMaker, decided as pure functions (tested without the SDK).

* Job names unique within a minute: AWS keeps a name forever, and the SDK's short timestamp
  (``yymmdd-HHMM``) gave three tuning jobs the same name within one minute.
* The shipped recipe as the default hyperparameters: a job launched without ``--hp`` trains the
  model the repository ships, not ``train.py``'s bare defaults.
* What each tuning strategy accepts: Hyperband stops jobs itself (early stopping must be ``Off``)
  and needs a static ``epochs`` to derive its maximum resource; Grid takes categorical ranges
  only. Anything else is refused here, with the reason, before any AWS call.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
TUNING_NAME_MAX = 32  # CreateHyperParameterTuningJob's limit
TRAINING_NAME_MAX = 63


def unique_job_name(prefix: str, max_length: int = TRAINING_NAME_MAX, *, now: float | None = None) -> str:
    """``<prefix>-<yymmdd-HHMMSS>-<4 hex>``: seconds plus a random suffix, within AWS's length."""
    stamp = time.strftime("%y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    suffix = f"{stamp}-{secrets.token_hex(2)}"
    base = prefix[: max_length - len(suffix) - 1].rstrip("-") or "bincount"
    return f"{base}-{suffix}"


def shipped_recipe() -> dict[str, str]:
    """The shipped model's recipe as hyperparameters, from training/recipes.py (as ``make train``)."""
    from training.recipes import recipe_hyperparameters

    return recipe_hyperparameters("shipped")


@dataclass(frozen=True)
class StrategySettings:
    """The strategy-dependent fields of CreateHyperParameterTuningJob."""

    strategy: str
    early_stopping: str  # TrainingJobEarlyStoppingType
    max_jobs: int
    hyperband_max_epochs: int | None = None  # StrategyConfig.HyperbandStrategyConfig.MaxResource


def strategy_settings(
    strategy: str,
    *,
    range_kinds: Mapping[str, str],
    categorical_sizes: Mapping[str, int],
    static: Mapping[str, str],
    max_jobs: int | None,
) -> StrategySettings:
    """Check the request against what AWS accepts for ``strategy``; :class:`UsageError` if it cannot.

    ``range_kinds``: tuned name -> ``cat``/``int``/``log``/``lin``; ``categorical_sizes``: number of
    values of each categorical range; ``static``: the static hyperparameters.
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy {strategy}: choose one of {', '.join(STRATEGIES)}")
    if strategy == "Hyperband":
        if "epochs" in range_kinds:
            raise UsageError(
                "--strategy Hyperband: epochs must be static (Hyperband derives its maximum resource from it "
                "and stops jobs early itself); drop the epochs range"
            )
        epochs = static.get("epochs")
        if epochs is None or not epochs.isdigit() or int(epochs) < 1:
            raise UsageError("--strategy Hyperband needs a static whole-number epochs: add --hp epochs=N")
        return StrategySettings("Hyperband", "Off", max_jobs or 12, int(epochs))
    if strategy == "Grid":
        not_categorical = sorted(name for name, kind in range_kinds.items() if kind != "cat")
        if not_categorical:
            raise UsageError(
                f"--strategy Grid takes categorical ranges only; {', '.join(not_categorical)} "
                "are not: give them as NAME=cat:A,B,C or use --strategy Bayesian"
            )
        combinations = math.prod(categorical_sizes.values()) if categorical_sizes else 1
        if max_jobs is not None and max_jobs != combinations:
            raise UsageError(
                f"--strategy Grid runs every combination ({combinations} jobs); "
                f"--max-jobs {max_jobs} would differ: leave --max-jobs out"
            )
        return StrategySettings("Grid", "Off", combinations)
    return StrategySettings(strategy, "Auto", max_jobs or 12)
