"""``make bench`` (local/bench/serving_bench.py) smoke test: every path runs on a few images, ratios shown."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from local.bench import serving_bench as bench


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
        "--no-torchserve",  # the TorchServe rows have their own test below; one TorchServe per machine
    ]
    assert bench.main([*args, "--no-resnet"]) == 0
    out = capsys.readouterr().out
    assert "| seed-style (Pillow, fp32 ResNet-50, 1 by 1) | 2 |" in out
    assert "ours efficientnet_lite0 [torchscript-" in out and "], lists of 2 | 4 |" in out
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
    assert len(err) == 1 and err[0].startswith("local.bench.serving_bench: error: ") and phrase in err[0]


def test_a_folder_without_photos_is_one_line(
    packed_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("no photos")
    assert bench.main(["--model", str(packed_model), "--images", str(tmp_path)]) == 2
    assert "no .jpg/.png photos" in capsys.readouterr().err


def test_torchserve_rows_alternate_the_artifacts_and_add_up_rounds(
    packed_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import local.emulator.torchserve_server

    served: list[tuple[str, int]] = []

    def fake_row(
        name: str, model_dir: Path, setting: bench.TorchServeSetting, images: list[bytes], warmup: int
    ) -> bench.Result:
        served.append((name.split(", ")[1], setting.plan.workers * 10 + setting.batch_size))
        return bench.Result(name, len(images), 2.0)

    monkeypatch.setattr(local.emulator.torchserve_server, "torchserve_unavailable", lambda: None)
    monkeypatch.setattr(bench, "torchserve_row", fake_row)
    monkeypatch.setattr(bench, "local_plan", lambda: bench.ServingPlan(2, 1, 2))
    artifacts = [("SageMaker artifact", packed_model), ("local artifact", packed_model)]
    rows = bench.torchserve_rows(artifacts, tmp_path, [b"x"] * 6, warmup=1, rounds=2)
    assert served == [  # workers * 10 + batch size
        ("SageMaker artifact", 21),
        ("local artifact", 21),
        ("SageMaker artifact", 24),
        ("local artifact", 24),
        ("SageMaker artifact", 11),
        ("local artifact", 11),
        ("SageMaker artifact", 21),
        ("local artifact", 21),
    ]
    plan_rows = [row for row in rows if row.name.endswith("2 worker(s) x 1 thread(s), 2 in flight")]
    assert [(row.images, row.seconds) for row in plan_rows] == [(12, 4.0), (12, 4.0)]
    assert len(rows) == 6
    batched = bench.TorchServeSetting(bench.ServingPlan(2, 1, 2), batch_size=4)
    assert batched.in_flight == 8 and batched.environment()["SAGEMAKER_TS_BATCH_SIZE"] == "4"
    assert bench.TorchServeSetting(bench.ServingPlan(2, 1, 2)).environment() == {}


def test_torchserve_rows_say_why_they_are_skipped(
    packed_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import local.emulator.torchserve_server

    monkeypatch.setattr(local.emulator.torchserve_server, "torchserve_unavailable", lambda: "no Java here")
    assert bench.torchserve_rows([("local artifact", packed_model)], tmp_path, [b"x"], 1, 1) == []
    assert "TorchServe rows skipped: no Java here" in capsys.readouterr().out
