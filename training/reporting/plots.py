"""PNG figures for reports: the confusion matrix, the training curves, the discrepancy trade-off.

Figures that explain themselves: the confusion matrix names its data set, has a colour bar and
says that its shading is per row (each true count's share, so a row of one photo can be the
darkest cell: the row labels give each row's number of photos); the training curves put loss,
accuracy and RMSE on separate axes, mark the epoch whose weights were kept, and say in each title
what the panel shows and which way is better.

matplotlib is imported inside the functions with the non-interactive Agg backend, so importing this
module costs nothing and plotting works on a headless machine or a SageMaker container.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: train.py's checkpoint criterion (``valid_accuracy - 0.25 * valid_rmse``), used to find the kept
#: epoch when the caller does not say which it was.
RMSE_WEIGHT = 0.25


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    path: str | Path,
    title: str = "Confusion matrix",
    labels: Sequence[str] | None = None,
    *,
    dataset: str | None = None,
) -> Path:
    """Counts in each cell, shaded by the share of the true count's photos (per row).

    Per-row shading keeps rare counts visible next to common ones; the colour bar and the title
    say so, and each row label carries its number of photos so a dark cell in a row of one photo
    reads for what it is. Rows without photos are hatched.
    """
    plt = _pyplot()
    size = len(confusion)
    names = list(labels) if labels is not None else [str(k) for k in range(size)]
    if len(names) != size:
        raise ValueError(f"{len(names)} labels for a {size}x{size} confusion matrix")
    totals = [sum(row) for row in confusion]
    row_share = [
        [cell / total if total else math.nan for cell in row]
        for row, total in zip(confusion, totals, strict=True)
    ]

    fig, ax = plt.subplots(figsize=(2.4 + 0.85 * size, 1.4 + 0.8 * size), dpi=120)
    try:
        image = ax.imshow(row_share, cmap="Blues", vmin=0.0, vmax=1.0)
        for t, row in enumerate(confusion):
            if not totals[t]:
                ax.add_patch(
                    plt.Rectangle((-0.5, t - 0.5), size, 1, fill=False, hatch="//", color="0.75", lw=0)
                )
                ax.text((size - 1) / 2, t, "no photos with this count", ha="center", va="center", fontsize=8)
                continue
            for p, cell in enumerate(row):
                colour = "white" if row_share[t][p] > 0.6 else "black"
                ax.text(
                    p, t, f"{cell}\n{row_share[t][p]:.0%}", ha="center", va="center", color=colour, fontsize=8
                )
        ax.set_xticks(range(size), names)
        ax.set_yticks(range(size), [f"{name}  (n={totals[k]})" for k, name in enumerate(names)])
        ax.set_xlabel("predicted count")
        ax.set_ylabel("true count (photos in the row)")
        heading = f"{dataset}: {title}" if dataset else title
        ax.set_title(
            f"{heading}\nshading: share of each row (true count); cells: photos, % of row", fontsize=9
        )
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("share of the row's photos", fontsize=8)
        bar.ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
        return _save(fig, path)
    finally:
        plt.close(fig)


def chosen_epoch(history: Sequence[Mapping[str, Any]]) -> int | None:
    """The epoch train.py keeps: best ``valid_score`` (or accuracy - 0.25 x RMSE), first on ties."""
    best: tuple[float, int] | None = None
    for index, record in enumerate(history):
        score = record.get("valid_score")
        if (
            score is None
            and record.get("valid_accuracy") is not None
            and record.get("valid_rmse") is not None
        ):
            score = float(record["valid_accuracy"]) - RMSE_WEIGHT * float(record["valid_rmse"])
        if score is None or math.isnan(float(score)):
            continue
        epoch = int(record.get("epoch", index + 1))
        if best is None or float(score) > best[0]:
            best = (float(score), epoch)
    return None if best is None else best[1]


#: (panel title, [(history key, legend label)], y-axis label)
_PANELS = (
    ("Loss per epoch (lower is better)", [("train_loss", "training"), ("valid_loss", "validation")], "loss"),
    (
        "Accuracy per epoch (higher is better)",
        [("train_accuracy", "training"), ("valid_accuracy", "validation")],
        "share of photos counted exactly",
    ),
    (
        "Validation error in objects (lower is better)",
        [("valid_rmse", "RMSE"), ("valid_mae", "mean absolute error")],
        "objects",
    ),
)


def plot_training_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    kept_epoch: int | None = None,
    title: str | None = None,
) -> Path:
    """Loss, accuracy and RMSE per epoch on three axes, with the kept epoch marked.

    Each record is a dict such as ``{"epoch": 3, "train_loss": 0.91, "valid_loss": 1.03,
    "valid_accuracy": 0.45, "valid_rmse": 1.02}``; keys that are absent are simply not drawn.
    ``kept_epoch`` defaults to :func:`chosen_epoch` (the trainer's checkpoint criterion).
    """
    plt = _pyplot()
    epochs = [int(record.get("epoch", i + 1)) for i, record in enumerate(history)]
    kept = kept_epoch if kept_epoch is not None else chosen_epoch(history)

    def series(key: str) -> list[float] | None:
        values = [record.get(key) for record in history]
        if all(v is None for v in values):
            return None
        return [math.nan if v is None else float(v) for v in values]

    fig, axes = plt.subplots(1, len(_PANELS), figsize=(15, 4.2), dpi=110)
    try:
        for ax, (panel_title, keys, ylabel) in zip(axes, _PANELS, strict=True):
            for key, label in keys:
                values = series(key)
                if values is not None:
                    ax.plot(epochs, values, marker="o", markersize=4, label=label)
            if kept is not None:
                ax.axvline(kept, color="0.3", linestyle="--", linewidth=1, label=f"kept: epoch {kept}")
            ax.set_title(panel_title, fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        if title:
            fig.suptitle(title, fontsize=11)
        return _save(fig, path)
    finally:
        plt.close(fig)


#: (curve key, legend label, colour) of the discrepancy figure
_DISCREPANCY_LINES = (
    ("false_alarm", "inventory right: false alarms", "tab:red"),
    ("catch_off_by_1", "inventory off by 1: caught", "tab:olive"),
    ("catch_off_by_2", "inventory off by 2: caught", "tab:green"),
    ("catch_off_by_3", "inventory off by 3: caught", "tab:blue"),
)


def plot_discrepancy(
    curve: Sequence[Mapping[str, float]],
    path: str | Path,
    *,
    alpha: float,
    dataset: str | None = None,
    n: int | None = None,
) -> Path:
    """The discrepancy decision's trade-off over α: false alarms with the inventory right, catches
    with it off by 1, 2, 3, the line "false alarms = α" (the promise) and the configured α marked.

    α runs on a log axis: the useful budgets (0.5 % to 10 %) would crowd into a corner otherwise.
    """
    plt = _pyplot()
    alphas = [float(row["alpha"]) for row in curve]
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
    try:
        for key, label, colour in _DISCREPANCY_LINES:
            ax.plot(
                alphas, [row[key] for row in curve], marker="o", markersize=3.5, label=label, color=colour
            )
        ax.plot(alphas, alphas, linestyle=":", color="0.4", label="false alarms = α (the promise)")
        ax.axvline(alpha, color="0.3", linestyle="--", linewidth=1)
        at = min(curve, key=lambda row: abs(float(row["alpha"]) - alpha))
        summary = ", ".join(
            [f"false alarms {at['false_alarm']:.0%}"]
            + [f"off by {k}: {at[f'catch_off_by_{k}']:.0%}" for k in (1, 2, 3)]
        )
        ax.text(alpha * 1.06, 0.97, f"α = {alpha:g}\n{summary.replace(', ', chr(10))}", va="top", fontsize=8)
        ax.set_xscale("log")
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas], fontsize=7)
        ax.minorticks_off()
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
        ax.set_xlabel("α: the discrepancy event fires when p(expected quantity) ≤ α")
        ax.set_ylabel("share of bins with an event")
        heading = f"{dataset}: " if dataset else ""
        photos = f" ({n} photos)" if n else ""
        ax.set_title(
            f"{heading}discrepancy events over α{photos}\nred low = few false alarms; green/blue high = "
            "wrong records caught",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        return _save(fig, path)
    finally:
        plt.close(fig)


def _save(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
