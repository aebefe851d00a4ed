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

__all__ = ["NonFiniteError", "first_non_finite"]


class NonFiniteError(ValueError, AssertionError):
    """Data that must be finite (an input, a gradient, a statistic) holds NaN or Inf."""


def first_non_finite(tensors: Sequence[torch.Tensor | None]) -> int | None:
    """Index of the first tensor holding NaN or Inf, or None when all are finite (None entries and
    empty tensors count as finite).

    One host synchronisation for the whole sequence.

    Args:
        tensors: tensors of any shapes, dtypes and devices.
    Returns:
        the index into ``tensors``, or None.
    """
    flags = [
        (index, torch.isfinite(tensor).all())
        for index, tensor in enumerate(tensors)
        if tensor is not None and tensor.numel() > 0 and tensor.is_floating_point()
    ]
    if not flags:
        return None
    device = flags[0][1].device
    finite = torch.stack([flag.to(device) for _, flag in flags]).tolist()
    for (index, _), ok in zip(flags, finite):
        if not ok:
            return index
    return None
