"""The backend contract of the statistics: options, the op table, backend choice per call.

Each backend package (gromo_kernels.torch_impl, gromo_kernels.triton_impl) exports one function per
statistic op, named in :data:`BACKEND_OPS`. The public layer calls them on validated, detached
inputs with positive batches and widths; they return sums in fp32 (fp64 for fp64 inputs). The
functions are looked up when called, so triton_impl is imported only when triton serves a call.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import torch

from ._backend import unknown_backend
from ._dispatch import statistic_backend, with_precision
from ._precision import check_precision
from ._validation import check_finite, check_flag

PACKAGES = {"torch": "gromo_kernels.torch_impl", "triton": "gromo_kernels.triton_impl"}
# Statistic op -> the function each backend package exports for it. "layer_statistics" is the
# optional fused path (several statistics of one layer in one call); torch has none.
BACKEND_OPS = {
    "linear_input_cov": {"torch": "linear_input_cov_torch", "triton": "linear_input_cov_triton"},
    "linear_input_grad": {"torch": "linear_input_grad_torch", "triton": "linear_input_grad_triton"},
    "linear_cross_cov": {"torch": "linear_cross_cov_torch", "triton": "linear_cross_cov_triton"},
    "grad_cov": {"torch": "grad_cov_torch", "triton": "grad_cov_triton"},
    "conv2d_input_cov": {"torch": "conv2d_input_cov_torch", "triton": "conv2d_input_cov_triton"},
    "conv2d_input_grad": {"torch": "conv2d_input_grad_torch", "triton": "conv2d_input_grad_triton"},
    "conv2d_restricted_growth_stats": {"torch": "conv2d_restricted_growth_stats_torch",
                                       "triton": "conv2d_restricted_growth_stats_triton"},
    "conv2d_full_growth_stats": {"torch": "conv2d_full_growth_stats_torch",
                                 "triton": "conv2d_full_growth_stats_triton"},
    "layer_statistics": {"triton": "layer_statistics_triton"},
}


def _backend_function(backend: str, op: str):
    """The function backend ``backend`` exports for ``op``, or None when it has none."""
    name = BACKEND_OPS[op].get(backend)
    if name is None:
        return None
    return getattr(importlib.import_module(PACKAGES[backend]), name, None)


class Options(NamedTuple):
    """Normalised keyword options: backend name (unresolved), precision mode, chunk, finite check."""

    backend: str
    precision: str
    chunk: int | None
    check_finite: bool


def options(backend, precision, chunk, check_finite) -> Options:
    """The keyword options every statistic takes, checked (messages name the option)."""
    if not isinstance(backend, str):
        raise unknown_backend(backend)
    mode = check_precision(precision)
    if chunk is not None:
        rule = "chunk must be None or a positive int, got {}"
        if not isinstance(chunk, int) or isinstance(chunk, bool):
            raise TypeError(rule.format(type(chunk).__name__))
        if chunk < 1:
            raise ValueError(rule.format(chunk))
    return Options(backend, mode, chunk, check_flag("check_finite", check_finite))


def resolve(opts: Options, op: str, *tensors: torch.Tensor) -> str:
    """The backend of statistic ``op`` (per-statistic on CUDA with "auto": gromo_kernels._dispatch)."""
    return statistic_backend(op, opts.backend, *tensors)


def implementation(backend: str, op: str):
    """The backend's function for ``op`` (torch ones run under the precision's cuBLAS flags)."""
    fn = _backend_function(backend, op)
    if fn is None:
        raise NotImplementedError(f"the {backend} backend does not implement {op} yet")
    return with_precision(fn, backend)


def fused_implementation(backend: str):
    """The backend's fused layer_statistics, or None when it has none."""
    return _backend_function(backend, "layer_statistics")


def finite(opts: Options, **tensors: torch.Tensor | None) -> None:
    """check_finite on the given tensors when the call asked for it."""
    if opts.check_finite:
        for name, t in tensors.items():
            if t is not None:
                check_finite(name, t)
