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
  is shared with the conv-of-conv statistics in ``conv2d_growth.py``.
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

import functools
import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from .._precision import round_operand, torch_fp32_precision
from ..geometry import Conv2dGeometry
from .linear import sym_gram_rows

__all__ = [
    "conv2d_input_cov_torch",
    "conv2d_input_grad_torch",
    "ShiftCorrelator",
    "ShiftPlan",
    "shift_plan",
    "auto_chunk",
    "batch_chunks",
    "conv_weight_grad",
    "rect_sum",
    "symmetric_from_blocks",
]

# Budget for the temporaries of one batch chunk when ``chunk`` is None (the contract's 256 MB).
CHUNK_BUDGET_BYTES = 256 * 2**20

# Cost model (in flop-equivalents): a float moved through memory costs about this many flops on
# the development machine (≈120 GFLOP/s GEMM against a few GB/s of copy bandwidth per core).
_FLOPS_PER_FLOAT_MOVED = 24.0
# A fixed cost per small GEMM / kernel launch, so tiny shapes take the simpler path.
_FLOPS_PER_OP = 2.0e5


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


def rect_sum(img: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Σ of img (C, H, W) over rows [r0, r1) × cols [c0, c1) clipped to the image -> (C,)."""
    h, w = img.shape[-2:]
    r0, r1 = max(rows[0], 0), min(rows[1], h)
    c0, c1 = max(cols[0], 0), min(cols[1], w)
    if r0 >= r1 or c0 >= c1:
        return img.new_zeros(img.shape[0])
    return img[:, r0:r1, c0:c1].sum((1, 2))


# ----------------------------------------------------------------------------------------------
# The shift-correlation engine
# ----------------------------------------------------------------------------------------------


class ShiftTerm(NamedTuple):
    """One term Σ_{o∈window} A[o + a_off] B[o + b_off]ᵀ (offsets and window in pixels, (row, col))."""

    a_off: tuple[int, int]
    b_off: tuple[int, int]
    window: tuple[tuple[int, int], tuple[int, int]]


def _excluded(window: tuple[int, int], a_off: int, shift: int, size_a: int, size_b: int):
    """Rows y of A (one axis) that are valid for this shift but outside the window; None if empty.

    Valid y: A[y] and B[y + shift] both inside their images. Window in A coordinates:
    [w0 + a_off, w1 + a_off).
    """
    v0, v1 = max(0, -shift), min(size_a, size_b - shift)
    y0, y1 = max(window[0] + a_off, v0), min(window[1] + a_off, v1)
    if y0 >= y1:
        return None
    return tuple(range(v0, y0)) + tuple(range(y1, v1))


class ShiftPlan:
    """Which shifts, strips and ±1 combinations a set of shift-correlation blocks needs.

    Depends only on image sizes and the term lists, so it is built once per layer shape
    (:func:`shift_plan` caches it) and shared by every call; see :class:`ShiftCorrelator`.
    """

    def __init__(self, a_hw: tuple[int, int], b_hw: tuple[int, int],
                 blocks: Sequence[Sequence[ShiftTerm]], same: bool):
        self.a_hw, self.b_hw, self.same = tuple(a_hw), tuple(b_hw), same
        self.n_blocks = len(blocks)
        (ha, wa), (hb, wb) = self.a_hw, self.b_hw
        shifts: dict[tuple[int, int], int] = {}
        kept = []  # (block, shift index, excluded rows, excluded cols)
        for k, terms in enumerate(blocks):
            for term in terms:
                shift = (term.b_off[0] - term.a_off[0], term.b_off[1] - term.a_off[1])
                rows = _excluded(term.window[0], term.a_off[0], shift[0], ha, hb)
                if rows is None:
                    continue
                cols = _excluded(term.window[1], term.a_off[1], shift[1], wa, wb)
                if cols is None:
                    continue
                kept.append((k, shifts.setdefault(shift, len(shifts)), rows, cols))
        self.shifts = list(shifts)
        drs = [d[0] for d in self.shifts] or [0]
        dcs = [d[1] for d in self.shifts] or [0]
        self.hc = max(ha + max(0, max(drs)), hb + max(0, -min(drs)), 1)
        self.wc = max(wa + max(0, max(dcs)), wb + max(0, -min(dcs)), 1)
        sig = [self.flat_shift(d) for d in self.shifts] or [0]
        self.front = max(0, -min(sig))
        self.back = max(0, max(sig))
        # Strip ids per kind: row (shift, r), col (shift, c), pixel (shift, r, c).
        strips = {"row": {}, "col": {}, "pix": {}}
        coef: dict[tuple[int, tuple[str, int]], float] = {}

        def add(k, z, value):
            coef[(k, z)] = coef.get((k, z), 0.0) + value

        for k, s, rows, cols in kept:
            add(k, ("F", s), 1.0)
            for r in rows:
                add(k, ("row", strips["row"].setdefault((s, r), len(strips["row"]))), -1.0)
            for c in cols:
                add(k, ("col", strips["col"].setdefault((s, c), len(strips["col"]))), -1.0)
            for r in rows:
                for c in cols:
                    add(k, ("pix", strips["pix"].setdefault((s, r, c), len(strips["pix"]))), 1.0)
        self.strips = strips
        n_f, n_r, n_c = len(self.shifts), len(strips["row"]), len(strips["col"])
        base = {"F": 0, "row": n_f, "col": n_f + n_r, "pix": n_f + n_r + n_c}
        self.n_terms = n_f + n_r + n_c + len(strips["pix"])
        # (block, term, coefficient) triples of the final sparse combination.
        self.coef = sorted(((k, base[kind] + j), v) for (k, (kind, j)), v in coef.items() if v != 0.0)
        self._index_cache: dict = {}

    def flat_shift(self, delta: tuple[int, int]) -> int:
        """Offset in the flat canvas that moves pixel (r, c) to (r + δr, c + δc)."""
        return delta[0] * self.wc + delta[1]


@functools.lru_cache(maxsize=64)
def shift_plan(a_hw: tuple[int, int], b_hw: tuple[int, int],
               blocks: tuple[tuple[ShiftTerm, ...], ...], same: bool) -> ShiftPlan:
    """The cached :class:`ShiftPlan` for these image sizes and terms (layers repeat shapes)."""
    return ShiftPlan(a_hw, b_hw, blocks, same)


class ShiftCorrelator:
    """Blocks Σ_i Σ_{o∈O} A[i,:,o+a] B[i,:,o+b]ᵀ (Ca × Cb) for many (a, b, O) sharing few shifts.

    For a shift δ = b − a, the full correlation F_δ = Σ_y A[y] B[y+δ]ᵀ over every pixel is one GEMM
    on a zero-padded channel-major flat canvas (the shifted operand is a strided view, no copy).
    A term's window O + a misses only a few border rows/columns of the valid region, so
    term = F_δ − Σ_{excluded rows} R_δ[r] − Σ_{excluded cols} C_δ[c] + Σ_{both} P_δ[r, c]
    with the row, column and pixel strip products of every shift gathered and multiplied in one
    batched GEMM per kind and chunk. Blocks are then one sparse (±1) combination of all of these.

    Canvas: each batch item's A and B sit at the top-left of an (hc, wc) tile with
    hc >= H + max δr (and Hb + max −δr), wc likewise; a flat shift σ = δr·wc + δc then maps every
    real pixel either onto its true neighbour or onto padding, never onto another real pixel.

    Usage: build with the term lists, call :meth:`accumulate` once per batch chunk, then
    :meth:`blocks`. Also accumulates Σ_i A[i] and Σ_i B[i] (``sum_a``, ``sum_b``) for bias terms.

    Args:
        a_hw, b_hw: (H, W) of the A and B images.
        blocks: one list of :class:`ShiftTerm` per output block; a block is the sum of its terms.
        same: A and B are the same tensor (one canvas, ``accumulate(a)`` only).
    """

    def __init__(self, a_hw: tuple[int, int], b_hw: tuple[int, int],
                 blocks: Sequence[Sequence[ShiftTerm]], *, same: bool = False):
        plan = shift_plan(tuple(a_hw), tuple(b_hw), tuple(tuple(t) for t in blocks), same)
        self.plan = plan
        self.a_hw, self.b_hw, self.same = plan.a_hw, plan.b_hw, plan.same
        self.n_blocks, self.shifts, self.n_terms = plan.n_blocks, plan.shifts, plan.n_terms
        self.hc, self.wc, self.front, self.back = plan.hc, plan.wc, plan.front, plan.back
        self._strips, self._coef, self._index_cache = plan.strips, plan.coef, plan._index_cache
        self._canvas_cache: dict = {}
        self.full = self.row_strips = self.col_strips = self.pixel_strips = None
        self.sum_a = self.sum_b = None

    def flat_shift(self, delta: tuple[int, int]) -> int:
        """Offset in the flat canvas that moves pixel (r, c) to (r + δr, c + δc)."""
        return delta[0] * self.wc + delta[1]

    @property
    def num_shifts(self) -> int:
        """Number of distinct shifts (one full GEMM each)."""
        return len(self.shifts)

    def strip_pixels(self) -> int:
        """Pixels per batch item read by all border strips (for the cost model)."""
        return (len(self._strips["row"]) * self.wc + len(self._strips["col"]) * self.hc
                + len(self._strips["pix"]))

    def canvas_bytes_per_item(self, ca: int, cb: int, itemsize: int) -> int:
        """Temporaries per batch item: the canvases plus the gathered strips."""
        canvas = (ca + (0 if self.same else cb)) * self.hc * self.wc
        return itemsize * (canvas + (ca + cb) * self.strip_pixels())

    def _canvas(self, t: torch.Tensor, key: str) -> torch.Tensor:
        """(C, front + nc·hc·wc + back) zero-padded flat canvas holding t (nc, C, h, w)."""
        nc, c, h, w = t.shape
        size = self.front + nc * self.hc * self.wc + self.back
        buf = self._canvas_cache.get(key)
        if buf is None or buf.shape != (c, size) or buf.dtype != t.dtype:
            # Padding entries stay zero across chunks: only the image region is rewritten. A
            # shorter last chunk replaces the buffer (never two live at once).
            self._canvas_cache.pop(key, None)
            buf = torch.zeros(c, size, dtype=t.dtype, device=t.device)
            self._canvas_cache[key] = buf
        body = buf[:, self.front:self.front + nc * self.hc * self.wc].view(c, nc, self.hc, self.wc)
        body[:, :, :h, :w].copy_(t.transpose(0, 1))
        return buf

    def _strip_index(self, kind: str, nc: int, device):
        """Flat canvas indices (A, B) of every strip of one kind for a chunk of nc items, with the
        number of strips and their length; None when the kind has no strips."""
        key = (kind, nc, str(device))
        if key in self._index_cache:
            return self._index_cache[key]
        entries = self._strips[kind]
        if not entries:
            self._index_cache[key] = None
            return None
        tile = self.hc * self.wc
        if kind == "row":
            # Start of each strip's run in item 0 of the canvas, for A and for B.
            starts_a = [self.front + r * self.wc for _, r in entries]
            starts_b = [a + self.flat_shift(self.shifts[s]) for a, (s, _) in zip(starts_a, entries)]
            idx = (starts_a, starts_b, len(starts_a), nc * self.wc)
            self._index_cache[key] = idx
            return idx
        pos_a, shift = [], []
        for entry in entries:  # insertion order == strip index
            s = entry[0]
            if kind == "row":
                pos_a.append([entry[1] * self.wc + j for j in range(self.wc)])
            elif kind == "col":
                pos_a.append([r * self.wc + entry[1] for r in range(self.hc)])
            else:
                pos_a.append([entry[1] * self.wc + entry[2]])
            shift.append(self.flat_shift(self.shifts[s]))
        pa = torch.tensor(pos_a, dtype=torch.int64)  # (P, length)
        pb = pa + torch.tensor(shift, dtype=torch.int64)[:, None]
        # Order (strip, item, position): each strip's gathered rows are then one contiguous
        # (C, nc·length) matrix and the batched GEMM reads them without another copy.
        item = torch.arange(nc, dtype=torch.int64)[None, :, None] * tile + self.front
        idx = ((item + pa[:, None, :]).reshape(-1).to(device),
               (item + pb[:, None, :]).reshape(-1).to(device), pa.shape[0], nc * pa.shape[1])
        self._index_cache[key] = idx
        return idx

    def _copy_rows(self, buf: torch.Tensor, starts: list[int], nc: int) -> torch.Tensor:
        """(count, C, nc·wc): the wc-long run at each start offset of every item's tile."""
        c, tile = buf.shape[0], self.hc * self.wc
        out = buf.new_empty(len(starts), c, nc, self.wc)
        for k, start in enumerate(starts):
            out[k].copy_(buf.as_strided((c, nc, self.wc), (buf.stride(0), tile, 1), start))
        return out.view(len(starts), c, nc * self.wc)

    def accumulate(self, a: torch.Tensor, b: torch.Tensor | None = None) -> None:
        """Add one batch chunk: a (nc, Ca, Ha, Wa), b (nc, Cb, Hb, Wb) (omit b when ``same``)."""
        b_img = a if self.same else b
        self.sum_a = a.sum(0) if self.sum_a is None else self.sum_a.add_(a.sum(0))
        if self.same:
            self.sum_b = self.sum_a
        else:
            self.sum_b = b_img.sum(0) if self.sum_b is None else self.sum_b.add_(b_img.sum(0))
        nc, ca = a.shape[:2]
        cb = b_img.shape[1]
        if self.full is None:
            self.full = a.new_zeros(len(self.shifts), ca, cb)
        buf_a = self._canvas(a, "a")
        buf_b = buf_a if self.same else self._canvas(b_img, "b")
        n_flat = nc * self.hc * self.wc
        a2 = buf_a[:, self.front:self.front + n_flat]
        for k, delta in enumerate(self.shifts):
            s = self.front + self.flat_shift(delta)
            self.full[k].addmm_(a2, buf_b[:, s:s + n_flat].transpose(0, 1))
        for kind, attr in (("row", "row_strips"), ("col", "col_strips"), ("pix", "pixel_strips")):
            idx = self._strip_index(kind, nc, a.device)
            if idx is None:
                continue
            ia, ib, count, length = idx
            if kind == "row":
                # Rows are contiguous runs of wc floats per item: strided copies beat a gather.
                ga, gb = self._copy_rows(buf_a, ia, nc), self._copy_rows(buf_b, ib, nc)
            else:
                ga = buf_a.index_select(1, ia).view(ca, count, length).transpose(0, 1)
                gb = buf_b.index_select(1, ib).view(cb, count, length).transpose(0, 1)
            prod = torch.bmm(ga, gb.transpose(1, 2))  # (count, Ca, Cb)
            old = getattr(self, attr)
            setattr(self, attr, prod if old is None else old.add_(prod))

    def blocks(self, ca: int, cb: int, dtype: torch.dtype, device) -> torch.Tensor:
        """(n_blocks, Ca, Cb): every requested block, as a ±1 sparse combination of the accumulated
        full correlations and strips."""
        parts = [t for t in (self.full, self.row_strips, self.col_strips, self.pixel_strips)
                 if t is not None]
        if not parts or not self._coef:
            return torch.zeros(self.n_blocks, ca, cb, dtype=dtype, device=device)
        # The canvases are not needed any more: free them before the assembly allocates.
        self._canvas_cache.clear()
        z = torch.cat(parts).reshape(self.n_terms, ca * cb)
        rows = torch.tensor([k for (k, _), _ in self._coef], dtype=torch.int64, device=device)
        cols = torch.tensor([j for (_, j), _ in self._coef], dtype=torch.int64, device=device)
        vals = torch.tensor([v for _, v in self._coef], dtype=dtype, device=device)
        out = torch.zeros(self.n_blocks, ca * cb, dtype=dtype, device=device)
        # Gather, scale by ±1 (exact) and scatter-add, a slice of entries at a time so the gathered
        # copy stays small.
        step = max(1, (16 * 2**20) // max(1, ca * cb * z.element_size()))
        for lo in range(0, len(self._coef), step):
            sl = slice(lo, lo + step)
            out.index_add_(0, rows[sl], z.index_select(0, cols[sl]) * vals[sl, None])
        return out.view(self.n_blocks, ca, cb)

# ----------------------------------------------------------------------------------------------
# S
# ----------------------------------------------------------------------------------------------


def _tap_offsets(geometry: Conv2dGeometry) -> list[tuple[int, int]]:
    """Pixel offset of each tap e = i·kw + j from the output position (stride-1 coordinates)."""
    (kh, kw), _, (ph, pw), (dh, dw) = geometry
    return [(i * dh - ph, j * dw - pw) for i in range(kh) for j in range(kw)]


def _upper_half(delta: tuple[int, int]) -> bool:
    """δ lies in the half-plane whose flat shift is >= 0 (the half computed for symmetric S)."""
    return delta[0] > 0 or (delta[0] == 0 and delta[1] >= 0)


def symmetric_from_blocks(blocks: torch.Tensor, pairs: list[tuple[int, int]], kk: int) -> torch.Tensor:
    """Assemble S (C·kk, C·kk), feature c·kk + e, from blocks (n_pairs, C, C) of tap pairs (e, f).

    Each unordered tap pair appears once; its mirror gets the transpose and diagonal blocks are
    symmetrised, so the result is exactly symmetric.
    """
    c = blocks.shape[-1]
    first = torch.tensor([p[0] for p in pairs], dtype=torch.int64, device=blocks.device)
    second = torch.tensor([p[1] for p in pairs], dtype=torch.int64, device=blocks.device)
    full = blocks.new_zeros(kk, kk, c, c)
    full[first, second] = blocks
    full[second, first] = blocks.transpose(1, 2)
    diag = first == second
    full[first[diag], first[diag]] = 0.5 * (blocks[diag] + blocks[diag].transpose(1, 2))
    return full.permute(2, 0, 3, 1).reshape(c * kk, c * kk)


def _input_cov_shift(x: torch.Tensor, geometry: Conv2dGeometry, bias: bool, precision: str,
                     chunk: int | None, correlator: ShiftCorrelator | None = None) -> torch.Tensor:
    """S through the shift engine (stride 1 only)."""
    n, c, h, w = x.shape
    ho, wo = geometry.output_size(h, w)
    kk = geometry.kernel_area
    offs = _tap_offsets(geometry)
    window = ((0, ho), (0, wo))
    pairs = []
    terms = []
    for e in range(kk):
        for f in range(e, kk):
            d = (offs[f][0] - offs[e][0], offs[f][1] - offs[e][1])
            first, second = (e, f) if _upper_half(d) else (f, e)
            pairs.append((first, second))
            terms.append([ShiftTerm(offs[first], offs[second], window)])
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
              + _FLOPS_PER_FLOAT_MOVED * 3 * d_feat * rows + _FLOPS_PER_OP * n)
    if geometry.stride != (1, 1):
        return math.inf, unfold, None
    offs = _tap_offsets(geometry)
    window = ((0, ho), (0, wo))
    terms = []
    for e in range(kk):
        for f in range(e, kk):
            d = (offs[f][0] - offs[e][0], offs[f][1] - offs[e][1])
            first, second = (e, f) if _upper_half(d) else (f, e)
            terms.append([ShiftTerm(offs[first], offs[second], window)])
    corr = ShiftCorrelator((h, w), (h, w), terms, same=True)
    canvas = n * corr.hc * corr.wc
    pix = n * corr.strip_pixels()
    shift = (corr.num_shifts * (2 * c * c * canvas + _FLOPS_PER_FLOAT_MOVED * 2 * c * canvas)
             + pix * (2 * c * c + _FLOPS_PER_FLOAT_MOVED * 4 * c)
             + _FLOPS_PER_OP * (corr.num_shifts * 4 + len(terms)))
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
    if method == "shift" and geometry.stride != (1, 1):
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
