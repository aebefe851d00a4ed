"""Public statistics entry points: validate -> pick backend -> call.

Every function returns SUMS over rows (batch × positions / tokens), never means, in fp32 (fp64 for
fp64 inputs): ``S = Σ x̃ x̃ᵀ``, ``M = Σ x̃ dAᵀ``, ``E = Σ dA dAᵀ`` and the growth statistics of
TINY, TMLR 2024. The public layer does everything that does not depend on the backend, so the
torch and triton implementations see one contract (gromo_kernels._contract):

* validation (gromo_kernels._validation): rank, batch and grid agreement, device/dtype agreement,
  floating dtypes, optional NaN/Inf check; every message names the argument and the shape it expected;
* empty batches return zeros without dispatch;
* a zero-width operand (0 channels / 0 features) is replaced by one channel of ones and the result
  sliced, so the bias-only row/column is still computed by the backend and backends only ever see
  positive widths and batches (gromo_kernels._statistics_compute);
* inputs are detached: statistics carry no autograd history (triton kernels could not provide one,
  and both backends must agree).

The per-statistic functions live in gromo_kernels._statistic_functions and are re-exported here.
``layer_statistics`` (below) hands the whole layer to a backend's fused layer_statistics when it has
one (triton: one Gram launch for several statistics) and the batch and widths are non-empty;
otherwise it calls the per-statistic computations, each statistic once (Full: one call for all three
growth statistics).
"""

from __future__ import annotations

import torch

from . import _statistic_functions
from . import _statistics_compute as compute
from ._backend import resolve_backend
from ._contract import finite, fused_implementation, options
from ._dispatch import layer_backends
from ._statistic_functions import (  # noqa: F401  (re-exported: the per-statistic public functions)
    conv2d_full_growth_stats,
    conv2d_input_cov,
    conv2d_input_grad,
    conv2d_restricted_growth_stats,
    grad_cov,
    linear_cross_cov,
    linear_input_cov,
    linear_input_grad,
)
from ._validation import (
    GROWTH_NAMES,
    LAYER_KINDS,
    NEEDS_GRAD,
    STATISTIC_NAMES,
    check_flag,
    check_geometry,
    check_grad_grid,
    check_image,
    check_kind,
    check_prev_grid,
    check_rows,
    check_same_device_dtype,
    check_same_leading,
    check_statistic_names,
    output_grid,
    require_prev,
)

__all__ = [*_statistic_functions.__all__, "layer_statistics", "LAYER_KINDS", "STATISTIC_NAMES"]


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
    "s_growth" (linear and restricted: S of x_prev; full: S₋₂ of the masked, unfolded x_prev,
    summed over the taps), "m_prev" (M₋₂), "cross_cov" (P). Shapes as in the individual functions.

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
    opts = options(backend, precision, chunk, check_finite)
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
    if x_prev is not None:
        require_prev(prev)
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
    finite(opts, x=x, grad=grad, x_prev=x_prev)
    backend, mixed = _layer_backend("linear", names, opts, lambda group, be: _linear_layer(
        group, x, grad, x_prev, bias, bias_prev, opts._replace(backend=be)), x, grad, x_prev)
    if mixed is not None:
        return mixed

    x2, g2, p2 = (compute.as_rows(t) if t is not None else None for t in (x, grad, x_prev))
    fused = fused_implementation(backend)
    if fused is not None and _fusable(x2, g2, p2):
        return fused("linear", x2, g2, x_prev=p2, names=names, bias=bias, bias_prev=bias_prev,
                     precision=opts.precision, chunk=opts.chunk)
    out: dict[str, torch.Tensor] = {}
    for key in names:
        if key == "s":
            out[key] = compute.linear_input_cov(x2, bias, opts, backend)
        elif key == "m":
            out[key] = compute.linear_input_grad(x2, g2, bias, opts, backend)
        elif key == "e":
            out[key] = compute.grad_cov(g2, opts, backend)
        elif key == "s_growth":
            out[key] = compute.linear_input_cov(p2, bias_prev, opts, backend)
        elif key == "m_prev":
            out[key] = compute.linear_input_grad(p2, g2, bias_prev, opts, backend)
        else:
            out[key] = compute.linear_cross_cov(p2, x2, bias_prev, bias, opts, backend)
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
    cur = check_geometry("cur", cur)
    grid = None
    if x is not None:
        x = check_image("x", x, "n, C, H, W")
        grid = output_grid("x", x.shape[2:], cur, "cur")
    if grad is not None:
        grad = check_image("grad", grad, "n, C_out, H_o, W_o")
    if x_prev is not None:
        prev = check_geometry("prev", prev)
        x_prev = check_image("x_prev", x_prev, "n, C_p, H_p, W_p")
    check_same_device_dtype(x_prev=x_prev, x=x, grad=grad)
    x_grid, grid = _conv_grids(x, grad, x_prev, prev, cur, grid)
    finite(opts, x_prev=x_prev, x=x, grad=grad)
    backend, mixed = _layer_backend(kind, names, opts, lambda group, be: _conv_layer(
        kind, group, x, grad, x_prev, prev, cur, bias, bias_prev, opts._replace(backend=be)),
        x_prev, x, grad)
    if mixed is not None:
        return mixed

    fused = fused_implementation(backend)
    if fused is not None and _fusable(x_prev, x, grad):
        # Empty batches and zero widths take the per-statistic path below, which handles them.
        return fused(kind, x, grad, x_prev=x_prev, prev=prev if x_prev is not None else None, cur=cur,
                     names=names, bias=bias, bias_prev=bias_prev, precision=opts.precision,
                     chunk=opts.chunk)
    out: dict[str, torch.Tensor] = {}
    if "s" in names:
        out["s"] = compute.conv2d_input_cov(x, cur, bias, opts, backend)
    if "m" in names:
        out["m"] = compute.conv2d_input_grad(x, grad, cur, bias, opts, backend)
    if "e" in names:
        rows = grad.movedim(1, -1)
        out["e"] = compute.grad_cov(compute.as_rows(rows), opts, backend)
    growth = [k for k in names if k in GROWTH_NAMES]
    if growth and x is None:
        # No x and no cross_cov wanted: a 0-channel x (the zero-width path) stands for it.
        x = x_prev.new_empty(x_prev.shape[0], 0, *x_grid)
    if kind == "conv2d_restricted" and growth:
        if "s_growth" in growth:
            out["s_growth"] = compute.conv2d_input_cov(x_prev, prev, bias_prev, opts, backend)
        if "m_prev" in growth or "cross_cov" in growth:
            if grad is None:
                # cross_cov alone: any gradient of the right grid serves, m_prev is discarded.
                grad = compute.ones_image(x.shape[0], grid, x)
            stats = compute.conv2d_restricted(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend)
            if "m_prev" in growth:
                out["m_prev"] = stats.m_prev
            if "cross_cov" in growth:
                out["cross_cov"] = stats.cross_cov
    elif kind == "conv2d_full" and growth:
        if grad is None:
            grad = compute.ones_image(x.shape[0], grid, x)
        # One call yields all three growth statistics.
        stats = compute.conv2d_full(x_prev, x, grad, prev, cur, bias_prev, bias, opts, backend)
        for key in growth:
            out[key] = getattr(stats, key)
    return {k: out[k] for k in names}
