"""Precision modes and the operand rounding that emulates tensor cores on the torch path.

Modes: ``None``/``"ieee"`` exact products for the input dtype; ``"tf32x3"`` near-fp32 on tensor cores
(the torch path computes it exactly in fp32); ``"tf32"`` operands rounded to 10 mantissa bits;
``"bf16"`` operands rounded to bfloat16. Accumulation is fp32 (fp64 for fp64 inputs).
On CUDA, :func:`torch_fp32_precision` sets torch's TF32 switches (cuBLAS, cuDNN) to match the mode.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = (None, "ieee", "tf32x3", "tf32", "bf16")


def check_precision(precision) -> str | None:
    """Validate a precision mode; returns it normalised (``None`` -> ``"ieee"``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return "ieee" if precision is None else precision


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 inputs accumulate (and return) in fp64; every 16/32-bit float in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def round_to_tf32(t: torch.Tensor) -> torch.Tensor:
    """Round an fp32 tensor to tf32 (10 explicit mantissa bits), nearest, ties away from zero.

    Ties-away is what the NVIDIA ``cvt.rna.tf32.f32`` conversion used by Triton does.
    """
    bits = t.contiguous().view(torch.int32)
    # Add half an ulp of tf32 to the magnitude, then clear the 13 dropped bits; inf/nan pass through.
    rounded = (bits + 0x1000) & ~0x1FFF
    finite = torch.isfinite(t)
    return torch.where(finite, rounded.view(torch.float32), t)


def round_operand(t: torch.Tensor, precision: str | None) -> torch.Tensor:
    """Return ``t`` in its accumulation dtype, with operands rounded as tensor cores would.

    Never modifies ``t``. fp64 inputs are rounded too when a low-precision mode is asked for.
    """
    mode = check_precision(precision)
    acc = accumulate_dtype(t.dtype)
    if mode == "bf16":
        return t.to(torch.bfloat16).to(acc)
    if mode == "tf32":
        return round_to_tf32(t.to(torch.float32)).to(acc)
    return t.to(acc)


# Which fp32 GEMM/convolution arithmetic torch may use on CUDA for each mode: "tf32" lets cuBLAS and
# cuDNN use TF32 tensor cores (operands are already rounded to tf32, so products stay exact);
# every other mode must run true fp32 (or fp64) arithmetic, so TF32 is switched off — cuDNN's
# default is on, which would silently turn an "ieee" M into a TF32 one.
TF32_ALLOWED = {"ieee": False, "tf32x3": False, "tf32": True, "bf16": False}


def _tf32_switches() -> list[tuple[object, str, object, object]]:
    """(owner, attribute, value for TF32 off, value for TF32 on) of torch's matmul and cuDNN switches.

    torch >= 2.9 has ``fp32_precision`` ("ieee"/"tf32"); older torch only ``allow_tf32``. Using one
    family only avoids torch's error on mixing the two.
    """
    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        return [(matmul, "fp32_precision", "ieee", "tf32"), (conv, "fp32_precision", "ieee", "tf32")]
    return [(matmul, "allow_tf32", False, True), (torch.backends.cudnn, "allow_tf32", False, True)]


@contextlib.contextmanager
def torch_fp32_precision(precision):
    """Within the block, torch's CUDA fp32 matmuls and convolutions use TF32 only in mode "tf32".

    Sets cuBLAS's and cuDNN's TF32 switches as :data:`TF32_ALLOWED` says and restores the caller's
    values on exit (also after an error). Harmless on CPU (the switches only act on CUDA).
    """
    allowed = TF32_ALLOWED[check_precision(precision)]
    saved = []
    try:
        for owner, name, off, on in _tf32_switches():
            saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, on if allowed else off)
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
