"""PNG figures for reports: the confusion matrix and the training curves.

matplotlib is imported inside the functions with the non-interactive Agg backend, so importing this
module costs nothing and plotting works on a headless machine or a SageMaker container.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


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
) -> Path:
    """Counts in each cell, shaded by the share of the true class (rows), so rare classes show too."""
    plt = _pyplot()
    size = len(confusion)
    names = list(labels) if labels is not None else [str(k) for k in range(size)]
    if len(names) != size:
        raise ValueError(f"{len(names)} labels for a {size}x{size} confusion matrix")
    row_share = [[cell / max(1, sum(row)) for cell in row] for row in confusion]

    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * size, 0.8 + 0.8 * size), dpi=120)
    try:
        ax.imshow(row_share, cmap="Blues", vmin=0.0, vmax=1.0)
        for t, row in enumerate(confusion):
            for p, cell in enumerate(row):
                colour = "white" if row_share[t][p] > 0.6 else "black"
                ax.text(p, t, str(cell), ha="center", va="center", color=colour, fontsize=9)
        ax.set_xticks(range(size), names)
        ax.set_yticks(range(size), names)
        ax.set_xlabel("predicted count")
        ax.set_ylabel("true count")
        ax.set_title(title, fontsize=10)
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss (left) and the validation scores (right) per epoch from the trainer's history records.

    Each record is a dict such as ``{"epoch": 3, "train_loss": 0.91, "valid_loss": 1.03,
    "valid_accuracy": 0.45, "valid_rmse": 1.02}``; keys that are absent are simply not drawn.
    """
    plt = _pyplot()
    epochs = [int(record.get("epoch", i + 1)) for i, record in enumerate(history)]

    def series(key: str) -> list[float] | None:
        values = [record.get(key) for record in history]
        if all(v is None for v in values):
            return None
        return [float("nan") if v is None else float(v) for v in values]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    try:
        for key in ("train_loss", "valid_loss"):
            values = series(key)
            if values is not None:
                left.plot(epochs, values, marker="o", label=key)
        left.set_xlabel("epoch")
        left.set_title("loss")
        for key in ("train_accuracy", "valid_accuracy", "valid_rmse", "valid_mae"):
            values = series(key)
            if values is not None:
                right.plot(epochs, values, marker="o", label=key)
        right.set_xlabel("epoch")
        right.set_title("validation")
        for ax in (left, right):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        return _save(fig, path)
    finally:
        plt.close(fig)


def _save(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
