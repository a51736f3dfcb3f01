"""``model.package``: the artifact layout, the CLI round trip and a clean import inside the container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from common.errors import UsageError
from model import package
from model.config import ModelConfig, ModelLoadError, sha256_file
from model.network import build_model, half_state_dict

pytestmark = pytest.mark.slow  # every test here packs or builds a network

EXPECTED_MEMBERS = {
    "model.pt",
    "model.torchscript",
    "config.json",
    "code/inference.py",
    "code/requirements.txt",
    "code/model/__init__.py",
    "code/model/config.py",
    "code/model/network.py",
    "code/model/preprocess.py",
    "code/model/ranges.py",
    "code/model/runtime.py",
    "code/model/torch_runtime.py",
    "code/bincount/count_ranges.py",
}


def test_artifact_holds_weights_config_and_code(packed_model: Path, model_dir: Path) -> None:
    with tarfile.open(packed_model) as archive:
        names = set(archive.getnames())
    assert names >= EXPECTED_MEMBERS
    assert names - EXPECTED_MEMBERS <= {"model.onnx"}
    config = json.loads((model_dir / "config.json").read_text())
    assert config["weights_sha256"] == sha256_file(model_dir / "model.pt")
    assert config["arch"] == "efficientnet_lite0" and config["image_size"] == [224, 224]
    weights = torch.load(model_dir / "model.pt", weights_only=True)
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    requirements = (model_dir / "code/requirements.txt").read_text().splitlines()
    assert all(not line.strip() or line.startswith("#") for line in requirements)


def test_code_in_the_artifact_imports_and_serves_from_a_clean_sys_path(
    model_dir: Path, bin_jpeg: bytes
) -> None:
    """As the container runs it: only code/ importable, the repository nowhere on sys.path."""
    (model_dir.parent / "photo.jpg").write_bytes(bin_jpeg)
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(model_dir / 'code')!r})\n"
        "import inference, model.network\n"
        f"assert model.network.__file__.startswith({str(model_dir / 'code')!r}), model.network.__file__\n"
        "import bincount.count_ranges\n"
        f"assert bincount.count_ranges.__file__.startswith({str(model_dir / 'code')!r})\n"
        f"loaded = inference.model_fn({str(model_dir)!r})\n"
        f"body = open({str(model_dir.parent / 'photo.jpg')!r}, 'rb').read()\n"
        "record = inference.predict_fn(inference.input_fn(body, 'image/jpeg'), loaded)\n"
        "out, kind = inference.output_fn(record, 'application/json')\n"
        "print(kind, out)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BINCOUNT_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=model_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    kind, _, payload = done.stdout.strip().partition(" ")
    assert kind == "application/json"
    assert json.loads(payload)["model_version"] == "bincount-test-lite0"


def test_cli_round_trip_packs_given_weights(tmp_path: Path) -> None:
    config = ModelConfig.for_arch(
        "efficientnet_lite0", num_classes=5, version="trained-1", training={"val_acc": 0.5}
    )
    torch.manual_seed(1)
    network = build_model(config)
    torch.save(half_state_dict(network), tmp_path / "weights.pt")
    config.save(tmp_path / "config.json")
    out = tmp_path / "out" / "model.tar.gz"
    args = [
        "--out",
        str(out),
        "--weights",
        str(tmp_path / "weights.pt"),
        "--config",
        str(tmp_path / "config.json"),
    ]
    assert package.main(args) == 0
    extracted = tmp_path / "extracted"
    with tarfile.open(out) as archive:
        archive.extractall(extracted, filter="data")
    from model.inference import SETTINGS, input_fn, load_model, predict_fn
    from model.network import load_state

    loaded, loaded_config = load_state(extracted)
    assert loaded_config.version == "trained-1" and loaded_config.training == {"val_acc": 0.5}
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), network.eval()(x), rtol=2e-2, atol=2e-2)
    served = load_model(extracted, SETTINGS)
    from imaging import draw_bin, encode

    record = predict_fn(input_fn(encode(draw_bin(4, seed=2)), "image/jpeg"), served)
    assert len(record["probabilities"]) == 5 and record["model_version"] == "trained-1"


def test_cli_without_weights_packs_pretrained_backbone_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(package, "SHIPPED_WEIGHTS_DIR", tmp_path / "no-shipped-weights")
    out = tmp_path / "model.tar.gz"
    assert package.main(["--out", str(out)]) == 0
    assert "untrained head" in capsys.readouterr().out
    with tarfile.open(out) as archive:
        member = archive.extractfile("config.json")
        assert member is not None
        config = json.loads(member.read())
    assert config["arch"] == "efficientnet_lite0" and "untrained" in config["version"]


def test_cli_prefers_the_shipped_trained_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "weights"
    shipped.mkdir()
    config = ModelConfig(version="bincount-efficientnet_lite0-shipped")
    torch.save(half_state_dict(build_model(config)), shipped / "model.pt")
    config.weights_sha256 = sha256_file(shipped / "model.pt")
    config.save(shipped / "config.json")
    monkeypatch.setattr(package, "SHIPPED_WEIGHTS_DIR", shipped)
    _state, resolved, source = package.resolve_inputs(None, None, None)
    assert resolved.version == "bincount-efficientnet_lite0-shipped"
    assert str(shipped / "model.pt") in source


def test_package_model_sets_the_hash_the_loader_checks(tmp_path: Path) -> None:
    config = ModelConfig(version="v")
    out = package.package_model(tmp_path / "m.tar.gz", build_model(config).state_dict(), config, onnx=False)
    with tarfile.open(out) as archive:
        archive.extractall(tmp_path / "x", filter="data")
    assert config.weights_sha256 == sha256_file(tmp_path / "x" / "model.pt")
    assert not (tmp_path / "m.tar.gz.partial").exists()


def test_model_onnx_ships_only_when_asked(tmp_path: Path) -> None:
    """SageMaker's PyTorch inference container has no ONNX Runtime: the default artifact leaves it out."""
    config = ModelConfig(version="v")
    state = build_model(config).state_dict()
    plain = package.package_model(tmp_path / "plain.tar.gz", state, config)
    with tarfile.open(plain) as archive:
        assert set(archive.getnames()) == EXPECTED_MEMBERS
    pytest.importorskip("onnx")
    with_onnx = package.package_model(tmp_path / "onnx.tar.gz", state, config, onnx=True)
    with tarfile.open(with_onnx) as archive:
        assert "model.onnx" in archive.getnames()


#: What torch 2.6 (the SageMaker PyTorch inference container) writes and reads in a state dict's
#: zip: any other record or pickled global would be a format feature newer than that container.
TORCH_26_RECORDS = {
    "data.pkl",
    "version",
    "byteorder",
    ".format_version",
    ".storage_alignment",
    ".data/serialization_id",
}
TORCH_26_WEIGHTS_ONLY_GLOBALS = {
    "collections OrderedDict",
    "torch._utils _rebuild_tensor_v2",
    *(
        f"torch {kind}Storage"
        for kind in ("Half", "Float", "Long", "Int", "Bool", "BFloat16", "Double", "Byte")
    ),
}


def _pickled_globals(data: bytes) -> set[str]:
    import pickletools

    ops = list(pickletools.genops(data))
    found = set()
    for index, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL":
            found.add(str(arg))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{ops[index - 2][1]} {ops[index - 1][1]}")
    return found


def test_model_pt_is_in_a_format_torch_2_6_loads(model_dir: Path) -> None:
    """The artifact's weights, written by this torch, hold only what torch 2.6 reads with weights_only."""
    import zipfile

    with zipfile.ZipFile(model_dir / "model.pt") as archive:
        records = {name.split("/", 1)[1] for name in archive.namelist()}
        root = archive.namelist()[0].split("/", 1)[0]
        assert archive.read(f"{root}/version").strip() == b"3"
        pickled = archive.read(f"{root}/data.pkl")
    assert {r for r in records if not r.startswith("data/")} <= TORCH_26_RECORDS
    assert _pickled_globals(pickled) <= TORCH_26_WEIGHTS_ONLY_GLOBALS
    weights = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    assert all(type(t) is torch.Tensor for t in weights.values())


def test_portable_state_dict_drops_parameters_and_shared_storage() -> None:
    weight = torch.nn.Parameter(torch.randn(4, 6))
    state = package.portable_state_dict(
        {"w": weight, "t": torch.randn(6, 4).t(), "n": torch.tensor(3)}, fp16=True
    )
    assert all(type(t) is torch.Tensor for t in state.values())
    assert state["w"].dtype == torch.float16 and state["n"].dtype == torch.int64
    assert state["w"].untyped_storage().data_ptr() != weight.untyped_storage().data_ptr()


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--weights", "/nonexistent/model.pt"], "--weights /nonexistent/model.pt: no such file"),
        (["--config", "/nonexistent/config.json"], "no such file"),
        (["--arch", "resnet9000"], "--arch resnet9000: choose one of"),
        (
            ["--onnxruntime-wheel", "/nonexistent/ort.whl"],
            "--onnxruntime-wheel /nonexistent/ort.whl: no such",
        ),
    ],
)
def test_cli_refuses_with_one_line(
    argv: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert package.main(["--out", str(tmp_path / "m.tar.gz"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("model.package: error: ") and phrase in err[0]
    assert not (tmp_path / "m.tar.gz").exists()


def test_cli_without_out_says_what_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert package.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out is required" in err[0]


def test_cli_refuses_a_file_that_is_not_a_state_dict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.pt").write_bytes(b"not a checkpoint")
    assert package.main(["--out", str(tmp_path / "m.tar.gz"), "--weights", str(tmp_path / "notes.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot pack these inputs" in err[0]
    assert package.main(["--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_repacking_the_shipped_weights_keeps_their_bytes(tmp_path: Path) -> None:
    """The deployed model.pt is the repository's file, byte for byte (the model card's SHA-256)."""
    weights = package.SHIPPED_WEIGHTS_DIR / "model.pt"
    if not weights.is_file():
        pytest.skip("no shipped weights in this checkout")
    state, config, _ = package.resolve_inputs(None, None, None)
    package.package_model(tmp_path / "m.tar.gz", state, config)
    assert config.weights_sha256 == sha256_file(weights)


SERVE_SCRIPT = """
import json, sys
{hide}
sys.path.insert(0, {code!r})
import inference
loaded = inference.model_fn({model_dir!r})
body = open({photo!r}, 'rb').read()
record = inference.predict_fn(inference.input_fn(body, 'image/jpeg'), loaded)
import importlib.util
spec = importlib.util.find_spec("onnxruntime")
print(json.dumps({{"runtime": loaded.runtime.name, "onnxruntime": spec.origin if spec else None,
                  "torch": sys.modules.get("torch") is not None, "record": record}}))
"""


def serve_in_subprocess(model_dir: Path, photo: bytes, hide: str, python_path: list[str]) -> dict:
    """Serve one photo from the unpacked artifact in a fresh interpreter started with ``-S``
    (no site-packages), whose only other paths are ``python_path``; ``hide``: code run first."""
    (model_dir.parent / "photo.jpg").write_bytes(photo)
    script = SERVE_SCRIPT.format(
        hide=hide,
        code=str(model_dir / "code"),
        model_dir=str(model_dir),
        photo=str(model_dir.parent / "photo.jpg"),
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(BINCOUNT_THREADS="1", PYTHONPATH=os.pathsep.join(python_path))
    done = subprocess.run(
        [sys.executable, "-S", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "log": done.stderr}


def site_without(tmp_path: Path, *prefixes: str) -> Path:
    """A folder of links to every installed distribution but those starting with ``prefixes``:
    a Python that has everything of this one except, say, ONNX Runtime (as the container has)."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    folder = tmp_path / "site"
    folder.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith(prefixes) and not entry.name.endswith(".pth"):
            (folder / entry.name).symlink_to(entry)
    return folder


def wheel_of_installed_onnxruntime(tmp_path: Path) -> Path:
    """The installed ONNX Runtime as a wheel for this Python (the container gets the cp312 one)."""
    import zipfile

    ort = pytest.importorskip("onnxruntime")
    root = Path(ort.__file__).parent
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    wheel = tmp_path / f"onnxruntime-{ort.__version__}-{tag}-{tag}-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, f"onnxruntime/{path.relative_to(root)}")
    return wheel


@pytest.fixture(scope="module")
def vendored_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact carrying the installed ONNX Runtime under code/lib/, unpacked."""
    tmp_path = tmp_path_factory.mktemp("vendored")
    config = ModelConfig(version="vendored")
    torch.manual_seed(3)
    artifact = package.package_model(
        tmp_path / "m.tar.gz",
        build_model(config).state_dict(),
        config,
        onnx=True,
        onnxruntime_wheel=wheel_of_installed_onnxruntime(tmp_path),
    )
    model_dir = tmp_path / "model"
    with tarfile.open(artifact) as archive:
        archive.extractall(model_dir, filter="data")
    return model_dir


def test_the_artifact_carries_onnxruntime_the_container_lacks(
    vendored_model_dir: Path, tmp_path: Path, bin_jpeg: bytes
) -> None:
    """SageMaker's PyTorch container has no ONNX Runtime: the one under code/lib/ serves, and its
    answer is the installed one's."""
    lib = vendored_model_dir / "code" / "lib"
    assert (lib / "onnxruntime" / "__init__.py").is_file() and (lib / "PYTHON").is_file()
    assert not (lib / "onnxruntime" / "tools").exists()
    served = serve_in_subprocess(
        vendored_model_dir, bin_jpeg, "", [str(site_without(tmp_path, "onnxruntime"))]
    )
    assert served["runtime"].startswith("onnxruntime-")
    assert served["onnxruntime"].startswith(str(lib))
    from model.inference import SETTINGS, input_fn, load_model, predict_fn

    local = predict_fn(input_fn(bin_jpeg, "image/jpeg"), load_model(vendored_model_dir, SETTINGS))
    assert served["record"] == local


def test_a_carried_onnxruntime_for_another_python_is_left_alone(
    vendored_model_dir: Path, tmp_path: Path, bin_jpeg: bytes
) -> None:
    """A wheel of another Python is never put on sys.path: TorchScript serves and the log says why."""
    other = tmp_path / "model"
    shutil.copytree(vendored_model_dir, other)
    (other / "code" / "lib" / "PYTHON").write_text("2.7\n")
    served = serve_in_subprocess(other, bin_jpeg, "", [str(site_without(tmp_path, "onnxruntime"))])
    assert served["onnxruntime"] is None and served["runtime"].startswith("torchscript-")
    assert "carries ONNX Runtime for Python 2.7" in served["log"]
    assert "count" in served["record"]


def test_wheel_names_give_the_python_they_are_for() -> None:
    assert package._wheel_python(Path("onnxruntime-1.32.0-cp312-cp312-manylinux_2_28_x86_64.whl")) == "3.12"
    with pytest.raises(UsageError, match="not a CPython wheel"):
        package._wheel_python(Path("onnxruntime-1.0-py3-none-any.whl"))


def test_packing_without_torch_refuses_a_graph_of_other_weights(model_dir: Path, tmp_path: Path) -> None:
    """``model.onnx`` must be the weights' own export; a missing or foreign one is refused."""
    if not (package.SHIPPED_WEIGHTS_DIR / "model.onnx").is_file():
        pytest.skip("no shipped model in this checkout")
    shipped = tmp_path / "weights"
    shutil.copytree(package.SHIPPED_WEIGHTS_DIR, shipped)
    shutil.copy(model_dir / "model.onnx", shipped / "model.onnx")  # the test model's graph
    with pytest.raises(ModelLoadError, match="exported from other weights"):
        package.pack_prebuilt(tmp_path / "m.tar.gz", shipped)
    (shipped / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.onnx is missing"):
        package.pack_prebuilt(tmp_path / "m.tar.gz", shipped)
    assert not (tmp_path / "m.tar.gz").exists()


def test_the_shipped_model_packs_and_serves_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bin_jpeg: bytes
) -> None:
    """The light install (make demo): the shipped model's exported graph, packed and served with
    ``import torch`` failing."""
    pytest.importorskip("onnxruntime")
    if not (package.SHIPPED_WEIGHTS_DIR / "model.onnx").is_file():
        pytest.skip("no shipped model in this checkout")
    monkeypatch.setattr(package, "torch_available", lambda: False)
    out = tmp_path / "local.tar.gz"
    assert package.main(["--out", str(out), "--onnx"]) == 0
    model_dir = tmp_path / "model"
    with tarfile.open(out) as archive:
        names = set(archive.getnames())
        archive.extractall(model_dir, filter="data")
    assert "model.onnx" in names and "model.torchscript" not in names
    assert (model_dir / "model.onnx").read_bytes() == (
        package.SHIPPED_WEIGHTS_DIR / "model.onnx"
    ).read_bytes()
    served = serve_in_subprocess(model_dir, bin_jpeg, "sys.modules['torch'] = None", sys.path[1:])
    assert served["runtime"].startswith("onnxruntime-") and not served["torch"]
    assert served["record"]["model_version"].startswith("bincount-")
    assert package.main(["--out", str(out), "--arch", "resnet50", "--onnx"]) == 2
