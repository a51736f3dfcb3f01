"""``--amp auto``: bf16 only where the GPU computes it natively, fp16 on a T4 (ml.g4dn)."""

from __future__ import annotations

import pytest
import torch

from training.precision import amp_choice, autocast_dtype_for


@pytest.mark.parametrize(
    ("capability", "bf16_supported", "expected"),
    [
        ((7, 5), True, "fp16"),  # T4 (ml.g4dn): torch reports bf16 "supported" through emulation
        ((7, 0), False, "fp16"),  # V100 (ml.p3)
        ((8, 0), True, "bf16"),  # A100 (ml.p4d)
        ((8, 6), True, "bf16"),  # A10G (ml.g5)
        ((9, 0), True, "bf16"),  # H100/H200 (ml.p5)
        ((8, 6), False, "fp16"),  # native hardware, but this torch build says no
    ],
)
def test_auto_takes_bf16_only_where_native(
    capability: tuple[int, int], bf16_supported: bool, expected: str
) -> None:
    assert amp_choice("auto", "cuda", capability, bf16_supported) == expected


def test_explicit_modes_and_cpu() -> None:
    assert amp_choice("bf16", "cuda", (7, 5), True) == "bf16"  # asked for: honoured
    assert amp_choice("fp16", "cuda", (9, 0), True) == "fp16"
    assert amp_choice("off", "cuda", (9, 0), True) is None
    for mode in ("auto", "bf16", "fp16"):
        assert amp_choice(mode, "cpu", None, False) is None
    with pytest.raises(ValueError, match="choose one of"):
        amp_choice("fp8", "cuda", (9, 0), True)


def test_torch_device_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert autocast_dtype_for("auto", torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype_for("auto", torch.device("cuda")) is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert autocast_dtype_for("auto", torch.device("cuda")) is torch.bfloat16
