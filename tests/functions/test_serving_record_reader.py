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
