"""The per-statistic public functions: validate -> pick backend -> compute.

Each checks its arguments (gromo_kernels._validation), detaches its inputs, picks the backend of its
statistic (gromo_kernels._contract) and hands the validated operands to
gromo_kernels._statistics_compute, which deals with empty batches and zero widths before calling the
backend. Exposed as gromo_kernels.statistics.<name> (``__module__`` says so).
"""

from __future__ import annotations

import torch

from . import _statistics_compute as compute
from ._contract import finite, options, resolve
from ._validation import (
    check_channel_dim,
    check_flag,
    check_geometry,
    check_grad_grid,
    check_image,
    check_prev_grid,
    check_rows,
    check_same_device_dtype,
    check_same_leading,
    check_tensor,
    conv_geometry,
    output_grid,
)
from .results import FullGrowthStats, RestrictedGrowthStats

__all__ = [
    "linear_input_cov",
    "linear_input_grad",
    "linear_cross_cov",
    "grad_cov",
    "conv2d_input_cov",
    "conv2d_input_grad",
    "conv2d_restricted_growth_stats",
    "conv2d_full_growth_stats",
]


def linear_input_cov(x: torch.Tensor, *, bias: bool = True, backend: str = "auto", precision=None,
                     check_finite: bool = False) -> torch.Tensor:
    """S = Σ_rows x̃ x̃ᵀ for x (..., d) -> (d+b, d+b), x̃ = [x ; 1] when ``bias``.

    Args:
        x: (..., d) floating tensor; every leading dimension is a row of the sum.
        bias: append a ones feature last.
        backend: "auto", "torch" or "triton".
        precision: None, "ieee", "tf32x3", "tf32" or "bf16".
        check_finite: raise on NaN/Inf in the inputs.
    Returns:
        (d+b, d+b) sum in fp32 (fp64 for fp64 inputs).
    Raises:
        TypeError: non-floating x or non-bool flags.  ValueError: rank, NaN/Inf, unknown option.
        RuntimeError: backend="triton" that cannot run.
    """
    opts = options(backend, precision, None, check_finite)
    bias = check_flag("bias", bias)
    x = check_rows("x", x, what="d")
    finite(opts, x=x)
    name = resolve(opts, "linear_input_cov", x)
    return compute.linear_input_cov(compute.as_rows(x), bias, opts, name)


def _row_operands(opts, first, second):
    """Two (name, tensor, width letter) row operands checked; the second has the first's rows."""
    (a_name, a, a_what), (b_name, b, b_what) = first, second
    a = check_rows(a_name, a, what=a_what)
    b = check_rows(b_name, b, what=b_what)
    check_same_device_dtype(**{a_name: a, b_name: b})
    check_same_leading(b_name, b, a_name, a, b_what)
    finite(opts, **{a_name: a, b_name: b})
    return a, b


def linear_input_grad(x: torch.Tensor, grad: torch.Tensor, *, bias: bool = True, backend: str = "auto",
                      precision=None, check_finite: bool = False) -> torch.Tensor:
    """M = Σ_rows x̃ dAᵀ for x (..., d), grad (..., o) -> (d+b, o).

    Args:
        x: (..., d) layer input.
        grad: (..., o) gradient of the loss w.r.t. the pre-activation, same leading dimensions as x.
        bias, backend, precision, check_finite: as in :func:`linear_input_cov`.
    Returns:
        (d+b, o) sum in fp32 (fp64 for fp64 inputs).
    Raises:
        TypeError / ValueError / RuntimeError: as in :func:`linear_input_cov`, plus mismatched
        leading dimensions, devices or dtypes between x and grad.
    """
    opts = options(backend, precision, None, check_finite)
    bias = check_flag("bias", bias)
    x, grad = _row_operands(opts, ("x", x, "d"), ("grad", grad, "o"))
    name = resolve(opts, "linear_input_grad", x, grad)
    return compute.linear_input_grad(compute.as_rows(x), compute.as_rows(grad), bias, opts, name)


def linear_cross_cov(x_prev: torch.Tensor, x: torch.Tensor, *, bias_prev: bool = True, bias: bool = True,
                     backend: str = "auto", precision=None, check_finite: bool = False) -> torch.Tensor:
    """P = Σ_rows x̃₋₂ x̃ᵀ for x_prev (..., dp), x (..., d) -> (dp+bp, d+b).

    Args:
        x_prev: (..., dp) input of the previous linear layer.
        x: (..., d) input of this layer, same leading dimensions.
        bias_prev, bias: append a ones feature to x_prev / x.
        backend, precision, check_finite: as in :func:`linear_input_cov`.
    Returns:
        (dp+bp, d+b) sum in fp32 (fp64 for fp64 inputs).
    Raises:
        TypeError / ValueError / RuntimeError: as in :func:`linear_input_grad`.
    """
    opts = options(backend, precision, None, check_finite)
    bias_prev = check_flag("bias_prev", bias_prev)
    bias = check_flag("bias", bias)
    x_prev, x = _row_operands(opts, ("x_prev", x_prev, "dp"), ("x", x, "d"))
    name = resolve(opts, "linear_cross_cov", x_prev, x)
    return compute.linear_cross_cov(compute.as_rows(x_prev), compute.as_rows(x), bias_prev, bias, opts,
                                    name)


def grad_cov(grad: torch.Tensor, *, channel_dim: int = -1, backend: str = "auto", precision=None,
             check_finite: bool = False) -> torch.Tensor:
    """E = Σ_positions dA dAᵀ for grad with o channels at ``channel_dim`` -> (o, o).

    Args:
        grad: any shape with at least one dimension; every non-channel index is a row of the sum
            (conv: (n, C_out, H_o, W_o) with channel_dim=1).
        channel_dim: the channel dimension.
        backend, precision, check_finite: as in :func:`linear_input_cov`.
    Returns:
        (o, o) sum in fp32 (fp64 for fp64 inputs).
    Raises:
        TypeError / ValueError / RuntimeError: as in :func:`linear_input_cov`; channel_dim out of range.
    """
    opts = options(backend, precision, None, check_finite)
    check_tensor("grad", grad, min_ndim=1, shape_hint="(..., o, ...) with channels at channel_dim")
    dim = check_channel_dim(grad, channel_dim)
    grad = grad.detach()
    finite(opts, grad=grad)
    name = resolve(opts, "grad_cov", grad)
    rows = grad.movedim(dim, -1)
    return compute.grad_cov(compute.as_rows(rows), opts, name)


def _conv_operands(x, grad, kernel_size, stride, padding, dilation):
    """x (and grad, unless None) checked against the conv's geometry; detached, with the geometry."""
    geometry = conv_geometry(kernel_size, stride, padding, dilation)
    x = check_image("x", x, "n, C, H, W")
    if grad is None:
        output_grid("x", x.shape[2:], geometry, "the convolution")
        return x, None, geometry
    grad = check_image("grad", grad, "n, C_out, H_o, W_o")
    check_same_device_dtype(x=x, grad=grad)
    grid = output_grid("x", x.shape[2:], geometry, "the convolution")
    check_grad_grid(grad, x.shape[0], "x", x.shape[2:], grid, "the convolution")
    return x, grad, geometry


def conv2d_input_cov(x: torch.Tensor, kernel_size, *, stride=1, padding=0, dilation=1, bias: bool = True,
                     backend: str = "auto", precision=None, chunk: int | None = None,
                     check_finite: bool = False) -> torch.Tensor:
    """S = Σ_{i,l} U[i,:,l] U[i,:,l]ᵀ for x (n, C, H, W), U its unfold (+ ones row) -> (D, D).

    D = C·kh·kw + b; feature order c·kh·kw + i·kw + j (torch F.unfold), bias last.

    Args:
        x: (n, C, H, W) conv input.
        kernel_size: int, pair, or a Conv2dGeometry (then stride/padding/dilation stay default).
        stride, padding, dilation: int or pair.
        bias: append a ones row to the unfold.
        backend, precision: as in :func:`linear_input_cov`.
        chunk: batch items per chunk (None: automatic, <= 256 MB extra on the torch path).
        check_finite: raise on NaN/Inf in the inputs.
    Returns:
        (D, D) sum in fp32 (fp64 for fp64 inputs).
    Raises:
        TypeError: non-floating x, bad geometry types.  ValueError: rank, grid too small for the
        kernel, NaN/Inf, unknown option.  RuntimeError: backend="triton" that cannot run.
    """
    opts = options(backend, precision, chunk, check_finite)
    bias = check_flag("bias", bias)
    x, _, geometry = _conv_operands(x, None, kernel_size, stride, padding, dilation)
    finite(opts, x=x)
    name = resolve(opts, "conv2d_input_cov", x)
    return compute.conv2d_input_cov(x, geometry, bias, opts, name)


def conv2d_input_grad(x: torch.Tensor, grad: torch.Tensor, kernel_size, *, stride=1, padding=0,
                      dilation=1, bias: bool = True, backend: str = "auto", precision=None,
                      chunk: int | None = None, check_finite: bool = False) -> torch.Tensor:
    """M = Σ_{i,l} U[i,:,l] dA[i,:,l]ᵀ for x (n, C, H, W), grad (n, C_out, H_o, W_o) -> (D, C_out).

    This is the weight gradient of the conv (bias gradient last).

    Args:
        x: (n, C, H, W) conv input.
        grad: (n, C_out, H_o, W_o) gradient w.r.t. the conv output; (H_o, W_o) the conv's output grid.
        kernel_size, stride, padding, dilation, bias, backend, precision, chunk, check_finite:
            as in :func:`conv2d_input_cov`.
    Returns:
        (D, C_out) sum in fp32 (fp64 for fp64 inputs).
    Raises:
        As :func:`conv2d_input_cov`, plus batch/grid/device/dtype mismatch between x and grad.
    """
    opts = options(backend, precision, chunk, check_finite)
    bias = check_flag("bias", bias)
    x, grad, geometry = _conv_operands(x, grad, kernel_size, stride, padding, dilation)
    finite(opts, x=x, grad=grad)
    name = resolve(opts, "conv2d_input_grad", x, grad)
    return compute.conv2d_input_grad(x, grad, geometry, bias, opts, name)


def _growth_stats(op: str, run, x_prev, x, grad, prev, cur, bias_prev, bias, backend, precision, chunk,
                  check_finite):
    """The body of both conv growth functions: checks, then ``run`` on the backend serving ``op``."""
    opts = options(backend, precision, chunk, check_finite)
    bias_prev = check_flag("bias_prev", bias_prev)
    bias = check_flag("bias", bias)
    prev = check_geometry("prev", prev)
    cur = check_geometry("cur", cur)
    x_prev = check_image("x_prev", x_prev, "n, C_p, H_p, W_p")
    x = check_image("x", x, "n, C, H, W")
    grad = check_image("grad", grad, "n, C_out, H_o, W_o")
    check_same_device_dtype(x_prev=x_prev, x=x, grad=grad)
    check_prev_grid(x_prev, prev, x.shape[0], x.shape[2:])
    grid = output_grid("x", x.shape[2:], cur, "cur")
    check_grad_grid(grad, x.shape[0], "x", x.shape[2:], grid, "cur")
    finite(opts, x_prev=x_prev, x=x, grad=grad)
    backend_name = resolve(opts, op, x_prev, x, grad)
    return run(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend_name)


def conv2d_restricted_growth_stats(x_prev: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, *, prev, cur,
                                   bias_prev: bool = True, bias: bool = True, backend: str = "auto",
                                   precision=None, chunk: int | None = None,
                                   check_finite: bool = False) -> RestrictedGrowthStats:
    """M₋₂ = Σ Ũ_p dAᵀ (D_p, C_out), P = Σ Ũ_p Uᵀ (D_p, D): conv -> centre-tap conv (TINY, TMLR 2024).

    Ũ_p[:, :, l] is the previous conv's patch vector (bias last) at the pixel read by the current
    conv's centre tap at output position l, 0 where that pixel is padding.

    Args:
        x_prev: (n, C_p, H_p, W_p) input of the previous conv.
        x: (n, C, H, W) input of the current conv; (H, W) must be the previous conv's output grid.
        grad: (n, C_out, H_o, W_o) gradient w.r.t. the current conv output.
        prev, cur: Conv2dGeometry (or kernel size) of the previous and current conv.
        bias_prev, bias: ones row appended to the previous / current unfold.
        backend, precision, chunk, check_finite: as in :func:`conv2d_input_cov`.
    Returns:
        RestrictedGrowthStats(m_prev (D_p, C_out), cross_cov (D_p, D)), sums in fp32 (fp64 for fp64).
    Raises:
        As :func:`conv2d_input_grad`, plus a previous output grid that is not x's grid.
    """
    return _growth_stats("conv2d_restricted_growth_stats", compute.conv2d_restricted, x_prev, x, grad,
                         prev, cur, bias_prev, bias, backend, precision, chunk, check_finite)


def conv2d_full_growth_stats(x_prev: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, *, prev, cur,
                             bias_prev: bool = True, bias: bool = True, backend: str = "auto",
                             precision=None, chunk: int | None = None,
                             check_finite: bool = False) -> FullGrowthStats:
    """S₋₂ (D_p, D_p), M₋₂ (D_p, C_out·kk), P (kk, D_p, D) of conv -> full k×k conv (TINY, TMLR 2024).

    With B̂[i,l,e,:] the previous patch vector at the pixel read by tap e of output l:
    S₋₂ = Σ B̂ B̂ᵀ over (i, l, e); M₋₂[:, c·kk+e] = Σ_{i,l} B̂[i,l,e] dA[i,c,l];
    P[e] = Σ_{i,l} B̂[i,l,e] U[i,:,l]ᵀ. B̂ is never materialised.

    Args:
        x_prev, x, grad, prev, cur, bias_prev, bias, backend, precision, chunk, check_finite:
            as in :func:`conv2d_restricted_growth_stats`.
    Returns:
        FullGrowthStats(s_growth, m_prev, cross_cov), sums in fp32 (fp64 for fp64 inputs).
    Raises:
        As :func:`conv2d_restricted_growth_stats`.
    """
    return _growth_stats("conv2d_full_growth_stats", compute.conv2d_full, x_prev, x, grad,
                         prev, cur, bias_prev, bias, backend, precision, chunk, check_finite)


for _name in __all__:
    globals()[_name].__module__ = "gromo_kernels.statistics"
