"""``make bench`` (local/serving_bench.py) smoke test: every path runs on a few images, ratios printed."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from local import serving_bench as bench


def test_bench_prints_the_table_and_ratios(
    packed_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        bench, "settle_batchnorm", functools.partial(bench.settle_batchnorm, steps=1, batch=2)
    )
    args = [
        "--model",
        str(packed_model),
        "--count",
        "4",
        "--seed-count",
        "2",
        "--batch",
        "2",
        "--threads",
        "2",
    ]
    assert bench.main([*args, "--no-resnet"]) == 0
    out = capsys.readouterr().out
    assert "| seed-style (Pillow, fp32 ResNet-50, 1 by 1) | 2 |" in out
    assert "ours efficientnet_lite0 [torch-cpu], lists of 2 | 4 |" in out
    assert "default serving path, 1 per request:" in out and "x seed-style" in out


def test_synthetic_photos_have_abid_like_sizes() -> None:
    from io import BytesIO

    from PIL import Image

    sizes = {Image.open(BytesIO(data)).size for data in bench.synthetic_jpegs(5)}
    assert sizes == set(bench.ABID_LIKE_SIZES)


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--model", "/nonexistent.tar.gz"], "--model /nonexistent.tar.gz: no such file"),
        (["--images", "/nonexistent"], "--images /nonexistent: not a folder"),
        (["--count", "0"], "--count 0: give a whole number above 0"),
        (["--batch", "-1"], "--batch -1"),
    ],
)
def test_cli_refuses_with_one_line(
    argv: list[str], phrase: str, packed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--model", str(packed_model), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("local.serving_bench: error: ") and phrase in err[0]


def test_a_folder_without_photos_is_one_line(
    packed_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("no photos")
    assert bench.main(["--model", str(packed_model), "--images", str(tmp_path)]) == 2
    assert "no .jpg/.png photos" in capsys.readouterr().err
