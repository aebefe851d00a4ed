"""Every statistic of a layer in as few Gram launches as possible (the triton side of layer_statistics).

With Z = [x̃₋₂ | x̃ | dA] (linear; rows r) the whole block matrix

    ZᵀZ = [[S₋₂, P, M₋₂], [·, S, M], [·, ·, E]]

is ONE symmetric launch: upper tiles only, mirrored once, each input row read once per tile pair.
Conv layers: Z = [U | dA] gives S, M, E in one launch; the growth statistics add one launch for
m_prev + cross_cov ([B̂(e) | U | dA], conv2d_growth.py) and one for s_growth (the previous S,
tap-weighted for Full), because their rows differ. A block that is not wanted is computed anyway
only when that wastes at most a quarter of the wanted work; otherwise the wanted statistics get
launches of their own.
"""

from __future__ import annotations

import torch

from .._validation import (
    GROWTH_NAMES,
    check_grad_grid,
    check_kind,
    check_prev_grid,
    check_same_leading,
    check_statistic_names,
    output_grid,
    require_prev,
)
from ..geometry import POINTWISE, as_geometry
from .conv2d import image
from .gram import Patches, Taps, check_launch, gram_triton
from .linear import rows_as_image

__all__ = ["layer_statistics_triton"]

# Statistic name -> (segment, segment) block of ZᵀZ; segments 0 = x_prev, 1 = x, 2 = grad.
_BLOCKS = {"s_growth": (0, 0), "cross_cov": (0, 1), "m_prev": (0, 2), "s": (1, 1), "m": (1, 2),
           "e": (2, 2)}
_WASTE_ALLOWED = 0.25


def _cost(widths, block) -> float:
    i, j = block
    return widths[i] * widths[j] * (0.5 if i == j else 1.0)


def _one_launch(widths, blocks) -> tuple[int, ...] | None:
    """The segments of one symmetric launch covering ``blocks``, or None if it wastes too much."""
    used = sorted({s for b in blocks for s in b})
    every = {(i, j) for i in used for j in used if i <= j}
    wanted = sum(_cost(widths, b) for b in blocks)
    waste = sum(_cost(widths, b) for b in every - set(blocks))
    return tuple(used) if waste <= _WASTE_ALLOWED * wanted else None


def _symmetric_blocks(segments, used, rows_grid, names, precision, split_k) -> dict[str, torch.Tensor]:
    """One symmetric launch over the ``used`` segments; cut the named blocks out (contiguous)."""
    chosen = [segments[s] for s in used]
    chosen += [None] * (3 - len(chosen))
    start, offset = {}, 0
    for s in used:
        start[s] = offset
        offset += segments[s].width
    full = gram_triton(tuple(chosen), rows_grid, (0, offset), precision=precision, split_k=split_k)[0]
    out = {}
    for name in names:
        i, j = _BLOCKS[name]
        out[name] = full[start[i]:start[i] + segments[i].width,
                         start[j]:start[j] + segments[j].width].contiguous()
    return out


def _pair_blocks(segments, a, bs, rows_grid, names, precision, split_k, taps=None):
    """One launch A = segment ``a``, B = segments ``bs``: the named (a, b) blocks, each contiguous."""
    chosen = [segments[a]] + [segments[b] for b in bs]
    chosen += [None] * (3 - len(chosen))
    width_b = sum(segments[b].width for b in bs)
    out = gram_triton(tuple(chosen), rows_grid, (0, segments[a].width), (segments[a].width, width_b),
                      taps=taps, precision=precision, split_k=split_k)
    result, offset = {}, 0
    for b in bs:
        block = out[:, :, offset:offset + segments[b].width]
        offset += segments[b].width
        for name in names:
            if _BLOCKS[name] == (a, b):
                result[name] = block
    return result


def layer_statistics_triton(kind: str, x: torch.Tensor | None, grad: torch.Tensor | None, *,
                            x_prev: torch.Tensor | None = None, prev=None, cur=None, names,
                            bias: bool = True, bias_prev: bool = True, precision=None, chunk=None,
                            split_k: int | None = None) -> dict[str, torch.Tensor]:
    """The named statistics of one layer (sums), fused into as few launches as possible.

    Names and shapes as gromo_kernels.layer_statistics: "s" (D, D), "m" (D, o), "e" (o, o),
    "s_growth", "m_prev", "cross_cov" (conv2d_full: (D_p, D_p), (D_p, C_out·kk), (kk, D_p, D)).

    Args:
        kind: "linear", "conv2d", "conv2d_restricted" or "conv2d_full".
        x: linear (R, d); conv (n, C, H, W); None when no name reads it (a conv's input grid is
            then prev's output grid on x_prev). Validated by the public layer.
        grad: linear (R, o); conv (n, C_out, H_o, W_o); None when no name needs it.
        x_prev: linear (R, dp); conv (n, C_p, H_p, W_p); None when no name needs it.
        prev, cur: Conv2dGeometry of the previous / current conv (conv kinds).
        names: statistics to compute.
        bias, bias_prev, precision: as the individual launchers.  chunk: ignored.
        split_k: row splits (None = automatic).
    Returns:
        dict name -> tensor (fp32; fp64 for fp64 inputs), exactly ``names``.
    Raises:
        ValueError: unknown kind or name, or a name whose operand is missing.
        TypeError / RuntimeError: dtype, or CPU tensors without the interpreter.
    """
    names = check_statistic_names("names", check_kind(kind), names, x=x, grad=grad, x_prev=x_prev)
    check_launch("layer_statistics", **{k: v for k, v in (("x", x), ("grad", grad), ("x_prev", x_prev))
                                        if v is not None})
    if kind == "linear":
        return _linear(names, x, grad, x_prev, bias, bias_prev, precision, split_k)
    return _conv(kind, names, x, grad, x_prev, prev, cur, bias, bias_prev, precision, split_k)


def _linear(names, x, grad, x_prev, bias, bias_prev, precision, split_k):
    operands = (("x_prev", x_prev, bias_prev), ("x", x, bias), ("grad", grad, False))
    segments = [Patches(rows_as_image(name, t), POINTWISE, b) if t is not None else None
                for name, t, b in operands]
    ref_name, ref = ("x", x) if x is not None else next((n, t) for n, t, _ in operands if t is not None)
    for name, t, _ in operands:
        if t is not None and t is not ref:
            check_same_leading(name, t, ref_name, ref, "width")
    rows_grid = (ref.shape[0], 1, 1)
    if not names:
        return {}
    widths = {i: s.width for i, s in enumerate(segments) if s is not None}
    blocks = [_BLOCKS[n] for n in names]
    used = _one_launch(widths, blocks)
    if used is not None:
        return _symmetric_blocks(segments, used, rows_grid, names, precision, split_k)
    out = {}
    for name in names:
        i, j = _BLOCKS[name]
        if i == j:
            out.update(_symmetric_blocks(segments, (i,), rows_grid, (name,), precision, split_k))
        else:
            block = _pair_blocks(segments, i, (j,), rows_grid, (name,), precision, split_k)[name]
            out[name] = block[0].contiguous()
    return {n: out[n] for n in names}


def _conv(kind, names, x, grad, x_prev, prev, cur, bias, bias_prev, precision, split_k):
    cur = as_geometry("cur", cur)
    growth = [name for name in names if _BLOCKS[name][0] == 0]
    if growth:
        require_prev(prev)
        prev = as_geometry("prev", prev)
        x_prev = image("x_prev", x_prev)
    if x is not None:
        x = image("x", x)
        n, x_grid = x.shape[0], tuple(x.shape[2:])
    elif growth:
        n, x_grid = x_prev.shape[0], output_grid("x_prev", x_prev.shape[2:], prev, "prev")
    else:
        # "e" alone: grad's own grid.
        n, x_grid = grad.shape[0], None
    out_grid = output_grid("x", x_grid, cur, "cur") if x_grid is not None else tuple(grad.shape[2:])
    if grad is not None:
        grad = image("grad", grad)
        check_grad_grid(grad, n, "x", x_grid or out_grid, out_grid, "cur")
    out: dict[str, torch.Tensor] = {}

    main = [name for name in names if name not in GROWTH_NAMES]
    if main:
        segments = [None, Patches(x, cur, bias) if x is not None else None,
                    Patches(grad, POINTWISE, False) if grad is not None else None]
        widths = {i: s.width for i, s in enumerate(segments) if s is not None}
        used = _one_launch(widths, [_BLOCKS[name] for name in main])
        rows_grid = (n, *out_grid)
        if used is not None:
            out.update(_symmetric_blocks(segments, used, rows_grid, main, precision, split_k))
        else:
            for name in main:
                i, j = _BLOCKS[name]
                if i == j:
                    out.update(_symmetric_blocks(segments, (i,), rows_grid, (name,), precision, split_k))
                else:
                    out[name] = _pair_blocks(segments, i, (j,), rows_grid, (name,), precision,
                                             split_k)[name][0].contiguous()

    if growth:
        out.update(_conv_growth(kind, growth, x_prev, x, grad, prev, cur, bias_prev, bias, precision,
                                split_k, n, x_grid, out_grid))
    return {name: out[name] for name in names}


def _conv_growth(kind, growth, x_prev, x, grad, prev, cur, bias_prev, bias, precision, split_k, n,
                 grid, out_grid):
    """s_growth (its own launch: rows on the previous output grid) and m_prev / cross_cov (one launch).

    ``grid`` is x's grid (n items), ``out_grid`` the current conv's output grid; x may be None when
    cross_cov is not wanted.
    """
    out = {}
    check_prev_grid(x_prev, prev, n, grid)
    kk = cur.kernel_area
    prev_patches = Patches(x_prev, prev, bias_prev)
    if "s_growth" in growth:
        taps = Taps(cur, grid, weighted=True) if kind == "conv2d_full" else None
        out["s_growth"] = gram_triton((prev_patches, None, None), (n, *grid), (0, prev_patches.width),
                                      taps=taps, precision=precision, split_k=split_k)[0]
    pair = [name for name in growth if name != "s_growth"]
    if not pair:
        return out
    # B columns: only the operands a wanted block needs (U for cross_cov, dA for m_prev).
    b_segments = []
    if "cross_cov" in pair:
        b_segments.append(("cross_cov", Patches(x, cur, bias)))
    if "m_prev" in pair:
        b_segments.append(("m_prev", Patches(grad, POINTWISE, False)))
    segments = [prev_patches] + [seg for _, seg in b_segments]
    segments += [None] * (3 - len(segments))
    taps = Taps(cur, grid, cur.centre_tap, 1) if kind == "conv2d_restricted" else \
        Taps(cur, grid, 0, kk)
    dp = prev_patches.width
    width_b = sum(seg.width for _, seg in b_segments)
    result = gram_triton(tuple(segments), (n, *out_grid), (0, dp), (dp, width_b),
                         taps=taps, precision=precision, split_k=split_k)
    offset = 0
    for name, seg in b_segments:
        block = result[:, :, offset:offset + seg.width]
        offset += seg.width
        if kind == "conv2d_restricted":
            out[name] = block[0].contiguous()
        elif name == "cross_cov":
            out[name] = block.contiguous()
        else:
            out[name] = block.permute(1, 2, 0).reshape(dp, seg.width * kk)
    return out
