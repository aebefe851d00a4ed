"""Pure-PyTorch path: the CPU backend and, in float64, a second reference.

Every function follows the internal backend contract: validated inputs, sums (never means) in
fp32 (fp64 for fp64 inputs), operands rounded per precision mode before any product, work over
batch chunks so peak extra memory stays within ``chunk`` items (256 MB of temporaries by default).
"""

from .conv2d import conv2d_input_cov_torch, conv2d_input_grad_torch
from .conv2d_growth import conv2d_full_growth_stats_torch, conv2d_restricted_growth_stats_torch
from .linear import (
    grad_cov_torch,
    linear_cross_cov_torch,
    linear_input_cov_torch,
    linear_input_grad_torch,
)

__all__ = [
    "linear_input_cov_torch",
    "linear_input_grad_torch",
    "linear_cross_cov_torch",
    "grad_cov_torch",
    "conv2d_input_cov_torch",
    "conv2d_input_grad_torch",
    "conv2d_restricted_growth_stats_torch",
    "conv2d_full_growth_stats_torch",
]
