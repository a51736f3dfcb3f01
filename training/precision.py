"""Which mixed precision a training run uses: bf16 only where the GPU computes it natively.

``torch.cuda.is_bf16_supported()`` answers True on a T4 (compute capability 7.5, the GPU of the
default SageMaker instance ``ml.g4dn.xlarge``) because bf16 is *emulated* there: slow kernels, and
some convolutions fail. Native bf16 starts at compute capability 8.0 (A100, A10G, L4, H100), so
``--amp auto`` takes fp16 (with a gradient scaler) below 8.0 and bf16 from 8.0 on.

:func:`amp_choice` is pure (the device facts are arguments) so the rule is tested without a GPU;
:func:`autocast_dtype_for` reads the facts from torch; :func:`autocast` applies the choice.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch

AmpMode = Literal["auto", "bf16", "fp16", "off"]
AMP_MODES: tuple[str, ...] = ("auto", "bf16", "fp16", "off")
NATIVE_BF16_CAPABILITY = (8, 0)


def amp_choice(
    mode: str, device_type: str, capability: tuple[int, int] | None, bf16_supported: bool
) -> str | None:
    """``"bf16"``, ``"fp16"`` or None (full fp32) for ``--amp mode`` on this device.

    An explicit ``bf16``/``fp16`` is honoured on CUDA (the user asked for it); ``auto`` picks bf16
    only where it is native (capability >= 8.0 and reported supported), fp16 on older GPUs, and
    nothing off CUDA (CPU autocast is slower than fp32 for these convolutions).
    """
    if mode not in AMP_MODES:
        raise ValueError(f"--amp {mode!r}: choose one of {', '.join(AMP_MODES)}")
    if mode == "off" or device_type != "cuda":
        return None
    if mode in ("bf16", "fp16"):
        return mode
    native = capability is not None and tuple(capability) >= NATIVE_BF16_CAPABILITY
    return "bf16" if native and bf16_supported else "fp16"


def autocast_dtype_for(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp mode`` on ``device`` (asks torch about the GPU)."""
    capability = None
    bf16 = False
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        bf16 = torch.cuda.is_bf16_supported()
    choice = amp_choice(mode, device.type, capability, bf16)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(choice or "")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing (full fp32) when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
