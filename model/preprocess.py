"""Turn request bytes into the network's input; the one place that defines decoding, resize and normalisation.

Serving (every runtime, with or without torch installed) and training's image cache both go
through :func:`decode_image` and :func:`resize_for_model`, and every batch the network sees goes
through the constants of :func:`normalisation`, so a model is always fed exactly as it was
trained and validated. Pillow and numpy only: the local model server runs on ONNX Runtime
without torch.

Decoding. Pillow opens every image lazily: it reads only the header, which gives the format, the
mode, the size and the EXIF orientation before a single pixel is decoded. That is where absurd
dimensions and decompression bombs are refused. The image is then decoded (libjpeg-turbo for
JPEG), rotated upright by its EXIF orientation and made RGB (PNG, CMYK JPEG, palette, alpha,
16-bit, TIFF, ...).

Resize policy ``squash``: the whole photo is resized to ``image_size`` with Pillow's antialiased
bilinear filter, without keeping its aspect ratio. Counting needs every item in view, so nothing
is cropped; the network learns the (small, constant) distortion of ABID's ~4:3 photos.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.config import ModelConfig

JPEG_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg"})
IMAGE_CONTENT_TYPES = JPEG_CONTENT_TYPES | {"image/png", "application/x-image"}
EXIF_ORIENTATION_TAG = 0x0112


class InputError(ValueError):
    """A request the model cannot answer; raise a subclass: its ``code`` is the record's error code.

    The subclasses' codes are the serving contract's input error codes
    (``functions/bincount/serving_record.schema.json``); a new subclass needs a new code there.
    """

    code = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyBodyError(InputError):
    code = "empty_body"


class UnsupportedContentTypeError(InputError):
    code = "unsupported_content_type"


class CorruptImageError(InputError):
    code = "corrupt_image"


class ImageTooLargeError(InputError):
    code = "image_too_large"


# Peak memory of one decode (and the resize to the network's input), in bytes per pixel of the
# header's size, by how the pixels are stored while decoding; measured with
# ``python -m local.bench.decode_memory`` at 64 MP (docs/model.md, "Memory per request"), rounded up.
# A JPEG larger than ``reduce_min_side`` is decoded reduced by its DCT (draft): its cost is almost
# only the reduced image; other formats are decoded whole, then reduced right away.
DECODE_BYTES_PER_PIXEL: dict[str, float] = {
    "1": 1.5,  # bilevel and 8-bit grey: 1 byte stored, converted after the reduction
    "L": 1.5,
    "P": 6.0,  # a palette is expanded to RGB (4 bytes) before it can be reduced
    "P+transparency": 9.0,  # ... to RGBA, then premultiplied (another 4 bytes)
    "PA": 9.0,
    "I;16": 4.5,  # 16-bit grey: 2 bytes stored, an 8-bit copy made in strips, then reduced
    "I;16B": 4.5,
    "I;16L": 4.5,
    "I": 6.5,  # 32-bit grey / float: 4 bytes stored, scaled in strips
    "F": 6.5,
    "RGB": 4.6,  # Pillow stores 3 and 4 bands in 4 bytes per pixel; reduced in place of a copy
    "CMYK": 4.6,
    "YCbCr": 4.6,
    "LAB": 4.6,
    "HSV": 4.6,
    "RGBa": 4.6,
    "La": 4.6,
    "LA": 9.0,  # straight alpha: premultiplied (another 4 bytes) before the reduction
    "RGBA": 9.0,
}
DEFAULT_BYTES_PER_PIXEL = 9.0  # anything else (I;16B, RGBX ...): the dearest path


@dataclass(frozen=True)
class DecodeLimits:
    """Largest image accepted, checked from the header before any pixel is decoded.

    ``max_pixels`` (64 MP covers every camera photo; ABID's are ~0.2 MP) and ``max_side`` (strips
    like 1 x 10^6) hold for every image; ``max_decode_bytes`` is the memory one request may take
    while decoding, so the pixel limit of an image is ``max_decode_bytes`` divided by its decode
    path's bytes per pixel (:data:`DECODE_BYTES_PER_PIXEL`): a 16-bit or transparent PNG gets
    fewer pixels than a JPEG. ``reduce_min_side``: a larger image is reduced while it decodes
    (JPEG) or right after (others) by an integer factor that keeps its shorter side at least this
    long, several times the network's input (224 px), so the antialiased resize to the input
    sees nearly the same picture; 0 turns reduction off. A JPEG may always have ``max_pixels``:
    decoded reduced, the worst one (a strip too narrow to reduce, CMYK) stays within the budget.
    """

    max_pixels: int = 64_000_000
    max_side: int = 20_000
    max_decode_bytes: int = 512 * 2**20
    reduce_min_side: int = 1024

    def pixel_limit(self, header: Image.Image) -> int:
        """The most pixels an image like this one (format, mode, transparency) may have."""
        if header.format == "JPEG":
            return self.max_pixels
        return min(self.max_pixels, int(self.max_decode_bytes / path_cost(header)))

    def reduction(self, width: int, height: int) -> tuple[int, int]:
        """The integer factors (across, down) an image this size is reduced by ((1, 1): not at all).
        Each side on its own: the resize squashes the photo anyway, and a long strip shrinks too."""
        if self.reduce_min_side <= 0:
            return (1, 1)
        return (max(1, width // self.reduce_min_side), max(1, height // self.reduce_min_side))


def path_cost(header: Image.Image) -> float:
    """Bytes per pixel at the peak of decoding a non-JPEG image with this header."""
    mode = header.mode
    if mode == "P" and "transparency" in header.info:
        mode = "P+transparency"
    return DECODE_BYTES_PER_PIXEL.get(mode, DEFAULT_BYTES_PER_PIXEL)


DEFAULT_LIMITS = DecodeLimits()
LARGE_IMAGE_PIXELS = 4_000_000  # after decoding one at least this large, freed memory goes back to the OS


def normalise_content_type(content_type: str | None) -> str:
    """``"Image/JPEG; charset=binary"`` -> ``"image/jpeg"``; a missing type counts as a generic image."""
    if not content_type:
        return "application/x-image"
    return content_type.split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None) -> str:
    kind = normalise_content_type(content_type)
    if kind not in IMAGE_CONTENT_TYPES:
        raise UnsupportedContentTypeError(
            f"content type {content_type!r} is not supported; send one of {sorted(IMAGE_CONTENT_TYPES)}"
        )
    return kind


def decode_image(data: bytes | bytearray | memoryview, limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """Decode any Pillow-readable image to an upright RGB image.

    Raises an :class:`InputError` subclass for anything that is not a sane image.
    """
    if data is None or len(data) == 0:
        raise EmptyBodyError("the request body is empty")
    image = _open_header(bytes(data))
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImageError(f"image has no pixels ({width}x{height})")
    limit = limits.pixel_limit(image)
    if width * height > limit or max(width, height) > limits.max_side:
        budget_mb = limits.max_decode_bytes // 2**20
        raise ImageTooLargeError(
            f"image is {width}x{height} pixels ({image.format} {image.mode}); the limit for this kind of "
            f"image is {limit} pixels (a {budget_mb} MB decoding budget) and {limits.max_side} per side"
        )
    factor = limits.reduction(width, height)
    try:
        if image.format == "JPEG" and min(factor) > 1:
            # DCT scaling: 1/2, 1/4 or 1/8 of each side, never below reduce_min_side
            image.draft(image.mode, (-(-width // factor[0]), -(-height // factor[1])))
            factor = limits.reduction(*image.size)  # what the DCT scaling left to reduce
        return _decode_with_pillow(image, factor)
    finally:
        if width * height >= LARGE_IMAGE_PIXELS:
            release_memory()


def release_memory() -> None:
    """Give the memory a large decode freed back to the OS (glibc keeps it otherwise, the more so
    with the high trim threshold the serving processes run with); a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _open_header(raw: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(raw))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise CorruptImageError("cannot identify image file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"cannot read image header: {exc}") from exc


def _exif_orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not cost the photo: treat it as upright
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode_with_pillow(image: Image.Image, factor: tuple[int, int] = (1, 1)) -> Image.Image:
    """Decode, reduce by ``factor`` as early as the mode allows (the full-size copy closed at
    once), rotate upright, make RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            if max(factor) > 1:
                orientation = _exif_orientation(image)
                image = _reduced(image, factor)  # closes the full-size image
                if orientation != 1:  # reduce() drops the EXIF block the rotation needs
                    exif = Image.Exif()
                    exif[EXIF_ORIENTATION_TAG] = orientation
                    image.info["exif"] = exif.tobytes()
            if _exif_orientation(image) != 1:
                image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"decompression bomb refused: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise CorruptImageError(f"cannot decode image: {_first_line(exc)}") from exc


def _reduced(image: Image.Image, factor: tuple[int, int]) -> Image.Image:
    """``image`` box-reduced by ``factor``, in the cheapest mode that keeps its meaning: deep grey
    scaled to 8 bits first (in strips), palettes expanded, alpha premultiplied so that the colour
    of transparent pixels does not bleed into their neighbours. Each full-size image is closed as
    soon as the next one exists: at most two are alive at once."""

    def step(convert: Callable[[Image.Image], Image.Image]) -> None:
        nonlocal image
        previous, image = image, convert(image)
        previous.close()

    mode = image.mode
    if mode in WIDE_GREY_MODES:
        step(lambda im: _grey_to_8_bits(im, close=True))
    elif mode in ("P", "PA"):
        step(lambda im: im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB"))
    elif mode not in REDUCIBLE_MODES:
        step(lambda im: im.convert("RGBA" if "A" in im.mode else "RGB"))
    width, height = image.size
    # whole blocks only: a last partial block would make an edge pixel of another scale
    box = (0, 0, width - width % factor[0], height - height % factor[1])
    if image.mode in ("RGBA", "LA"):
        straight = image.mode
        step(lambda im: im.convert({"RGBA": "RGBa", "LA": "La"}[straight]))
        step(lambda im: im.reduce(factor, box))
        return image.convert(straight)
    step(lambda im: im.reduce(factor, box))
    return image


REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBa", "La", "I", "F")


WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
GREY_STRIP_ROWS = 256


def _grey_to_8_bits(image: Image.Image, close: bool = False) -> Image.Image:
    """16/32-bit grey to 8 bits, scaled instead of clipping everything to white: ``v * 255 /
    65535`` when any value is above 255, else as is. Strip by strip of rows (Pillow's crops, no
    whole-image copy), so that the float values cost a strip, not the image; ``close``: the image
    is closed once it is converted."""
    width, height = image.size
    extrema = image.getextrema() if width and height else (0, 0)
    peak = float(extrema[1]) if isinstance(extrema[1], int | float) else 0.0
    scale = 255.0 / 65535.0 if peak > 255 else 1.0
    out = np.empty((height, width), dtype=np.uint8)
    for top in range(0, height, GREY_STRIP_ROWS):
        bottom = min(height, top + GREY_STRIP_ROWS)
        strip = np.asarray(image.crop((0, top, width, bottom)), dtype=np.float64)
        out[top:bottom] = np.clip(strip * scale, 0, 255).astype(np.uint8)
    if close:
        image.close()
    return Image.fromarray(out, "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in WIDE_GREY_MODES:
        image, mode = _grey_to_8_bits(image), "L"
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels carry arbitrary colour; show them as white paper, as a viewer would.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def resize_for_model(image: Image.Image, config: ModelConfig) -> np.ndarray:
    """The whole upright RGB image resized to ``config.image_size``: ``uint8`` ``(H, W, 3)``.

    Pillow's bilinear filter widens with the scale (antialiased), as PyTorch's
    ``interpolate(antialias=True)`` does: on ABID photos the two differ by at most 2 grey levels,
    on 1 % of the pixels (``python -m local.bench.preprocess_bench``).
    """
    if config.resize != "squash":
        raise ValueError(f"unknown resize policy {config.resize!r}")
    height, width = config.image_size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.array(image, dtype=np.uint8)  # writable: training wraps it in a tensor


def normalisation(config: ModelConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(offset, scale)`` per channel: the network's input is ``(pixel - offset) * scale`` for
    ``uint8`` pixels, i.e. ``(x / 255 - mean) / std`` folded into one multiply-add. Training's
    batches on the GPU (``training/scoring.py``) use the same two constants."""
    return tuple(255.0 * m for m in config.mean), tuple(1.0 / (255.0 * s) for s in config.std)


def normalise(images: np.ndarray, config: ModelConfig) -> np.ndarray:
    """``uint8`` ``(N, H, W, 3)`` (or one ``(H, W, 3)``) -> the network's ``float32`` ``(N, 3, H, W)``."""
    if images.dtype != np.uint8:
        raise TypeError(f"normalise expects uint8 pixels, got {images.dtype}")
    batch = images[None] if images.ndim == 3 else images
    offset, scale = normalisation(config)
    # channels first while still uint8, then in place: 9x faster than the float image's transpose
    out = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)
    out -= np.asarray(offset, np.float32)[:, None, None]
    out *= np.asarray(scale, np.float32)[:, None, None]
    return out
