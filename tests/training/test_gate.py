"""The promotion gate: paired statistics, the decision, photo sets, and the command end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from imaging import draw_bin, encode

from model.config import ModelConfig
from model.network import build_model
from model.package import package_model
from training.data import hash_split, samples_from_count_folder
from training.evaluate import LabelledImage
from training.promotion import gate, registry


def _photos(n: int) -> list[LabelledImage]:
    return [LabelledImage(Path(f"p{i}.jpg"), i % 4, f"p{i}.jpg") for i in range(n)]


def _answers(photos: list[LabelledImage], right: set[int], version: str) -> gate.Answers:
    """A model that answers photo i correctly when i is in ``right``, one too many otherwise."""
    counts = {p.name: p.count if i in right else p.count + 1 for i, p in enumerate(photos)}
    return gate.Answers(version, counts, [], top_class=5)


def test_mcnemar_exact_matches_the_binomial_tail() -> None:
    assert gate.mcnemar_exact(0, 0) == 1.0
    assert gate.mcnemar_exact(5, 5) == 1.0
    assert gate.mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # 2 * 0.5**6
    assert gate.mcnemar_exact(2, 12) == pytest.approx(0.012939, abs=1e-5)
    assert gate.mcnemar_exact(12, 2) == gate.mcnemar_exact(2, 12)


def test_paired_bootstrap_interval_brackets_the_difference() -> None:
    truth = np.zeros(200)
    current = np.r_[np.zeros(100), np.ones(100)]
    candidate = np.r_[np.zeros(150), np.ones(50)]
    ci = gate.paired_bootstrap(truth, current, candidate, samples=500, seed=1)
    assert ci["accuracy_ci"][0] < 0.25 < ci["accuracy_ci"][1] and ci["accuracy_ci"][0] > 0
    assert ci["rmse_ci"][1] < 0  # the candidate is clearly closer
    assert gate.paired_bootstrap(truth, current, candidate, 500, 1) == ci  # seeded


def test_a_clearly_better_candidate_is_promoted() -> None:
    photos = _photos(200)
    current = _answers(photos, set(range(100)), "old")
    candidate = _answers(photos, set(range(150)), "new")
    result = gate.compare(photos, current, candidate, samples=300)
    assert result["mcnemar"] == {
        "only_current_right": 0,
        "only_candidate_right": 50,
        "p": pytest.approx(0, abs=1e-12),
    }
    assert result["difference"]["accuracy"] == pytest.approx(0.25)
    assert gate.decide(result, None) == []


def test_a_difference_that_may_be_chance_is_refused_with_the_reason() -> None:
    photos = _photos(100)
    current = _answers(photos, set(range(50)), "old")
    candidate = _answers(photos, set(range(2, 54)), "new")  # 4 better, 2 worse: +2 points
    result = gate.compare(photos, current, candidate, samples=300)
    reasons = gate.decide(result, None)
    assert len(reasons) == 1 and "not better on the gate set beyond chance" in reasons[0]
    assert "McNemar p=0.688" in reasons[0]


def test_a_regression_on_the_reference_set_refuses_a_better_candidate() -> None:
    photos = _photos(200)
    gate_result = gate.compare(
        photos, _answers(photos, set(range(100)), "o"), _answers(photos, set(range(150)), "n")
    )
    reference = gate.compare(
        photos, _answers(photos, set(range(100)), "o"), _answers(photos, set(range(90)), "n")
    )
    reasons = gate.decide(gate_result, reference)
    assert reasons == ["accuracy drops by 0.050 on the reference set (tolerance 0.02)"]


def test_counts_above_the_open_top_class_are_right_when_answered_as_it() -> None:
    photos = [LabelledImage(Path("a.jpg"), 9, "a.jpg"), LabelledImage(Path("b.jpg"), 2, "b.jpg")]
    answers = gate.Answers("v", {"a.jpg": 5, "b.jpg": 2}, [], top_class=5)
    result = gate.compare(photos, answers, answers, samples=50)
    assert result["current"]["accuracy"] == 1.0 and result["current"]["rmse"] == 0.0


def test_reviewed_photos_give_their_hash_gate_split(reviewed_folder: Callable[[int], Path]) -> None:
    root = reviewed_folder(40)
    held_out = gate.load_photo_set(root)
    expected = {s.id for s in hash_split(samples_from_count_folder(root)[0])["test"]}
    assert {p.path.stem for p in held_out} == expected and 0 < len(held_out) < 40


def test_unreadable_inputs_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = gate.main(
        ["--candidate", str(tmp_path / "no.tar.gz"), "--current", str(tmp_path), "--gate-set", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no such model" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def two_artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    out = []
    for seed, name in ((0, "current"), (1, "candidate")):
        torch.manual_seed(seed)
        config = ModelConfig.for_arch("efficientnet_lite0", image_size=(32, 32))
        config.version = f"bincount-test-{name}"
        out.append(
            package_model(root / f"{name}.tar.gz", build_model(config).state_dict(), config, onnx=False)
        )
    return out[0], out[1]


def test_gate_serves_both_artifacts_and_records_the_verdict(
    two_artifacts: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    current, candidate = two_artifacts
    photos = tmp_path / "photos"
    for count in range(3):
        (photos / str(count)).mkdir(parents=True)
        for i in range(4):
            (photos / str(count) / f"g{count}{i}.jpg").write_bytes(encode(draw_bin(count, i, size=(64, 48))))
    reg = tmp_path / "registry"
    registry.register(reg, current, "approved", "tester")
    registry.promote(reg, "bincount-test-current")
    out = tmp_path / "verdict.json"
    argv = ["--candidate", str(candidate), "--current", str(current), "--gate-set", str(photos)]
    code = gate.main(
        [*argv, "--reference", str(photos), "--out", str(out), "--registry", str(reg), "--bootstrap", "200"]
    )
    assert code == 0
    verdict = json.loads(out.read_text())
    assert verdict["gate_set"]["n"] == 12 and verdict["reference"]["n"] == 12
    assert verdict["candidate"]["version"] == "bincount-test-candidate"
    assert verdict["current"]["version"] == "bincount-test-current"
    entry = registry.load_entry(reg, "bincount-test-candidate")
    assert entry["gate"]["verdict"] == verdict["verdict"]
    assert entry["status"] == ("approved" if verdict["promoted"] else "rejected")
    served = "bincount-test-candidate" if verdict["promoted"] else "bincount-test-current"
    assert registry.served_version(reg) == served
    assert "Gate verdict" in capsys.readouterr().out


def test_a_refused_candidate_leaves_the_served_model(
    two_artifacts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current, candidate = two_artifacts
    photos = _photos(60)
    monkeypatch.setattr(gate, "load_photo_set", lambda path, split: photos)
    fake = {
        str(current): _answers(photos, set(range(40)), "cur"),
        str(candidate): _answers(photos, set(range(20)), "cand"),
    }
    monkeypatch.setattr(gate, "serve", lambda artifact, items, workdir: fake[str(artifact)])
    reg = tmp_path / "registry"
    registry.register(reg, current, "approved", "tester")
    registry.promote(reg, "bincount-test-current")
    args = ["--candidate", str(candidate), "--current", str(current), "--gate-set", str(tmp_path)]
    assert gate.main([*args, "--out", str(tmp_path / "v.json"), "--registry", str(reg)]) == 0
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["verdict"] == "refuse" and any("accuracy drops" in r for r in verdict["reasons"])
    assert registry.served_version(reg) == "bincount-test-current"
    assert registry.load_entry(reg, "bincount-test-candidate")["status"] == "rejected"
    assert "Refused because" in gate.render_markdown(verdict)
