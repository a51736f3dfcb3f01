"""Contract-faithful stand-in for ``model/inference.py`` used by the evaluation tests (no torch).

Shipped as ``code/inference.py`` of a fake artifact. The count is read from the image width
(``100 + 10 * count`` px) and images with an odd height are answered one count too high, so a test
knows the exact confusion matrix to expect from the images it drew. Its ranges are read from
fixed p-values: 0.9 for the answered count, 0.2 for its neighbours, 0.01 for the others.
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
    p_values = [0.9 if k == count else 0.2 if abs(k - count) == 1 else 0.01 for k in range(NUM_CLASSES)]
    return {
        "count": count,
        "confidence": 0.75,
        "probabilities": probabilities,
        "count_is_lower_bound": count == NUM_CLASSES - 1,
        "model_version": config["version"],
        "count_p_values": p_values,
        "count_low": max(0, count - 1),
        "count_high": min(NUM_CLASSES - 1, count + 1),
        "range_level": 0.9,
        "range_open": count + 1 >= NUM_CLASSES - 1,
        "range_contiguous": True,
    }


def predict_fn(data: Any, config: dict[str, Any]) -> Any:
    if isinstance(data, list):
        return [_one(item, config) for item in data]
    return _one(data, config)


def output_fn(prediction: Any, accept: str) -> tuple[str, str]:
    return json.dumps(prediction), "application/json"
