"""Conv-of-conv growth statistics reading x_prev directly (Restricted and Full growth).

Restricted (centre tap e₀ = (kh//2)·kw + kw//2 of the current conv):
    m_prev = Σ_{i,l} Ũ_p[i,:,l] dA[i,:,l]ᵀ (D_p, C_out)      cross_cov = Σ_{i,l} Ũ_p[i,:,l] U[i,:,l]ᵀ (D_p, D)
Full (every tap e of the current conv):
    s_growth = Σ_{i,l,e} B̂[i,l,e] B̂[i,l,e]ᵀ = Σ_i Σ_p c(p) u_{i,p} u_{i,p}ᵀ (D_p, D_p)
    m_prev[:, c·kk+e] = Σ_{i,l} B̂[i,l,e] dA[i,c,l]       cross_cov[e] = Σ_{i,l} B̂[i,l,e] U[i,:,l]ᵀ (kk, D_p, D)

``B̂[i,l,e] = U_p[i,:,p(l,e)]`` is the previous unfold at the pixel read by tap e at output l (zero,
bias included, where that pixel is padding). The Gram kernel composes the two gathers in its index
arithmetic — previous unfold of x_prev ∘ current tap — so neither the bordered unfold nor the masked
unfold nor the dense mask tensor ever exists. m_prev and cross_cov come from ONE launch with
Z = [B̂(e) | U | dA] (A = the first block of columns, B = the other two; taps on grid axis 2), so U
and dA are read once per tile pair for both. s_growth uses the tap-count identity: the
previous S with pixel p weighted by its tap count c(p) (computed in-kernel), at the cost of one S
instead of kk of them.
"""

from __future__ import annotations

import torch

from .._validation import check_grad_grid, check_prev_grid, output_grid
from ..geometry import POINTWISE, as_geometry
from ..results import FullGrowthStats, RestrictedGrowthStats
from .conv2d import image
from .gram import Patches, Taps, check_launch, gram_triton

__all__ = ["conv2d_restricted_growth_stats_triton", "conv2d_full_growth_stats_triton"]


def _operands(op, x_prev, x, grad, prev, cur, bias_prev, bias):
    """Validated segments [previous unfold | current unfold | grad] and the two grids."""
    check_launch(op, x_prev=x_prev, x=x, grad=grad)
    prev = as_geometry("prev", prev)
    cur = as_geometry("cur", cur)
    x_prev, x, grad = image("x_prev", x_prev), image("x", x), image("grad", grad)
    grid = tuple(x.shape[2:])
    check_prev_grid(x_prev, prev, x.shape[0], grid)
    out_grid = output_grid("x", grid, cur, "cur")
    check_grad_grid(grad, x.shape[0], "x", grid, out_grid, "cur")
    segs = (Patches(x_prev, prev, bias_prev), Patches(x, cur, bias), Patches(grad, POINTWISE, False))
    return segs, cur, grid, out_grid


def conv2d_restricted_growth_stats_triton(x_prev: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, *,
                                          prev, cur, bias_prev: bool, bias: bool, precision=None,
                                          chunk=None, split_k: int | None = None) -> RestrictedGrowthStats:
    """m_prev (D_p, C_out) and cross_cov (D_p, D) of Restricted growth in one launch (plus its split reduction).

    Args:
        x_prev: (n, C_p, H_p, W_p) input of the previous conv; its output grid is x's grid.
        x: (n, C, H, W) input of the current conv.
        grad: (n, C_out, H_o, W_o) gradient of the current conv's output.
        prev, cur: Conv2dGeometry of the previous / current conv.
        bias_prev, bias: ones rows of the previous / current unfold.
        precision: "ieee", "tf32x3", "tf32" or "bf16".
        chunk: ignored.  split_k: row splits (None = automatic).
    Returns:
        RestrictedGrowthStats(m_prev, cross_cov), fp32 (fp64 for fp64 inputs), contiguous.
    Raises:
        TypeError: dtype. RuntimeError: CPU without the interpreter. ValueError: grids that disagree.
    """
    segs, cur, grid, out_grid = _operands("conv2d_restricted_growth_stats", x_prev, x, grad, prev, cur,
                                          bias_prev, bias)
    dp, d, c_out = segs[0].width, segs[1].width, segs[2].width
    taps = Taps(cur, grid, first=cur.centre_tap, count=1)
    out = gram_triton(segs, (x.shape[0], *out_grid), (0, dp), (dp, d + c_out), taps=taps,
                      precision=precision, split_k=split_k)[0]
    return RestrictedGrowthStats(out[:, d:].contiguous(), out[:, :d].contiguous())


def conv2d_full_growth_stats_triton(x_prev: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, *,
                                    prev, cur, bias_prev: bool, bias: bool, precision=None, chunk=None,
                                    split_k: int | None = None) -> FullGrowthStats:
    """s_growth (D_p, D_p), m_prev (D_p, C_out·kk) col c·kk+e, cross_cov (kk, D_p, D) of Full growth.

    Two launches (plus split reductions): the weighted previous S, and [B̂(e) | U | dA] for every tap.

    Args / Raises: as :func:`conv2d_restricted_growth_stats_triton`.
    Returns:
        FullGrowthStats(s_growth, m_prev, cross_cov), fp32 (fp64 for fp64 inputs), contiguous.
    """
    segs, cur, grid, out_grid = _operands("conv2d_full_growth_stats", x_prev, x, grad, prev, cur,
                                          bias_prev, bias)
    kk = cur.kernel_area
    n = x.shape[0]
    dp, d, c_out = segs[0].width, segs[1].width, segs[2].width
    s_growth = gram_triton((segs[0], None, None), (n, *grid), (0, dp),
                           taps=Taps(cur, grid, weighted=True), precision=precision,
                           split_k=split_k)[0]
    out = gram_triton(segs, (n, *out_grid), (0, dp), (dp, d + c_out), taps=Taps(cur, grid, 0, kk),
                      precision=precision, split_k=split_k)
    cross_cov = out[:, :, :d].contiguous()
    m_prev = out[:, :, d:].permute(1, 2, 0).reshape(dp, c_out * kk)
    return FullGrowthStats(s_growth, m_prev, cross_cov)
