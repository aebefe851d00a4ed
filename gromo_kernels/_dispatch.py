"""Per-statistic backend choice for ``backend="auto"`` on CUDA, and precision on the torch path.

On CUDA, ``"auto"`` takes, for each statistic, the path expected to be fastest at equal
(exact-per-mode) results — the table below, also in the README. The Triton Gram kernel wins where
its fused im2col gather replaces a materialised unfold (conv S, the conv-of-conv terms); where
the product is a plain GEMM (linear statistics, E) or cuDNN's weight-gradient kernel applies (the
M of a conv), the torch path is kept. Off CUDA, with an explicit backend or with
``GROMO_KERNELS_BACKEND`` or a ``use_backend`` block forcing one, :func:`gromo_kernels._backend.resolve_backend` decides alone.

Every torch-backend call runs inside :func:`torch_fp32_precision`, so cuBLAS/cuDNN use TF32 only in
precision "tf32" (cuDNN's default would otherwise turn an "ieee" M into a TF32 one); the Triton
kernels choose their dot precision themselves.
"""

from __future__ import annotations

import functools

import torch

from ._backend import forced_backend, resolve_backend, triton_importable
from ._precision import torch_fp32_precision

# Statistic -> backend that "auto" picks on CUDA (when triton imports).
CUDA_AUTO = {
    "linear_input_cov": "torch",  # x̃ᵀx̃: one dense cuBLAS GEMM
    "linear_input_grad": "torch",
    "linear_cross_cov": "torch",
    "grad_cov": "torch",
    "conv2d_input_cov": "triton",  # S: im2col gathered in-kernel, no unfold
    "conv2d_input_grad": "torch",  # M: cuDNN's weight gradient
    "conv2d_restricted_growth_stats": "triton",
    "conv2d_full_growth_stats": "triton",
}
# layer_statistics names per layer kind -> the function whose backend they follow.
LAYER_STATISTIC = {
    "linear": {"s": "linear_input_cov", "m": "linear_input_grad", "e": "grad_cov",
               "s_growth": "linear_input_cov", "m_prev": "linear_input_grad",
               "cross_cov": "linear_cross_cov"},
    "conv2d": {"s": "conv2d_input_cov", "m": "conv2d_input_grad", "e": "grad_cov"},
}
LAYER_STATISTIC["conv2d_restricted"] = {**LAYER_STATISTIC["conv2d"], "s_growth": "conv2d_input_cov",
                                        "m_prev": "conv2d_restricted_growth_stats",
                                        "cross_cov": "conv2d_restricted_growth_stats"}
LAYER_STATISTIC["conv2d_full"] = {**LAYER_STATISTIC["conv2d"], "s_growth": "conv2d_full_growth_stats",
                                  "m_prev": "conv2d_full_growth_stats",
                                  "cross_cov": "conv2d_full_growth_stats"}


def statistic_backend(op: str, backend: str, *tensors: torch.Tensor) -> str:
    """The backend that serves statistic ``op``: the CUDA table for "auto" on CUDA, else resolve_backend.

    Raises:
        ValueError / RuntimeError: as :func:`gromo_kernels._backend.resolve_backend`.
    """
    on_cuda = any(t is not None and t.is_cuda for t in tensors)
    if backend == "auto" and on_cuda and triton_importable() and forced_backend() is None:
        return CUDA_AUTO[op]
    return resolve_backend(backend, *tensors)


def layer_backends(kind: str, names, backend: str, *tensors: torch.Tensor) -> dict[str, str]:
    """name -> backend for each statistic of a ``layer_statistics`` call (see :func:`statistic_backend`)."""
    return {name: statistic_backend(LAYER_STATISTIC[kind][name], backend, *tensors) for name in names}


def with_precision(fn, backend: str):
    """``fn`` itself for triton; for torch, ``fn`` run under torch_fp32_precision(its ``precision=``)."""
    if backend != "torch":
        return fn

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch_fp32_precision(kwargs.get("precision")):
            return fn(*args, **kwargs)

    return run
