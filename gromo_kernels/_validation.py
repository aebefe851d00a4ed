"""Argument checks shared by the public entry points. Every message names the argument."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, t, *, ndim: int | None = None, min_ndim: int | None = None,
                 shape_hint: str = "") -> torch.Tensor:
    """A floating tensor of the expected rank; TypeError for non-tensors/int/complex, ValueError for rank."""
    hint = f" {shape_hint}" if shape_hint else ""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{hint}, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating tensor (float16, bfloat16, float32 or float64), got {t.dtype}"
        )
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions{hint}, got shape {tuple(t.shape)}")
    if min_ndim is not None and t.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s){hint}, got shape {tuple(t.shape)}"
        )
    return t


def check_same_device_dtype(**tensors: torch.Tensor | None) -> None:
    """All given tensors on one device with one dtype; ValueError/TypeError names the odd one out."""
    items = [(k, v) for k, v in tensors.items() if v is not None]
    if not items:
        return
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}")
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}")


def check_finite(name: str, t: torch.Tensor) -> None:
    """ValueError if ``t`` holds NaN or Inf (a host synchronisation: only where the caller asks)."""
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")


def check_flag(name: str, value) -> bool:
    """A real bool (so ``bias=1`` or ``bias=None`` is caught)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value
