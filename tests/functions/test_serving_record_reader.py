"""The reader side of the serving contract: ``bincount.serving_records`` accepts exactly the schema's records.

The writer side (the model's real handlers against the same schema) is
``tests/model/test_serving_record_writer.py``.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from bincount import serving_records
from bincount.serving_records import INVALID_OUTPUT, CountResult, ErrorResult, parse_result_body


def test_the_schema_is_valid_and_its_examples_follow_it() -> None:
    cls = jsonschema.validators.validator_for(serving_records.SCHEMA)
    cls.check_schema(serving_records.SCHEMA)
    for example in serving_records.SCHEMA["examples"]:
        cls(serving_records.SCHEMA).validate(example)


def test_every_example_parses_as_the_record_it_is() -> None:
    for example in serving_records.SCHEMA["examples"]:
        parsed = parse_result_body(json.dumps(example))
        if "error" in example:
            assert parsed == ErrorResult(
                example["error"]["code"], example["error"]["message"], example["model_version"]
            )
        else:
            assert isinstance(parsed, CountResult)
            assert parsed.count == example["count"]
            assert parsed.count_is_lower_bound == example["count_is_lower_bound"]


@pytest.mark.parametrize("code", sorted(serving_records.SCHEMA["$defs"]["error_code"]["enum"]))
def test_every_schema_error_code_is_read_as_that_code(code: str) -> None:
    record = {"error": {"code": code, "message": "why"}, "model_version": "m1"}
    assert parse_result_body(json.dumps(record)) == ErrorResult(code, "why", "m1")


def test_a_code_outside_the_schema_is_invalid_output_that_names_it() -> None:
    record = {"error": {"code": "gremlins", "message": "why"}, "model_version": "m1"}
    parsed = parse_result_body(json.dumps(record))
    assert isinstance(parsed, ErrorResult) and parsed.code == INVALID_OUTPUT
    assert "gremlins" in parsed.message and "why" in parsed.message


def test_the_readers_named_codes_are_the_schemas_or_the_pipelines_own() -> None:
    """``INTERNAL_ERROR`` (the review tools keep such photos reviewable) is one the model writes;
    the pipeline's own codes never collide with the model's."""
    assert serving_records.INTERNAL_ERROR in serving_records.ERROR_CODES
    assert (
        not {serving_records.INVALID_OUTPUT, serving_records.TRANSFORM_FAILED} & serving_records.ERROR_CODES
    )


def _ranged(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "count": 2,
        "confidence": 0.41,
        "probabilities": [0.01, 0.3, 0.41, 0.2, 0.05, 0.03],
        "count_is_lower_bound": False,
        "model_version": "m2",
        "count_p_values": [0.004, 0.41, 0.83, 0.27, 0.06, 0.03],
        "count_low": 1,
        "count_high": 3,
        "range_level": 0.9,
        "range_open": False,
        "range_contiguous": True,
    }
    record.update(overrides)
    return record


def test_a_calibrated_record_carries_its_range_and_an_old_one_none() -> None:
    parsed = parse_result_body(json.dumps(_ranged()))
    assert isinstance(parsed, CountResult) and parsed.range is not None
    assert (parsed.range.low, parsed.range.high, parsed.range.level) == (1, 3, 0.9)
    assert parsed.range.p_values[2] == 0.83 and parsed.range.contiguous and not parsed.range.open
    old = {k: v for k, v in _ranged().items() if not k.startswith(("count_p", "count_l", "count_h", "range"))}
    parsed_old = parse_result_body(json.dumps(old))
    assert isinstance(parsed_old, CountResult) and parsed_old.range is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"count_p_values": [0.5, 0.5]},  # not one per class
        {"count_p_values": [0.1, 0.2, 1.5, 0.1, 0.1, 0.1]},  # not a probability
        {"count_low": 4, "count_high": 3},
        {"range_level": 1.0},
        {"count_low": -1},
    ],
)
def test_a_broken_range_is_invalid_output(overrides: dict[str, object]) -> None:
    parsed = parse_result_body(json.dumps(_ranged(**overrides)))
    assert isinstance(parsed, ErrorResult) and parsed.code == INVALID_OUTPUT
