"""Record what the shipped model answers on fixed generated photos (run after replacing the weights).

    PYTHONPATH=.:tests:functions python tests/model/shipped_expectations.py

The test in ``test_shipped_weights.py`` compares the shipped weights against this record, so a
silent change of ``model/weights/`` (or of preprocessing) fails until the record is redone on
purpose, together with the model card.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path

from imaging import draw_bin, encode

from model.inference import SETTINGS, input_fn, load_model, predict_fn
from model.network import load_state
from model.package import package_model

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "model" / "weights"
RECORD = Path(__file__).with_name("data") / "shipped_predictions.json"
INPUTS = [(0, 11), (2, 12), (4, 13)]  # (items drawn, seed)


def fixed_photos() -> list[bytes]:
    return [encode(draw_bin(count, seed)) for count, seed in INPUTS]


def predict_shipped(runtime: str = "torch", artifact: Path | None = None) -> list[dict[str, object]]:
    """Serve the shipped weights exactly as ``make model`` packs them (same handlers, same code).

    ``artifact``: ``make model``'s ``model.tar.gz`` when the caller has one (the tests' session
    artifact); otherwise the shipped weights are packed here first.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if artifact is None:
            network, config = load_state(WEIGHTS_DIR)
            artifact = package_model(
                Path(tmp) / "model.tar.gz", network.state_dict(), config, onnx=runtime == "onnx"
            )
        with tarfile.open(artifact) as archive:
            archive.extractall(Path(tmp) / "model", filter="data")
        model = load_model(Path(tmp) / "model", replace(SETTINGS, runtime=runtime, device="cpu", threads=2))
        return [predict_fn(input_fn(photo, "image/jpeg"), model) for photo in fixed_photos()]


def main() -> None:
    config = json.loads((WEIGHTS_DIR / "config.json").read_text())
    records = predict_shipped()
    RECORD.write_text(
        json.dumps(
            {"weights_sha256": config["weights_sha256"], "inputs": INPUTS, "records": records}, indent=1
        )
        + "\n"
    )
    print(f"recorded {len(records)} predictions of {config['version']} in {RECORD}")


if __name__ == "__main__":
    main()
