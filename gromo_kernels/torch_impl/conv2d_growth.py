"""Conv-of-conv growth statistics on the torch path (TINY, TMLR 2024), without the masked unfold.

Notation: previous conv ``prev`` reads x_prev (n, C_p, H_p, W_p) and produces the current input grid
H×W; u_p (D_p,) is its bias-extended patch vector at pixel p (D_p = C_p·kk_p + b_p). The current conv
``cur`` reads x (n, C, H, W) and produces grad's grid L = H_o×W_o; p(l, e) is the pixel tap e of
output l reads (None where it reads padding).

Restricted (centre tap c only), q(l) = p(l, c):
    m_prev    = Σ_{i,l} u_{q(l)} dA_lᵀ             (D_p, C_out)
    cross_cov = Σ_{i,l} u_{q(l)} ũ_lᵀ              (D_p, D)
Full (every tap e; B̂[l, e] = u_{p(l,e)}):
    s_growth  = Σ_{i,l,e} B̂ B̂ᵀ = Σ_p c(p) u_p u_pᵀ, c(p) = #{(l, e): p(l, e) = p}   (D_p, D_p)
    m_prev[a, c·kk+e] = Σ_{i,l} B̂[l,e,a] dA[c,l]                                     (D_p, C_out·kk)
    cross_cov[e] = Σ_{i,l} B̂[l,e] ũ_lᵀ                                              (kk, D_p, D)

Two paths per statistic, chosen by a cost model (``method="auto"``), both correct for every geometry
the path accepts:

* ``"general"`` (any stride/padding/dilation): every M-type term is a convolution weight gradient
  (``aten.convolution_backward``, no unfold of the big operand): Restricted m_prev / cross_cov are the
  previous conv's weight gradient with dA / the current unfold scattered onto the centre pixels;
  Full m_prev / cross_cov are the weight gradient of a conv with the current geometry whose input is
  the previous unfold laid out as an image (D_p channels on H×W) and whose output gradient is dA / the
  current unfold; s_growth is a per-pixel weighted Gram of the previous unfold. Chunked over the batch.
* ``"shift"`` (both convs stride 1, any padding/dilation): x_prev pixel and x pixel of one term are
  both o + constant, so each block is a windowed shifted cross-correlation of x_prev with x (or dA, or
  itself) and the :class:`~gromo_kernels.torch_impl.shift.ShiftCorrelator` evaluates all blocks
  from one GEMM per distinct shift plus border strips: Restricted cross_cov (k_p + k − 1)² shifts
  instead of kk_p·kk blocks, Full s_growth (2k_p − 1)²/2 instead of kk·kk_p²/2, Full m_prev
  (k + k_p − 1)² instead of kk·kk_p, Full cross_cov (2k + k_p − 2)² instead of kk²·kk_p.

Neither path builds the masked unfold (n, L, kk, D_p) or GroMo's dense mask; peak extra memory is
bounded by the batch chunk (256 MB of temporaries when ``chunk`` is None).

Measured on the 2-core development machine, fp32, C_p = C = C_out = 64, 3×3, pad 1, 32×32
(D = D_p = 577), best of 3; "1-core" = process CPU time with one thread (stable on the shared
machine), "2-thread" = wall time on a quiet machine:
    Restricted n=64 (m_prev + cross_cov): shift 0.22 s 2-thread / 0.41 s 1-core (cross_cov: 25 shifts
        instead of 81 blocks; m_prev: one weight gradient, 0.08 s 1-core); general 0.78 s 2-thread.
        GroMo: M₋₂ 0.43 s + P 0.91 s (2-thread); our GroMo-style re-run 2.6 s 1-core.
    Whole Restricted pair (S, M, E of the current layer, S_growth = previous S, m_prev, cross_cov):
        0.48 s 2-thread / 0.79 s 1-core against GroMo's 2.82 s (5.9×); GroMo-style re-run 5.36 s
        1-core (6.8×).
    Full n=64 (s_growth + m_prev + cross_cov): shift 0.69 s 2-thread / 1.33 s 1-core (13 + 25 + 49
        shifts instead of 45·9 + 81 + 729 blocks); whole Full pair 0.83 s 2-thread / 1.58 s 1-core
        against GroMo's 37 s (45×). Full n=16: 0.35 s 1-core against 14.2 s for a GroMo-style
        re-run (1-core).
        General path forced on the same shapes: 2.0 s 1-core at n=16 (cross_cov's weight gradient
        is 98 GFLOP); it serves strided convs.
    Peak extra memory, Full n=64: shift 165 MB, general 245 MB (GroMo 5.1 GiB); Restricted 82 MB.
    Border strips (rows/columns a window misses) cost 10–25 % of the shift path; GEMMs of 64 × 64
    over 74 k canvas pixels run at ~60–75 GFLOP/s per core.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._precision import round_operand
from .._validation import check_prev_grid
from ..geometry import Conv2dGeometry
from ..results import FullGrowthStats, RestrictedGrowthStats
from .conv2d import auto_chunk, batch_chunks, conv_weight_grad
from .linear import sym_gram_rows
from .shift import (
    FLOPS_PER_FLOAT_MOVED,
    ShiftCorrelator,
    ShiftTerm,
    rect_sum,
    shift_cost,
    symmetric_from_blocks,
    symmetric_pairs,
    tap_offsets,
)

__all__ = ["conv2d_restricted_growth_stats_torch", "conv2d_full_growth_stats_torch"]

_METHODS = ("auto", "shift", "general")


def _is_strided(prev: Conv2dGeometry, cur: Conv2dGeometry) -> bool:
    """The shift engine needs stride 1 in both convs."""
    return not (prev.has_unit_stride and cur.has_unit_stride)


def _check_growth_call(x_prev: torch.Tensor, x: torch.Tensor, prev: Conv2dGeometry,
                       cur: Conv2dGeometry, method: str) -> bool:
    """Validate ``method`` and the grid chain; returns whether either conv is strided.

    Raises:
        ValueError: unknown method, grids that do not chain, or "shift" asked for a strided conv.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    check_prev_grid(x_prev, prev, x.shape[0], tuple(x.shape[-2:]))
    strided = _is_strided(prev, cur)
    if method == "shift" and strided:
        raise ValueError(f"method='shift' needs stride 1 in prev and cur, got {prev.stride}, {cur.stride}")
    return strided


def _acc_info(t: torch.Tensor, precision: str) -> tuple[torch.dtype, int]:
    """Accumulation dtype of t under ``precision`` and its size in bytes."""
    acc = round_operand(t.reshape(-1)[:1], precision).dtype
    return acc, torch.finfo(acc).bits // 8


def _valid_range(size_out: int, stride: int, start: int, size_in: int) -> tuple[int, int]:
    """Outputs o in [0, size_out) whose pixel o·stride + start lies in [0, size_in), as [o0, o1)."""
    o0 = max(0, -(start // stride))  # ceil(-start / stride)
    o1 = min(size_out, (size_in - 1 - start) // stride + 1) if size_in - 1 - start >= 0 else 0
    return o0, max(o0, o1)


def _prev_patch_image(x_prev: torch.Tensor, prev: Conv2dGeometry, bias_prev: bool,
                      hw: tuple[int, int]) -> torch.Tensor:
    """The previous unfold as an image (nc, D_p, H, W), bias channel of ones last."""
    (kh, kw), stride, padding, dilation = prev
    nc, cp = x_prev.shape[:2]
    h, w = hw
    if h <= 0 or w <= 0:
        return x_prev.new_zeros(nc, cp * kh * kw + int(bias_prev), max(h, 0), max(w, 0))
    parts = []
    if cp:
        parts.append(F.unfold(x_prev, (kh, kw), dilation=dilation, padding=padding,
                              stride=stride).view(nc, cp * kh * kw, h, w))
    if bias_prev:
        parts.append(x_prev.new_ones(nc, 1, h, w))
    if not parts:
        return x_prev.new_zeros(nc, 0, h, w)
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def _cur_unfold_image(x: torch.Tensor, cur: Conv2dGeometry, bias: bool,
                      out_hw: tuple[int, int]) -> torch.Tensor:
    """The current unfold as an image on the output grid (nc, D, H_o, W_o), bias channel last."""
    return _prev_patch_image(x, cur, bias, out_hw)


# ----------------------------------------------------------------------------------------------
# Restricted
# ----------------------------------------------------------------------------------------------


def _restricted_geometry(x: torch.Tensor, grad: torch.Tensor, cur: Conv2dGeometry):
    """Centre-tap pixel of output o: q = o·s + start; valid outputs [o0, o1) per axis."""
    sh, sw = cur.stride
    h, w = x.shape[-2:]
    ho, wo = grad.shape[-2:]
    start = cur.centre_offset
    rows = _valid_range(ho, sh, start[0], h)
    cols = _valid_range(wo, sw, start[1], w)
    return start, rows, cols


def _centre_slices(x, grad, cur):
    """Strided slices of the current input grid holding the centre pixels of the valid outputs,
    and the valid output ranges; None when no output has a real centre pixel."""
    (sh, sw) = cur.stride
    start, (r0, r1), (c0, c1) = _restricted_geometry(x, grad, cur)
    if r0 >= r1 or c0 >= c1:
        return None
    rs = slice(r0 * sh + start[0], (r1 - 1) * sh + start[0] + 1, sh)
    cs = slice(c0 * sw + start[1], (c1 - 1) * sw + start[1] + 1, sw)
    return rs, cs, slice(r0, r1), slice(c0, c1)


def _restricted_general_m_prev(x_prev, x, grad, prev, cur, bias_prev, precision, chunk):
    """Restricted m_prev: the previous conv's weight gradient with dA placed on the centre pixels."""
    n, cp = x_prev.shape[:2]
    h, w = x.shape[-2:]
    c_out = grad.shape[1]
    kkp = prev.kernel_area
    acc, itemsize = _acc_info(x, precision)
    m_prev = torch.zeros(cp * kkp + int(bias_prev), c_out, dtype=acc, device=x.device)
    where = _centre_slices(x, grad, cur)
    if where is None:
        return m_prev
    rs, cs, out_r, out_c = where
    size = auto_chunk(n, itemsize * (x_prev[0].numel() + 2 * c_out * h * w), chunk)
    for lo, hi in batch_chunks(n, size):
        g = round_operand(grad[lo:hi], precision)
        g_img = g.new_zeros(hi - lo, c_out, h, w)
        g_img[:, :, rs, cs] = g[:, :, out_r, out_c]
        if cp and c_out:
            xp = round_operand(x_prev[lo:hi], precision)
            m_prev[:cp * kkp] += conv_weight_grad(xp, g_img, prev).reshape(c_out, cp * kkp).T
        if bias_prev:
            m_prev[cp * kkp] += g_img.sum((0, 2, 3))
    return m_prev


def _restricted_general(x_prev, x, grad, prev, cur, bias_prev, bias, precision, chunk):
    """Restricted statistics as weight gradients of the previous conv (every geometry)."""
    n, cp = x_prev.shape[:2]
    c, h, w = x.shape[1:]
    ho, wo = grad.shape[-2:]
    kkp, kk = prev.kernel_area, cur.kernel_area
    d_p, d = cp * kkp + int(bias_prev), c * kk + int(bias)
    acc, itemsize = _acc_info(x, precision)
    m_prev = _restricted_general_m_prev(x_prev, x, grad, prev, cur, bias_prev, precision, chunk)
    cross = torch.zeros(d_p, d, dtype=acc, device=x.device)
    where = _centre_slices(x, grad, cur)
    if where is None:
        return RestrictedGrowthStats(m_prev, cross)
    rs, cs, out_r, out_c = where
    per_item = itemsize * (x_prev[0].numel() + x[0].numel() + 2 * d * h * w + d * ho * wo)
    size = auto_chunk(n, per_item, chunk)
    for lo, hi in batch_chunks(n, size):
        # The current unfold (bias row included) placed on the centre pixels of the input grid:
        # cross_cov is then the previous conv's weight gradient with it as output gradient.
        u_cur = _cur_unfold_image(round_operand(x[lo:hi], precision), cur, bias, (ho, wo))
        u_img = u_cur.new_zeros(hi - lo, d, h, w)
        u_img[:, :, rs, cs] = u_cur[:, :, out_r, out_c]
        del u_cur
        if cp:
            xp = round_operand(x_prev[lo:hi], precision)
            cross[:cp * kkp] += conv_weight_grad(xp, u_img, prev).reshape(d, cp * kkp).T
        if bias_prev:
            cross[cp * kkp] += u_img.sum((0, 2, 3))
    return RestrictedGrowthStats(m_prev, cross)


def _restricted_cross_terms(x_prev, x, grad, prev, cur):
    """Shift terms of Restricted cross_cov: block (e_p, e) for A = x_prev, B = x."""
    start, rows, cols = _restricted_geometry(x, grad, cur)
    window = (rows, cols)
    prev_offs = tap_offsets(prev)
    cur_offs = tap_offsets(cur)
    a_offs = [(start[0] + po[0], start[1] + po[1]) for po in prev_offs]
    terms = [[ShiftTerm(a, b, window)] for a in a_offs for b in cur_offs]
    return window, a_offs, cur_offs, terms


def _restricted_shift(x_prev, x, grad, prev, cur, bias_prev, bias, precision, chunk, corr=None):
    """Restricted statistics with cross_cov from the shift engine (both convs stride 1)."""
    n, cp = x_prev.shape[:2]
    c, h, w = x.shape[1:]
    kkp, kk = prev.kernel_area, cur.kernel_area
    d_p, d = cp * kkp + int(bias_prev), c * kk + int(bias)
    acc, itemsize = _acc_info(x, precision)
    window, a_offs, b_offs, terms = _restricted_cross_terms(x_prev, x, grad, prev, cur)
    if corr is None:
        corr = ShiftCorrelator(tuple(x_prev.shape[-2:]), (h, w), terms)
    # M₋₂ is a small weight gradient: the general path computes it without the engine.
    m_prev = _restricted_general_m_prev(x_prev, x, grad, prev, cur, bias_prev, precision, chunk)
    size = auto_chunk(n, corr.canvas_bytes_per_item(cp, c, itemsize)
                      + itemsize * (x_prev[0].numel() + x[0].numel()), chunk)
    for lo, hi in batch_chunks(n, size):
        corr.accumulate(round_operand(x_prev[lo:hi], precision), round_operand(x[lo:hi], precision))
    cross = torch.zeros(d_p, d, dtype=acc, device=x.device)
    blocks = corr.blocks(cp, c, acc, x.device).view(kkp, kk, cp, c)
    cross[:cp * kkp, :c * kk] = blocks.permute(2, 0, 3, 1).reshape(cp * kkp, c * kk)
    (r0, r1), (c0, c1) = window
    if bias:
        col = torch.stack([rect_sum(corr.sum_a, (r0 + a[0], r1 + a[0]), (c0 + a[1], c1 + a[1]))
                           for a in a_offs], 1)
        cross[:cp * kkp, c * kk] = col.reshape(-1)
    if bias_prev:
        row = torch.stack([rect_sum(corr.sum_b, (r0 + b[0], r1 + b[0]), (c0 + b[1], c1 + b[1]))
                           for b in b_offs], 1)
        cross[cp * kkp, :c * kk] = row.reshape(-1)
    if bias and bias_prev:
        cross[cp * kkp, c * kk] = n * max(0, r1 - r0) * max(0, c1 - c0)
    return RestrictedGrowthStats(m_prev, cross)


def conv2d_restricted_growth_stats_torch(x_prev: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, *,
                                         prev: Conv2dGeometry, cur: Conv2dGeometry, bias_prev: bool,
                                         bias: bool, precision: str, chunk: int | None,
                                         method: str = "auto") -> RestrictedGrowthStats:
    """Restricted growth statistics (TINY, TMLR 2024): m_prev (D_p, C_out), cross_cov (D_p, D).

    Args:
        x_prev: (n, C_p, H_p, W_p) previous layer's input; x: (n, C, H, W) this layer's input (the
            previous conv's output grid); grad: (n, C_out, H_o, W_o) this layer's output gradient.
        prev, cur: normalised geometries of the previous and current convs.
        bias_prev, bias: ones feature on the previous / current patch vectors.
        precision: operand rounding mode. chunk: batch items per chunk (None: automatic).
        method: "auto", "shift" (both strides 1) or "general".
    Returns:
        RestrictedGrowthStats(m_prev, cross_cov), sums in fp32 (fp64 for fp64 inputs).
    Raises:
        ValueError: grids that do not chain, or "shift" asked for a strided conv.
    """
    strided = _check_growth_call(x_prev, x, prev, cur, method)
    corr = None
    if method == "auto":
        method = "general"
        if not strided and x_prev.shape[1] and x.shape[1]:
            window, _, _, terms = _restricted_cross_terms(x_prev, x, grad, prev, cur)
            corr = ShiftCorrelator(tuple(x_prev.shape[-2:]), tuple(x.shape[-2:]), terms)
            n, cp = x_prev.shape[:2]
            c = x.shape[1]
            h, w = x.shape[-2:]
            general = 2.0 * n * h * w * (c * cur.kernel_area + 1) * cp * prev.kernel_area \
                + FLOPS_PER_FLOAT_MOVED * 3 * n * h * w * (c * cur.kernel_area + 1)
            if shift_cost(corr, n, cp, c, len(terms)) < general:
                method = "shift"
    if method == "shift":
        return _restricted_shift(x_prev, x, grad, prev, cur, bias_prev, bias, precision, chunk, corr)
    return _restricted_general(x_prev, x, grad, prev, cur, bias_prev, bias, precision, chunk)


# ----------------------------------------------------------------------------------------------
# Full
# ----------------------------------------------------------------------------------------------


def _tap_counts(size_out: int, stride: int, padding: int, dilation: int, k: int, size_in: int):
    """c(p) along one axis: number of (output o, tap i) with o·s − pad + i·d = p, p in [0, size_in)."""
    counts = [0] * size_in
    for o in range(size_out):
        for i in range(k):
            p = o * stride - padding + i * dilation
            if 0 <= p < size_in:
                counts[p] += 1
    return counts


def _full_general(x_prev, x, grad, prev, cur, bias_prev, bias, precision, chunk, want):
    """Full statistics via weighted Gram (s_growth) and conv weight gradients (m_prev, cross_cov)."""
    n, cp = x_prev.shape[:2]
    c, h, w = x.shape[1:]
    c_out, ho, wo = grad.shape[1:]
    kkp, kk = prev.kernel_area, cur.kernel_area
    d_p, d = cp * kkp + int(bias_prev), c * kk + int(bias)
    acc, itemsize = _acc_info(x, precision)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cur
    cr = _tap_counts(ho, sh, ph, dh, kh, h)
    cc = _tap_counts(wo, sw, pw, dw, kw, w)
    weight = torch.tensor(cr, dtype=acc, device=x.device)[:, None] * \
        torch.tensor(cc, dtype=acc, device=x.device)[None, :]
    sqrt_weight = weight.sqrt().reshape(-1)
    s_growth = torch.zeros(d_p, d_p, dtype=acc, device=x.device) if "s" in want else None
    m_prev = torch.zeros(d_p, c_out * kk, dtype=acc, device=x.device) if "m" in want else None
    cross = torch.zeros(kk, d_p, d, dtype=acc, device=x.device) if "p" in want else None
    per_item = itemsize * (x_prev[0].numel() + 3 * d_p * h * w + x[0].numel()
                           + (2 * d * ho * wo if "p" in want else 0) + grad[0].numel())
    size = auto_chunk(n, per_item, chunk)
    for lo, hi in batch_chunks(n, size):
        nc = hi - lo
        img = _prev_patch_image(round_operand(x_prev[lo:hi], precision), prev, bias_prev, (h, w))
        if s_growth is not None and d_p:
            # Σ_p c(p) u_p u_pᵀ as the Gram of √c(p)·u_p (c(p) is an exact small integer).
            rows = (img.reshape(nc, d_p, h * w) * sqrt_weight).transpose(0, 1).reshape(d_p, -1)
            sym_gram_rows(rows, out=s_growth)
            del rows
        if m_prev is not None and d_p and c_out:
            g = round_operand(grad[lo:hi], precision)
            wg = conv_weight_grad(img, g, cur)  # (C_out, D_p, kh, kw)
            m_prev += wg.permute(1, 0, 2, 3).reshape(d_p, c_out * kk)
        if cross is not None and d_p and d:
            u_cur = _cur_unfold_image(round_operand(x[lo:hi], precision), cur, bias, (ho, wo))
            wg = conv_weight_grad(img, u_cur, cur)  # (D, D_p, kh, kw)
            cross += wg.permute(2, 3, 1, 0).reshape(kk, d_p, d)
    return s_growth, m_prev, cross


def _full_windows(x, grad, cur):
    """Per current tap e: its pixel offset and the window of outputs whose pixel is real."""
    h, w = x.shape[-2:]
    ho, wo = grad.shape[-2:]
    offs = tap_offsets(cur)
    wins = [(_valid_range(ho, 1, o[0], h), _valid_range(wo, 1, o[1], w)) for o in offs]
    return offs, wins


def _full_plans(x_prev, x, grad, prev, cur, want):
    """Shift terms of the Full statistics: s_growth (symmetric), m_prev and cross_cov blocks."""
    offs, wins = _full_windows(x, grad, cur)
    prev_offs = tap_offsets(prev)
    kk, kkp = len(offs), len(prev_offs)

    def a_off(e, ep):
        return (offs[e][0] + prev_offs[ep][0], offs[e][1] + prev_offs[ep][1])

    plans = {}
    if "s" in want:
        pairs = symmetric_pairs(prev_offs)
        terms = [[ShiftTerm(a_off(e, first), a_off(e, second), wins[e]) for e in range(kk)]
                 for first, second in pairs]
        plans["s"] = (pairs, terms)
    if "m" in want:
        terms = [[ShiftTerm(a_off(e, ep), (0, 0), wins[e])] for ep in range(kkp) for e in range(kk)]
        plans["m"] = (None, terms)
    if "p" in want:
        terms = [[ShiftTerm(a_off(e, ep), offs[f], wins[e])]
                 for e in range(kk) for ep in range(kkp) for f in range(kk)]
        plans["p"] = (None, terms)
    return offs, wins, a_off, plans


def _full_shift(x_prev, x, grad, prev, cur, bias_prev, bias, precision, chunk, want, correlators=None):
    """The Full statistics named in ``want`` ("s", "m", "p") from the shift engine (stride 1)."""
    n, cp, hp, wp = x_prev.shape
    c, h, w = x.shape[1:]
    c_out, ho, wo = grad.shape[1:]
    kkp, kk = prev.kernel_area, cur.kernel_area
    d_p, d = cp * kkp + int(bias_prev), c * kk + int(bias)
    acc, itemsize = _acc_info(x, precision)
    offs, wins, a_off, plans = _full_plans(x_prev, x, grad, prev, cur, want)
    correlators = dict(correlators or {})
    b_hw = {"s": (hp, wp), "m": (ho, wo), "p": (h, w)}
    for key, (_, terms) in plans.items():
        if key not in correlators:
            correlators[key] = ShiftCorrelator((hp, wp), b_hw[key], terms, same=key == "s")
    b_src = {"m": grad, "p": x}
    b_ch = {"s": cp, "m": c_out, "p": c}
    blocks = {}
    for key, corr in correlators.items():
        per_item = corr.canvas_bytes_per_item(cp, b_ch[key], itemsize) + itemsize * (
            x_prev[0].numel() + (b_src[key][0].numel() if key in b_src else 0))
        size = auto_chunk(n, per_item, chunk)
        for lo, hi in batch_chunks(n, size):
            xp = round_operand(x_prev[lo:hi], precision)
            if key == "s":
                corr.accumulate(xp)
            else:
                corr.accumulate(xp, round_operand(b_src[key][lo:hi], precision))
        # Assemble now: this frees the correlator's canvases before the next one builds its own.
        blocks[key] = corr.blocks(cp, b_ch[key], acc, x.device)
    sum_xprev = next(iter(correlators.values())).sum_a if correlators else None
    sizes = [(r1 - r0) * (c1 - c0) for (r0, r1), (c0, c1) in wins]

    def prev_window_sum(e, ep):
        (r0, r1), (c0, c1) = wins[e]
        a = a_off(e, ep)
        return rect_sum(sum_xprev, (r0 + a[0], r1 + a[0]), (c0 + a[1], c1 + a[1]))

    s_growth = m_prev = cross = None
    if "s" in want:
        pairs, _ = plans["s"]
        s_growth = torch.zeros(d_p, d_p, dtype=acc, device=x.device)
        s_growth[:cp * kkp, :cp * kkp] = symmetric_from_blocks(
            blocks["s"], pairs, kkp)
        if bias_prev:
            col = torch.stack([sum(prev_window_sum(e, ep) for e in range(kk)) for ep in range(kkp)], 1)
            s_growth[:cp * kkp, cp * kkp] = col.reshape(-1)
            s_growth[cp * kkp, :cp * kkp] = col.reshape(-1)
            s_growth[cp * kkp, cp * kkp] = n * sum(sizes)
    if "m" in want:
        m_prev = torch.zeros(d_p, c_out * kk, dtype=acc, device=x.device)
        m_blocks = blocks["m"].view(kkp, kk, cp, c_out)
        m_prev[:cp * kkp] = m_blocks.permute(2, 0, 3, 1).reshape(cp * kkp, c_out * kk)
        if bias_prev:
            sum_g = correlators["m"].sum_b
            m_prev[cp * kkp] = torch.stack([rect_sum(sum_g, *wins[e]) for e in range(kk)], 1).reshape(-1)
    if "p" in want:
        cross = torch.zeros(kk, d_p, d, dtype=acc, device=x.device)
        p_blocks = blocks["p"].view(kk, kkp, kk, cp, c)
        cross[:, :cp * kkp, :c * kk] = p_blocks.permute(0, 3, 1, 4, 2).reshape(kk, cp * kkp, c * kk)
        sum_x = correlators["p"].sum_b
        for e in range(kk):
            (r0, r1), (c0, c1) = wins[e]
            if bias:
                cross[e, :cp * kkp, c * kk] = torch.stack(
                    [prev_window_sum(e, ep) for ep in range(kkp)], 1).reshape(-1)
            if bias_prev:
                cross[e, cp * kkp, :c * kk] = torch.stack(
                    [rect_sum(sum_x, (r0 + o[0], r1 + o[0]), (c0 + o[1], c1 + o[1])) for o in offs],
                    1).reshape(-1)
            if bias and bias_prev:
                cross[e, cp * kkp, c * kk] = n * sizes[e]
    return s_growth, m_prev, cross


def _full_choose(x_prev, x, grad, prev, cur):
    """Per statistic 'shift' or 'general' by the cost model, with the planned correlators."""
    n, cp, hp, wp = x_prev.shape
    c, h, w = x.shape[1:]
    c_out, ho, wo = grad.shape[1:]
    kkp, kk = prev.kernel_area, cur.kernel_area
    d_p, d = cp * kkp + 1, c * kk + 1
    strided = _is_strided(prev, cur)
    general = {
        "s": 1.5 * n * h * w * d_p * d_p + FLOPS_PER_FLOAT_MOVED * 3 * n * h * w * d_p,
        "m": 2.0 * n * ho * wo * kk * d_p * c_out + FLOPS_PER_FLOAT_MOVED * 2 * n * h * w * d_p,
        "p": 2.0 * n * ho * wo * kk * d_p * d + FLOPS_PER_FLOAT_MOVED * 2 * n * (h * w * d_p + ho * wo * d),
    }
    methods = {k: "general" for k in general}
    correlators = {}
    if strided or cp == 0:
        return methods, correlators
    _, _, _, plans = _full_plans(x_prev, x, grad, prev, cur, ("s", "m", "p"))
    b_hw = {"s": (hp, wp), "m": (ho, wo), "p": (h, w)}
    b_ch = {"s": cp, "m": c_out, "p": c}
    for key, (_, terms) in plans.items():
        if b_ch[key] == 0:
            continue
        corr = ShiftCorrelator((hp, wp), b_hw[key], terms, same=key == "s")
        if shift_cost(corr, n, cp, b_ch[key], len(terms)) < general[key]:
            methods[key] = "shift"
            correlators[key] = corr
    return methods, correlators


def conv2d_full_growth_stats_torch(x_prev: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, *,
                                   prev: Conv2dGeometry, cur: Conv2dGeometry, bias_prev: bool,
                                   bias: bool, precision: str, chunk: int | None,
                                   method: str = "auto") -> FullGrowthStats:
    """Full growth statistics (TINY, TMLR 2024) without the masked unfold.

    Args:
        x_prev: (n, C_p, H_p, W_p) previous layer's input; x: (n, C, H, W) this layer's input;
            grad: (n, C_out, H_o, W_o) this layer's output gradient.
        prev, cur: normalised geometries of the previous and current convs.
        bias_prev, bias: ones feature on the previous / current patch vectors.
        precision: operand rounding mode. chunk: batch items per chunk (None: automatic).
        method: "auto" (cost model per statistic), "shift" (both strides 1) or "general".
    Returns:
        FullGrowthStats(s_growth (D_p, D_p), m_prev (D_p, C_out·kk) column c·kk+e,
        cross_cov (kk, D_p, D)), sums in fp32 (fp64 for fp64 inputs).
    Raises:
        ValueError: grids that do not chain, or "shift" asked for a strided conv.
    """
    _check_growth_call(x_prev, x, prev, cur, method)
    if method == "auto":
        methods, correlators = _full_choose(x_prev, x, grad, prev, cur)
    else:
        methods, correlators = {k: method for k in ("s", "m", "p")}, {}
    result = {}
    shift_keys = tuple(k for k, v in methods.items() if v == "shift")
    general_keys = tuple(k for k, v in methods.items() if v == "general")
    if shift_keys:
        out = _full_shift(x_prev, x, grad, prev, cur, bias_prev, bias, precision, chunk, shift_keys,
                          correlators)
        result.update({k: v for k, v in zip(("s", "m", "p"), out) if k in shift_keys})
    if general_keys:
        out = _full_general(x_prev, x, grad, prev, cur, bias_prev, bias, precision, chunk, general_keys)
        result.update({k: v for k, v in zip(("s", "m", "p"), out) if k in general_keys})
    return FullGrowthStats(result["s"], result["m"], result["p"])
