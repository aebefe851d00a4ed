"""The shift-correlation engine of the torch path: many windowed shifted Grams from few GEMMs.

A block Σ_i Σ_{o∈O} A[i,:,o+a] B[i,:,o+b]ᵀ (Ca × Cb) depends on (a, b) only through the shift
δ = b − a and the window O: every block sharing δ is one full correlation over the image minus the
border rows, columns and pixels its window misses (inclusion–exclusion). :class:`ShiftCorrelator`
evaluates all blocks of a request from one GEMM per distinct shift plus batched strip GEMMs, on a
zero-padded channel-major flat canvas where every shift is a strided view (no copy per shift).
It serves the conv S (conv2d.py) and the conv-of-conv growth statistics (conv2d_growth.py); the
cost constants below feed both files' cost models.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import torch

from ..geometry import Conv2dGeometry

__all__ = [
    "FLOPS_PER_FLOAT_MOVED",
    "FLOPS_PER_OP",
    "ShiftCorrelator",
    "ShiftPlan",
    "ShiftTerm",
    "rect_sum",
    "shift_cost",
    "shift_plan",
    "symmetric_from_blocks",
    "symmetric_pairs",
    "tap_offsets",
    "upper_half",
]

# Cost model (in flop-equivalents): a float moved through memory costs about this many flops on
# the development machine (≈120 GFLOP/s GEMM against a few GB/s of copy bandwidth per core).
FLOPS_PER_FLOAT_MOVED = 24.0
# A fixed cost per small GEMM / kernel launch, so tiny shapes take the simpler path.
FLOPS_PER_OP = 2.0e5


def rect_sum(img: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Σ of img (C, H, W) over rows [r0, r1) × cols [c0, c1) clipped to the image -> (C,)."""
    h, w = img.shape[-2:]
    r0, r1 = max(rows[0], 0), min(rows[1], h)
    c0, c1 = max(cols[0], 0), min(cols[1], w)
    if r0 >= r1 or c0 >= c1:
        return img.new_zeros(img.shape[0])
    return img[:, r0:r1, c0:c1].sum((1, 2))


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
        """As :meth:`ShiftPlan.flat_shift`."""
        return self.plan.flat_shift(delta)

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


def tap_offsets(geometry: Conv2dGeometry) -> list[tuple[int, int]]:
    """Pixel offset of each tap e = i·kw + j from the output position (stride-1 coordinates)."""
    (kh, kw), _, (ph, pw), (dh, dw) = geometry
    return [(i * dh - ph, j * dw - pw) for i in range(kh) for j in range(kw)]


def upper_half(delta: tuple[int, int]) -> bool:
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


def symmetric_pairs(offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each unordered pair of taps once, ordered so its shift lies in the computed half-plane."""
    pairs = []
    for e in range(len(offsets)):
        for f in range(e, len(offsets)):
            d = (offsets[f][0] - offsets[e][0], offsets[f][1] - offsets[e][1])
            pairs.append((e, f) if upper_half(d) else (f, e))
    return pairs


def shift_cost(corr: ShiftCorrelator, n: int, ca: int, cb: int, n_blocks: int) -> float:
    """Estimated flop-equivalents of a ShiftCorrelator run (GEMMs, strips, canvas traffic)."""
    canvas = n * corr.hc * corr.wc
    return (corr.num_shifts * (2.0 * ca * cb * canvas + FLOPS_PER_FLOAT_MOVED * (ca + cb) * canvas)
            + n * corr.strip_pixels() * (2.0 * ca * cb + FLOPS_PER_FLOAT_MOVED * 2 * (ca + cb))
            + FLOPS_PER_OP * (4 * corr.num_shifts + n_blocks))
