"""SageMaker Batch Transform behind TransformJobs."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from bincount.adapters.aws_errors import error_code
from bincount.ports import JobSubmissionError

# CreateTransformJob: ResourceInUse = the (deterministic) name exists, which is success for us.
ALREADY_EXISTS = "ResourceInUse"
RETRYABLE = frozenset(
    {"ThrottlingException", "ResourceLimitExceeded", "ServiceUnavailable", "InternalFailure"}
)


class SageMakerTransformJobs:
    def __init__(self, client: Any) -> None:
        self.client = client

    def create(self, request: dict[str, Any]) -> bool:
        try:
            self.client.create_transform_job(**request)
        except ClientError as error:
            code = error_code(error)
            message = str(error.response.get("Error", {}).get("Message", ""))
            if code == ALREADY_EXISTS:
                return False
            raise JobSubmissionError(code, message, retryable=code in RETRYABLE) from error
        return True

    def count_in_progress(self, name_prefix: str, limit: int) -> int:
        count = 0
        paginator = self.client.get_paginator("list_transform_jobs")
        for page in paginator.paginate(StatusEquals="InProgress", NameContains=name_prefix):
            names = [job["TransformJobName"] for job in page.get("TransformJobSummaries", [])]
            count += sum(1 for name in names if name.startswith(name_prefix))
            if count >= limit:
                return count
        return count

    def describe(self, job_name: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = self.client.describe_transform_job(TransformJobName=job_name)
        except ClientError as error:
            # SageMaker answers an unknown name with ValidationException "Could not find job".
            if error_code(error) in ("ValidationException", "ResourceNotFound"):
                return None
            raise
        return response
