"""GroMo's formulation of the layer statistics, written by us from TINY, TMLR 2024: the baseline.

This is the computation GroMo performs in one ``update_computation`` of a pair of layers, with its
data layout and its recomputations, but without its module plumbing (hooks, TensorStatistic
bookkeeping, the final division by the sample count — a scalar op on each result, omitted on both
sides of the comparison). Every function returns SUMS, like gromo_kernels.

What GroMo does, and so what we do here:
* ``x̃ = [x ; 1]`` re-concatenated on every access (linear_growing_module.py:425 TODO);
* conv unfold ``U`` (``F.unfold`` + a concatenated ones row) recomputed for every statistic that
  reads it (conv2d_growing_module.py:918 TODO), the previous layer's unfold too;
* statistics as ``torch.einsum`` over the unfolded tensors;
* Restricted: the bordered previous unfold ``Ũ_p`` = the previous unfold reshaped to an image and
  convolved depthwise (groups = D_p) with a kernel that is 1 at the centre tap only, using the
  current conv's stride/padding/dilation; recomputed for M₋₂ and for P;
* Full: the dense 0/1 mask ``T (L, kk, H·W)`` built once (cached, as GroMo caches it) from the
  unfold of the image ``1..H·W`` with a Python double loop over (l, e); the masked unfold
  ``B̂ = einsum('ial,jel->ijea', U_p, T)`` is a property re-evaluated on every access: twice as
  the operands of S₋₂ and once more for its sample count, once for M₋₂, once for P — 5 times.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gromo_kernels import Conv2dGeometry


def _with_ones_column(x: torch.Tensor) -> torch.Tensor:
    """GroMo's input_extended: the ones column is created in the default dtype (float32)."""
    return torch.cat([x, torch.ones(x.shape[0], 1, device=x.device)], dim=1)


def linear_pair_statistics(x_prev: torch.Tensor, x: torch.Tensor, grad: torch.Tensor) -> dict[str, torch.Tensor]:
    """S, M, E of a linear layer and S₋₂ (= previous S), M₋₂, P of its previous linear layer.

    Args:
        x_prev: (n, d_p) input of the previous layer.  x: (n, d) input.  grad: (n, o) dA.
    Returns:
        dict s (d+1, d+1), m (d+1, o), e (o, o), s_growth (d_p+1, d_p+1), m_prev (d_p+1, o),
        cross_cov (d_p+1, d+1); sums.
    """
    s = torch.einsum("ij,ik->jk", _with_ones_column(x), _with_ones_column(x))
    m = torch.einsum("ij,ik->jk", _with_ones_column(x), grad)
    e = torch.einsum("ij,ik->jk", grad, grad)
    s_growth = torch.einsum("ij,ik->jk", _with_ones_column(x_prev), _with_ones_column(x_prev))
    m_prev = torch.einsum("ij,ik->jk", _with_ones_column(x_prev), grad)
    cross_cov = torch.einsum("ij,ik->jk", _with_ones_column(x_prev), _with_ones_column(x))
    return dict(s=s, m=m, e=e, s_growth=s_growth, m_prev=m_prev, cross_cov=cross_cov)


def unfolded_extended(x: torch.Tensor, geometry: Conv2dGeometry) -> torch.Tensor:
    """GroMo's unfolded_extended_input: F.unfold plus a ones row last -> (n, C·kh·kw + 1, L)."""
    g = geometry.normalized()
    u = F.unfold(x, g.kernel_size, dilation=g.dilation, padding=g.padding, stride=g.stride)
    return torch.cat([u, torch.ones(u.shape[0], 1, u.shape[2], device=x.device)], dim=1)


def _conv_current_statistics(x: torch.Tensor, grad: torch.Tensor, cur: Conv2dGeometry) -> dict[str, torch.Tensor]:
    """S, M, E of a conv, the unfold recomputed for S and for M."""
    s = torch.einsum("iam,ibm->ab", unfolded_extended(x, cur), unfolded_extended(x, cur))
    m = torch.einsum("iam,icm->ac", unfolded_extended(x, cur), grad.flatten(2))
    e = torch.einsum("ichw,idhw->cd", grad, grad)
    return dict(s=s, m=m, e=e)


def bordering_weight(d_prev: int, cur: Conv2dGeometry, device=None, dtype=None) -> torch.Tensor:
    """Depthwise kernel (D_p, 1, kh, kw): 1 at the centre tap (kh//2, kw//2), 0 elsewhere."""
    kh, kw = cur.normalized().kernel_size
    w = torch.zeros(d_prev, 1, kh, kw, device=device, dtype=dtype)
    w[:, :, kh // 2, kw // 2] = 1.0
    return w


def _bordered_prev_unfold(x_prev, prev, x, cur, weight) -> torch.Tensor:
    """Ũ_p (n, D_p, L): previous unfold as an image, depthwise conv with the centre-tap kernel."""
    g = cur.normalized()
    u_prev = unfolded_extended(x_prev, prev)
    n, d_prev = u_prev.shape[:2]
    image = u_prev.reshape(n, d_prev, x.shape[2], x.shape[3])
    bordered = F.conv2d(image, weight, stride=g.stride, padding=g.padding, dilation=g.dilation,
                        groups=d_prev)
    return bordered.flatten(2)


def restricted_pair_statistics(x_prev, x, grad, *, prev: Conv2dGeometry, cur: Conv2dGeometry,
                               weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Current S, M, E and Restricted growth S₋₂ (= previous S), M₋₂, P, as GroMo computes them.

    Args:
        x_prev (n, C_p, H_p, W_p), x (n, C, H, W), grad (n, C_out, H_o, W_o); prev/cur geometries;
        weight: the cached bordering kernel (built here when None).
    Returns:
        dict s, m, e, s_growth (D_p, D_p), m_prev (D_p, C_out), cross_cov (D_p, D); sums.
    """
    out = _conv_current_statistics(x, grad, cur)
    if weight is None:
        d_prev = x_prev.shape[1] * prev.kernel_area + 1
        weight = bordering_weight(d_prev, cur, x.device, x.dtype)
    out["s_growth"] = torch.einsum("iam,ibm->ab", unfolded_extended(x_prev, prev),
                                   unfolded_extended(x_prev, prev))
    out["m_prev"] = torch.einsum("ial,icl->ac", _bordered_prev_unfold(x_prev, prev, x, cur, weight),
                                 grad.flatten(2))
    out["cross_cov"] = torch.einsum("ial,idl->ad", _bordered_prev_unfold(x_prev, prev, x, cur, weight),
                                    unfolded_extended(x, cur))
    return out


def mask_tensor_t(height: int, width: int, cur: Conv2dGeometry) -> torch.Tensor:
    """Dense T (L, kk, H·W): T[l, e, p] = 1 iff tap e of output l reads pixel p.

    Built as GroMo builds it: unfold the image 1..H·W (0 = padding), then a Python double loop.
    """
    g = cur.normalized()
    image = torch.arange(1, height * width + 1, dtype=torch.float32).reshape(1, 1, height, width)
    index = F.unfold(image, g.kernel_size, dilation=g.dilation, padding=g.padding, stride=g.stride)[0]
    kk, positions = index.shape
    t = torch.zeros(positions, kk, height * width)
    for l in range(positions):
        for e in range(kk):
            p = int(index[e, l])
            if p > 0:
                t[l, e, p - 1] = 1.0
    return t


def full_pair_statistics(x_prev, x, grad, *, prev: Conv2dGeometry, cur: Conv2dGeometry,
                         mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Current S, M, E and Full growth S₋₂, M₋₂, P through the dense masked unfold B̂.

    Args:
        x_prev, x, grad, prev, cur: as in :func:`restricted_pair_statistics`;
        mask: the cached T (built here when None).
    Returns:
        dict s, m, e, s_growth (D_p, D_p), m_prev (D_p, C_out·kk) column c·kk+e, cross_cov (kk, D_p, D).
    """
    out = _conv_current_statistics(x, grad, cur)
    if mask is None:
        mask = mask_tensor_t(x.shape[2], x.shape[3], cur).to(x.device, x.dtype)

    def masked_unfold() -> torch.Tensor:
        return torch.einsum("ial,jel->ijea", unfolded_extended(x_prev, prev), mask)

    s_growth = torch.einsum("ijea,ijeb->ab", masked_unfold(), masked_unfold())
    count = masked_unfold().shape[0]   # GroMo reads the batch size off the property: a third B̂
    assert count == x.shape[0]
    out["s_growth"] = s_growth
    m_prev = torch.einsum("ixab,icx->bca", masked_unfold(), grad.flatten(2))
    out["m_prev"] = m_prev.flatten(1)
    out["cross_cov"] = torch.einsum("ilea,idl->ead", masked_unfold(), unfolded_extended(x, cur))
    return out
