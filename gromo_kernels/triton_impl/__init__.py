"""Triton kernels and their launchers. Imported lazily, only when triton exists.

Every statistic is a block of ZᵀZ for a virtual Z whose columns are im2col gathers (gram.py); the
launchers below implement the internal backend contract (gromo_kernels._contract).
"""

from .conv2d import conv2d_input_cov_triton, conv2d_input_grad_triton
from .conv2d_growth import conv2d_full_growth_stats_triton, conv2d_restricted_growth_stats_triton
from .layer import layer_statistics_triton
from .linear import (
    grad_cov_triton,
    linear_cross_cov_triton,
    linear_input_cov_triton,
    linear_input_grad_triton,
)

__all__ = [
    "linear_input_cov_triton",
    "linear_input_grad_triton",
    "linear_cross_cov_triton",
    "grad_cov_triton",
    "conv2d_input_cov_triton",
    "conv2d_input_grad_triton",
    "conv2d_restricted_growth_stats_triton",
    "conv2d_full_growth_stats_triton",
    "layer_statistics_triton",
]
