"""The writer side of the serving contract: what the real handlers answer follows the schema.

The schema (``functions/bincount/serving_record.schema.json``) is the one home of the record; the
reader side is ``tests/functions/test_serving_record_reader.py``. Either side drifting fails here or there.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from model import inference
from model.inference import CountingModel, input_fn, output_fn, predict_fn
from model.ranges import ALL, Conformal

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "functions" / "bincount" / "serving_record.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_codes() -> set[str]:
    return set(json.loads(SCHEMA_FILE.read_text())["$defs"]["error_code"]["enum"])


def served(body: bytes, content_type: str, model: CountingModel) -> Any:
    """One request through the four handlers and back from JSON, as the collector receives it."""
    text, _ = output_fn(predict_fn(input_fn(body, content_type), model), "application/json")
    return json.loads(text)


def test_the_codes_the_handlers_can_write_are_the_schemas_codes() -> None:
    assert schema_codes() == inference.ERROR_CODES


def test_count_records_follow_the_schema(
    validator: jsonschema.protocols.Validator, torch_model: CountingModel, bin_jpeg: bytes, bin_png: bytes
) -> None:
    for body, content_type in ((bin_jpeg, "image/jpeg"), (bin_png, "image/png")):
        record = served(body, content_type, torch_model)
        validator.validate(record)
        assert "count" in record


def test_calibrated_count_records_follow_the_schema(
    validator: jsonschema.protocols.Validator, torch_model: CountingModel, bin_jpeg: bytes, bin_png: bytes
) -> None:
    ranges = Conformal(groups="all", scores={ALL: tuple(round(0.2 + 0.007 * i, 4) for i in range(100))})
    calibrated = replace(
        torch_model, config=replace(torch_model.config, conformal=ranges.to_dict()), ranges=ranges
    )
    for body, content_type in ((bin_jpeg, "image/jpeg"), (bin_png, "image/png")):
        record = served(body, content_type, calibrated)
        validator.validate(record)
        assert len(record["count_p_values"]) == len(record["probabilities"])
        assert record["count_low"] <= record["count_high"] and record["range_level"] == 0.9


def test_every_error_record_follows_the_schema(
    validator: jsonschema.protocols.Validator,
    torch_model: CountingModel,
    bad_requests: dict[str, tuple[bytes, str, str]],
) -> None:
    written = set()
    for name, (body, content_type, code) in bad_requests.items():
        record = served(body, content_type, torch_model)
        validator.validate(record)
        assert record["error"]["code"] == code, name
        written.add(code)
    assert written == schema_codes() - {inference.INTERNAL_ERROR}


def test_internal_error_records_follow_the_schema(
    validator: jsonschema.protocols.Validator, torch_model: CountingModel, bin_jpeg: bytes
) -> None:
    class Broken:
        name, device = "broken", "cpu"

        def __call__(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("device lost")

    inputs: list[Any] = [input_fn(bin_jpeg, "image/jpeg"), object()]  # a failed forward, an unknown input
    records = predict_fn(inputs, replace(torch_model, runtime=Broken()))
    for record in json.loads(output_fn(records, "application/json")[0]):
        validator.validate(record)
        assert record["error"]["code"] == inference.INTERNAL_ERROR
