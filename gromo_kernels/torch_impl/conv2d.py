"""Conv2d statistics on the torch path, without GroMo's repeated unfolds.

    S = Σ_{i,l} ũ_{i,l} ũ_{i,l}ᵀ      x (n, C, H, W)                     -> (D, D),     D = C·kh·kw + b
    M = Σ_{i,l} ũ_{i,l} dA_{i,:,l}ᵀ   x, grad (n, C_out, H_o, W_o)        -> (D, C_out)

ũ_{i,l} is the (bias-extended) patch vector of output position l, feature c·kk + e (e = i·kw + j).

Three ways to get there, chosen per call by a flop-and-traffic cost model (``method="auto"``):

* ``"shift"`` (stride 1, any padding/dilation; S only): block (e, e') of S is
  Σ_l x[l + off(e)] x[l + off(e')]ᵀ, a cross-correlation of x with itself at the relative shift
  δ = off(e') − off(e), summed over the window of pixels tap e reads. Taps sharing δ share one
  (C, C) GEMM over the whole image (laid out channel-major on a zero-padded flat canvas, so every
  shift is a strided view and no copy happens per shift), and each window is recovered by
  subtracting the few border rows/columns it does not read (inclusion–exclusion with per-row,
  per-column and per-pixel strip products). Only δ in one half-plane is computed (S is symmetric):
  (2k−1)²/2 + ½ GEMMs of (C × C) instead of k⁴/2 blocks. The engine, :class:`ShiftCorrelator`,
  lives in ``shift.py``, shared with the conv-of-conv statistics in ``conv2d_growth.py``.
* ``"unfold"`` (every geometry): chunked ``F.unfold`` + one GEMM per chunk, computing only the
  blocks on or above the diagonal of S.
* M is the weight gradient of the convolution itself: ``aten.convolution_backward`` with only the
  weight output requested computes it for every geometry without an unfold.

Memory: work is done over batch chunks (``chunk`` items, or as many as fit a 256 MB budget of
temporaries), so peak extra memory is bounded whatever n is.

Measured on the 2-core development machine (fp32, n=64, C=64, 3×3, pad 1, 32×32, D=577), best of
3+; "1-core" = process CPU time with one thread (the machine was shared, so this is the stable number),
"2-thread" = wall time on a quiet machine. GroMo's unfold + einsum: S 0.59 s, M 0.24 s (2-thread);
our GroMo-style re-run: S 1.23 s, M 0.45 s (1-core).
    S shift   0.07–0.08 s 2-thread, 0.14 s 1-core (13 GEMMs of 64×64 over 74 k canvas pixels, ~60–75
              GFLOP/s per core, border strips ~15 % of it)            -> 8× GroMo
    S unfold  0.20–0.33 s 2-thread (block-triangular Gram of the 576×65 536 unfold)
    M         0.04 s 2-thread, 0.08 s 1-core (convolution_backward)  -> 6× GroMo
    The cost model picks shift at stride 1 for C >= ~8; at C = 3 both take ~4 ms.
    Kept: channel-major flat canvas with strided shifted views (no copy per shift), one batched GEMM
    per strip kind, strided copies for row strips (4× faster than index_select), a cached plan.
    Not pursued: stacking shifted copies into one wider GEMM (a 64×320 GEMM measured 142 GFLOP/s
    against 138 for 64×64, no gain to pay for the copies); a shift-correlation M (9 such GEMMs,
    ≈ 40 ms by the same rate: no better than convolution_backward).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._precision import round_operand, torch_fp32_precision
from ..geometry import Conv2dGeometry
from .linear import sym_gram_rows
from .shift import (
    FLOPS_PER_FLOAT_MOVED,
    FLOPS_PER_OP,
    ShiftCorrelator,
    ShiftTerm,
    rect_sum,
    symmetric_from_blocks,
    symmetric_pairs,
    tap_offsets,
)

__all__ = [
    "conv2d_input_cov_torch",
    "conv2d_input_grad_torch",
    "auto_chunk",
    "batch_chunks",
    "conv_weight_grad",
]

# Budget for the temporaries of one batch chunk when ``chunk`` is None (the contract's 256 MB).
CHUNK_BUDGET_BYTES = 256 * 2**20



def auto_chunk(n: int, bytes_per_item: int, chunk: int | None) -> int:
    """Batch items per chunk: ``chunk`` if given, else as many as fit the 256 MB budget (>= 1)."""
    if chunk is not None:
        return max(1, min(n, int(chunk)))
    return max(1, min(n, CHUNK_BUDGET_BYTES // max(1, int(bytes_per_item))))


def batch_chunks(n: int, size: int):
    """Yield (start, stop) batch ranges of at most ``size`` items."""
    for start in range(0, n, size):
        yield start, min(n, start + size)


def conv_weight_grad(inp: torch.Tensor, grad_out: torch.Tensor, geometry: Conv2dGeometry) -> torch.Tensor:
    """Σ_{i,l} grad_out[i,:,l] · patch(inp)[i,:,l]ᵀ as (C_out, C_in, kh, kw): a conv weight gradient.

    Args:
        inp: (n, C_in, H, W); grad_out: (n, C_out, H_o, W_o) on the conv's output grid.
        geometry: normalised Conv2dGeometry.
    Returns:
        (C_out, C_in, kh, kw) in the inputs' dtype (zeros when a channel count is 0).
    """
    (kh, kw), stride, padding, dilation = geometry
    c_out, c_in = grad_out.shape[1], inp.shape[1]
    if c_out == 0 or c_in == 0 or grad_out[0, 0].numel() == 0:
        # Nothing to reduce (aten also rejects a kernel larger than the padded input here).
        return torch.zeros(c_out, c_in, kh, kw, dtype=inp.dtype, device=inp.device)
    weight = inp.new_empty((c_out, c_in, kh, kw))  # only its shape is read
    return torch.ops.aten.convolution_backward(
        grad_out, inp, weight, None, list(stride), list(padding), list(dilation), False, [0, 0], 1,
        [False, True, False])[1]


def _input_cov_shift(x: torch.Tensor, geometry: Conv2dGeometry, bias: bool, precision: str,
                     chunk: int | None, correlator: ShiftCorrelator | None = None) -> torch.Tensor:
    """S through the shift engine (stride 1 only)."""
    n, c, h, w = x.shape
    ho, wo = geometry.output_size(h, w)
    kk = geometry.kernel_area
    offs = tap_offsets(geometry)
    window = ((0, ho), (0, wo))
    pairs = symmetric_pairs(offs)
    terms = [[ShiftTerm(offs[first], offs[second], window)] for first, second in pairs]
    corr = correlator or ShiftCorrelator((h, w), (h, w), terms, same=True)
    acc = round_operand(x[:1], precision).dtype
    itemsize = torch.finfo(acc).bits // 8
    size = auto_chunk(n, corr.canvas_bytes_per_item(c, c, itemsize) + itemsize * c * h * w, chunk)
    squares = torch.zeros(c, h, w, dtype=acc, device=x.device)
    for start, stop in batch_chunks(n, size):
        operand = round_operand(x[start:stop], precision)
        corr.accumulate(operand)
        squares += operand.to(acc).square().sum(0)
    d_feat = c * kk
    out = torch.empty(d_feat + int(bias), d_feat + int(bias), dtype=acc, device=x.device)
    out[:d_feat, :d_feat] = symmetric_from_blocks(corr.blocks(c, c, acc, x.device), pairs, kk)
    _exact_diagonal(out, squares, offs, (ho, wo))
    if bias:
        img = corr.sum_a
        col = torch.stack([rect_sum(img, (o[0], o[0] + ho), (o[1], o[1] + wo)) for o in offs], 1)
        out[:d_feat, d_feat] = col.reshape(-1)
        out[d_feat, :d_feat] = col.reshape(-1)
        out[d_feat, d_feat] = n * ho * wo
    return out


def _exact_diagonal(out: torch.Tensor, squares: torch.Tensor, offs: list[tuple[int, int]],
                    out_hw: tuple[int, int]) -> None:
    """Overwrite the diagonal of S (D, D) with direct window sums of x² and zero every row/column
    whose window holds no signal.

    The shift engine recovers a tap's window by subtracting border strips from whole-image sums, so
    its error is ε × the channel's whole-image energy, not ε × the entry: a tap whose window misses
    all of a channel's signal (a unit alive only on the border row) came out as ±1e-8·energy on the
    diagonal with off-diagonal noise violating Cauchy–Schwarz, which a Jacobi-scaled solve reads as
    a real direction. Direct sums of squares are exact to ε of the entry, and an exactly zero
    diagonal entry of a Gram matrix forces its whole row and column to zero.

    Args:
        out: S (D, D) or (D + 1, D + 1) with the bias last, feature c·kk + e; modified in place.
        squares: Σ_n x² per pixel (C, H, W) of the operands the GEMMs read.
        offs: pixel offset of each tap; out_hw: output size (H_o, W_o).
    """
    ho, wo = out_hw
    diagonal = torch.stack([rect_sum(squares, (o[0], o[0] + ho), (o[1], o[1] + wo)) for o in offs], 1)
    diagonal = diagonal.reshape(-1)
    d_feat = diagonal.numel()
    dead = torch.nonzero(diagonal == 0).flatten()
    out[dead, :] = 0
    out[:, dead] = 0
    out.diagonal()[:d_feat] = diagonal


def unfold_rows(x: torch.Tensor, geometry: Conv2dGeometry) -> torch.Tensor:
    """Patch matrix (C·kk, n·L) of x (n, C, H, W), feature-major, no bias row (a copy)."""
    (kh, kw), stride, padding, dilation = geometry
    n, c = x.shape[:2]
    u = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    return u.transpose(0, 1).reshape(c * kh * kw, -1)


def _input_cov_unfold(x: torch.Tensor, geometry: Conv2dGeometry, bias: bool, precision: str,
                      chunk: int | None) -> torch.Tensor:
    """S through chunked unfold + block-triangular GEMM (every geometry)."""
    n, c, h, w = x.shape
    ho, wo = geometry.output_size(h, w)
    d_feat = c * geometry.kernel_area
    acc = round_operand(x[:1], precision).dtype
    itemsize = torch.finfo(acc).bits // 8
    out = torch.zeros(d_feat + int(bias), d_feat + int(bias), dtype=acc, device=x.device)
    if bias:
        out[d_feat, d_feat] = n * max(ho, 0) * max(wo, 0)
    if d_feat == 0 or ho <= 0 or wo <= 0:
        return out
    size = auto_chunk(n, itemsize * (2 * d_feat * ho * wo + c * h * w), chunk)
    gram = torch.zeros(d_feat, d_feat, dtype=acc, device=x.device)
    sums = torch.zeros(d_feat, dtype=acc, device=x.device)
    for start, stop in batch_chunks(n, size):
        rows = unfold_rows(round_operand(x[start:stop], precision), geometry)
        sym_gram_rows(rows, out=gram)
        if bias:
            sums += rows.sum(1)
    out[:d_feat, :d_feat] = gram
    if bias:
        out[:d_feat, d_feat] = sums
        out[d_feat, :d_feat] = sums
    return out


def _input_cov_costs(x_shape, geometry: Conv2dGeometry) -> tuple[float, float, ShiftCorrelator | None]:
    """Estimated (shift, unfold) costs in flop-equivalents, and the planned correlator."""
    n, c, h, w = x_shape
    ho, wo = geometry.output_size(h, w)
    kk = geometry.kernel_area
    d_feat = c * kk
    rows = n * ho * wo
    unfold = (d_feat * d_feat * rows * 0.75 * 2
              + FLOPS_PER_FLOAT_MOVED * 3 * d_feat * rows + FLOPS_PER_OP * n)
    if not geometry.has_unit_stride:
        return math.inf, unfold, None
    offs = tap_offsets(geometry)
    window = ((0, ho), (0, wo))
    terms = [[ShiftTerm(offs[first], offs[second], window)] for first, second in symmetric_pairs(offs)]
    corr = ShiftCorrelator((h, w), (h, w), terms, same=True)
    canvas = n * corr.hc * corr.wc
    pix = n * corr.strip_pixels()
    shift = (corr.num_shifts * (2 * c * c * canvas + FLOPS_PER_FLOAT_MOVED * 2 * c * canvas)
             + pix * (2 * c * c + FLOPS_PER_FLOAT_MOVED * 4 * c)
             + FLOPS_PER_OP * (corr.num_shifts * 4 + len(terms)))
    return shift, unfold, corr


def conv2d_input_cov_torch(x: torch.Tensor, geometry: Conv2dGeometry, *, bias: bool, precision: str,
                           chunk: int | None, method: str = "auto") -> torch.Tensor:
    """S = Σ_{i,l} ũ ũᵀ of the (bias-extended) unfold of x (n, C, H, W) -> (D, D), D = C·kh·kw + b.

    Args:
        x: (n, C, H, W) input (any strides).
        geometry: normalised Conv2dGeometry.
        bias: append the ones feature last.
        precision: "ieee", "tf32x3", "tf32" or "bf16".
        chunk: batch items per chunk (None: automatic within 256 MB of temporaries).
        method: "auto" (cost model), "shift" (stride 1 only) or "unfold".
    Returns:
        (D, D) exactly symmetric sum in fp32 (fp64 for fp64 x).
    Raises:
        ValueError: method "shift" with a stride other than 1, or an unknown method.
    """
    if method not in ("auto", "shift", "unfold"):
        raise ValueError(f"method must be 'auto', 'shift' or 'unfold', got {method!r}")
    n, c, h, w = x.shape
    ho, wo = geometry.output_size(h, w)
    if ho <= 0 or wo <= 0 or c == 0:
        # No patches, or only the bias feature: the unfold path's bookkeeping covers both.
        method = "unfold"
    if method == "shift" and not geometry.has_unit_stride:
        raise ValueError(f"method='shift' needs stride 1, got geometry stride {geometry.stride}")
    corr = None
    if method == "auto":
        shift_cost, unfold_cost, corr = _input_cov_costs(x.shape, geometry)
        method = "shift" if shift_cost < unfold_cost else "unfold"
    if method == "shift":
        return _input_cov_shift(x, geometry, bias, precision, chunk, corr)
    return _input_cov_unfold(x, geometry, bias, precision, chunk)


# ----------------------------------------------------------------------------------------------
# M
# ----------------------------------------------------------------------------------------------


def conv2d_input_grad_torch(x: torch.Tensor, grad: torch.Tensor, geometry: Conv2dGeometry, *,
                            bias: bool, precision: str, chunk: int | None) -> torch.Tensor:
    """M = Σ_{i,l} ũ_{i,l} dA_{i,:,l}ᵀ for x (n, C, H, W), grad (n, C_out, H_o, W_o) -> (D, C_out).

    The weight gradient of the convolution (aten.convolution_backward), chunked over the batch;
    the bias row is Σ dA.

    Args:
        x: (n, C, H, W) input; grad: (n, C_out, H_o, W_o) output gradient.
        geometry: normalised Conv2dGeometry.
        bias: append the ones feature last.
        precision: operand rounding mode.
        chunk: batch items per chunk (None: automatic).
    Returns:
        (D, C_out) sum, feature c·kk + e.
    """
    n, c = x.shape[:2]
    c_out = grad.shape[1]
    kk = geometry.kernel_area
    acc = round_operand(x[:1], precision).dtype
    itemsize = torch.finfo(acc).bits // 8
    out = torch.zeros(c * kk + int(bias), c_out, dtype=acc, device=x.device)
    per_item = itemsize * (x[0].numel() + 2 * grad[0].numel() + c * kk * grad[0, 0].numel())
    size = auto_chunk(n, per_item, chunk)
    for start, stop in batch_chunks(n, size):
        g = round_operand(grad[start:stop], precision)
        if c and c_out:
            xc = round_operand(x[start:stop], precision)
            # cuDNN's TF32 default would make an "ieee" M a TF32 one (also for direct callers).
            with torch_fp32_precision(precision):
                wgrad = conv_weight_grad(xc, g, geometry)
            out[:c * kk] += wgrad.reshape(c_out, c * kk).transpose(0, 1)
        if bias:
            out[c * kk] += g.sum((0, 2, 3))
    return out
