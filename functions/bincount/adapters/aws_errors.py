"""What an AWS error answer means to the adapters: its code, and "refused" as opposed to "failed".

Conditional writes (a DynamoDB condition, S3's ``If-None-Match``) and existence checks (HEAD)
answer a refusal with a ``ClientError`` whose code says so. To the services a refusal is a
result (the item was there, the object is gone): ``succeeded`` turns it into ``False`` and lets
every other error propagate, so a throttled or denied call is never mistaken for one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from botocore.exceptions import ClientError

#: DynamoDB's answer to a write whose ConditionExpression does not hold.
CONDITION_FAILED = "ConditionalCheckFailedException"


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def succeeded(call: Callable[[], object], refusals: Collection[str]) -> bool:
    """Make one call: True when it did its work, False when AWS refused it with one of ``refusals``."""
    try:
        call()
    except ClientError as error:
        if error_code(error) in refusals:
            return False
        raise
    return True
