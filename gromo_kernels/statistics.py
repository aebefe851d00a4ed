"""Public statistics entry points: validate -> pick backend -> call.

Every function returns SUMS over rows (batch × positions / tokens), never means, in fp32 (fp64 for
fp64 inputs): ``S = Σ x̃ x̃ᵀ``, ``M = Σ x̃ dAᵀ``, ``E = Σ dA dAᵀ`` and the growth statistics of
TINY, TMLR 2024 The layer here does everything that does not depend on the backend, so the
torch and triton implementations see one contract (gromo_kernels/torch_impl, gromo_kernels/triton_impl):

* validation: rank, batch and grid agreement, device/dtype agreement, floating dtypes, optional
  NaN/Inf check; every message names the argument and the shape it expected;
* empty batches return zeros without dispatch;
* a zero-width operand (0 channels / 0 features) is replaced by one channel of ones and the result
  sliced, so the bias-only row/column is still computed by the backend and backends only ever see
  positive widths and batches;
* inputs are detached: statistics carry no autograd history (triton kernels could not provide one,
  and both backends must agree).

``layer_statistics`` hands the whole layer to a backend's fused ``layer_statistics_<backend>`` when
it has one (triton: one Gram launch for several statistics) and the batch and widths are non-empty;
otherwise it calls the per-statistic functions, each statistic once (Full: one call for all three
growth statistics).
"""

from __future__ import annotations

import importlib
import math
from typing import NamedTuple

import torch

from ._backend import resolve_backend
from ._dispatch import layer_backends, statistic_backend, with_precision
from ._precision import accumulate_dtype, check_precision
from ._validation import (
    GROWTH_NAMES,
    LAYER_KINDS,
    NEEDS_GRAD,
    STATISTIC_NAMES,
    check_channel_dim,
    check_flag,
    check_grad_grid,
    check_image,
    check_kind,
    check_prev_grid,
    check_rows,
    check_same_device_dtype,
    check_same_leading,
    check_statistic_names,
    check_tensor,
    output_grid,
)
from ._validation import check_finite as _check_finite_values
from .geometry import Conv2dGeometry, as_geometry
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
    "layer_statistics",
    "LAYER_KINDS",
    "STATISTIC_NAMES",
]


_ONE_BY_ONE = Conv2dGeometry((1, 1), (1, 1), (0, 0), (1, 1))


# ----------------------------------------------------------------------------------------------
# Options shared by every call
# ----------------------------------------------------------------------------------------------


class _Options(NamedTuple):
    """Normalised keyword options: backend name (unresolved), precision mode, chunk, finite check."""

    backend: str
    precision: str
    chunk: int | None
    check_finite: bool


def _options(backend, precision, chunk, check_finite) -> _Options:
    if not isinstance(backend, str):
        raise ValueError(f"backend must be one of ('auto', 'torch', 'triton'), got {backend!r}")
    mode = check_precision(precision)
    if chunk is not None:
        if not isinstance(chunk, int) or isinstance(chunk, bool):
            raise TypeError(f"chunk must be None or a positive int, got {type(chunk).__name__}")
        if chunk < 1:
            raise ValueError(f"chunk must be None or a positive int, got {chunk}")
    return _Options(backend, mode, chunk, check_flag("check_finite", check_finite))


def _resolve(opts: _Options, op: str, *tensors: torch.Tensor) -> str:
    """The backend of statistic ``op`` (per-statistic on CUDA with "auto": gromo_kernels._dispatch)."""
    return statistic_backend(op, opts.backend, *tensors)


def _impl(backend: str, op: str):
    """The backend's ``<op>_<backend>``; triton_impl is imported only here, only when chosen."""
    module = importlib.import_module(f"gromo_kernels.{backend}_impl")
    fn = getattr(module, f"{op}_{backend}", None)
    if fn is None:
        raise NotImplementedError(f"the {backend} backend does not implement {op} yet")
    return with_precision(fn, backend)


def _fused_impl(backend: str):
    """The backend's fused ``layer_statistics_<backend>``, or None when it has none."""
    module = importlib.import_module(f"gromo_kernels.{backend}_impl")
    return getattr(module, f"layer_statistics_{backend}", None)


def _finite(opts: _Options, **tensors: torch.Tensor | None) -> None:
    if opts.check_finite:
        for name, t in tensors.items():
            if t is not None:
                _check_finite_values(name, t)


def _zeros(shape, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(shape, dtype=accumulate_dtype(like.dtype), device=like.device)


def _geometry(name: str, value) -> Conv2dGeometry:
    """as_geometry with the argument name in every message."""
    try:
        return as_geometry(name, value)
    except (TypeError, ValueError) as err:
        msg = str(err)
        raise type(err)(msg if msg.startswith(name) else f"{name}: {msg}") from None


def _conv_geometry(kernel_size, stride, padding, dilation) -> Conv2dGeometry:
    if isinstance(kernel_size, Conv2dGeometry):
        if (stride, padding, dilation) != (1, 0, 1):
            raise ValueError(
                "kernel_size is a Conv2dGeometry: give stride, padding and dilation inside it, "
                "not as separate arguments"
            )
        return _geometry("kernel_size", kernel_size)
    try:
        return Conv2dGeometry(kernel_size, stride, padding, dilation).normalized()
    except (TypeError, ValueError) as err:
        raise type(err)(f"conv geometry: {err}") from None


# ----------------------------------------------------------------------------------------------
# Computation on validated inputs: empty batches, zero widths, dispatch
# ----------------------------------------------------------------------------------------------


def _as_rows(t: torch.Tensor) -> torch.Tensor:
    """(..., d) -> (rows, d); explicit sizes because reshape(-1, 0) is ambiguous."""
    return t.reshape(math.prod(t.shape[:-1]), t.shape[-1])


def _ones_rows(rows: int, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(rows, 1, dtype=like.dtype, device=like.device)


def _ones_image(n: int, grid, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(n, 1, grid[0], grid[1], dtype=like.dtype, device=like.device)


def _linear_input_cov(x: torch.Tensor, bias: bool, opts: _Options, backend: str) -> torch.Tensor:
    rows, d = x.shape
    width = d + bias
    if rows == 0 or width == 0:
        return _zeros((width, width), x)
    if d == 0:
        # Bias only: x̃ = [1], i.e. one feature of ones without a bias column.
        x, bias = _ones_rows(rows, x), False
    return _impl(backend, "linear_input_cov")(x, bias=bias, precision=opts.precision)


def _linear_input_grad(x: torch.Tensor, grad: torch.Tensor, bias: bool, opts: _Options,
                       backend: str) -> torch.Tensor:
    rows, d = x.shape
    o = grad.shape[1]
    width = d + bias
    if rows == 0 or width == 0 or o == 0:
        return _zeros((width, o), x)
    if d == 0:
        x, bias = _ones_rows(rows, x), False
    return _impl(backend, "linear_input_grad")(x, grad, bias=bias, precision=opts.precision)


def _linear_cross_cov(x_prev: torch.Tensor, x: torch.Tensor, bias_prev: bool, bias: bool,
                      opts: _Options, backend: str) -> torch.Tensor:
    rows, dp = x_prev.shape
    d = x.shape[1]
    shape = (dp + bias_prev, d + bias)
    if rows == 0 or 0 in shape:
        return _zeros(shape, x)
    if dp == 0:
        x_prev, bias_prev = _ones_rows(rows, x_prev), False
    if d == 0:
        x, bias = _ones_rows(rows, x), False
    return _impl(backend, "linear_cross_cov")(
        x_prev, x, bias_prev=bias_prev, bias=bias, precision=opts.precision
    )


def _grad_cov(grad: torch.Tensor, opts: _Options, backend: str) -> torch.Tensor:
    rows, o = grad.shape
    if rows == 0 or o == 0:
        return _zeros((o, o), grad)
    return _impl(backend, "grad_cov")(grad, precision=opts.precision)


def _conv2d_input_cov(x: torch.Tensor, geometry: Conv2dGeometry, bias: bool, opts: _Options,
                      backend: str) -> torch.Tensor:
    n, c = x.shape[:2]
    kk = geometry.kernel_area
    width = c * kk + bias
    if n == 0 or width == 0:
        return _zeros((width, width), x)
    fn = _impl(backend, "conv2d_input_cov")
    if c == 0:
        # Bias only: one channel of ones gives the bias row/column last; keep that corner.
        out = fn(_ones_image(n, x.shape[2:], x), geometry, bias=True, precision=opts.precision,
                 chunk=opts.chunk)
        return out[kk:, kk:]
    return fn(x, geometry, bias=bias, precision=opts.precision, chunk=opts.chunk)


def _conv2d_input_grad(x: torch.Tensor, grad: torch.Tensor, geometry: Conv2dGeometry, bias: bool,
                       opts: _Options, backend: str) -> torch.Tensor:
    n, c = x.shape[:2]
    c_out = grad.shape[1]
    kk = geometry.kernel_area
    width = c * kk + bias
    if n == 0 or width == 0 or c_out == 0:
        return _zeros((width, c_out), x)
    fn = _impl(backend, "conv2d_input_grad")
    if c == 0:
        out = fn(_ones_image(n, x.shape[2:], x), grad, geometry, bias=True,
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
        x_prev, prev = _ones_image(n, x.shape[2:], x_prev), _ONE_BY_ONE
        keep_prev = slice(0, 1) if bias_prev else slice(0, 0)
        bias_prev = False
    if c == 0:
        x = _ones_image(n, x.shape[2:], x)
        keep_cur = slice(kk, kk + 1) if bias else slice(kk, kk)
        bias = True
    if c_out == 0:
        grad = _ones_image(n, grad.shape[2:], grad)
    return _GrowthInputs(x_prev, x, grad, prev, bias_prev, bias, keep_prev, keep_cur, c_out)


def _conv2d_restricted(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend) -> RestrictedGrowthStats:
    n = x.shape[0]
    dp = x_prev.shape[1] * prev.kernel_area + bias_prev
    d = x.shape[1] * cur.kernel_area + bias
    c_out = grad.shape[1]
    if n == 0 or dp == 0:
        return RestrictedGrowthStats(_zeros((dp, c_out), x), _zeros((dp, d), x))
    g = _growth_inputs(x_prev, x, grad, prev, cur, bias_prev, bias)
    out = _impl(backend, "conv2d_restricted_growth_stats")(
        g.x_prev, g.x, g.grad, prev=g.prev, cur=cur, bias_prev=g.bias_prev, bias=g.bias,
        precision=opts.precision, chunk=opts.chunk,
    )
    m_prev = out.m_prev[g.keep_prev, : g.c_out]
    cross_cov = out.cross_cov[g.keep_prev, g.keep_cur]
    return RestrictedGrowthStats(m_prev, cross_cov)


def _conv2d_full(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend) -> FullGrowthStats:
    n = x.shape[0]
    kk = cur.kernel_area
    dp = x_prev.shape[1] * prev.kernel_area + bias_prev
    d = x.shape[1] * kk + bias
    c_out = grad.shape[1]
    if n == 0 or dp == 0:
        return FullGrowthStats(_zeros((dp, dp), x), _zeros((dp, c_out * kk), x), _zeros((kk, dp, d), x))
    g = _growth_inputs(x_prev, x, grad, prev, cur, bias_prev, bias)
    out = _impl(backend, "conv2d_full_growth_stats")(
        g.x_prev, g.x, g.grad, prev=g.prev, cur=cur, bias_prev=g.bias_prev, bias=g.bias,
        precision=opts.precision, chunk=opts.chunk,
    )
    s_growth = out.s_growth[g.keep_prev, g.keep_prev]
    m_prev = out.m_prev[g.keep_prev, : g.c_out * kk]
    cross_cov = out.cross_cov[:, g.keep_prev, g.keep_cur]
    return FullGrowthStats(s_growth, m_prev, cross_cov)


# ----------------------------------------------------------------------------------------------
# Public statistics
# ----------------------------------------------------------------------------------------------


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
    opts = _options(backend, precision, None, check_finite)
    bias = check_flag("bias", bias)
    x = check_rows("x", x, what="d")
    _finite(opts, x=x)
    name = _resolve(opts, "linear_input_cov", x)
    return _linear_input_cov(_as_rows(x), bias, opts, name)


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
    opts = _options(backend, precision, None, check_finite)
    bias = check_flag("bias", bias)
    x = check_rows("x", x, what="d")
    grad = check_rows("grad", grad, what="o")
    check_same_device_dtype(x=x, grad=grad)
    check_same_leading("grad", grad, "x", x, "o")
    _finite(opts, x=x, grad=grad)
    name = _resolve(opts, "linear_input_grad", x, grad)
    return _linear_input_grad(_as_rows(x), _as_rows(grad), bias,
                              opts, name)


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
    opts = _options(backend, precision, None, check_finite)
    bias_prev = check_flag("bias_prev", bias_prev)
    bias = check_flag("bias", bias)
    x_prev = check_rows("x_prev", x_prev, what="dp")
    x = check_rows("x", x, what="d")
    check_same_device_dtype(x_prev=x_prev, x=x)
    check_same_leading("x", x, "x_prev", x_prev, "d")
    _finite(opts, x_prev=x_prev, x=x)
    name = _resolve(opts, "linear_cross_cov", x_prev, x)
    return _linear_cross_cov(_as_rows(x_prev), _as_rows(x),
                             bias_prev, bias, opts, name)


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
    opts = _options(backend, precision, None, check_finite)
    check_tensor("grad", grad, min_ndim=1, shape_hint="(..., o, ...) with channels at channel_dim")
    dim = check_channel_dim(grad, channel_dim)
    grad = grad.detach()
    _finite(opts, grad=grad)
    name = _resolve(opts, "grad_cov", grad)
    rows = grad.movedim(dim, -1)
    return _grad_cov(_as_rows(rows), opts, name)


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
    opts = _options(backend, precision, chunk, check_finite)
    bias = check_flag("bias", bias)
    geometry = _conv_geometry(kernel_size, stride, padding, dilation)
    x = check_image("x", x, "n, C, H, W")
    output_grid("x", x.shape[2:], geometry, "the convolution")
    _finite(opts, x=x)
    name = _resolve(opts, "conv2d_input_cov", x)
    return _conv2d_input_cov(x, geometry, bias, opts, name)


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
    opts = _options(backend, precision, chunk, check_finite)
    bias = check_flag("bias", bias)
    geometry = _conv_geometry(kernel_size, stride, padding, dilation)
    x = check_image("x", x, "n, C, H, W")
    grad = check_image("grad", grad, "n, C_out, H_o, W_o")
    check_same_device_dtype(x=x, grad=grad)
    grid = output_grid("x", x.shape[2:], geometry, "the convolution")
    check_grad_grid(grad, x.shape[0], "x", x.shape[2:], grid, "the convolution")
    _finite(opts, x=x, grad=grad)
    name = _resolve(opts, "conv2d_input_grad", x, grad)
    return _conv2d_input_grad(x, grad, geometry, bias, opts, name)


def _validate_conv_pair(x_prev, x, grad, prev, cur):
    prev = _geometry("prev", prev)
    cur = _geometry("cur", cur)
    x_prev = check_image("x_prev", x_prev, "n, C_p, H_p, W_p")
    x = check_image("x", x, "n, C, H, W")
    grad = check_image("grad", grad, "n, C_out, H_o, W_o")
    check_same_device_dtype(x_prev=x_prev, x=x, grad=grad)
    check_prev_grid(x_prev, prev, x.shape[0], x.shape[2:])
    grid = output_grid("x", x.shape[2:], cur, "cur")
    check_grad_grid(grad, x.shape[0], "x", x.shape[2:], grid, "cur")
    return x_prev, x, grad, prev, cur


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
    opts = _options(backend, precision, chunk, check_finite)
    bias_prev = check_flag("bias_prev", bias_prev)
    bias = check_flag("bias", bias)
    x_prev, x, grad, prev, cur = _validate_conv_pair(x_prev, x, grad, prev, cur)
    _finite(opts, x_prev=x_prev, x=x, grad=grad)
    name = _resolve(opts, "conv2d_restricted_growth_stats", x_prev, x, grad)
    return _conv2d_restricted(x_prev, x, grad, prev, cur, bias_prev, bias, opts, name)


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
    opts = _options(backend, precision, chunk, check_finite)
    bias_prev = check_flag("bias_prev", bias_prev)
    bias = check_flag("bias", bias)
    x_prev, x, grad, prev, cur = _validate_conv_pair(x_prev, x, grad, prev, cur)
    _finite(opts, x_prev=x_prev, x=x, grad=grad)
    name = _resolve(opts, "conv2d_full_growth_stats", x_prev, x, grad)
    return _conv2d_full(x_prev, x, grad, prev, cur, bias_prev, bias, opts, name)


# ----------------------------------------------------------------------------------------------
# Every statistic of a layer in one call
# ----------------------------------------------------------------------------------------------


def _available(kind: str, x, grad, x_prev) -> tuple[str, ...]:
    growth = x_prev is not None and kind != "conv2d"
    has = {
        "s": x is not None,
        "m": x is not None and grad is not None,
        "e": grad is not None,
        "s_growth": growth,
        "m_prev": growth and grad is not None,
        "cross_cov": growth and x is not None,
    }
    return tuple(name for name in STATISTIC_NAMES if has[name])


def _check_want(kind: str, want, x, grad, x_prev) -> tuple[str, ...]:
    if want is None:
        return _available(kind, x, grad, x_prev)
    if isinstance(want, str):
        want = (want,)
    try:
        names = tuple(want)
    except TypeError:
        raise TypeError(f"want must be a sequence of statistic names, got {type(want).__name__}") from None
    return check_statistic_names("want", kind, names, x=x, grad=grad, x_prev=x_prev)


def layer_statistics(kind: str, x: torch.Tensor | None, grad: torch.Tensor | None, *,
                     x_prev: torch.Tensor | None = None, prev=None, cur=None, want=None,
                     bias: bool = True, bias_prev: bool = True, backend: str = "auto", precision=None,
                     chunk: int | None = None, check_finite: bool = False) -> dict[str, torch.Tensor]:
    """Every statistic a layer needs, each computed once: dict name -> sum.

    Names: "s" = S (D, D), "m" = M (D, o), "e" = E = Σ dA dAᵀ (o, o); with ``x_prev``:
    "s_growth" (linear and restricted: S of x_prev; full: S₋₂ of §3.6), "m_prev" (M₋₂),
    "cross_cov" (P). Shapes as in the individual functions.

    Args:
        kind: "linear", "conv2d", "conv2d_restricted" or "conv2d_full".
        x: layer input, (..., d) for linear, (n, C, H, W) for conv; or None when no wanted statistic
            reads it ("e", "s_growth", "m_prev": a conv's input grid then comes from x_prev and prev).
        grad: gradient w.r.t. the layer output ((..., o) / (n, C_out, H_o, W_o)), or None when
            only input statistics are wanted.
        x_prev: input of the previous layer (growth statistics), or None.
        prev: Conv2dGeometry of the previous conv (conv kinds with x_prev).
        cur: Conv2dGeometry of this conv (conv kinds).
        want: names to compute; None = every statistic the arguments allow.
        bias, bias_prev: ones appended to x / x_prev.
        backend, precision, chunk, check_finite: as in :func:`conv2d_input_cov`.
    Returns:
        dict with exactly the names of ``want``.
    Raises:
        TypeError / ValueError / RuntimeError: as the individual functions; unknown kind or name,
        a name the arguments cannot provide (e.g. "s" with x=None), geometries given to a linear kind.
    """
    check_kind(kind)
    if kind == "conv2d" and x_prev is not None:
        raise ValueError("x_prev: kind='conv2d' has no growth statistics")
    opts = _options(backend, precision, chunk, check_finite)
    bias = check_flag("bias", bias)
    bias_prev = check_flag("bias_prev", bias_prev)
    names = _check_want(kind, want, x, grad, x_prev)
    if not any(k in NEEDS_GRAD for k in names):
        grad = None
    if not any(k in GROWTH_NAMES for k in names):
        x_prev = None

    if kind == "linear":
        if prev is not None or cur is not None:
            raise ValueError("prev and cur are conv geometries; kind='linear' takes neither")
        return _linear_layer(names, x, grad, x_prev, bias, bias_prev, opts)
    if cur is None:
        raise ValueError(f"cur (the Conv2dGeometry of this conv) is required for kind={kind!r}")
    if x_prev is not None and prev is None:
        raise ValueError("prev (the Conv2dGeometry of the previous conv) is required with x_prev")
    return _conv_layer(kind, names, x, grad, x_prev, prev, cur, bias, bias_prev, opts)


def _by_backend(names, backends: dict[str, str], compute) -> dict[str, torch.Tensor]:
    """The statistics in one group per backend (CUDA "auto" mixes them), merged in ``names`` order."""
    out: dict[str, torch.Tensor] = {}
    for backend in dict.fromkeys(backends.values()):
        out.update(compute(tuple(n for n in names if backends[n] == backend), backend))
    return {n: out[n] for n in names}


def _layer_backend(kind, names, opts, compute, *tensors) -> tuple[str | None, dict | None]:
    """The one backend of this call, or (None, the statistics computed per backend group)."""
    present = [t for t in tensors if t is not None]
    backends = layer_backends(kind, names, opts.backend, *present)
    if len(set(backends.values())) > 1:
        return None, _by_backend(names, backends, compute)
    return next(iter(backends.values()), None) or resolve_backend(opts.backend, *present), None


def _fusable(*tensors) -> bool:
    """Non-empty batch and widths: the fused path's domain (the per-statistic path handles the rest)."""
    present = [t for t in tensors if t is not None]
    return bool(present) and present[0].shape[0] > 0 and all(t.shape[1] > 0 for t in present)


def _linear_layer(names, x, grad, x_prev, bias, bias_prev, opts) -> dict[str, torch.Tensor]:
    if x is not None:
        x = check_rows("x", x, what="d")
    if grad is not None:
        grad = check_rows("grad", grad, what="o")
    if x_prev is not None:
        x_prev = check_rows("x_prev", x_prev, what="dp")
    check_same_device_dtype(x=x, grad=grad, x_prev=x_prev)
    # Leading (row) dimensions agree with x's, or with grad's when x is not given.
    lead_name, lead = ("x", x) if x is not None else ("grad", grad)
    if grad is not None and x is not None:
        check_same_leading("grad", grad, "x", x, "o")
    if x_prev is not None and lead is not None:
        check_same_leading("x_prev", x_prev, lead_name, lead, "dp")
    _finite(opts, x=x, grad=grad, x_prev=x_prev)
    backend, mixed = _layer_backend("linear", names, opts, lambda group, be: _linear_layer(
        group, x, grad, x_prev, bias, bias_prev, opts._replace(backend=be)), x, grad, x_prev)
    if mixed is not None:
        return mixed

    x2, g2, p2 = (_as_rows(t) if t is not None else None for t in (x, grad, x_prev))
    fused = _fused_impl(backend)
    if fused is not None and _fusable(x2, g2, p2):
        return fused("linear", x2, g2, x_prev=p2, names=names, bias=bias, bias_prev=bias_prev,
                     precision=opts.precision, chunk=opts.chunk)
    out: dict[str, torch.Tensor] = {}
    for key in names:
        if key == "s":
            out[key] = _linear_input_cov(x2, bias, opts, backend)
        elif key == "m":
            out[key] = _linear_input_grad(x2, g2, bias, opts, backend)
        elif key == "e":
            out[key] = _grad_cov(g2, opts, backend)
        elif key == "s_growth":
            out[key] = _linear_input_cov(p2, bias_prev, opts, backend)
        elif key == "m_prev":
            out[key] = _linear_input_grad(p2, g2, bias_prev, opts, backend)
        else:
            out[key] = _linear_cross_cov(p2, x2, bias_prev, bias, opts, backend)
    return out


def _conv_grids(x, grad, x_prev, prev, cur, grid) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """x's grid and the current output ``grid`` (x's, when given), checked against the operands.

    Without x, x's grid is the previous conv's output grid on x_prev; with neither (only "e"
    wanted) nothing constrains grad's grid: (None, None).
    """
    if x is not None:
        x_grid = tuple(x.shape[2:])
        if x_prev is not None:
            check_prev_grid(x_prev, prev, x.shape[0], x.shape[2:])
        ref_name, ref = "x", x
    elif x_prev is not None:
        x_grid = output_grid("x_prev", x_prev.shape[2:], prev, "prev")
        grid = output_grid("x (the previous conv's output on x_prev)", x_grid, cur, "cur")
        ref_name, ref = "x_prev", x_prev
    else:
        return None, None
    if grad is not None:
        check_grad_grid(grad, ref.shape[0], ref_name, x_grid, grid, "cur")
    return x_grid, grid


def _conv_layer(kind, names, x, grad, x_prev, prev, cur, bias, bias_prev, opts) -> dict[str, torch.Tensor]:
    cur = _geometry("cur", cur)
    grid = None
    if x is not None:
        x = check_image("x", x, "n, C, H, W")
        grid = output_grid("x", x.shape[2:], cur, "cur")
    if grad is not None:
        grad = check_image("grad", grad, "n, C_out, H_o, W_o")
    if x_prev is not None:
        prev = _geometry("prev", prev)
        x_prev = check_image("x_prev", x_prev, "n, C_p, H_p, W_p")
    check_same_device_dtype(x_prev=x_prev, x=x, grad=grad)
    x_grid, grid = _conv_grids(x, grad, x_prev, prev, cur, grid)
    _finite(opts, x_prev=x_prev, x=x, grad=grad)
    backend, mixed = _layer_backend(kind, names, opts, lambda group, be: _conv_layer(
        kind, group, x, grad, x_prev, prev, cur, bias, bias_prev, opts._replace(backend=be)),
        x_prev, x, grad)
    if mixed is not None:
        return mixed

    fused = _fused_impl(backend)
    if fused is not None and _fusable(x_prev, x, grad):
        # Empty batches and zero widths take the per-statistic path below, which handles them.
        return fused(kind, x, grad, x_prev=x_prev, prev=prev if x_prev is not None else None, cur=cur,
                     names=names, bias=bias, bias_prev=bias_prev, precision=opts.precision,
                     chunk=opts.chunk)
    out: dict[str, torch.Tensor] = {}
    if "s" in names:
        out["s"] = _conv2d_input_cov(x, cur, bias, opts, backend)
    if "m" in names:
        out["m"] = _conv2d_input_grad(x, grad, cur, bias, opts, backend)
    if "e" in names:
        rows = grad.movedim(1, -1)
        out["e"] = _grad_cov(_as_rows(rows), opts, backend)
    growth = [k for k in names if k in GROWTH_NAMES]
    if growth and x is None:
        # No x and no cross_cov wanted: a 0-channel x (the zero-width path) stands for it.
        x = x_prev.new_empty(x_prev.shape[0], 0, *x_grid)
    if kind == "conv2d_restricted" and growth:
        if "s_growth" in growth:
            out["s_growth"] = _conv2d_input_cov(x_prev, prev, bias_prev, opts, backend)
        if "m_prev" in growth or "cross_cov" in growth:
            if grad is None:
                # cross_cov alone: any gradient of the right grid serves, m_prev is discarded.
                grad = _ones_image(x.shape[0], grid, x)
            stats = _conv2d_restricted(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend)
            if "m_prev" in growth:
                out["m_prev"] = stats.m_prev
            if "cross_cov" in growth:
                out["cross_cov"] = stats.cross_cov
    elif kind == "conv2d_full" and growth:
        if grad is None:
            grad = _ones_image(x.shape[0], grid, x)
        # One call yields all three growth statistics.
        stats = _conv2d_full(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend)
        for key in growth:
            out[key] = getattr(stats, key)
    return {k: out[k] for k in names}
