"""Statistics on validated inputs: empty batches, zero widths, then the backend's function.

An empty batch returns zeros without dispatch. A zero-width operand (0 channels / 0 features) is
replaced by one channel of ones and the result sliced, so the bias-only row/column is still
computed by the backend and backends only ever see positive widths and batches.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._contract import Options, implementation
from ._precision import accumulate_dtype
from .geometry import POINTWISE, Conv2dGeometry
from .results import FullGrowthStats, RestrictedGrowthStats


def zeros(shape, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(shape, dtype=accumulate_dtype(like.dtype), device=like.device)


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """(..., d) -> (rows, d); explicit sizes because reshape(-1, 0) is ambiguous."""
    return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])


def _ones_rows(rows: int, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(rows, 1, dtype=like.dtype, device=like.device)


def ones_image(n: int, grid, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(n, 1, grid[0], grid[1], dtype=like.dtype, device=like.device)


def linear_input_cov(x: torch.Tensor, bias: bool, opts: Options, backend: str) -> torch.Tensor:
    rows, d = x.shape
    width = d + bias
    if rows == 0 or width == 0:
        return zeros((width, width), x)
    if d == 0:
        # Bias only: x̃ = [1], i.e. one feature of ones without a bias column.
        x, bias = _ones_rows(rows, x), False
    return implementation(backend, "linear_input_cov")(x, bias=bias, precision=opts.precision)


def linear_input_grad(x: torch.Tensor, grad: torch.Tensor, bias: bool, opts: Options,
                       backend: str) -> torch.Tensor:
    rows, d = x.shape
    o = grad.shape[1]
    width = d + bias
    if rows == 0 or width == 0 or o == 0:
        return zeros((width, o), x)
    if d == 0:
        x, bias = _ones_rows(rows, x), False
    return implementation(backend, "linear_input_grad")(x, grad, bias=bias, precision=opts.precision)


def linear_cross_cov(x_prev: torch.Tensor, x: torch.Tensor, bias_prev: bool, bias: bool,
                      opts: Options, backend: str) -> torch.Tensor:
    rows, dp = x_prev.shape
    d = x.shape[1]
    shape = (dp + bias_prev, d + bias)
    if rows == 0 or 0 in shape:
        return zeros(shape, x)
    if dp == 0:
        x_prev, bias_prev = _ones_rows(rows, x_prev), False
    if d == 0:
        x, bias = _ones_rows(rows, x), False
    return implementation(backend, "linear_cross_cov")(
        x_prev, x, bias_prev=bias_prev, bias=bias, precision=opts.precision
    )


def grad_cov(grad: torch.Tensor, opts: Options, backend: str) -> torch.Tensor:
    rows, o = grad.shape
    if rows == 0 or o == 0:
        return zeros((o, o), grad)
    return implementation(backend, "grad_cov")(grad, precision=opts.precision)


def conv2d_input_cov(x: torch.Tensor, geometry: Conv2dGeometry, bias: bool, opts: Options,
                      backend: str) -> torch.Tensor:
    n, c = x.shape[:2]
    kk = geometry.kernel_area
    width = c * kk + bias
    if n == 0 or width == 0:
        return zeros((width, width), x)
    fn = implementation(backend, "conv2d_input_cov")
    if c == 0:
        # Bias only: one channel of ones gives the bias row/column last; keep that corner.
        out = fn(ones_image(n, x.shape[2:], x), geometry, bias=True, precision=opts.precision,
                 chunk=opts.chunk)
        return out[kk:, kk:]
    return fn(x, geometry, bias=bias, precision=opts.precision, chunk=opts.chunk)


def conv2d_input_grad(x: torch.Tensor, grad: torch.Tensor, geometry: Conv2dGeometry, bias: bool,
                       opts: Options, backend: str) -> torch.Tensor:
    n, c = x.shape[:2]
    c_out = grad.shape[1]
    kk = geometry.kernel_area
    width = c * kk + bias
    if n == 0 or width == 0 or c_out == 0:
        return zeros((width, c_out), x)
    fn = implementation(backend, "conv2d_input_grad")
    if c == 0:
        out = fn(ones_image(n, x.shape[2:], x), grad, geometry, bias=True,
                 precision=opts.precision, chunk=opts.chunk)
        return out[kk:]
    return fn(x, grad, geometry, bias=bias, precision=opts.precision, chunk=opts.chunk)


class _GrowthInputs(NamedTuple):
    """Growth-statistic operands after the zero-width substitutions, and how to slice back."""

    x_prev: torch.Tensor
    x: torch.Tensor
    grad: torch.Tensor
    prev: Conv2dGeometry
    bias_prev: bool
    bias: bool
    keep_prev: slice   # rows of D_p to keep
    keep_cur: slice    # columns of D to keep
    c_out: int         # true number of output channels (0 when grad was substituted)


def _growth_inputs(x_prev, x, grad, prev, cur, bias_prev, bias) -> _GrowthInputs:
    """Replace 0-channel operands by one channel of ones (1×1 prev for x_prev) and remember the slices.

    x_prev with 0 channels: its unfold is the bias row alone, i.e. ones on the current input grid,
    which is the unfold of a ones image by a 1×1 conv without bias. x with 0 channels: compute with
    one channel of ones and keep only the bias column (the last). grad with 0 channels: any one
    channel, then keep no column.
    """
    n, cp = x_prev.shape[:2]
    c, c_out = x.shape[1], grad.shape[1]
    kk = cur.kernel_area
    keep_prev, keep_cur = slice(None), slice(None)
    if cp == 0:
        x_prev, prev = ones_image(n, x.shape[2:], x_prev), POINTWISE
        keep_prev = slice(0, 1) if bias_prev else slice(0, 0)
        bias_prev = False
    if c == 0:
        x = ones_image(n, x.shape[2:], x)
        keep_cur = slice(kk, kk + 1) if bias else slice(kk, kk)
        bias = True
    if c_out == 0:
        grad = ones_image(n, grad.shape[2:], grad)
    return _GrowthInputs(x_prev, x, grad, prev, bias_prev, bias, keep_prev, keep_cur, c_out)


def conv2d_restricted(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend) -> RestrictedGrowthStats:
    n = x.shape[0]
    dp = x_prev.shape[1] * prev.kernel_area + bias_prev
    d = x.shape[1] * cur.kernel_area + bias
    c_out = grad.shape[1]
    if n == 0 or dp == 0:
        return RestrictedGrowthStats(zeros((dp, c_out), x), zeros((dp, d), x))
    g = _growth_inputs(x_prev, x, grad, prev, cur, bias_prev, bias)
    out = implementation(backend, "conv2d_restricted_growth_stats")(
        g.x_prev, g.x, g.grad, prev=g.prev, cur=cur, bias_prev=g.bias_prev, bias=g.bias,
        precision=opts.precision, chunk=opts.chunk,
    )
    m_prev = out.m_prev[g.keep_prev, : g.c_out]
    cross_cov = out.cross_cov[g.keep_prev, g.keep_cur]
    return RestrictedGrowthStats(m_prev, cross_cov)


def conv2d_full(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend) -> FullGrowthStats:
    n = x.shape[0]
    kk = cur.kernel_area
    dp = x_prev.shape[1] * prev.kernel_area + bias_prev
    d = x.shape[1] * kk + bias
    c_out = grad.shape[1]
    if n == 0 or dp == 0:
        return FullGrowthStats(zeros((dp, dp), x), zeros((dp, c_out * kk), x), zeros((kk, dp, d), x))
    g = _growth_inputs(x_prev, x, grad, prev, cur, bias_prev, bias)
    out = implementation(backend, "conv2d_full_growth_stats")(
        g.x_prev, g.x, g.grad, prev=g.prev, cur=cur, bias_prev=g.bias_prev, bias=g.bias,
        precision=opts.precision, chunk=opts.chunk,
    )
    s_growth = out.s_growth[g.keep_prev, g.keep_prev]
    m_prev = out.m_prev[g.keep_prev, : g.c_out * kk]
    cross_cov = out.cross_cov[:, g.keep_prev, g.keep_cur]
    return FullGrowthStats(s_growth, m_prev, cross_cov)
