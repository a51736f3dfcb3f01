"""S3 behind ObjectStore."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from bincount.adapters.aws_errors import succeeded


class S3ObjectStore:
    def __init__(self, client: Any) -> None:
        self.client = client

    def put_json_if_absent(self, bucket: str, key: str, document: Any) -> bool:
        # Conditional write (If-None-Match: *): a retried batch never rewrites a running job's manifest.
        put = partial(
            self.client.put_object,
            Bucket=bucket,
            Key=key,
            Body=json.dumps(document, separators=(",", ":")).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
        return succeeded(put, ("PreconditionFailed", "ConditionalRequestConflict"))

    def get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.get_bytes(bucket, key))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys
