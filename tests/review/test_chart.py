"""The panel's probability chart: every bar on one baseline, heights as the numbers say."""

from __future__ import annotations

import pytest

from cli.review.chart import percent, probability_bars


def bars(*ps: float) -> list[dict[str, object]]:
    return [{"label": str(k), "p": p} for k, p in enumerate(ps)]


def test_every_bar_stands_on_one_baseline_with_its_probability_as_height() -> None:
    chart = probability_bars(bars(0.26, 0.27, 0.2, 0.15, 0.08, 0.04), model_count=1)
    columns = chart["columns"]
    assert {col["bar_y"] + col["bar_height"] for col in columns} == {chart["baseline"]}
    assert {col["width"] for col in columns} == {columns[0]["width"]}
    for col in columns:
        assert col["bar_height"] == pytest.approx(col["p"] * chart["track_height"], abs=0.1)
    # the model's answer (27 %) is the tallest bar, not shorter than its 26 % neighbour
    model = next(col for col in columns if col["model"])
    assert model["k"] == 1 and model["bar_height"] > columns[0]["bar_height"]
    assert [col["percent"] for col in columns] == ["26%", "27%", "20%", "15%", "8%", "4%"]


def test_columns_do_not_overlap_and_fill_the_width() -> None:
    chart = probability_bars(bars(0.5, 0.5), model_count=None)
    first, second = chart["columns"]
    assert first["x"] + first["width"] < second["x"]
    assert second["x"] + second["width"] == pytest.approx(chart["width"], abs=0.2)
    assert not first["model"] and not second["model"]  # a rejected photo: no model answer


def test_a_tiny_probability_is_not_shown_as_zero() -> None:
    assert (percent(0.0), percent(0.004), percent(0.996)) == ("0%", "<1%", "100%")
