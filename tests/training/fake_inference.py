"""Contract-faithful stand-in for ``model/inference.py`` used by the evaluation tests (no torch).

Shipped as ``code/inference.py`` of a fake artifact. The count is read from the image width
(``100 + 10 * count`` px) and images with an odd height are answered one count too high, so a test
knows the exact confusion matrix to expect from the images it drew.
"""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

NUM_CLASSES = 6


def model_fn(model_dir: str) -> dict[str, Any]:
    with open(f"{model_dir}/config.json", encoding="utf-8") as handle:
        return dict(json.load(handle))


def input_fn(body: bytes, content_type: str) -> Any:
    if not body:
        return {"error": {"code": "empty_body", "message": "empty request body"}}
    try:
        image = Image.open(io.BytesIO(body))
        image.load()
    except Exception as exc:
        return {"error": {"code": "corrupt_image", "message": str(exc)}}
    return image.size


def _one(data: Any, config: dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict):
        return {**data, "model_version": config["version"]}
    width, height = data
    count = min(NUM_CLASSES - 1, max(0, (width - 100) // 10 + (height % 2)))
    probabilities = [0.05] * NUM_CLASSES
    probabilities[count] = 0.75
    return {
        "count": count,
        "confidence": 0.75,
        "probabilities": probabilities,
        "count_is_lower_bound": count == NUM_CLASSES - 1,
        "model_version": config["version"],
    }


def predict_fn(data: Any, config: dict[str, Any]) -> Any:
    if isinstance(data, list):
        return [_one(item, config) for item in data]
    return _one(data, config)


def output_fn(prediction: Any, accept: str) -> tuple[str, str]:
    return json.dumps(prediction), "application/json"
