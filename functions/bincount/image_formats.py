"""Which files are photos: the image suffixes and the content type each one is sent with.

The one home of this knowledge (docs/ARCHITECTURE.md, "Contracts"): the batcher forwards keys with
these suffixes under these content types, and the training, evaluation and benchmark tools read
the same files from folders. Standard library only, so everything can import it: the Lambdas, the
local tools and the training container (``training.sagemaker.launcher`` stages this file next to the code).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
CONTENT_TYPES: Mapping[str, str] = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
#: SageMaker's generic image type, for a suffix outside CONTENT_TYPES (the model sniffs the bytes).
FALLBACK_CONTENT_TYPE = "application/x-image"
#: How each supported format's bytes begin (JPEG's SOI marker, the PNG signature): what the bytes
#: are, whatever name or Content-Type their uploader gave them.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def content_type_for(name: str | PurePosixPath) -> str:
    """The ContentType a photo is sent with; unknown suffixes get SageMaker's generic type."""
    return CONTENT_TYPES.get(PurePosixPath(str(name)).suffix.lower(), FALLBACK_CONTENT_TYPE)


def sniff_content_type(data: bytes) -> str | None:
    """The image type of ``data`` by its leading bytes, or None when it is no supported image."""
    return next((content_type for magic, content_type in SIGNATURES if data.startswith(magic)), None)
