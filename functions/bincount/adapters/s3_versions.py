"""S3 behind staging.VersionCopier: HEAD the staged copy, CopyObject the notified version."""

from __future__ import annotations

from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from bincount.adapters.aws_errors import error_code, succeeded
from bincount.staging import VersionGone
from bincount.uploads import ImageObject

# NoSuchKey/NoSuchVersion: deleted; PreconditionFailed: overwritten (unversioned, ETag check);
# InvalidArgument: S3's answer to a malformed or foreign version id.
GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "PreconditionFailed", "InvalidArgument", "404", "412"})
#: HEAD of a key that is not there.
ABSENT_CODES = ("404", "NoSuchKey", "NotFound")


class S3VersionCopier:
    def __init__(self, client: Any) -> None:
        self.client = client

    def exists(self, bucket: str, key: str) -> bool:
        return succeeded(partial(self.client.head_object, Bucket=bucket, Key=key), ABSENT_CODES)

    def copy_version(self, image: ImageObject, bucket: str, key: str) -> None:
        source: dict[str, str] = {"Bucket": image.bucket, "Key": image.key}
        request: dict[str, Any] = {"Bucket": bucket, "Key": key, "MetadataDirective": "COPY"}
        if image.version_id and image.version_id != "null":
            source["VersionId"] = image.version_id
        elif image.etag:
            request["CopySourceIfMatch"] = f'"{image.etag}"'
        try:
            self.client.copy_object(CopySource=source, **request)
        except ClientError as error:
            if error_code(error) in GONE_CODES:
                where = f"s3://{image.bucket}/{image.key} ({image.version})"
                raise VersionGone(f"{error_code(error)}: {where}") from error
            raise
