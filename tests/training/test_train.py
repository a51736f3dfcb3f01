"""The trainer end to end on tiny generated photos: artifact, metric lines, resume; plus its parts."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch
from imaging import draw_bin, encode

from common.errors import Refused, UsageError
from model.config import ModelConfig
from model.network import load_state
from training import dataset, recipes, splits, train, train_args
from training.data import MANIFEST
from training.reporting import report
from training.reporting.metrics import validation_score

TINY = [
    "--quick",
    "--no-pretrained",
    "--image-size",
    "64",
    "--batch-size",
    "8",
    "--epochs",
    "1",
    "--max-steps",
    "2",
    "--threads",
    "2",
]
METRIC_LINE = re.compile(
    r"^epoch=(\d+) train_loss=[0-9.]+ train_accuracy=[0-9.]+ valid_loss=[0-9.]+ valid_accuracy=[0-9.]+ "
    r"valid_rmse=[0-9.]+ valid_mae=[0-9.]+ valid_score=-?[0-9.]+ lr=[0-9.]+ epoch_seconds=[0-9.]+ "
    r"images_per_second=[0-9.]+$"
)


def _count_folder(root: Path) -> Path:
    for count in range(6):
        folder = root / "images" / str(count)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(3 if count == 0 else 8):
            (folder / f"g{count}{i:02d}.jpg").write_bytes(encode(draw_bin(count, i, size=(120, 90))))
    return root


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    args = train_args.get_args_parser().parse_args(argv)
    result = train.main(args)
    return result, capsys.readouterr().out


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _count_folder(tmp_path_factory.mktemp("pool"))


@pytest.mark.slow
def test_training_run_writes_a_servable_artifact_and_resumes(
    pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, work = tmp_path / "out", tmp_path / "build"
    argv = ["--data", str(pool), "--out", str(out), "--work-dir", str(work), *TINY]
    result, stdout = _run(argv, capsys)

    lines = [line for line in stdout.splitlines() if line.startswith("epoch=")]
    assert [int(METRIC_LINE.match(line).group(1)) for line in lines] == [1]  # type: ignore[union-attr]
    for definition in report.METRIC_DEFINITIONS:
        if definition["Name"].split(":")[0] in ("train", "valid"):
            assert re.search(definition["Regex"], lines[-1]), definition
    assert re.search(r"^result best_epoch=\d .*test_accuracy=[0-9.]+ ", stdout, re.M)

    # the raw folder went through data prep into the work dir, with a manifest
    prepared = Path(result["config"]["training"]["data"]["prepared"])
    assert prepared.parent == work / "data" and (prepared / MANIFEST).is_file()
    assert list((work / "cache").glob("train-74x74-*.pt"))  # 64 * 1.15 for random crops

    # artifact files: fp16 weights whose hash is in the config, metrics, history, plots
    config = ModelConfig.load(out / "config.json")
    assert config.image_size == (64, 64) and config.decoding in ("argmax", "expected")
    assert config.temperature > 0 and config.weights_sha256
    assert config.training["hyperparameters"]["loss"] == "gaussian"
    assert config.training["command"].startswith(f"python -m training.train --data {pool} --out {out}")
    assert "--quick" in config.training["command"] and "--no-pretrained" in config.training["command"]
    assert 0.3 <= config.training["review_threshold"] <= 0.9
    state = torch.load(out / "model.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    load_state(out)  # checks the sha256 too
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"valid", "test", "calibration", "review_threshold", "class0"} <= set(metrics)
    # the 6 held-out photos (one per count) are cut into a calibration half and a test half
    assert metrics["calibration"]["ece_before"] >= 0 and metrics["test"]["n"] == 3
    assert result["config"]["training"]["data"]["split_counts"]["calibration"] != {}
    ranges = config.ranges()
    assert ranges is not None and len(ranges.scores["all"]) == 3
    assert config.training["conformal"]["n_calibration"] == 3
    assert len(json.loads((out / "history.json").read_text())) == 1
    for png in ("training_curves.png", "confusion_valid.png", "confusion_test.png"):
        assert (out / png).stat().st_size > 1000

    # the serving handlers load the tarball and see the same pixels as training's evaluation
    inference = pytest.importorskip("model.inference")
    served = tmp_path / "served"
    with tarfile.open(out / "model.tar.gz") as tar:
        tar.extractall(served, filter="data")
    model = inference.model_fn(str(served))
    valid_entries = dataset.list_split(prepared, "valid")
    photo = valid_entries[0].path
    body, _ = inference.output_fn(
        inference.predict_fn(inference.input_fn(photo.read_bytes(), "image/jpeg"), model)
    )
    record = json.loads(body)
    record = record[0] if isinstance(record, list) else record
    network, _ = load_state(out)
    cached = dataset.load_images(valid_entries[:1], config, config.image_size, work / "cache", "valid-one")
    with torch.no_grad():
        logits = network(dataset.normalise(cached.images, config))
        expected = torch.softmax(logits / config.temperature, dim=1)[0]
    assert record["probabilities"] == pytest.approx(expected.tolist(), abs=2e-3)
    assert len(record["count_p_values"]) == 6 and record["range_level"] == 0.9

    # resume: a longer run on the same checkpoint continues at epoch 2 instead of starting over
    _, stdout = _run([*argv, "--epochs", "2"], capsys)
    assert "resumed from" in stdout
    assert [line.split()[0] for line in stdout.splitlines() if line.startswith("epoch=")] == ["epoch=2"]
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]
    with pytest.raises(Refused, match="another run"):
        _run([*argv, "--epochs", "2", "--arch", "mobilenet_v3_large"], capsys)


@pytest.mark.slow
def test_ema_run_validates_and_ships_the_averaged_weights(
    pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["--data", str(pool), "--out", str(out), "--work-dir", str(tmp_path / "build"), *TINY]
    _run([*argv, "--ema", "0.5", "--augment-preset", "strong"], capsys)
    checkpoint = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["ema"] is not None  # resumable with its average
    averaged = {k.removeprefix("module."): v for k, v in checkpoint["ema"].items() if k.startswith("module.")}
    raw = checkpoint["model"]
    shipped = torch.load(out / "model.pt", weights_only=True)
    head = "head.1.weight"
    assert not torch.equal(averaged[head], raw[head])  # the average is not the last step
    assert torch.allclose(shipped[head].float(), averaged[head].float(), atol=1e-3)  # and it is what ships
    hyperparameters = ModelConfig.load(out / "config.json").training["hyperparameters"]
    assert hyperparameters["ema"] == 0.5 and hyperparameters["augment_preset"] == "strong"

    # the per-photo logits of the shipped weights come out for comparing runs afterwards
    predictions = json.loads((out / report.PREDICTIONS_FILE).read_text())
    valid = predictions["splits"]["valid"]
    assert len(valid["ids"]) == len(valid["counts"]) == len(valid["logits"]) > 0
    assert all(len(row) == 6 for row in valid["logits"]) and predictions["temperature"] > 0
    assert set(predictions["splits"]) == {"valid", "test"}


def test_ema_decay_must_be_a_fraction() -> None:
    assert train.make_ema(torch.nn.Linear(2, 2), 0.0) is None
    with pytest.raises(UsageError, match="--ema"):
        train.make_ema(torch.nn.Linear(2, 2), 1.5)


def test_sagemaker_environment_sets_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_NUM_GPUS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SM_CHANNEL_TRAINING", raising=False)
    args = train_args.get_args_parser().parse_args(["--lr", "0.0003"])
    assert (args.train, args.validation, args.data) == (
        env["SM_CHANNEL_TRAIN"],
        env["SM_CHANNEL_VALIDATION"],
        None,
    )
    assert (args.model_dir, args.out, args.num_gpus) == ("/opt/ml/model", "/opt/ml/output/data", 1)
    assert args.work_dir.startswith("/tmp")


def test_quick_overrides_only_defaults() -> None:
    args = train_args.get_args_parser().parse_args(["--quick", "--epochs", "5"])
    train_args.apply_quick(args)
    assert args.epochs == 5 and args.image_size == train_args.QUICK["image_size"]


def test_validation_score_prefers_accuracy_and_low_rmse() -> None:
    assert validation_score(0.5, 1.0) > validation_score(0.5, 1.2)
    assert validation_score(0.5, 1.0) == pytest.approx(0.25)


def test_stratified_subset_keeps_every_class() -> None:
    entries = [
        dataset.Entry(f"{c}-{i}", c, Path("x"), "") for c in range(6) for i in range(2 if c == 0 else 50)
    ]
    subset = splits.stratified_subset(entries, 30, seed=0)
    assert {e.count for e in subset} == set(range(6))
    assert 25 <= len(subset) <= 36
    assert splits.stratified_subset(entries, 30, seed=0) == subset


def test_class_index_folds_large_counts_into_the_open_top_class() -> None:
    config = ModelConfig.for_arch("efficientnet_lite0")
    assert splits.class_index(torch.tensor([0, 5, 9]), config).tolist() == [0, 5, 5]


def test_sampler_oversamples_rare_counts_reproducibly() -> None:
    labels = torch.tensor([0] * 2 + [1] * 98)
    sampler = dataset.EpochSampler(labels, 2, "balanced", seed=3)
    sampler.set_epoch(1)
    drawn = list(sampler)
    assert len(drawn) == 100 and list(sampler) == drawn
    assert 30 <= sum(1 for i in drawn if i < 2) <= 70  # ~50 % empty bins instead of 2 %
    shuffled = dataset.EpochSampler(labels, 2, "shuffle", seed=3)
    assert sorted(shuffled) == list(range(100))


def test_device_augmentation_is_identity_when_switched_off_and_random_otherwise() -> None:
    torch.manual_seed(0)
    batch = (torch.rand(4, 3, 40, 50) * 255).to(torch.uint8)
    off = dataset.AugmentSettings(
        scale=(1.0, 1.0), ratio=(1.0, 1.0), rotate_degrees=0, flip=False, brightness=0, contrast=0,
        saturation=0, blur_probability=0,
    )  # fmt: skip
    same = dataset.BinAugment((40, 50), off)(batch)
    assert same.dtype == torch.uint8 and (same.int() - batch.int()).abs().max() <= 1
    augmented = dataset.BinAugment((32, 32))(batch)
    assert augmented.shape == (4, 3, 32, 32) and augmented.dtype == torch.uint8
    strong = dataset.BinAugment((32, 32), dataset.AUGMENT_PRESETS["strong"])(batch)
    assert strong.shape == (4, 3, 32, 32) and not torch.equal(strong, augmented)
    assert dataset.AUGMENT_PRESETS["strong"].scale[0] < dataset.AUGMENT_PRESETS["default"].scale[0]
    per_worker = dataset.worker_transform((32, 32))(batch[0])
    assert per_worker.shape == (3, 32, 32) and per_worker.dtype == torch.uint8


def test_image_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "1"
    folder.mkdir()
    for i in range(3):
        (folder / f"p{i}.jpg").write_bytes(encode(draw_bin(1, i, size=(80, 60))))
    entries = dataset.list_split(tmp_path, None)
    config = ModelConfig.for_arch("efficientnet_lite0", image_size=(48, 48))
    first = dataset.load_images(entries, config, (48, 48), tmp_path / "cache", "t")
    monkeypatch.setattr(
        dataset, "decode_resized", lambda *a: (_ for _ in ()).throw(AssertionError("decoded"))
    )
    again = dataset.load_images(entries, config, (48, 48), tmp_path / "cache", "t")
    assert torch.equal(first.images, again.images) and again.ids == ["p0", "p1", "p2"]


@pytest.mark.slow  # trains two tiny networks
def test_fine_tune_starts_from_the_given_model_and_keeps_its_config(
    pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent_out = tmp_path / "parent"
    work = tmp_path / "build"
    common = ["--data", str(pool), "--work-dir", str(work), *TINY]
    _run([*common, "--out", str(parent_out)], capsys)
    parent = ModelConfig.load(parent_out / "config.json")

    child_out = tmp_path / "child"
    argv = [*common, "--out", str(child_out), "--init-from", str(parent_out / "model.tar.gz")]
    args = train_args.parse_args([*argv, "--recipe", "finetune", "--epochs", "1", "--image-size", "64"])
    assert args.freeze_blocks == 5 and args.lr == pytest.approx(3e-4) and args.epochs == 1
    result = train.main(args)
    child = ModelConfig.load(child_out / "config.json")
    assert child.image_size == parent.image_size and child.arch == parent.arch
    assert result["config"]["training"]["init_from"]["sha256"] == parent.weights_sha256
    assert child.weights_sha256 != parent.weights_sha256
    # the ranges are calibrated again, on the child's calibration split with its weights
    assert child.conformal is not None and child.training["conformal"]["n_calibration"] == 3
    # the frozen stem did not move; the head did
    before, after = load_state(parent_out)[0].state_dict(), load_state(child_out)[0].state_dict()
    assert torch.equal(before["backbone.stem.0.weight"], after["backbone.stem.0.weight"])
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "{tmp}/missing"], "--data {tmp}/missing: no such folder"),
        (["--data", "{tmp}/empty"], "--data {tmp}/empty: no labelled photos found in {tmp}/empty"),
        ([], "no data: give --data DIR, or --train and --validation (SM_CHANNEL_TRAIN/VALIDATION)"),
        (["--data", "{tmp}/empty,{tmp}/empty", "--data-weights", "1"], "--data-weights 1: give one number"),
        (["--data", "{tmp}/empty:0"], "data weights must be positive"),
        (
            ["--data", "{tmp}/empty", "--init-from", "{tmp}/none.tar.gz"],
            "--init-from {tmp}/none.tar.gz: no such",
        ),
        (
            ["--train", "{tmp}/missing", "--validation", "{tmp}/empty"],
            "--train {tmp}/missing: no such folder",
        ),
    ],
)
def test_bad_inputs_end_in_one_line_without_a_traceback(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SM_CHANNEL_TRAINING", "SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_CHANNEL_TEST"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path) for a in argv]
    code = train.cli([*args, "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("python -m training.train: error: " + message.format(tmp=tmp_path))
    assert err.count("\n") == 1 and "Traceback" not in err


def test_several_data_folders_are_merged_with_their_weights(
    pool: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    second = _count_folder(tmp_path_factory.mktemp("second"))
    args = train_args.parse_args(
        [
            "--data",
            f"{pool},{second}",
            "--data-weights",
            "1,3",
            "--work-dir",
            str(tmp_path),
            "--image-size",
            "48",
        ]
    )
    config = train.model_config(args)
    loaded = splits.load_data(args, config)
    sources = loaded.description["sources"]
    assert [s["weight"] for s in sources] == [1.0, 3.0]
    assert len(loaded.train) == 2 * len(dataset.list_split(Path(sources[0]["prepared"]), "train"))
    assert loaded.train_weights is not None
    assert sorted(set(loaded.train_weights.tolist())) == [1.0, 3.0]
    assert int((loaded.train_weights == 3.0).sum()) == len(loaded.train) // 2


def test_photo_weights_make_the_sampler_draw_a_source_more_often() -> None:
    labels = torch.tensor([1] * 100)
    weights = torch.tensor([1.0] * 50 + [3.0] * 50, dtype=torch.float64)
    sampler = dataset.EpochSampler(labels, 2, "shuffle", seed=0, photo_weights=weights)
    drawn = list(sampler)
    assert 60 <= sum(1 for i in drawn if i >= 50) <= 90  # ~75 % from the weighted half
    uniform = dataset.EpochSampler(labels, 2, "shuffle", seed=0, photo_weights=torch.ones(100))
    assert sorted(uniform) == list(range(100))  # equal weights: still a permutation


def test_recipes_are_the_defaults_and_flags_still_win() -> None:
    args = train_args.parse_args(["--recipe", "shipped", "--epochs", "3"])
    assert (args.image_size, args.ema, args.sampler, args.epochs) == (224, 0.997, "balanced", 3)
    assert recipes.recipe_args("shipped") == [
        "--image-size", "224", "--epochs", "14", "--backbone-lr-mult", "0.3", "--sampler", "balanced",
        "--patience", "5", "--ema", "0.997",
    ]  # fmt: skip
    assert recipes.recipe_hyperparameters("finetune")["freeze-blocks"] == "5"
    parser = train_args.get_args_parser()
    for name in recipes.RECIPES:  # every recipe key is a trainer flag
        assert all(
            parser.get_default(key) is not None or key in ("image_size",) for key in recipes.recipe(name)
        )


def test_final_line_is_the_kept_models_score_for_the_tuner() -> None:
    definition = next(d for d in report.METRIC_DEFINITIONS if d["Name"] == "best:valid_score")
    line = report.final_line({"valid": {"score": 0.1234}})
    assert re.search(definition["Regex"], line).group(1) == "0.1234"  # type: ignore[union-attr]
    valid_score = next(d for d in report.METRIC_DEFINITIONS if d["Name"] == "valid:score")
    assert re.search(valid_score["Regex"], line) is None  # the per-epoch series is not polluted
