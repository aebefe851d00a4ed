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
  unfold of gromo_math.md §3.6 is index arithmetic here, never a tensor); ``e`` is grid axis 2;
* Full S_growth: ``Σ_p c(p) u_p u_pᵀ`` — the previous S with each pixel weighted by the number of
  (output, tap) pairs of the current conv that read it (perf_notes identity 1), computed in-kernel.

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

GPU tuning ideas, not done (no GPU in the session that wrote this; measure first with bench/gpu.py):
a fused tile ([U | dA], three segments) issues the predicated loads of every present segment —
guard each segment with a scalar ``if`` on the tile's column range if that shows up; the 2-D
gathers are pipelined through shared memory (3-segment 64×64 tiles need > 227 KB at 3 stages, so
the autotuner drops them); TMA/descriptor loads for the dense (linear) case; a direct bf16/fp16
dot for 16-bit inputs; the shift structure of stride-1 convs (perf_notes identity 3) to cut Full P
and S by ~(2k−1)²/k⁴; persistent programs.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .._backend import interpreter_enabled
from .._precision import accumulate_dtype, check_precision
from ..geometry import Conv2dGeometry

__all__ = ["Patches", "Taps", "gram_triton", "check_launch", "MODES"]

MODES = {"ieee": 0, "tf32x3": 1, "tf32": 2, "bf16": 3}
_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Rows per split are a multiple of this, so split boundaries fall on BLOCK_R boundaries.
_ROW_ALIGN = 128
# Peak memory of the partial-sum buffer (bytes) the automatic split may use.
_PARTIAL_BYTES = 256 * 2**20
_REDUCE_BLOCK = 64


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


@triton.jit
def _round_to_mode(v, MODE: tl.constexpr):
    """fp32 tile -> the nearest tf32 (ties away) or bf16 (ties even) value, still as fp32."""
    if MODE == 2:
        bits = v.to(tl.int32, bitcast=True)
        finite = (bits & 0x7F800000) != 0x7F800000
        rounded = ((bits + 0x1000) & -8192).to(tl.float32, bitcast=True)
        v = tl.where(finite, rounded, v)
    elif MODE == 3:
        bits = v.to(tl.int32, bitcast=True)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & -65536).to(tl.float32, bitcast=True)
        v = tl.where(v == v, rounded, v)
    return v


@triton.jit
def _prepare(v, MODE: tl.constexpr, ACC64: tl.constexpr):
    """A loaded tile in its accumulation dtype, rounded as the precision mode asks."""
    if ACC64:
        if MODE >= 2:
            v = _round_to_mode(v.to(tl.float32), MODE).to(tl.float64)
        else:
            v = v.to(tl.float64)
    else:
        v = _round_to_mode(v.to(tl.float32), MODE)
    return v


@triton.jit
def _mma(acc, a_t, b, MODE: tl.constexpr, EMULATE: tl.constexpr, ACC64: tl.constexpr):
    """acc += a_t @ b in the precision mode (operands normally already rounded by _prepare).

    EMULATE (the interpreter): tf32/bf16 dots are replaced by what the tensor cores compute —
    operands rounded to the mode, exact products, fp32 accumulation — because the interpreter's
    tf32 dot is exact and its bf16 dot is wrong. The rounding here is idempotent on rounded
    operands; it makes the interpreter as strict as the GPU for operands that are not.
    """
    if ACC64:
        acc = tl.dot(a_t, b, acc, input_precision="ieee", out_dtype=tl.float64)
    elif MODE == 1:
        acc = tl.dot(a_t, b, acc, input_precision="tf32x3")
    elif MODE >= 2 and EMULATE:
        acc = tl.dot(_round_to_mode(a_t, MODE), _round_to_mode(b, MODE), acc, input_precision="ieee")
    elif MODE == 2:
        acc = tl.dot(a_t, b, acc, input_precision="tf32")
    elif MODE == 3:
        acc = tl.dot(a_t.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    else:
        acc = tl.dot(a_t, b, acc, input_precision="ieee")
    return acc


@triton.jit
def _patch_tile(x_ptr, img, py, px, pos_ok, f, C, H, W, s_n, s_c, s_h, s_w,
                KW, KK, SH, SW, PH, PW, DH, DW, BIAS, ACC64: tl.constexpr):
    """(BLOCK_R, BLOCK_D) im2col tile: rows (img, py, px) on the output grid, features ``f``.

    Features outside [0, C·KK + BIAS) and rows with ``pos_ok`` false read as 0; feature C·KK is the
    ones column when BIAS. Returned in fp32 (fp64 when ACC64: fp64 inputs keep every bit).
    Coordinates and addresses are a row part plus a column part (1-D), so the per-element work is
    three adds, four compares and one masked load.
    """
    c = f // KK
    t = f - c * KK
    ki = t // KW
    kj = t - ki * KW
    col_ok = (f >= 0) & (c < C)
    # Image coordinates fit in int32; addresses are int64 row and column parts added once.
    y0 = py * SH - PH
    x0 = px * SW - PW
    y = y0.to(tl.int32)[:, None] + (ki * DH).to(tl.int32)[None, :]
    x = x0.to(tl.int32)[:, None] + (kj * DW).to(tl.int32)[None, :]
    ok = (pos_ok[:, None] & col_ok[None, :]) & (y >= 0) & (y < H) & (x >= 0) & (x < W)
    row_off = img * s_n + y0 * s_h + x0 * s_w
    col_off = c * s_c + (ki * DH) * s_h + (kj * DW) * s_w
    ptrs = x_ptr + row_off[:, None] + col_off[None, :]
    v = tl.load(ptrs, mask=ok, other=0.0)
    if ACC64:
        v = v.to(tl.float64)
    else:
        v = v.to(tl.float32)
    is_bias = (f == C * KK) & (BIAS != 0)
    return tl.where(pos_ok[:, None] & is_bias[None, :], 1.0, v)


@triton.jit
def _z_tile(cols, img, oy, ox, row_ok, py1, px1, pos1_ok,
            x1_ptr, C1, H1, W1, s1_n, s1_c, s1_h, s1_w, KW1, KK1, SH1, SW1, PH1, PW1, DH1, DW1, B1,
            x2_ptr, C2, H2, W2, s2_n, s2_c, s2_h, s2_w, KW2, KK2, SH2, SW2, PH2, PW2, DH2, DW2, B2,
            x3_ptr, C3, H3, W3, s3_n, s3_c, s3_h, s3_w, KW3, KK3, SH3, SW3, PH3, PW3, DH3, DW3, B3,
            HAS1: tl.constexpr, HAS2: tl.constexpr, HAS3: tl.constexpr,
            ACC64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """Columns ``cols`` of Z = [segment 1 | segment 2 | segment 3] for one block of rows."""
    d1 = C1 * KK1 + B1
    d2 = C2 * KK2 + B2
    if ACC64:
        v = tl.zeros((BLOCK_R, BLOCK_D), tl.float64)
    else:
        v = tl.zeros((BLOCK_R, BLOCK_D), tl.float32)
    if HAS1:
        v += _patch_tile(x1_ptr, img, py1, px1, pos1_ok, cols, C1, H1, W1, s1_n, s1_c, s1_h, s1_w,
                         KW1, KK1, SH1, SW1, PH1, PW1, DH1, DW1, B1, ACC64)
    if HAS2:
        v += _patch_tile(x2_ptr, img, oy, ox, row_ok, cols - d1, C2, H2, W2, s2_n, s2_c, s2_h, s2_w,
                         KW2, KK2, SH2, SW2, PH2, PW2, DH2, DW2, B2, ACC64)
    if HAS3:
        v += _patch_tile(x3_ptr, img, oy, ox, row_ok, cols - d1 - d2, C3, H3, W3, s3_n, s3_c, s3_h,
                         s3_w, KW3, KK3, SH3, SW3, PH3, PW3, DH3, DW3, B3, ACC64)
    return v


@triton.jit
def _tap_count(o, KT, ST, PT, DT, OUT):
    """Per row: number of (output o', tap t) pairs with o'·ST − PT + t·DT == o, 0 <= o' < OUT."""
    count = tl.zeros(o.shape, tl.float32)
    for t in range(0, KT):
        num = o + PT - t * DT
        q = num // ST
        hit = (num >= 0) & (q * ST == num) & (q < OUT)
        count += hit.to(tl.float32)
    return count


# Every runtime int of _gram_kernel: none is specialised on its value (== 1, divisible by 16), so
# a compiled variant is fixed by the flags, dtypes and block config alone — growth (new widths,
# strides, batch sizes) never recompiles, and the number of variants a test run compiles stays small.
_SEGMENT_INTS = ("C{0} H{0} W{0} s{0}_n s{0}_c s{0}_h s{0}_w KW{0} KK{0} SH{0} SW{0} PH{0} PW{0} DH{0} DW{0} "
                 "B{0}")
_UNSPECIALISED = (
    ["s_out_split", "s_out_e", "s_out_a"]
    + [name for i in (1, 2, 3) for name in _SEGMENT_INTS.format(i).split()]
    + "KHT KWT SHT SWT PHT PWT DHT DWT HT WT HOT WOT TAP0".split()
    + "HO WO R ROWS_PER_SPLIT A_LO DA B_LO DB DA_BUCKET DB_BUCKET R_BUCKET".split()
)
AUTOTUNE_ENV = "GROMO_KERNELS_TRITON_AUTOTUNE"


def _gram_configs():
    """Autotune configurations; a single one under the interpreter (several fail there) or when
    GROMO_KERNELS_TRITON_AUTOTUNE=0 (e.g. a CUDA test run, to compile each variant once)."""
    if interpreter_enabled():
        return [triton.Config({"BLOCK_D": 64, "BLOCK_R": 64}, num_warps=4)]
    if os.environ.get(AUTOTUNE_ENV, "1") == "0":
        return [triton.Config({"BLOCK_D": 64, "BLOCK_R": 32}, num_warps=4, num_stages=3)]
    return [
        triton.Config({"BLOCK_D": 64, "BLOCK_R": 32}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK_D": 64, "BLOCK_R": 64}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK_D": 128, "BLOCK_R": 32}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_D": 128, "BLOCK_R": 16}, num_warps=8, num_stages=4),
    ]


def _prune_configs(configs, named_args, **kwargs):
    """Drop tiles wider than the (bucketed) output: they only burn masked lanes."""
    width = max(named_args["DA_BUCKET"], named_args["DB_BUCKET"])
    kept = [c for c in configs if c.kwargs["BLOCK_D"] <= max(64, width)]
    return kept or configs[:1]


def _autotune_options() -> dict:
    """cache_results (triton >= 3.2): the chosen config persists on disk, so a later process sums in
    the same order and reproduces results bit for bit; older triton retunes per process."""
    if "cache_results" in inspect.signature(triton.autotune).parameters:
        return {"cache_results": True}
    return {}


@triton.autotune(
    configs=_gram_configs(),
    key=["DA_BUCKET", "DB_BUCKET", "R_BUCKET", "MODE", "ACC64", "SYMMETRIC", "WEIGHTED", "COMPOSE",
         "HAS1", "HAS2", "HAS3"],
    prune_configs_by={"early_config_prune": _prune_configs},
    **_autotune_options(),
)
@triton.jit(do_not_specialize=_UNSPECIALISED)
def _gram_kernel(
    out_ptr, s_out_split, s_out_e, s_out_a,
    x1_ptr, C1, H1, W1, s1_n, s1_c, s1_h, s1_w, KW1, KK1, SH1, SW1, PH1, PW1, DH1, DW1, B1,
    x2_ptr, C2, H2, W2, s2_n, s2_c, s2_h, s2_w, KW2, KK2, SH2, SW2, PH2, PW2, DH2, DW2, B2,
    x3_ptr, C3, H3, W3, s3_n, s3_c, s3_h, s3_w, KW3, KK3, SH3, SW3, PH3, PW3, DH3, DW3, B3,
    KHT, KWT, SHT, SWT, PHT, PWT, DHT, DWT, HT, WT, HOT, WOT, TAP0,
    HO, WO, R, ROWS_PER_SPLIT, A_LO, DA, B_LO, DB,
    DA_BUCKET, DB_BUCKET, R_BUCKET,
    HAS1: tl.constexpr, HAS2: tl.constexpr, HAS3: tl.constexpr,
    COMPOSE: tl.constexpr, WEIGHTED: tl.constexpr, SYMMETRIC: tl.constexpr,
    MODE: tl.constexpr, EMULATE: tl.constexpr, ACC64: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """out[split, e, a, b] = Σ_{rows r of the split} Z[r, A_LO + a] · Z[r, B_LO + b].

    Grid: (tile pairs, SPLIT, E). Symmetric: pairs (ta <= tb) enumerated column by column.
    COMPOSE: segment 1 is read at the pixel under tap e = TAP0 + program_id(2) of the "tap" conv.
    WEIGHTED: the A side of each row is multiplied by its tap count under the "tap" conv.
    """
    pid = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1).to(tl.int64)
    e = tl.program_id(2).to(tl.int64)
    if SYMMETRIC:
        tb = ((tl.sqrt((8 * pid + 1).to(tl.float32)) - 1.0) * 0.5).to(tl.int64)
        tb = tl.where(tb * (tb + 1) // 2 > pid, tb - 1, tb)
        tb = tl.where((tb + 1) * (tb + 2) // 2 <= pid, tb + 1, tb)
        ta = pid - tb * (tb + 1) // 2
    else:
        tiles_b = tl.cdiv(DB, BLOCK_D)
        ta = pid // tiles_b
        tb = pid - ta * tiles_b
    offs_d = tl.arange(0, BLOCK_D).to(tl.int64)
    a_idx = ta * BLOCK_D + offs_d
    b_idx = tb * BLOCK_D + offs_d
    cols_a = A_LO + a_idx
    cols_b = B_LO + b_idx

    tap = TAP0 + e
    ti = tap // KWT
    tj = tap - ti * KWT
    plane = HO * WO
    row_start = split * ROWS_PER_SPLIT
    row_end = tl.minimum(row_start + ROWS_PER_SPLIT, R)
    if ACC64:
        acc = tl.zeros((BLOCK_D, BLOCK_D), tl.float64)
    else:
        acc = tl.zeros((BLOCK_D, BLOCK_D), tl.float32)
    for row0 in range(row_start, row_end, BLOCK_R):
        r = row0 + tl.arange(0, BLOCK_R).to(tl.int64)
        row_ok = r < row_end
        img = r // plane
        l = r - img * plane
        oy = l // WO
        ox = l - oy * WO
        if COMPOSE:
            py1 = oy * SHT - PHT + ti * DHT
            px1 = ox * SWT - PWT + tj * DWT
            pos1_ok = row_ok & (py1 >= 0) & (py1 < HT) & (px1 >= 0) & (px1 < WT)
        else:
            py1 = oy
            px1 = ox
            pos1_ok = row_ok
        za = _z_tile(cols_a, img, oy, ox, row_ok, py1, px1, pos1_ok,
                     x1_ptr, C1, H1, W1, s1_n, s1_c, s1_h, s1_w, KW1, KK1, SH1, SW1, PH1, PW1, DH1, DW1, B1,
                     x2_ptr, C2, H2, W2, s2_n, s2_c, s2_h, s2_w, KW2, KK2, SH2, SW2, PH2, PW2, DH2, DW2, B2,
                     x3_ptr, C3, H3, W3, s3_n, s3_c, s3_h, s3_w, KW3, KK3, SH3, SW3, PH3, PW3, DH3, DW3, B3,
                     HAS1, HAS2, HAS3, ACC64, BLOCK_R, BLOCK_D)
        zb = _z_tile(cols_b, img, oy, ox, row_ok, py1, px1, pos1_ok,
                     x1_ptr, C1, H1, W1, s1_n, s1_c, s1_h, s1_w, KW1, KK1, SH1, SW1, PH1, PW1, DH1, DW1, B1,
                     x2_ptr, C2, H2, W2, s2_n, s2_c, s2_h, s2_w, KW2, KK2, SH2, SW2, PH2, PW2, DH2, DW2, B2,
                     x3_ptr, C3, H3, W3, s3_n, s3_c, s3_h, s3_w, KW3, KK3, SH3, SW3, PH3, PW3, DH3, DW3, B3,
                     HAS1, HAS2, HAS3, ACC64, BLOCK_R, BLOCK_D)
        za = _prepare(za, MODE, ACC64)
        zb = _prepare(zb, MODE, ACC64)
        if WEIGHTED:
            weight = _tap_count(oy, KHT, SHT, PHT, DHT, HOT) * _tap_count(ox, KWT, SWT, PWT, DWT, WOT)
            if ACC64:
                weighted = za * weight.to(tl.float64)[:, None]
            else:
                weighted = za * weight[:, None]
            if MODE >= 2 and not ACC64:
                # count · (rounded operand) has more bits than the mode keeps: split it into a
                # rounded high part and an (exactly representable) low part, two exact products.
                high = _prepare(weighted, MODE, ACC64)
                acc = _mma(acc, tl.trans(high), zb, MODE, EMULATE, ACC64)
                acc = _mma(acc, tl.trans(_prepare(weighted - high, MODE, ACC64)), zb, MODE,
                           EMULATE, ACC64)
            else:
                acc = _mma(acc, tl.trans(weighted), zb, MODE, EMULATE, ACC64)
        else:
            acc = _mma(acc, tl.trans(za), zb, MODE, EMULATE, ACC64)

    mask = (a_idx < DA)[:, None] & (b_idx < DB)[None, :]
    ptrs = out_ptr + split * s_out_split + e * s_out_e + a_idx[:, None] * s_out_a + b_idx[None, :]
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
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _SUPPORTED_DTYPES:
            raise TypeError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
        if not t.is_cuda and not interpreter_enabled():
            raise RuntimeError(
                f"{op}: {name} is on {t.device}; the triton backend needs CUDA tensors, or "
                "TRITON_INTERPRET=1 set before triton is imported to run on CPU"
            )


def _next_pow2(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _auto_split(device: torch.device, rows: int, tiles: int, outputs: int, item: int) -> int:
    """Splits of the row range so that tiles·SPLIT fills the GPU twice over (1 under the interpreter).

    Each split keeps at least 4096 rows; the partial buffer stays under 256 MB.
    """
    if device.type != "cuda":
        return 1
    sms = _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    want = triton.cdiv(2 * sms, max(1, tiles))
    by_rows = max(1, rows // 4096)
    by_memory = max(1, _PARTIAL_BYTES // max(1, outputs * item))
    return max(1, min(want, by_rows, by_memory, 128))


def _dummy(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(1, dtype=like.dtype, device=like.device)


def _segment_args(seg: Patches | None, like: torch.Tensor) -> list:
    """The 17 runtime kernel arguments of one segment (a harmless placeholder when absent)."""
    if seg is None:
        return [_dummy(like), 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0]
    x = seg.x
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = seg.geometry
    n, c, h, w = x.shape
    ptr = x if x.numel() > 0 else _dummy(x)
    sn, sc, shh, sww = x.stride()
    return [ptr, c, h, w, sn, sc, shh, sww, kw, kh * kw, sh, sw, ph, pw, dh, dw, int(seg.bias)]


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
    weighted = taps is not None and taps.weighted
    taps_count = taps.count if compose else 1
    if rows == 0 or da == 0 or db == 0:
        return torch.zeros((taps_count, da, db), dtype=acc_dtype, device=device)

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
    # Automatic splits fall on BLOCK_R boundaries; an explicit split_k (tests) may cut finer.
    align = _ROW_ALIGN if split_k is None else 16
    rows_per_split = triton.cdiv(triton.cdiv(rows, split), align) * align
    split = triton.cdiv(rows, rows_per_split)

    out = torch.empty((taps_count, da, db), dtype=acc_dtype, device=device)
    direct = split == 1 and not symmetric
    part = out.unsqueeze(0) if direct else torch.empty((split, taps_count, da, db), dtype=acc_dtype,
                                                        device=device)

    if taps is None:
        tap_args = [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0]
    else:
        (kht, kwt), (sht, swt), (pht, pwt), (dht, dwt) = taps.geometry
        ht, wt = taps.grid
        hot, wot = taps.geometry.output_size(ht, wt)
        tap_args = [kht, kwt, sht, swt, pht, pwt, dht, dwt, ht, wt, hot, wot, taps.first]

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
    )
    if direct:
        return out
    reduce_grid = (triton.cdiv(da, _REDUCE_BLOCK), triton.cdiv(db, _REDUCE_BLOCK), taps_count)
    _sum_splits_kernel[reduce_grid](
        part, out, split, da, db, part.stride(0), part.stride(1), part.stride(2), out.stride(0),
        out.stride(1), SYMMETRIC=symmetric, BLOCK=_REDUCE_BLOCK,
    )
    return out
