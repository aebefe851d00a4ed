"""Scaling of the solves' inputs: the exact power-of-two scalings, Jacobi scaling, and the cheap
per-element reductions (max|a|, asymmetry) that validation and scaling share.

Every solve works on S' = R·sym(S)·R with R = diag(r) (B, d):

* **Jacobi** (the default precision floor): r_i = 1/√S_ii for live features, 0 for dead ones
  (S_ii = 0, a ReLU that never fired: its row and column become exact zeros). fp32 rounding of a
  statistic is relative per entry, so in these units it is uniform across features and the
  precision floor can be a fixed multiple of ε.
* **Uniform** (an explicit ``rtol``): r_i = c^{-1/2} with c a power of 4 that brings max|S| into
  [1/4, 1): exact, and a scale sweep 1e-20…1e20 runs in fp32 without overflow or underflow.

Right-hand sides are scaled by R on their side and then by a power of 2 (exact); results are
rescaled in float64.
"""

from __future__ import annotations

import torch

from . import buffers

__all__ = ["max_abs", "asymmetry", "pow4_scale", "pow2_scale", "scaled_symmetric", "scale_psd", "scaled",
           "scaled_rhs"]


# Up to this many entries per element max|a| is one inf-norm call (fewer operations); above it,
# amax and amin, which run ~10× faster than torch's inf-norm on large CPU tensors.
_NORM_MAX_ABS_NUMEL = 4096


def max_abs(a: torch.Tensor) -> torch.Tensor:
    """max|a| per batch element, NaN if a holds NaN: a (B, ...) -> (B,) (no |a| temporary)."""
    flat = a.reshape(a.shape[0], -1)
    if flat.shape[-1] <= _NORM_MAX_ABS_NUMEL:
        return torch.linalg.vector_norm(flat, ord=float("inf"), dim=-1)
    return torch.maximum(flat.amax(dim=-1), -flat.amin(dim=-1))


def asymmetry(a: torch.Tensor) -> torch.Tensor:
    """max|a_i − a_iᵀ| per batch element: a (B, d, d) -> (B,).

    On CPU, large matrices go one at a time: ``torch.equal`` first (the statistics are exactly
    symmetric, and the test is half the cost of the difference), else torch's blocked 2-D transpose
    copy into one reused buffer (a batched ``a − a.mT`` reads with a cache-hostile stride and
    allocates B·d²). NaN is equal to nothing, so it still reaches the difference.
    """
    b, d = a.shape[0], a.shape[-1]
    if a.device.type != "cpu" or d * d < 65536:
        return max_abs(a - a.mT)
    buf = torch.empty(d, d, dtype=a.dtype, device=a.device)
    zero = torch.zeros((), dtype=a.dtype)
    out = []
    for i in range(b):
        if torch.equal(a[i], a[i].mT):
            out.append(zero)
            continue
        buf.copy_(a[i].mT)
        buf.sub_(a[i])
        out.append(torch.maximum(buf.amax(), -buf.amin()))
    return torch.stack(out)


def pow4_scale(a: torch.Tensor) -> torch.Tensor:
    """Per-element power of 4 ``c`` with max|a|/c in [1/4, 1): a (B, m, n) -> (B,) float64 (1 where a is 0)."""
    if a.shape[-1] == 0 or a.shape[-2] == 0:
        return torch.ones(a.shape[0], dtype=torch.float64, device=a.device)
    _, exponent = torch.frexp(max_abs(a).to(torch.float64))
    exponent = exponent + torch.remainder(exponent, 2)
    return torch.ldexp(torch.ones(a.shape[0], dtype=torch.float64, device=a.device), exponent)


def pow2_scale(a: torch.Tensor) -> torch.Tensor:
    """Per-element power of 2 ``m`` with max|a|/m in [1/2, 1): a (B, m, n) -> (B,) float64 (1 where a is 0)."""
    if a.shape[-1] == 0 or a.shape[-2] == 0:
        return torch.ones(a.shape[0], dtype=torch.float64, device=a.device)
    _, exponent = torch.frexp(max_abs(a).to(torch.float64))
    return torch.ldexp(torch.ones(a.shape[0], dtype=torch.float64, device=a.device), exponent)


def _jacobi_factors(s: torch.Tensor, work: torch.dtype) -> torch.Tensor:
    """r (B, d) float64, exactly representable in ``work``: 1/√S_ii where S_ii > 0, else 0."""
    diag = s.diagonal(dim1=-2, dim2=-1).to(torch.float64)
    r = torch.where(diag > 0, diag.clamp_min(torch.finfo(torch.float64).tiny).rsqrt(), 0.0)
    if work == torch.float64:
        return r  # finite: 0 where S_ii is 0, negative, NaN or inf
    # Round to the work dtype once so S' and the rescaling of results use the very same r; a value
    # beyond the work dtype's range (S_ii below ~1e-77 in float32) is treated as a dead feature.
    r = r.to(work).to(torch.float64)
    return torch.where(r < float("inf"), r, 0.0)


def scale_psd(s: torch.Tensor, work: torch.dtype, *, jacobi: bool, name: str = "S",
              exactly_symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """S' = R·(S + Sᵀ)/2·R in the work dtype and r (B, d) float64 (see the module docstring).

    Never modifies ``s``. S' lives in a reused workspace (valid until the next call with ``name``).
    ``exactly_symmetric`` (known from validation) skips the symmetrisation.
    """
    b, d = s.shape[0], s.shape[-1]
    if jacobi:
        r = _jacobi_factors(s, work)
    else:
        r = pow4_scale(s).rsqrt()[:, None].expand(b, d)
    sp = buffers.workspace(f"{name}:scaled", tuple(s.shape), work, s.device)
    sp.copy_(s)
    # Scaled first: S + Sᵀ of entries near the dtype's maximum would overflow.
    rw = r.to(work)
    if jacobi:
        sp.mul_(rw[:, :, None]).mul_(rw[:, None, :])
    else:
        sp.mul_((rw[:, :1] ** 2)[:, :, None])
    if not exactly_symmetric:
        if s.device.type == "cpu" and d * d >= 65536:
            buf = torch.empty(s.shape[-2:], dtype=work, device=s.device)
            for i in range(sp.shape[0]):
                buf.copy_(sp[i].mT)
                sp[i].add_(buf).mul_(0.5)
        else:
            sp.copy_(0.5 * (sp + sp.mT))
    return sp, r


def scaled_symmetric(s: torch.Tensor, work: torch.dtype, *, name: str = "S",
                     exactly_symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """S' = (S + Sᵀ)/(2c) in the work dtype and c (B,) float64 (a power of 4; both steps exact)."""
    sp, r = scale_psd(s, work, jacobi=False, name=name, exactly_symmetric=exactly_symmetric)
    return sp, r[:, 0] ** -2


def scaled(a: torch.Tensor, work: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A' = A/m in the work dtype and m (B,) float64 (a power of 2)."""
    m = pow2_scale(a)
    ap = a.to(work) if a.dtype != work else a.clone()
    ap.mul_((1.0 / m).to(work)[:, None, None])
    return ap, m


def scaled_rhs(a: torch.Tensor, r_rows: torch.Tensor | None, r_cols: torch.Tensor | None,
               work: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A' = R_rows·A·R_cols / m in the work dtype and m (B,) float64 (a power of 2).

    a (B, m, n); r_rows (B, m), r_cols (B, n) float64 or None (identity). The products are formed
    in float64 so that widely different feature scales neither overflow nor underflow.
    """
    if r_rows is None and r_cols is None:
        return scaled(a, work)
    # One fresh float64 tensor, scaled in place: A is as large as N (D × o), so every extra pass
    # or temporary costs as much as a small solve. The power of 2 is applied before any rounding
    # to ``work`` (exact in float64, and no fp32 overflow of R·A before it is scaled down).
    t = a.to(torch.float64, copy=True)
    if r_rows is not None:
        t.mul_(r_rows[:, :, None])
    if r_cols is not None:
        t.mul_(r_cols[:, None, :])
    m = pow2_scale(t)
    t.mul_((1.0 / m)[:, None, None])
    return (t if work == torch.float64 else t.to(work)), m
