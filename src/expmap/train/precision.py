"""What the modules' forward passes compute in: `precision` ("auto", "fp32", "bf16")
resolved for a device, with the reason the job log gives, and the autocast context."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext

import torch

# PyTorch's own checks of the processor; private, so a build without one reads as "no"
CPU_BF16_UNITS = (("AMX", "_is_amx_tile_supported"), ("AVX-512 BF16", "_is_avx512_bf16_supported"))


def cpu_bf16_unit() -> str | None:
    """The unit with which this CPU computes bf16 natively ("AMX", "AVX-512 BF16"), or None
    where bf16 would be emulated (most laptops: slower than fp32)."""
    if not torch.backends.mkldnn.is_available():
        return None
    for unit, check in CPU_BF16_UNITS:
        if getattr(torch.cpu, check, lambda: False)():
            return unit
    return None


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """("bf16" or "fp32", why) for `precision` on `device`. "auto" is bf16 where the device
    computes it natively (a GPU that supports it, a CPU with AMX or AVX-512 BF16), else
    fp32; "fp32" and "bf16" force either."""
    if precision != "auto":
        emulated = precision == "bf16" and device.type == "cpu" and not cpu_bf16_unit()
        return precision, f"set by precision: {precision}" + (
            "; this CPU has no native bf16 and emulates it, slower than fp32" if emulated else "")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU computes bf16"
        return "fp32", "auto: this GPU does not support bf16"
    unit = cpu_bf16_unit()
    if unit:
        return "bf16", f"auto: this CPU computes bf16 natively ({unit})"
    return "fp32", "auto: this CPU has no native bf16 (no AMX or AVX-512 BF16)"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """What the modules' forward passes compute in: bfloat16, or None for fp32."""
    return torch.bfloat16 if precision_name(precision, device) == "bf16" else None


def precision_name(precision: str, device: torch.device) -> str:
    """What `precision` ("auto" included) computes in on `device`: "bf16" or "fp32"."""
    return resolve_precision(precision, device)[0]


def forward_precision(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """A context in which the modules run at `precision` (autocast; off for fp32)."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def as_fp32(outputs: tuple) -> tuple:
    """A module's named outputs in float32: the losses and metrics are computed in fp32."""
    return type(outputs)(*(t.float() for t in outputs))
