"""DynamoDB and S3 behind the human corrections (bincount/corrections.py) and the review tools.

Calls made (what a reviewer's IAM policy must allow): on the counts table ``GetItem``,
``Query``, ``Scan`` and ``UpdateItem`` of the label fields only (``put_label``: the key,
``corrections.LABEL_FIELDS`` and the version condition's fields, no ``ReturnValues``); on the
ingest bucket ``GetObject`` and ``GetObjectVersion`` (a photo is read as the object version its
record names; ``HeadObject`` is authorised by them; presigned URLs are signed with them) and
``ListBucket`` (so a deleted photo answers 404, not 403). No ``PutEvents``: the corrections
function publishes from the stored label.

A photo is one upload: with an S3 version id the object version itself is read (``VersionId``),
else (a ``sequencer:``/``etag:`` identity, e.g. the local stack) the key, only while its ETag is
still the record's (``IfMatch``): a re-upload's bytes are never shown for another upload's record.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import PurePosixPath
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError

from bincount.adapters.aws_errors import error_code, succeeded
from bincount.adapters.dynamodb import set_if
from bincount.adapters.s3_versions import GONE_CODES
from bincount.corrections import PhotoGone, RecordVersion
from bincount.count_records import bin_pk
from bincount.image_formats import CONTENT_TYPES
from bincount.uploads import ImageObject

IMAGE_PREFIX = "IMAGE#"
#: S3's answers for an upload that is not there (HEAD answers a bare 404/NotFound).
MISSING_CODES = GONE_CODES | {"NotFound"}


class DynamoLabelStore:
    """The conditional label write and the reads the review console and export need."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def put_label(self, bin_id: str, record_sk: str, attributes: dict[str, Any], seen: RecordVersion) -> bool:
        """One conditional UpdateItem: the record must still be the version the reviewer saw."""
        extra: dict[str, Any] = {
            "#etag": "etag",
            "#recorded": "recorded_at",
            "#reviewed": "reviewed_at",
            ":seen_etag": seen.etag,
            ":seen_recorded": seen.recorded_at,
        }
        condition = "#etag = :seen_etag AND #recorded = :seen_recorded AND "
        if seen.reviewed_at:
            condition += "#reviewed = :seen_reviewed"
            extra[":seen_reviewed"] = seen.reviewed_at
        else:
            condition += "attribute_not_exists(#reviewed)"
        return set_if(self.table, {"pk": bin_pk(bin_id), "sk": record_sk}, attributes, condition, extra)

    def _items(self, operation: str, **request: Any) -> Iterator[dict[str, Any]]:
        """Every item a Query or Scan answers, page by page (the resource API has no paginator)."""
        call = getattr(self.table, operation)
        while True:
            page = call(**request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def bin_items(self, bin_id: str) -> list[dict[str, Any]]:
        """Every item of one bin (LATEST and its IMAGE# records): one paginated Query."""
        return list(self._items("query", KeyConditionExpression=Key("pk").eq(bin_pk(bin_id))))

    def scan(self, condition: ConditionBase | None = None) -> Iterator[dict[str, Any]]:
        """Every item of the table (matching ``condition``): one paginated Scan."""
        return self._items("scan", **({"FilterExpression": condition} if condition is not None else {}))

    def labelled_images(self, since: str = "") -> Iterator[dict[str, Any]]:
        """IMAGE# records that carry a human label (reviewed at or after ``since``)."""
        condition = Attr("sk").begins_with(IMAGE_PREFIX) & Attr("human_count").exists()
        if since:
            condition = condition & Attr("reviewed_at").gte(since)
        return self.scan(condition)


def version_params(image: ImageObject) -> dict[str, str]:
    """GetObject/HeadObject parameters that name exactly this upload."""
    params = {"Bucket": image.bucket, "Key": image.key}
    if image.version_id:
        params["VersionId"] = image.version_id
    elif image.etag:
        params["IfMatch"] = f'"{image.etag}"'
    return params


class S3Photos:
    """The photos themselves (one object version each): existence, bytes, presigned URLs."""

    def __init__(self, client: Any, url_expiry_s: int = 3600) -> None:
        self.client = client
        self.url_expiry_s = url_expiry_s

    def exists(self, image: ImageObject) -> bool:
        """The upload the record describes is still readable."""
        return succeeded(partial(self.client.head_object, **version_params(image)), MISSING_CODES)

    def get(self, image: ImageObject) -> tuple[bytes, str]:
        """(bytes, content type) of one upload; PhotoGone when that version is not there."""
        try:
            response = self.client.get_object(**version_params(image))
        except ClientError as error:
            if error_code(error) in MISSING_CODES:
                raise PhotoGone(
                    f"photo {image.key} ({image.version}) is no longer in bucket {image.bucket}"
                ) from error
            raise
        body: bytes = response["Body"].read()
        return body, str(response.get("ContentType") or "image/jpeg")

    def presigned_url(self, image: ImageObject) -> str:
        """A URL the browser can load; names the version (an ``IfMatch`` cannot ride in a URL).

        S3 answers with the Content-Type its uploader stored, which may be ``text/html``: the URL
        pins ``ResponseContentType`` to the image type of the key's suffix (the only suffixes the
        batcher admits; anything else is served as opaque bytes), so a browser shown the URL never
        renders the bytes as a page.
        """
        suffix = PurePosixPath(image.key).suffix.lower()
        params = {
            "Bucket": image.bucket,
            "Key": image.key,
            "ResponseContentType": CONTENT_TYPES.get(suffix, "application/octet-stream"),
            "ResponseContentDisposition": "inline",
        }
        if image.version_id:
            params["VersionId"] = image.version_id
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.url_expiry_s
        )
        return url
