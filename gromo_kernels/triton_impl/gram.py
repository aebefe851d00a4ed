"""One Gram kernel behind every statistic: ``out[e] = Z_Aᵀ Z_B`` over R virtual rows, split-K.

``Z (R, D₁+D₂+D₃)`` is never materialised. Its columns are up to three *segments*, each the im2col
of a 4-D tensor ``(n, C, H, W)`` under its own conv geometry, with an optional virtual ones column
last (the bias). Row ``r = (i, oy, ox)`` runs over an ``n × H_o × W_o`` grid, so entry
``Z[r, c·kh·kw + ki·kw + kj] = x[i, c, oy·s_h − p_h + ki·d_h, ox·s_w − p_w + kj·d_w]`` (0 outside the
image). Every statistic is a block of ``ZᵀZ``:

* linear: a 2-D ``x (R, d)`` is the image ``(R, d, 1, 1)`` under a 1×1 kernel (a few idle integer
  ops per element; linear statistics are memory- or launch-bound anyway);
* conv S / M / E: ``Z = [U | dA]``, dA being the 1×1 "unfold" of the gradient image;
* Restricted / Full conv-of-conv: segment 1 is the previous layer's unfold read at the pixel under
  tap ``e`` of the current conv (the previous unfold composed with the current gather: the masked
  unfold of the Full scheme is index arithmetic here, never a tensor); ``e`` is grid axis 2;
* Full S_growth: ``Σ_p c(p) u_p u_pᵀ`` — the previous S with each pixel weighted by the number of
  (output, tap) pairs of the current conv that read it (separable: a host-computed count per row
  times one per column).

Symmetric outputs (A and B the same columns) launch only tiles on or above the diagonal; the final
reduction mirrors them once. The reduction over rows is split across programs (split-K): each
writes an fp32 (fp64 for fp64 inputs) partial into a ``(SPLIT, E, D_A, D_B)`` buffer and a second
kernel sums the partials in a fixed order — same input, bit-identical output, no float atomics.

Precision (``MODE``): 0 "ieee" exact fp32 products; 1 "tf32x3"; 2 "tf32"; 3 "bf16". Operands are
rounded explicitly in-kernel for tf32 (nearest, ties away, as ``cvt.rna.tf32.f32``) and bf16
(nearest even) with integer bit arithmetic, so the result is defined independently of how the
hardware truncates, matches the torch path's ``round_operand`` exactly, and is testable under the
interpreter (whose fp32→bf16 cast truncates and whose tf32 dots are exact). On the GPU the bf16
mode feeds ``.to(tl.bfloat16)`` tiles (exact after rounding) to a bf16 tensor-core dot and the tf32
mode a "tf32" dot. Under the interpreter (``EMULATE``), whose bf16 dots are wrong and tf32 dots
exact, both feed operands rounded to the mode, as fp32, to an "ieee" dot: a product of two bf16 or
two tf32 numbers is exact in fp32, so this computes the tensor cores' products and accumulates in
fp32 — the GPU construct and its tested equivalent differ only in summation order. fp64 inputs
accumulate in fp64 ("ieee" fp64 dots; tf32/bf16 modes round the operands first).

Trade-off: one generic kernel, ~70 runtime arguments, versus one kernel per statistic. Every
runtime int is unspecialised (``do_not_specialize``): growth never recompiles, and a variant is
fixed by its flags, dtypes and block config. Determinism: the summation order depends on the block
config, so results are bit-identical for a fixed config; autotune results are cached on disk
(``cache_results``) so later processes reuse the choice; GROMO_KERNELS_TRITON_AUTOTUNE=0 pins one.

The main loop (measured ahead of time for sm_90 with bench/gpu_static.py): the host hands the
kernel a *kernel image* per segment — zero-padded by the conv's padding, a ones channel for the
bias, one zero image past the last — so every gather is an unmasked load at
``row part + column part`` with no select: rows past R read the zero image, composed pixels
outside the grid too, columns outside a segment read its column 0 (they only feed output entries
that are never stored, or are replaced by the right segment's value with one select). Row
coordinates are int32, decomposed once per block and carried per lane (no division in the loop).
Cost: ~2× the input's memory for the copies, written once per call.

Not done (measure on a GPU first): a fused tile ([U | dA], three segments) still gathers every
segment for every element (selects pick the right one); TMA/descriptor loads for the dense
(linear) case; the shift structure of stride-1 convs to cut Full P and S by ~(2k−1)²/k⁴;
persistent programs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .._backend import interpreter_enabled
from .._precision import accumulate_dtype, check_precision
from .._validation import check_floating
from ..geometry import Conv2dGeometry
from .configs import (
    AUTOTUNE_KEY,
    UNSPECIALISED,
    auto_split,
    autotune_options,
    early_prune,
    gram_configs,
)
from .images import kernel_image, tap_counts

__all__ = ["Patches", "Taps", "gram_triton", "check_launch", "MODES"]

# Precision modes: the kernel's MODE constexpr. MODE >= MODE_TF32 are the modes whose operands are
# rounded before the products (tf32, bf16).
MODE_IEEE = tl.constexpr(0)
MODE_TF32X3 = tl.constexpr(1)
MODE_TF32 = tl.constexpr(2)
MODE_BF16 = tl.constexpr(3)
MODES = {"ieee": MODE_IEEE.value, "tf32x3": MODE_TF32X3.value, "tf32": MODE_TF32.value,
         "bf16": MODE_BF16.value}

# Rows per split are a multiple of this, so split boundaries fall on BLOCK_R boundaries.
_ROW_ALIGN = 128
_MAX_BLOCK_R = 64
_REDUCE_BLOCK = 64
# Tensors (elements) and row counts from here on need int64 indices.
_INT32_LIMIT = 2**31
# Output grids below this size make the kernel's float-reciprocal carries exact.
_GRID_LIMIT = 2**22


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------

@triton.jit
def _round_to_mode(v, MODE: tl.constexpr, EMULATE: tl.constexpr):
    """fp32 tile -> the nearest tf32 (ties away) or bf16 (ties even) value, still as fp32.

    tf32: add half an ulp and clear the 13 dropped bits (two integer ops; infinities stay, a NaN
    stays NaN unless its payload lies only in the dropped bits, when it becomes an infinity).
    bf16 on the GPU: the hardware's round-to-nearest-even cast; under the interpreter (EMULATE),
    whose bf16 cast truncates, the same rounding in integer bit arithmetic.
    """
    if MODE == MODE_TF32:
        v = ((v.to(tl.int32, bitcast=True) + 0x1000) & -8192).to(tl.float32, bitcast=True)
    elif MODE == MODE_BF16:
        if EMULATE:
            bits = v.to(tl.int32, bitcast=True)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & -65536).to(tl.float32, bitcast=True)
            v = tl.where(v != v, v, rounded)
        else:
            v = v.to(tl.bfloat16).to(tl.float32)
    return v

@triton.jit
def _prepare(v, MODE: tl.constexpr, EMULATE: tl.constexpr, ACC64: tl.constexpr):
    """A loaded tile in its accumulation dtype, rounded as the precision mode asks."""
    if ACC64:
        if MODE >= MODE_TF32:
            v = _round_to_mode(v.to(tl.float32), MODE, EMULATE).to(tl.float64)
        else:
            v = v.to(tl.float64)
    else:
        v = _round_to_mode(v.to(tl.float32), MODE, EMULATE)
    return v


@triton.jit
def _mma(acc, a_t, b, MODE: tl.constexpr, EMULATE: tl.constexpr, ACC64: tl.constexpr):
    """acc += a_t @ b in the precision mode (operands already rounded by _prepare).

    EMULATE (the interpreter): tf32/bf16 dots are replaced by what the tensor cores compute —
    rounded operands, exact products, fp32 accumulation — because the interpreter's tf32 dot is
    exact and its bf16 dot is wrong.
    """
    if ACC64:
        acc = tl.dot(a_t, b, acc, input_precision="ieee", out_dtype=tl.float64)
    elif MODE == MODE_TF32X3:
        acc = tl.dot(a_t, b, acc, input_precision="tf32x3")
    elif MODE >= MODE_TF32 and EMULATE:
        acc = tl.dot(a_t, b, acc, input_precision="ieee")
    elif MODE == MODE_TF32:
        acc = tl.dot(a_t, b, acc, input_precision="tf32")
    elif MODE == MODE_BF16:
        acc = tl.dot(a_t.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    else:
        acc = tl.dot(a_t, b, acc, input_precision="ieee")
    return acc


@triton.jit
def _advance(img, oy, ox, step, inv_ho, inv_wo, HO, WO):
    """(img, oy, ox) of the row ``step`` rows after (img, oy, ox) on an HO×WO grid, with carries.

    Divisions by WO and HO are float-reciprocal multiplications, exact below _GRID_LIMIT.
    """
    t = ox + step
    q = ((t.to(tl.float32) + 0.5) * inv_wo).to(tl.int32)
    ox = t - q * WO
    u = oy + q
    q = ((u.to(tl.float32) + 0.5) * inv_ho).to(tl.int32)
    oy = u - q * HO
    return img + q, oy, ox


@triton.jit
def _columns(cols, lo, C, KW, KK, s_c, s_h, s_w, DH, DW, B, I64: tl.constexpr):
    """Loop-invariant column parts of one segment for the columns ``cols`` (segment starts at ``lo``).

    Returns (offset, inside): the address part c·s_c + ki·DH·s_h + kj·DW·s_w — the ones column
    C·KK is channel C at tap 0, the host's ones channel; columns outside the segment take column
    0's, so every address stays inside the image — and the in-segment flags.
    """
    f = cols - lo
    inside = (f >= 0) & (f < C * KK + B)
    f = tl.where(inside, f, 0)
    c = f // KK
    t = f - c * KK
    ki = t // KW
    kj = t - ki * KW
    if I64:
        offset = c.to(tl.int64) * s_c + (ki * DH).to(tl.int64) * s_h + (kj * DW).to(tl.int64) * s_w
    else:
        offset = c * s_c + (ki * DH) * s_h + (kj * DW) * s_w
    return offset, inside


@triton.jit
def _rows(img, py, px, SH, SW, s_n, s_h, s_w, I64: tl.constexpr, ROWS_CONTIG: tl.constexpr,
          BLOCK_R: tl.constexpr):
    """Address part of the rows (img, py, px) of one segment (its image zero-padded by the host).

    ROWS_CONTIG: consecutive rows are consecutive addresses (stride-1 NCHW), said to the compiler
    so lanes run along rows and the gathers coalesce.
    """
    if I64:
        offset = img.to(tl.int64) * s_n + (py * SH).to(tl.int64) * s_h + (px * SW).to(tl.int64) * s_w
    else:
        offset = img * s_n + (py * SH) * s_h + (px * SW) * s_w
    if ROWS_CONTIG:
        offset = tl.max_contiguous(offset, BLOCK_R)
    return offset


@triton.jit
def _gather(x_ptr, row_off, col_off, ACC64: tl.constexpr, I64: tl.constexpr):
    """(BLOCK_R, BLOCK_D) im2col tile, unmasked: every address is inside the padded image.

    Offsets are non-negative (the image is padded): unsigned 32-bit unless I64.
    """
    offset = row_off[:, None] + col_off[None, :]
    if not I64:
        offset = offset.to(tl.uint32)
    v = tl.load(x_ptr + offset)
    if ACC64:
        v = v.to(tl.float64)
    else:
        v = v.to(tl.float32)
    return v


@triton.autotune(
    configs=gram_configs(),
    key=AUTOTUNE_KEY,
    prune_configs_by={"early_config_prune": early_prune},
    **autotune_options(),
)
@triton.jit(do_not_specialize=UNSPECIALISED)
def _gram_kernel(
    out_ptr, s_out_split, s_out_e, s_out_a,
    x1_ptr, C1, H1, W1, s1_n, s1_c, s1_h, s1_w, KW1, KK1, SH1, SW1, PH1, PW1, DH1, DW1, B1,
    x2_ptr, C2, H2, W2, s2_n, s2_c, s2_h, s2_w, KW2, KK2, SH2, SW2, PH2, PW2, DH2, DW2, B2,
    x3_ptr, C3, H3, W3, s3_n, s3_c, s3_h, s3_w, KW3, KK3, SH3, SW3, PH3, PW3, DH3, DW3, B3,
    wy_ptr, wx_ptr, KWT, SHT, SWT, PHT, PWT, DHT, DWT, HT, WT, TAP0,
    HO, WO, R, ROWS_PER_SPLIT, A_LO, DA, B_LO, DB,
    DA_BUCKET, DB_BUCKET, R_BUCKET,
    HAS1: tl.constexpr, HAS2: tl.constexpr, HAS3: tl.constexpr,
    COMPOSE: tl.constexpr, WEIGHTED: tl.constexpr, SYMMETRIC: tl.constexpr,
    MODE: tl.constexpr, EMULATE: tl.constexpr, ACC64: tl.constexpr, I64: tl.constexpr,
    ROWS_CONTIG: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """out[split, e, a, b] = Σ_{rows r of the split} Z[r, A_LO + a] · Z[r, B_LO + b].

    Grid: (tile pairs, SPLIT, E). Symmetric: pairs (ta <= tb) enumerated column by column.
    COMPOSE: segment 1 is read at the pixel under tap e = TAP0 + program_id(2) of the "tap" conv.
    WEIGHTED: the A side of each row is multiplied by its tap count wy[oy]·wx[ox] (host-computed).
    Index work: coordinates in int32; the row index is decomposed once (scalar) and then advanced
    by BLOCK_R with add-and-carry (exact float reciprocals of the small W_o, H_o), so no lane ever
    divides; addresses are int32 unless I64 (a tensor of 2³¹ elements or more).
    """
    pid = tl.program_id(0)
    split = tl.program_id(1)
    e = tl.program_id(2)
    if SYMMETRIC:
        tb = ((tl.sqrt((8 * pid + 1).to(tl.float32)) - 1.0) * 0.5).to(tl.int32)
        tb = tl.where(tb * (tb + 1) // 2 > pid, tb - 1, tb)
        tb = tl.where((tb + 1) * (tb + 2) // 2 <= pid, tb + 1, tb)
        ta = pid - tb * (tb + 1) // 2
    else:
        tiles_b = tl.cdiv(DB, BLOCK_D)
        ta = pid // tiles_b
        tb = pid - ta * tiles_b
    offs_d = tl.arange(0, BLOCK_D)
    a_idx = ta * BLOCK_D + offs_d
    b_idx = tb * BLOCK_D + offs_d
    cols_a = A_LO + a_idx
    cols_b = B_LO + b_idx
    d1 = C1 * KK1 + B1
    d2 = C2 * KK2 + B2
    # Column parts of every present segment, for both sides: loop-invariant.
    a1o, a_in1 = _columns(cols_a, 0, C1, KW1, KK1, s1_c, s1_h, s1_w, DH1, DW1, B1, I64)
    b1o, b_in1 = _columns(cols_b, 0, C1, KW1, KK1, s1_c, s1_h, s1_w, DH1, DW1, B1, I64)
    if HAS2:
        a2o, a_in2 = _columns(cols_a, d1, C2, KW2, KK2, s2_c, s2_h, s2_w, DH2, DW2, B2, I64)
        b2o, b_in2 = _columns(cols_b, d1, C2, KW2, KK2, s2_c, s2_h, s2_w, DH2, DW2, B2, I64)
    if HAS3:
        a3o, a_in3 = _columns(cols_a, d1 + d2, C3, KW3, KK3, s3_c, s3_h, s3_w, DH3, DW3, B3, I64)
        b3o, b_in3 = _columns(cols_b, d1 + d2, C3, KW3, KK3, s3_c, s3_h, s3_w, DH3, DW3, B3, I64)
    if not ROWS_CONTIG:
        a1o = tl.max_contiguous(a1o, BLOCK_D)
        b1o = tl.max_contiguous(b1o, BLOCK_D)

    tap = TAP0 + e
    ti = tap // KWT
    tj = tap - ti * KWT
    row_start = split * ROWS_PER_SPLIT
    row_end = tl.minimum(row_start + ROWS_PER_SPLIT, R)
    inv_wo = 1.0 / WO.to(tl.float32)
    inv_ho = 1.0 / HO.to(tl.float32)
    plane = HO * WO
    # Image n (= R / plane) of every kernel image is zeros: rows past the end read it.
    img_zero = R // plane
    img0 = row_start // plane
    oy0 = (row_start - img0 * plane) // WO
    ox0 = row_start - img0 * plane - oy0 * WO
    j = tl.arange(0, BLOCK_R)
    if ACC64:
        acc = tl.zeros((BLOCK_D, BLOCK_D), tl.float64)
    else:
        acc = tl.zeros((BLOCK_D, BLOCK_D), tl.float32)
    for row0 in range(row_start, row_end, BLOCK_R):
        # Lane j's row (img, oy, ox) = the block's first row + j, with carries. Splits end on block
        # boundaries, so only rows past R are invalid: they read the zero image.
        img, oy, ox = _advance(img0, oy0, ox0, j, inv_ho, inv_wo, HO, WO)
        img = tl.minimum(img, img_zero)
        # The next block's first row.
        img0, oy0, ox0 = _advance(img0, oy0, ox0, BLOCK_R, inv_ho, inv_wo, HO, WO)

        if COMPOSE:
            # Segment 1 at the pixel under tap e; outside the grid it reads the zero image.
            py1 = oy * SHT - PHT + ti * DHT
            px1 = ox * SWT - PWT + tj * DWT
            ok1 = (py1.to(tl.uint32) < HT.to(tl.uint32)) & (px1.to(tl.uint32) < WT.to(tl.uint32))
            img1 = tl.where(ok1, img, img_zero)
            py1 = tl.minimum(tl.maximum(py1, 0), HT - 1)
            px1 = tl.minimum(tl.maximum(px1, 0), WT - 1)
        else:
            img1 = img
            py1 = oy
            px1 = ox
        r1 = _rows(img1, py1, px1, SH1, SW1, s1_n, s1_h, s1_w, I64, ROWS_CONTIG, BLOCK_R)
        za = _gather(x1_ptr, r1, a1o, ACC64, I64)
        zb = _gather(x1_ptr, r1, b1o, ACC64, I64)
        if HAS2:
            r2 = _rows(img, oy, ox, SH2, SW2, s2_n, s2_h, s2_w, I64, ROWS_CONTIG, BLOCK_R)
            za = tl.where(a_in2[None, :], _gather(x2_ptr, r2, a2o, ACC64, I64), za)
            zb = tl.where(b_in2[None, :], _gather(x2_ptr, r2, b2o, ACC64, I64), zb)
        if HAS3:
            r3 = _rows(img, oy, ox, SH3, SW3, s3_n, s3_h, s3_w, I64, ROWS_CONTIG, BLOCK_R)
            za = tl.where(a_in3[None, :], _gather(x3_ptr, r3, a3o, ACC64, I64), za)
            zb = tl.where(b_in3[None, :], _gather(x3_ptr, r3, b3o, ACC64, I64), zb)
        za = _prepare(za, MODE, EMULATE, ACC64)
        zb = _prepare(zb, MODE, EMULATE, ACC64)
        if WEIGHTED:
            weight = tl.load(wy_ptr + oy) * tl.load(wx_ptr + ox)
            if ACC64:
                weighted = za * weight.to(tl.float64)[:, None]
            else:
                weighted = za * weight[:, None]
            if MODE >= MODE_TF32 and not ACC64:
                # count · (rounded operand) has more bits than the mode keeps: split it into a
                # rounded high part and an (exactly representable) low part, two exact products.
                high = _prepare(weighted, MODE, EMULATE, ACC64)
                acc = _mma(acc, tl.trans(high), zb, MODE, EMULATE, ACC64)
                acc = _mma(acc, tl.trans(_prepare(weighted - high, MODE, EMULATE, ACC64)), zb, MODE,
                           EMULATE, ACC64)
            else:
                acc = _mma(acc, tl.trans(weighted), zb, MODE, EMULATE, ACC64)
        else:
            acc = _mma(acc, tl.trans(za), zb, MODE, EMULATE, ACC64)

    mask = (a_idx < DA)[:, None] & (b_idx < DB)[None, :]
    base = out_ptr + split.to(tl.int64) * s_out_split + e.to(tl.int64) * s_out_e
    ptrs = base + a_idx.to(tl.int64)[:, None] * s_out_a + b_idx[None, :]
    tl.store(ptrs, acc, mask=mask)


@triton.jit(do_not_specialize=["SPLIT", "DA", "DB", "s_p_split", "s_p_e", "s_p_a", "s_o_e", "s_o_a"])
def _sum_splits_kernel(part_ptr, out_ptr, SPLIT, DA, DB, s_p_split, s_p_e, s_p_a, s_o_e, s_o_a,
                       SYMMETRIC: tl.constexpr, BLOCK: tl.constexpr):
    """out[e, a, b] = Σ_{s = 0, 1, …} part[s, e, a, b] in that order; symmetric: read (min, max)."""
    pa = tl.program_id(0).to(tl.int64)
    pb = tl.program_id(1).to(tl.int64)
    e = tl.program_id(2).to(tl.int64)
    a = pa * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    b = pb * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = (a < DA)[:, None] & (b < DB)[None, :]
    if SYMMETRIC:
        lo = tl.minimum(a[:, None], b[None, :])
        hi = tl.maximum(a[:, None], b[None, :])
        src = part_ptr + e * s_p_e + lo * s_p_a + hi
    else:
        src = part_ptr + e * s_p_e + a[:, None] * s_p_a + b[None, :]
    acc = tl.load(src, mask=mask, other=0.0)
    for s in range(1, SPLIT):
        acc += tl.load(src + s * s_p_split, mask=mask, other=0.0)
    tl.store(out_ptr + e * s_o_e + a[:, None] * s_o_a + b[None, :], acc, mask=mask)


# ----------------------------------------------------------------------------------------------
# Launcher
# ----------------------------------------------------------------------------------------------


class Patches(NamedTuple):
    """One column segment of Z: im2col of ``x (n, C, H, W)`` under ``geometry`` (+ a ones column)."""

    x: torch.Tensor
    geometry: Conv2dGeometry
    bias: bool

    @property
    def width(self) -> int:
        kh, kw = self.geometry.kernel_size
        return self.x.shape[1] * kh * kw + int(self.bias)


class Taps(NamedTuple):
    """The current conv seen from segment 1: ``geometry`` on the grid ``grid`` (its input).

    ``first``/``count``: taps e = first … first+count−1 (grid axis 2; COMPOSE). With ``weighted`` the
    rows run over ``grid`` and each is weighted by its tap count instead (Full S_growth).
    """

    geometry: Conv2dGeometry
    grid: tuple[int, int]
    first: int = 0
    count: int = 1
    weighted: bool = False


def check_launch(op: str, **tensors: torch.Tensor) -> None:
    """The checks every launcher makes before touching triton: dtype and device.

    Raises:
        TypeError: a tensor that is not float16/bfloat16/float32/float64 (names it).
        RuntimeError: a CPU tensor without TRITON_INTERPRET=1 (names it).
    """
    for name, t in tensors.items():
        check_floating(f"{op}: {name}", t)
        if not t.is_cuda and not interpreter_enabled():
            raise RuntimeError(
                f"{op}: {name} is on {t.device}; the triton backend needs CUDA tensors, or "
                "TRITON_INTERPRET=1 set before triton is imported to run on CPU"
            )


def last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t`` as the kernel reads it (unit stride along the last dimension): copied only when needed."""
    if t.stride(-1) != 1 and t.shape[-1] > 1:
        t = t.contiguous()
    return t


def _next_pow2(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _auto_split(device: torch.device, rows: int, tiles: int, outputs: int, item: int) -> int:
    """configs.auto_split for this device's SM count (1 off CUDA: the interpreter)."""
    if device.type != "cuda":
        return 1
    sms = _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    return auto_split(sms, rows, tiles, outputs, item)


def _dummy(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(1, dtype=like.dtype, device=like.device)


def _segment_args(seg: Patches | None, like: torch.Tensor) -> list:
    """The 17 runtime kernel arguments of one segment (a harmless placeholder when absent)."""
    if seg is None:
        return [_dummy(like), 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0]
    (kh, kw), (sh, sw), _, (dh, dw) = seg.geometry
    c = seg.x.shape[1]
    x = kernel_image(seg.x, seg.geometry, seg.bias)
    h, w = x.shape[2:]
    if x.numel() == 0:
        return [_dummy(seg.x), c, h, w, 0, 0, 0, 0, kw, kh * kw, sh, sw, 0, 0, dh, dw, int(seg.bias)]
    sn, sc, shh, sww = x.stride()
    return [x, c, h, w, sn, sc, shh, sww, kw, kh * kw, sh, sw, 0, 0, dh, dw, int(seg.bias)]


def gram_triton(segments, rows_grid, a_cols, b_cols=None, *, taps: Taps | None = None, precision,
                split_k: int | None = None) -> torch.Tensor:
    """``out[e] = Z[:, A]ᵀ Z[:, B]`` for Z = [segments…] over the rows ``(n, H_o, W_o)``: (E, D_A, D_B).

    Args:
        segments: three entries, each a :class:`Patches` or None; every present segment has the
            output grid ``rows_grid[1:]`` under its geometry, except segment 1 with ``taps``.
        rows_grid: (n, H_o, W_o).
        a_cols: (first column, width) of the A side in Z.
        b_cols: the same for B; None means B = A (symmetric: upper tiles computed, mirrored once).
        taps: compose segment 1 with the current conv (Restricted/Full) or weight it (S_growth).
        precision: "ieee", "tf32x3", "tf32" or "bf16" (None = "ieee").
        split_k: number of row splits; None picks one from the GPU size (1 under the interpreter).
    Returns:
        (E, D_A, D_B) in fp32 (fp64 for fp64 inputs), E = taps.count (1 without taps).
    Raises:
        ValueError: split_k < 1.
    """
    mode = MODES[check_precision(precision)]
    present = [s for s in segments if s is not None]
    like = present[0].x
    acc_dtype = accumulate_dtype(like.dtype)
    device = like.device
    n, ho, wo = rows_grid
    rows = n * ho * wo
    symmetric = b_cols is None
    a_lo, da = a_cols
    b_lo, db = a_cols if symmetric else b_cols
    compose = taps is not None and not taps.weighted
    if compose and (symmetric or a_cols != (0, present[0].width)):
        raise ValueError("gram_triton: with composed taps the A side must be segment 1 exactly")
    weighted = taps is not None and taps.weighted
    taps_count = taps.count if compose else 1
    if rows == 0 or da == 0 or db == 0:
        return torch.zeros((taps_count, da, db), dtype=acc_dtype, device=device)
    if rows >= _INT32_LIMIT - 2 * _ROW_ALIGN or max(ho, wo) >= _GRID_LIMIT:
        raise ValueError(f"gram_triton: rows_grid {tuple(rows_grid)} is too large for the kernel's "
                         f"int32 row index (rows < 2**31, H_o and W_o < 2**22)")

    item = torch.finfo(acc_dtype).bits // 8
    approx_tiles = triton.cdiv(da, 128) * triton.cdiv(db, 128)
    if symmetric:
        approx_tiles = (triton.cdiv(da, 128) * (triton.cdiv(da, 128) + 1)) // 2
    if split_k is None:
        split = _auto_split(device, rows, approx_tiles * taps_count, taps_count * da * db, item)
    else:
        if not isinstance(split_k, int) or split_k < 1:
            raise ValueError(f"split_k must be a positive int, got {split_k!r}")
        split = split_k
    # Splits fall on BLOCK_R boundaries (the kernel relies on it: only rows past R are invalid).
    align = _ROW_ALIGN if split_k is None else _MAX_BLOCK_R
    rows_per_split = triton.cdiv(triton.cdiv(rows, split), align) * align
    split = triton.cdiv(rows, rows_per_split)

    out = torch.empty((taps_count, da, db), dtype=acc_dtype, device=device)
    direct = split == 1 and not symmetric
    part = out.unsqueeze(0) if direct else torch.empty((split, taps_count, da, db), dtype=acc_dtype,
                                                        device=device)

    if taps is None:
        ones = torch.ones(1, dtype=torch.float32, device=device)
        tap_args = [ones, ones, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0]
    else:
        (kht, kwt), (sht, swt), (pht, pwt), (dht, dwt) = taps.geometry
        ht, wt = taps.grid
        hot, wot = taps.geometry.output_size(ht, wt)
        wy = tap_counts(ht, hot, kht, sht, pht, dht, device)
        wx = tap_counts(wt, wot, kwt, swt, pwt, dwt, device)
        tap_args = [wy, wx, kwt, sht, swt, pht, pwt, dht, dwt, ht, wt, taps.first]

    args = [part, part.stride(0), part.stride(1), part.stride(2)]
    for seg in segments:
        args += _segment_args(seg, like)
    args += tap_args
    args += [ho, wo, rows, rows_per_split, a_lo, da, b_lo, db, _next_pow2(da), _next_pow2(db),
             _next_pow2(rows)]

    def grid(meta):
        tiles_a = triton.cdiv(da, meta["BLOCK_D"])
        pairs = tiles_a * (tiles_a + 1) // 2 if symmetric else tiles_a * triton.cdiv(db, meta["BLOCK_D"])
        return (pairs, split, taps_count)

    _gram_kernel[grid](
        *args,
        HAS1=segments[0] is not None, HAS2=segments[1] is not None, HAS3=segments[2] is not None,
        COMPOSE=compose, WEIGHTED=weighted, SYMMETRIC=symmetric, MODE=mode,
        EMULATE=interpreter_enabled(), ACC64=acc_dtype == torch.float64,
        I64=any(a.numel() >= _INT32_LIMIT for a in args if isinstance(a, torch.Tensor)),
        ROWS_CONTIG=ho * wo > 1,
    )
    if direct:
        return out
    reduce_grid = (triton.cdiv(da, _REDUCE_BLOCK), triton.cdiv(db, _REDUCE_BLOCK), taps_count)
    _sum_splits_kernel[reduce_grid](
        part, out, split, da, db, part.stride(0), part.stride(1), part.stride(2), out.stride(0),
        out.stride(1), SYMMETRIC=symmetric, BLOCK=_REDUCE_BLOCK,
    )
    return out
