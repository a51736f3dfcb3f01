"""A refusal (the condition or object the call depends on) is a result; every other error is not."""

from __future__ import annotations

import pytest
from bincount.adapters.aws_errors import CONDITION_FAILED, error_code, succeeded
from botocore.exceptions import ClientError


def refused_with(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutItem")


def fail(error: ClientError) -> None:
    raise error


def test_a_listed_refusal_is_false_and_success_is_true() -> None:
    assert succeeded(lambda: None, (CONDITION_FAILED,)) is True
    assert succeeded(lambda: fail(refused_with(CONDITION_FAILED)), (CONDITION_FAILED,)) is False


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDenied", ""])
def test_any_other_error_propagates(code: str) -> None:
    with pytest.raises(ClientError) as raised:
        succeeded(lambda: fail(refused_with(code)), (CONDITION_FAILED,))
    assert error_code(raised.value) == code


def test_an_answer_without_a_code_has_the_empty_code() -> None:
    assert error_code(ClientError({}, "HeadObject")) == ""
