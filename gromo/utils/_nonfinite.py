"""Non-finite data (NaN / Inf) in inputs, gradients and statistics: the one error type and its check.

A NaN or an Inf in a batch reaches every sum it takes part in (NaN·0 and Inf·0 are NaN), so the
small statistic sums (D×D) reveal a bad input or gradient (N×D) without reading the batch again:
checking the sums is the cheap place to look, and all of them are checked with ONE host sync.

``NonFiniteError`` derives from both ``ValueError`` (what gromo_kernels raises for a non-finite
argument) and ``AssertionError`` (what GroMo raises when a NaN reaches its solves), so code written
against either keeps catching it (numpy's ``AxisError(ValueError, IndexError)`` idiom).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["NonFiniteError", "first_non_finite", "has_nan"]

# half sums overflow at 65504 (fp16): sum them in float32
_SUM_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


class NonFiniteError(ValueError, AssertionError):
    """Data that must be finite (an input, a gradient, a statistic) holds NaN or Inf."""


def first_non_finite(tensors: Sequence[torch.Tensor | None]) -> int | None:
    """Index of the first tensor holding NaN or Inf, or None when all are finite (None entries and
    empty tensors count as finite).

    One host synchronisation for the whole sequence (one more per tensor whose sum is not finite).

    Args:
        tensors: tensors of any shapes, dtypes and devices.
    Returns:
        the index into ``tensors``, or None.
    """
    candidates = [
        (index, tensor)
        for index, tensor in enumerate(tensors)
        if tensor is not None and tensor.numel() > 0 and tensor.is_floating_point()
    ]
    if not candidates:
        return None
    # A sum is non-finite when a term is NaN / Inf (no false negative) or when finite terms
    # overflow (rare): one reduction per tensor, no boolean temporary, and the exact test runs
    # only on the tensors whose sum is not finite.
    device = candidates[0][1].device
    sums = torch.stack([tensor.sum(dtype=_SUM_DTYPE.get(tensor.dtype)).to(device, torch.float64)
                        for _, tensor in candidates])
    suspicious = [i for i, ok in enumerate(torch.isfinite(sums).tolist()) if not ok]
    for position in suspicious:
        index, tensor = candidates[position]
        if not bool(torch.isfinite(tensor).all()):
            return index
    return None


def has_nan(tensor: torch.Tensor) -> bool:
    """``bool(torch.isnan(tensor).any())`` (GroMo's NaN test), answered by one sum where the sum is
    finite: no boolean temporary, a fifth of the cost on a large CPU statistic."""
    if tensor.numel() == 0 or not tensor.is_floating_point():
        return False
    if bool(torch.isfinite(tensor.sum(dtype=_SUM_DTYPE.get(tensor.dtype)))):
        return False
    return bool(torch.isnan(tensor).any())
