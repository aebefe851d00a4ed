"""Autotuning of the Gram kernel: block configs, their pruning by shared memory, the autotune key,
the arguments never specialised on their value, and the split-K size.

Pure functions of the problem (no device access), so the static GPU check (bench/gpu_static.py)
sees exactly what the autotuner and the launcher choose.
"""

from __future__ import annotations

import inspect
import math
import os

import triton

from .._backend import interpreter_enabled

AUTOTUNE_ENV = "GROMO_KERNELS_TRITON_AUTOTUNE"
# The 227 KB of shared memory one CTA may use on sm_90.
SMEM_LIMIT = 227 * 1024
# Peak memory of the partial-sum buffer (bytes) the automatic split may use.
PARTIAL_BYTES = 256 * 2**20
MIN_SPLIT_ROWS = 1024
MAX_SPLIT = 128

def _config(block_d: int, block_r: int, warps: int, stages: int):
    return triton.Config({"BLOCK_D": block_d, "BLOCK_R": block_r}, num_warps=warps, num_stages=stages)


# Two classes of variants, each with its own spill-free configs on sm_90 (bench/gpu_static.py,
# triton 3.6 and 3.8): "light" = one segment, unweighted (S, E); "heavy" = several segments (M,
# the fused [U | dA], conv-of-conv) or the tap-weighted S_growth, which need 8 warps to keep
# their gathers in registers. The first of each list is its pinned default.
LIGHT_CONFIGS = [_config(64, 32, 4, 3), _config(64, 64, 8, 3), _config(128, 32, 8, 3)]
HEAVY_CONFIGS = [_config(64, 32, 8, 3)]  # D128 R32 w8 spills 8–96 B for M-type variants on 3.8
DEFAULT_CONFIG = LIGHT_CONFIGS[0]
DEFAULT_HEAVY_CONFIG = HEAVY_CONFIGS[0]
AUTOTUNE_CONFIGS = LIGHT_CONFIGS + HEAVY_CONFIGS
INTERPRETER_CONFIG = _config(64, 64, 4, 1)


def is_heavy(segments: int, weighted: bool, i64: bool = False) -> bool:
    """The variant class (see LIGHT_CONFIGS / HEAVY_CONFIGS); int64 addresses count as heavy (their
    16-bit-input variants spill at 4 warps on triton 3.8)."""
    return segments > 1 or bool(weighted) or bool(i64)


def default_config(segments: int, weighted: bool, i64: bool = False):
    """The pinned config of a variant (GROMO_KERNELS_TRITON_AUTOTUNE=0)."""
    return DEFAULT_HEAVY_CONFIG if is_heavy(segments, weighted, i64) else DEFAULT_CONFIG


def gram_configs() -> list:
    """Autotune configurations (pruned per variant by :func:`prune_configs`): one under the
    interpreter (several fail there); the two pinned defaults when GROMO_KERNELS_TRITON_AUTOTUNE=0
    (e.g. a CUDA test run, to compile each variant once)."""
    if interpreter_enabled():
        return [INTERPRETER_CONFIG]
    if os.environ.get(AUTOTUNE_ENV, "1") == "0":
        return [DEFAULT_CONFIG, DEFAULT_HEAVY_CONFIG]
    return list(AUTOTUNE_CONFIGS)


def shared_bytes(config, *, segments: int, itemsize: int) -> int:
    """Estimated shared memory of a config (an upper bound of what triton allocates): every
    pipeline stage holds both tiles of every segment, plus one tile pair for the operands."""
    kw = config.kwargs
    tile = kw["BLOCK_R"] * kw["BLOCK_D"] * itemsize
    return (config.num_stages * segments + 1) * 2 * tile


def prune_configs(configs, *, width: int, segments: int, itemsize: int, weighted: bool = False,
                  i64: bool = False) -> list:
    """Configs worth compiling for a variant: those of its class (spill-free), no wider than the
    (bucketed) output (wider ones only burn masked lanes), whose estimated shared memory fits
    sm_90's 227 KB (so the autotuner never compiles one that cannot launch)."""
    if len(configs) == 1:
        return list(configs)  # the interpreter's
    allowed = HEAVY_CONFIGS if is_heavy(segments, weighted, i64) else LIGHT_CONFIGS
    mine = [c for c in configs if any(c is a for a in allowed)] or [default_config(segments, weighted, i64)]
    fits = [c for c in mine if shared_bytes(c, segments=segments, itemsize=itemsize) <= SMEM_LIMIT]
    kept = [c for c in fits if c.kwargs["BLOCK_D"] <= max(64, width)]
    return kept or fits[:1] or [default_config(segments, weighted, i64)]


def auto_split(sms: int, rows: int, tiles: int, outputs: int, item: int) -> int:
    """Splits of the row range: the count that minimises (waves of CTAs) × (rows per split).

    CTAs = tiles · SPLIT run in waves of ``sms``; a split that leaves the last wave mostly idle
    costs as much as a full one, so the count is chosen on whole waves. Each split keeps at least
    MIN_SPLIT_ROWS rows (the partial sums and the reduction stay small against the work, and
    fewer rows per accumulator keep the tensor cores' truncated accumulation short); the partial
    buffer stays under 256 MB.
    """
    cap = max(1, min(rows // MIN_SPLIT_ROWS, PARTIAL_BYTES // max(1, outputs * item), MAX_SPLIT))
    best, best_cost = 1, math.inf
    for split in range(1, cap + 1):
        cost = math.ceil(tiles * split / sms) * math.ceil(rows / split)
        if cost < best_cost * 0.97:
            best, best_cost = split, cost
    return best


# Every runtime int of _gram_kernel: none is specialised on its value (== 1, divisible by 16), so
# a compiled variant is fixed by the flags, dtypes and block config alone — growth (new widths,
# strides, batch sizes) never recompiles, and the number of variants a test run compiles stays small.
SEGMENT_INTS = ("C{0} H{0} W{0} s{0}_n s{0}_c s{0}_h s{0}_w KW{0} KK{0} SH{0} SW{0} PH{0} PW{0} DH{0} DW{0} "
                "B{0}")
UNSPECIALISED = (
    ["s_out_split", "s_out_e", "s_out_a"]
    + [name for i in (1, 2, 3) for name in SEGMENT_INTS.format(i).split()]
    + "KWT SHT SWT PHT PWT DHT DWT HT WT TAP0".split()
    + "HO WO R ROWS_PER_SPLIT A_LO DA B_LO DB DA_BUCKET DB_BUCKET R_BUCKET".split()
)


# What the autotuner keys its choice on: bucketed widths and rows, and the compile-time flags.
AUTOTUNE_KEY = ["DA_BUCKET", "DB_BUCKET", "R_BUCKET", "MODE", "ACC64", "SYMMETRIC", "WEIGHTED", "COMPOSE",
                "HAS1", "HAS2", "HAS3", "I64", "ROWS_CONTIG"]


def early_prune(configs, named_args, **kwargs):
    """The autotuner's early prune: :func:`prune_configs` on this launch's variant and widths."""
    flag = lambda name: bool(kwargs.get(name, named_args.get(name)))  # noqa: E731
    return prune_configs(configs, width=max(named_args["DA_BUCKET"], named_args["DB_BUCKET"]),
                         segments=sum(flag(f"HAS{i}") for i in (1, 2, 3)),
                         itemsize=named_args["x1_ptr"].element_size(), weighted=flag("WEIGHTED"),
                         i64=flag("I64"))


def autotune_options() -> dict:
    """cache_results (triton >= 3.2): the chosen config persists on disk, so a later process sums in
    the same order and reproduces results bit for bit; older triton retunes per process."""
    if "cache_results" in inspect.signature(triton.autotune).parameters:
        return {"cache_results": True}
    return {}
