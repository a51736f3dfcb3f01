"""``python -m training.evaluate`` end to end: label modes, handler loading, report fields, errors.

A fake artifact whose ``code/inference.py`` is ``fake_inference.py`` (contract-faithful, no torch)
makes the expected confusion matrix exact; the real artifact from ``python -m model.package`` is
evaluated too when that module exists, and the ABID evaluation photos (``$BINCOUNT_ABID_DIR``)
when they are present.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from processes import python_env

from common.malloc import with_malloc_env

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


@dataclass(frozen=True)
class LabelledSet:
    root: Path
    csv: Path
    labels: dict[str, int]  # CSV image path -> true count
    expected_pred: dict[str, int]  # what fake_inference answers
    corrupt: str  # CSV path of the unreadable image


def _draw(path: Path, count: int, wrong: bool) -> None:
    # width encodes the count for fake_inference; an odd height makes it answer one too high
    Image.new("RGB", (100 + 10 * count, 61 if wrong else 60), (90 + 20 * count, 80, 70)).save(
        path, quality=90
    )


@pytest.fixture(scope="session")
def labelled_set(tmp_path_factory: pytest.TempPathFactory) -> LabelledSet:
    """12 small photos in count folders (``images/<count>/``) + a labels.csv, one corrupt file."""
    root = tmp_path_factory.mktemp("labelled")
    plan = [
        (0, False),
        (0, False),
        (1, False),
        (1, True),
        (2, False),
        (2, False),
        (3, True),
        (3, False),
        (4, False),
        (5, False),
        (1, False),
        (2, True),
    ]
    labels: dict[str, int] = {}
    expected: dict[str, int] = {}
    for i, (count, wrong) in enumerate(plan):
        folder = root / "images" / str(count)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"images/{count}/{i:03d}.jpg"
        _draw(root / name, count, wrong)
        labels[name] = count
        expected[name] = min(5, count + int(wrong))
    corrupt = "images/2/corrupt.jpg"
    (root / corrupt).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    labels[corrupt] = 2
    csv_path = root / "labels.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "count", "note"])
        writer.writerows([name, count, "synthetic"] for name, count in labels.items())
    return LabelledSet(root, csv_path, labels, expected, corrupt)


@pytest.fixture(scope="session")
def fake_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model.tar.gz laid out like the real one, with fake_inference.py as its code/inference.py."""
    staging = tmp_path_factory.mktemp("fake-artifact")
    (staging / "code").mkdir()
    shutil.copy(HERE / "fake_inference.py", staging / "code" / "inference.py")
    (staging / "config.json").write_text(json.dumps({"version": "fake-width-counter-1", "num_classes": 6}))
    (staging / "model.pt").write_bytes(b"")
    archive = staging.parent / "fake-model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(staging.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(staging)))
    return archive


def run_evaluate(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``python -m training.evaluate`` in a fresh process, as a user runs it (the artifact's code/model
    can only shadow the repository's package in a process that has not imported it)."""
    env = with_malloc_env(python_env(OMP_NUM_THREADS="1"))
    return subprocess.run(
        [sys.executable, "-m", "training.evaluate", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- tests ----------------------------------------------------------------------------------------
def _json(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def csv_report(
    labelled_set: LabelledSet, fake_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    out = tmp_path_factory.mktemp("eval-csv")
    return _json(
        run_evaluate(
            "--model", str(fake_artifact), "--labels", str(labelled_set.csv), "--out", str(out), "--json"
        )
    )


def test_json_report_matches_the_handlers_answers(csv_report: dict, labelled_set: LabelledSet) -> None:
    good = {k: v for k, v in labelled_set.labels.items() if k != labelled_set.corrupt}
    assert csv_report["n_images"] == len(labelled_set.labels)
    assert csv_report["n"] == len(good)
    expected_confusion = [[0] * 6 for _ in range(6)]
    for name, count in good.items():
        expected_confusion[count][labelled_set.expected_pred[name]] += 1
    assert csv_report["confusion"] == expected_confusion
    wrong = sum(1 for k in good if labelled_set.expected_pred[k] != good[k])
    assert csv_report["accuracy"] == pytest.approx((len(good) - wrong) / len(good))
    # every wrong answer is off by exactly one here
    assert csv_report["rmse"] == pytest.approx((wrong / len(good)) ** 0.5)
    assert {w["image"] for w in csv_report["wrong"]} == {
        k for k in good if labelled_set.expected_pred[k] != good[k]
    }
    assert all(w["confidence"] == pytest.approx(0.75) for w in csv_report["wrong"])
    assert csv_report["model_version"] == "fake-width-counter-1"
    assert csv_report["images_per_second"] > 0


def test_unreadable_image_is_an_error_entry(csv_report: dict, labelled_set: LabelledSet) -> None:
    assert csv_report["n_errors"] == 1
    (error,) = csv_report["errors"]
    assert error["image"] == labelled_set.corrupt
    assert error["error"]["code"] == "corrupt_image"


def test_report_carries_baselines_and_files(csv_report: dict) -> None:
    per_class = {row["count"]: row for row in csv_report["abid_challenge"]}
    assert per_class[0]["abid_challenge_accuracy"] == pytest.approx(0.977)
    assert per_class[5]["abid_challenge_accuracy"] == pytest.approx(0.449)
    assert csv_report["trivial"]["majority"]["name"] in {"always 1", "always 2"}
    assert {b["name"] for b in csv_report["public_baselines"]} >= {"abid-challenge-resnet34"}
    assert csv_report["counts_1_5"]["n"] == sum(row["support"] for row in csv_report["abid_challenge"][1:])
    assert csv_report["ece"] is not None
    for key in ("report", "confusion_json", "confusion_png"):
        assert Path(csv_report["files"][key]).is_file()
    assert Path(csv_report["files"]["confusion_png"]).read_bytes()[:4] == b"\x89PNG"
    assert (
        json.loads(Path(csv_report["files"]["confusion_json"]).read_text())["confusion"]
        == csv_report["confusion"]
    )


def test_ranges_and_simulated_discrepancies_follow_the_records(
    csv_report: dict, labelled_set: LabelledSet
) -> None:
    """fake_inference's range is the answered count ± 1; an event fires when the expected class is
    two or more from the answered count (p-value 0.01), and only then."""
    good = {k: v for k, v in labelled_set.labels.items() if k != labelled_set.corrupt}
    ranges = csv_report["ranges"]
    assert ranges["level"] == 0.9
    assert ranges["coverage"]["coverage"] == 1.0  # every answer is right or one too high
    trade = ranges["discrepancy"]
    assert trade["at_alpha"]["alpha"] == 0.05 and trade["at_alpha"]["false_alarm"] == 0.0
    for k in (1, 2, 3):
        cases = [
            abs(min(q, 5) - labelled_set.expected_pred[name]) >= 2
            for name, true in good.items()
            for q in {true + k, max(0, true - k)}
            if q != true
        ]
        assert trade["at_alpha"][f"catch_off_by_{k}"] == pytest.approx(sum(cases) / len(cases))
    assert trade["review"]["share_inventory_right"] == 0.0  # no p-value in (0.05, 0.15]
    curve = {row["alpha"]: row for row in trade["curve"]}
    wrong_answers = sum(labelled_set.expected_pred[n] != t for n, t in good.items()) / len(good)
    assert curve[0.2]["false_alarm"] == pytest.approx(wrong_answers)  # their true count has p = 0.2
    assert curve[0.15]["false_alarm"] == 0.0
    assert Path(csv_report["files"]["discrepancy_png"]).read_bytes()[:4] == b"\x89PNG"


def test_count_folders_without_csv_and_batched_path(
    labelled_set: LabelledSet, fake_artifact: Path, tmp_path: Path, csv_report: dict
) -> None:
    images = tmp_path / "folders"
    shutil.copytree(labelled_set.root / "images", images)
    report = _json(
        run_evaluate(
            "--model",
            str(fake_artifact),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "out"),
            "--batch-size",
            "4",
            "--subset",
            "1-3",
            "--json",
        )
    )
    assert report["confusion"] == csv_report["confusion"]
    assert report["n_errors"] == 1
    assert report["subset"]["counts"] == [1, 3]
    assert report["subset"]["n"] == sum(
        1 for k, v in labelled_set.labels.items() if 1 <= v <= 3 and k != labelled_set.corrupt
    )


def test_extracted_folder_and_text_table(
    labelled_set: LabelledSet, fake_artifact: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    with tarfile.open(fake_artifact) as tar:
        tar.extractall(folder, filter="data")
    done = run_evaluate(
        "--model", str(folder), "--images", str(labelled_set.root), "--out", str(tmp_path / "o")
    )
    assert done.returncode == 0, done.stderr
    assert "ABID-challenge" in done.stdout and "always" in done.stdout and "errors (1)" in done.stdout


def test_manifest_test_split_only(labelled_set: LabelledSet, fake_artifact: Path, tmp_path: Path) -> None:
    names = sorted(k for k in labelled_set.labels if k != labelled_set.corrupt)
    manifest = {
        "format": "bincount-split/1",
        "samples": [
            {
                "id": Path(n).stem,
                "count": labelled_set.labels[n],
                "split": "test" if i % 3 == 0 else "train",
                "path": n,
                "source": str(labelled_set.root / n),
            }
            for i, n in enumerate(names)
        ],
    }
    path = labelled_set.root / "manifest.json"
    path.write_text(json.dumps(manifest))
    report = _json(
        run_evaluate(
            "--model", str(fake_artifact), "--manifest", str(path), "--out", str(tmp_path / "o"), "--json"
        )
    )
    assert report["n"] == len(names[::3])


def test_real_artifact_through_real_handlers(
    shipped_artifact: Path, labelled_set: LabelledSet, tmp_path: Path
) -> None:
    report = _json(
        run_evaluate(
            "--model",
            str(shipped_artifact),
            "--labels",
            str(labelled_set.csv),
            "--out",
            str(tmp_path / "o"),
            "--json",
        )
    )
    assert report["n_images"] == len(labelled_set.labels)
    assert report["n"] + report["n_errors"] == report["n_images"]
    assert any(e["image"] == labelled_set.corrupt for e in report["errors"])
    assert 0.0 <= report["accuracy"] <= 1.0 and report["rmse"] >= 0.0
    assert len(report["confusion"]) >= 6 and sum(map(sum, report["confusion"])) == report["n"]


@pytest.mark.shared_data
def test_shared_abid_runs(shipped_artifact: Path, shared_abid: Path, tmp_path: Path) -> None:
    report = _json(
        run_evaluate(
            "--model",
            str(shipped_artifact),
            "--images",
            str(shared_abid),
            "--labels",
            str(shared_abid / "labels.csv"),
            "--out",
            str(tmp_path / "o"),
            "--json",
        )
    )
    assert report["n"] == 52 and report["n_errors"] == 0


def _one_line(result: subprocess.CompletedProcess[str], phrase: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("training.evaluate: error: "), result.stderr
    assert phrase in lines[0] and "Traceback" not in result.stderr


def test_images_without_labels_is_one_line(fake_artifact: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    _draw(photos / "a.jpg", 1, wrong=False)
    result = run_evaluate(
        "--model", str(fake_artifact), "--images", str(photos), "--out", str(tmp_path / "o")
    )
    _one_line(result, "has no labels")
    assert "--labels CSV" in result.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--images", "/nonexistent"], "--images /nonexistent: no such folder"),
        (["--labels", "/nonexistent.csv"], "no such file"),
        (["--manifest", "/nonexistent.json"], "no such file"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--subset", "5-1"], "LO must not exceed HI"),
        (["--alpha", "1.5"], "--alpha 1.5"),
        (["--review-budget", "-0.1"], "--review-budget -0.1"),
        ([], "nothing to evaluate"),
    ],
)
def test_bad_arguments_are_one_line(
    args: list[str], phrase: str, fake_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import evaluate

    assert evaluate.main(["--model", str(fake_artifact), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("training.evaluate: error: ") and phrase in err[0], err


def test_a_labels_file_without_counts_is_one_line(fake_artifact: Path, tmp_path: Path) -> None:
    from training import evaluate

    bad = tmp_path / "labels.csv"
    bad.write_text("image,quantity\na.jpg,3\n")
    with pytest.raises(evaluate.UsageError, match="'image' and 'count'"):
        evaluate.collect(
            evaluate.build_parser().parse_args(["--model", str(fake_artifact), "--labels", str(bad)])
        )
    assert evaluate.main(["--model", str(tmp_path / "none.tar.gz"), "--labels", str(bad)]) == 2


def test_the_warning_about_shadowed_model_code_only_when_the_code_differs(tmp_path: Path) -> None:
    """The gate loads two artifacts of one code base in one process: no warning for identical code,
    a warning when the artifact's code/model would have served differently."""
    from training.evaluate import _same_code

    imported = tmp_path / "repo" / "model"
    artifact = tmp_path / "artifact" / "code" / "model"
    for folder in (imported, artifact):
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
        (folder / "network.py").write_text("WIDTH = 1\n")
    init = str(imported / "__init__.py")
    assert _same_code(init, artifact)
    (artifact / "network.py").write_text("WIDTH = 2\n")
    assert not _same_code(init, artifact)
    (artifact / "network.py").write_text("WIDTH = 1\n")
    (artifact / "extra.py").write_text("")
    assert not _same_code(init, artifact)
    assert not _same_code(None, artifact)
