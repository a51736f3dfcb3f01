"""Figures that explain themselves: data set, colour bar and per-row shading; curves on own axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.reporting import plots

_KEYS = ("epoch", "train_loss", "valid_loss", "train_accuracy", "valid_accuracy", "valid_rmse")
HISTORY = [
    dict(zip(_KEYS, values, strict=True))
    for values in (
        (1, 1.5, 1.7, 0.3, 0.25, 2.2),
        (2, 1.2, 1.5, 0.5, 0.40, 1.2),
        (3, 1.0, 1.4, 0.6, 0.41, 1.4),
    )
]


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the plotting functions save, kept open for inspection."""
    saved: list[Any] = []
    real_save = plots._save

    def keep(fig: Any, path: str | Path) -> Path:
        saved.append({"axes": list(fig.axes), "suptitle": fig._suptitle.get_text() if fig._suptitle else ""})
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def test_confusion_names_its_data_set_and_says_how_it_is_shaded(tmp_path: Path, figures: list[Any]) -> None:
    confusion = [[1, 0, 0], [2, 8, 0], [0, 0, 0]]
    png = plots.plot_confusion(confusion, tmp_path / "c.png", "n=11", dataset="ABID evaluation set")
    assert png.read_bytes()[:4] == b"\x89PNG"
    matrix, colour_bar = figures[0]["axes"]
    assert matrix.get_title().startswith("ABID evaluation set: n=11")
    assert "share of each row" in matrix.get_title()
    assert "share of the row's photos" in colour_bar.get_ylabel()
    assert [t.get_text() for t in matrix.get_yticklabels()] == ["0  (n=1)", "1  (n=10)", "2  (n=0)"]
    cells = {t.get_text() for t in matrix.texts}
    assert {"1\n100%", "2\n20%", "8\n80%", "no photos with this count"} <= cells
    with pytest.raises(ValueError):
        plots.plot_confusion(confusion, tmp_path / "x.png", labels=["a"])


def test_kept_epoch_follows_the_trainers_criterion() -> None:
    # score = accuracy - 0.25 * RMSE: epoch 2 (0.10) beats epoch 3 (0.06) despite lower accuracy
    assert plots.chosen_epoch(HISTORY) == 2
    assert plots.chosen_epoch([{"epoch": 1, "valid_score": 0.1}, {"epoch": 2, "valid_score": 0.3}]) == 2
    assert plots.chosen_epoch([{"epoch": 1, "train_loss": 1.0}]) is None


def test_curves_put_loss_accuracy_and_rmse_on_their_own_axes(tmp_path: Path, figures: list[Any]) -> None:
    png = plots.plot_training_curves(HISTORY, tmp_path / "h.png", title="shipped recipe")
    assert png.read_bytes()[:4] == b"\x89PNG"
    loss, accuracy, error = figures[0]["axes"]
    assert (
        "Loss" in loss.get_title()
        and "Accuracy" in accuracy.get_title()
        and "RMSE" not in accuracy.get_title()
    )
    assert "error in objects" in error.get_title() and "lower is better" in error.get_title()
    assert figures[0]["suptitle"] == "shipped recipe"
    for ax in (loss, accuracy, error):
        labels = ax.get_legend_handles_labels()[1]
        assert "kept: epoch 2" in labels
    assert accuracy.get_legend_handles_labels()[1][:2] == ["training", "validation"]
    assert error.get_legend_handles_labels()[1][0] == "RMSE"
    plots.plot_training_curves(HISTORY, tmp_path / "k.png", kept_epoch=3)
    assert "kept: epoch 3" in figures[1]["axes"][0].get_legend_handles_labels()[1]


def test_a_run_without_matplotlib_skips_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slim training container without matplotlib: plot_run (before the model reaches
    SM_MODEL_DIR) says so in one line instead of failing the job."""
    import sys

    from training.reporting import report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    report.plot_run(HISTORY, {"valid": {"confusion": [[1, 0], [0, 1]]}, "test": None}, tmp_path)
    assert "no plots:" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())
