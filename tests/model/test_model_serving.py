"""The SageMaker handlers: real photos get counts, every bad request gets an error record."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from imaging import draw_bin
from PIL import Image, ImageOps

import model.inference as inference
from model.config import ModelConfig
from model.inference import (
    CountingModel,
    RequestError,
    count_record,
    input_fn,
    output_fn,
    predict_fn,
)
from model.preprocess import decode_image, normalise, resize_for_model


def encode_as(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


RECORD_KEYS = {"count", "confidence", "probabilities", "count_is_lower_bound", "model_version"}
BAD_REQUESTS = [
    "empty_body",
    "corrupt_bytes",
    "random_bytes",
    "truncated_jpeg",
    "jpeg_header_only",
    "unsupported_content_type",
    "json_body",
    "decompression_bomb_png",
    "absurd_side_png",
    "absurd_dimensions_jpeg",
]


def serve(body: bytes, content_type: str, model: CountingModel, accept: str = "application/json") -> Any:
    """One request through the chain exactly as the inference toolkit calls it."""
    payload, response_type = output_fn(predict_fn(input_fn(body, content_type), model), accept)
    assert response_type in ("application/json", "application/jsonlines")
    return json.loads(payload)


def assert_count_record(record: dict[str, Any], num_classes: int = 6) -> None:
    assert set(record) == RECORD_KEYS, record
    assert 0 <= record["count"] < num_classes
    assert len(record["probabilities"]) == num_classes
    assert abs(sum(record["probabilities"]) - 1) < 1e-3
    assert record["confidence"] == record["probabilities"][record["count"]]
    assert record["model_version"] == "bincount-test-lite0"


def exif_rotated_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode_as(draw_bin(2, seed=9), "JPEG", exif=exif, quality=90)


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/x-image", "image/jpeg; charset=binary"])
def test_jpeg_photo_gets_a_count(bin_jpeg: bytes, torch_model: CountingModel, content_type: str) -> None:
    assert_count_record(serve(bin_jpeg, content_type, torch_model))


def test_png_with_alpha_gets_a_count(bin_png: bytes, torch_model: CountingModel) -> None:
    assert_count_record(serve(bin_png, "image/png", torch_model))


@pytest.mark.parametrize(
    ("name", "fmt", "mode"),
    [
        ("grayscale_jpeg", "JPEG", "L"),
        ("cmyk_jpeg", "JPEG", "CMYK"),
        ("palette_png", "PNG", "P"),
        ("rgba_png", "PNG", "RGBA"),
        ("gray_alpha_png", "PNG", "LA"),
    ],
)
def test_unusual_colour_modes_get_a_count(
    bin_image: Image.Image, torch_model: CountingModel, name: str, fmt: str, mode: str
) -> None:
    body = encode_as(bin_image.convert(mode), fmt)
    assert Image.open(io.BytesIO(body)).mode == mode, name
    assert_count_record(serve(body, "application/x-image", torch_model))


def test_sixteen_bit_png_is_scaled_not_clipped(bin_image: Image.Image) -> None:
    gray = np.asarray(bin_image.convert("L"), dtype=np.uint16) * 257
    decoded = decode_image(encode_as(Image.fromarray(gray), "PNG"))
    assert decoded.size == bin_image.size and decoded.mode == "RGB"
    assert 60 < np.asarray(decoded).mean() < 200  # clipping would make it all white (255)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation: int) -> None:
    body = exif_rotated_jpeg(orientation)
    expected = np.array(ImageOps.exif_transpose(Image.open(io.BytesIO(body))).convert("RGB"))
    decoded = np.asarray(decode_image(body))
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 1


def test_exif_rotated_photo_gets_a_count(torch_model: CountingModel) -> None:
    assert_count_record(serve(exif_rotated_jpeg(6), "image/jpeg", torch_model))


def test_the_resize_is_torchs_antialiased_bilinear_within_two_grey_levels(bin_jpeg: bytes) -> None:
    """Pillow's resize (serving, training's cache) against ``interpolate(antialias=True)``, the
    resize the shipped model was trained with."""
    image = decode_image(bin_jpeg)
    ours = resize_for_model(image, ModelConfig()).astype(int)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None]
    theirs = torch.nn.functional.interpolate(pixels, size=(224, 224), mode="bilinear", antialias=True)
    difference = np.abs(ours - theirs[0].permute(1, 2, 0).numpy().astype(int))
    assert difference.max() <= 2 and difference.mean() < 0.05


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_request_gets_an_error_record_and_a_log_line(
    name: str,
    bad_requests: dict[str, tuple[bytes, str, str]],
    torch_model: CountingModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body, content_type, code = bad_requests[name]
    with caplog.at_level(logging.WARNING, logger="bincount.inference"):
        record = serve(body, content_type, torch_model)
    assert set(record) == {"error", "model_version"}
    assert record["error"]["code"] == code
    assert record["error"]["message"]
    assert record["model_version"] == "bincount-test-lite0"
    assert any(code in message for message in caplog.messages)


def test_size_limits_are_checked_before_decoding(
    bad_requests: dict[str, tuple[bytes, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded pixels of an oversized image")

    monkeypatch.setattr(Image.Image, "load", must_not_decode)
    for name in ("decompression_bomb_png", "absurd_side_png", "absurd_dimensions_jpeg"):
        body, content_type, _ = bad_requests[name]
        result = input_fn(body, content_type)
        assert isinstance(result, RequestError) and result.code == "image_too_large", name


def test_text_and_missing_bodies_do_not_raise(torch_model: CountingModel) -> None:
    assert input_fn("not bytes", "image/jpeg") == RequestError("corrupt_image", "cannot identify image file")
    assert isinstance(input_fn(None, "image/jpeg"), RequestError)


def test_forward_failure_becomes_internal_error_records(
    bin_jpeg: bytes, torch_model: CountingModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDA error: device-side assert triggered")

    broken_model = replace(torch_model, runtime=_Wrapped(torch_model.runtime, broken))
    records = predict_fn([input_fn(bin_jpeg, "image/jpeg")] * 2, broken_model)
    assert [r["error"]["code"] for r in records] == ["internal_error", "internal_error"]


class _Wrapped:
    """A runtime stand-in that records batch sizes (or fails) around the real one."""

    def __init__(self, inner: Any, call: Any = None) -> None:
        self.inner, self.call = inner, call
        self.batches: list[int] = []
        self.name, self.device = inner.name, inner.device

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape[0])
        return (self.call or self.inner)(batch)


def test_list_input_runs_one_batched_forward_in_order(
    bin_jpeg: bytes, bin_png: bytes, torch_model: CountingModel
) -> None:
    spy = _Wrapped(torch_model.runtime)
    model = replace(torch_model, runtime=spy)
    inputs = [input_fn(bin_jpeg, "image/jpeg"), input_fn(b"", "image/png"), input_fn(bin_png, "image/png")]
    records = predict_fn(inputs, model)
    assert spy.batches == [2]
    assert [("error" in r) for r in records] == [False, True, False]
    single = [predict_fn(inputs[0], torch_model), predict_fn(inputs[2], torch_model)]
    for batched, alone in zip([records[0], records[2]], single, strict=True):
        assert batched["count"] == alone["count"]
        np.testing.assert_allclose(batched["probabilities"], alone["probabilities"], atol=2e-3)


def test_list_input_is_split_at_max_batch(bin_jpeg: bytes, torch_model: CountingModel) -> None:
    spy = _Wrapped(torch_model.runtime)
    model = replace(torch_model, runtime=spy, settings=replace(torch_model.settings, max_batch=2))
    assert len(predict_fn([input_fn(bin_jpeg, "image/jpeg")] * 5, model)) == 5
    assert spy.batches == [2, 2, 1]


def test_jsonlines_output_has_one_record_per_line(bin_jpeg: bytes, torch_model: CountingModel) -> None:
    records = predict_fn([input_fn(bin_jpeg, "image/jpeg"), input_fn(b"", "image/jpeg")], torch_model)
    payload, content_type = output_fn(records, "application/jsonlines")
    assert content_type == "application/jsonlines"
    lines = payload.splitlines()
    assert payload.endswith("\n") and len(lines) == 2
    assert_count_record(json.loads(lines[0]))
    assert json.loads(lines[1])["error"]["code"] == "empty_body"
    single, _ = output_fn(records[0], "application/jsonlines")
    assert single.count("\n") == 1 and json.loads(single) == records[0]


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html"])
def test_json_is_the_default_answer(bin_jpeg: bytes, torch_model: CountingModel, accept: str | None) -> None:
    payload, content_type = output_fn(predict_fn(input_fn(bin_jpeg, "image/jpeg"), torch_model), accept)
    assert content_type == "application/json"
    assert_count_record(json.loads(payload))


def test_record_decoding_follows_the_config() -> None:
    probabilities = [0.05, 0.05, 0.4, 0.0, 0.1, 0.4]
    argmax = count_record(probabilities, ModelConfig(version="v"))
    assert argmax["count"] == 2 and argmax["confidence"] == 0.4
    expected = count_record(probabilities, ModelConfig(decoding="expected", version="v"))
    assert expected["count"] == 3  # round(0.05 + 0.8 + 0.4 + 2.0) = round(3.25)
    top = count_record([0.0, 0.0, 0.0, 0.0, 0.1, 0.9], ModelConfig(version="v"))
    assert top["count"] == 5 and top["count_is_lower_bound"] is True
    closed = count_record([0.0, 0.0, 0.0, 0.0, 0.1, 0.9], ModelConfig(top_class_open=False, version="v"))
    assert closed["count_is_lower_bound"] is False


def test_temperature_softens_probabilities(bin_jpeg: bytes, torch_model: CountingModel) -> None:
    image = input_fn(bin_jpeg, "image/jpeg")
    sharp = predict_fn(image, torch_model)
    soft = predict_fn(image, replace(torch_model, config=replace(torch_model.config, temperature=50.0)))
    assert max(soft["probabilities"]) < max(sharp["probabilities"])
    assert soft["count"] == sharp["count"]


def test_preprocessing_resizes_the_whole_photo_and_normalises_from_config(bin_jpeg: bytes) -> None:
    config = ModelConfig.for_arch("efficientnet_lite1")
    resized = resize_for_model(decode_image(bin_jpeg), config)
    assert resized.shape == (240, 240, 3) and resized.dtype == np.uint8
    batch = normalise(resized[None], config)
    assert batch.shape == (1, 3, 240, 240) and batch.dtype == np.float32
    manual = (resized.transpose(2, 0, 1) / 255 - np.array(config.mean)[:, None, None]) / np.array(config.std)[
        :, None, None
    ]
    np.testing.assert_allclose(batch[0], manual, rtol=1e-5, atol=1e-5)
    from training.dataset import normalise as normalise_for_training

    on_gpu_path = normalise_for_training(torch.from_numpy(resized).permute(2, 0, 1)[None], config)
    np.testing.assert_allclose(on_gpu_path.numpy(), batch, rtol=1e-6, atol=1e-6)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINCOUNT_RUNTIME", "torch")
    monkeypatch.setenv("BINCOUNT_THREADS", "3")
    monkeypatch.setenv("BINCOUNT_MAX_PIXELS", "1000")
    monkeypatch.setenv("BINCOUNT_MAX_BATCH", "not-a-number")
    settings = inference.ServingSettings.from_env()
    assert (settings.runtime, settings.threads, settings.limits.max_pixels) == ("torch", 3, 1000)
    assert settings.max_batch == 32


def test_no_url_is_ever_fetched(torch_model: CountingModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the handler opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    record = serve(b"https://example.com/bin.jpg", "application/x-image", torch_model)
    assert record["error"]["code"] == "corrupt_image"


@pytest.mark.shared_data
def test_every_shared_abid_photo_gets_a_record(shared_abid: Path, torch_model: CountingModel) -> None:
    photos = sorted(p for p in (shared_abid / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    assert photos
    inputs = [input_fn(p.read_bytes(), "image/jpeg") for p in photos]
    records = predict_fn(inputs, torch_model)
    assert len(records) == len(photos)
    for record in records:
        assert_count_record(record)
