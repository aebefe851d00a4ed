"""Static GPU check that runs on CPU: compile every Gram-kernel variant for sm_90 and read its cost.

    python bench/gpu_static.py              every variant the launchers can emit, every kept config
    python bench/gpu_static.py --fast       S and M at the default config, S (tf32) at every config (CI)
    python bench/gpu_static.py --summary    ... and end with one line:
        spills=<max bytes at the default config> smem_over=<compiled configs over 227 KB>
        instr_per_elem_S=<x> modelled_S_tf32=<percent of TF32 dense peak>

Each (variant, config) is compiled ahead of time for ``GPUTarget("cuda", 90, 32)`` by the installed
triton (no GPU needed); the tools inside the triton wheel then give registers (``cuobjdump
--dump-resource-usage``), spill bytes (``ptxas -v`` on the PTX) and the SASS. Shared memory is
``metadata.shared``. Configs are pruned by their estimated shared memory *before* compiling, with
the autotuner's own prune function (``configs.prune_configs``), so what is compiled here is what
the autotuner would compile.

The main loop is the outermost backward branch whose body holds the tensor-core instructions (the
FMAs for "ieee", which runs on the CUDA cores); its
SASS instructions (plus the bodies of subroutines it calls, once per call; inner loops counted
``INNER_TRIPS`` times) are the per-iteration cost of one warp. "Instructions per gathered element"
is that count × 32 lanes × warps / (2 · BLOCK_R · BLOCK_D), the two Z tiles of an iteration.

The model (an upper bound, H100 SXM: 132 SMs, 4 warp-instructions issued per clock per SM, 2048
TF32 dense flop/clock/SM = 494 TFLOP/s at 1.83 GHz, L1 128 B/clock/SM): one iteration takes
max(issue, tensor-core, L1) clocks; CTAs of the launch (tiles × splits from the launcher's
``auto_split``) run in waves of 132 × occupancy; the S fraction of peak is the upper triangle's
flops R·D·(D+1) (what a symmetric product needs; bench/gpu.py's GEMM-equivalent convention, the
full 2·R·D², would read about twice as high) over peak flops in that time.
Latency, L2/DRAM traffic and the split reduction are not modelled: measured numbers can only be
lower.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SMEM_LIMIT = 227 * 1024
SMS = 132
ISSUE_PER_CLOCK = 4
L1_BYTES_PER_CLOCK = 128
# Dense flop per clock per SM by precision mode (tf32x3 = three TF32 MMAs; ieee = fp32 FMA units).
PEAK_FLOP_PER_CLOCK = {"tf32": 2048.0, "tf32x3": 2048.0 / 3, "bf16": 4096.0, "ieee": 256.0}
INNER_TRIPS = 3
MODEL_D, MODEL_R = 577, 65536
REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = 64

# Kernel variants the launchers emit: name -> flags (segments present, symmetric, compose, weighted,
# rows contiguous = a conv's output grid; linear statistics have one row per image; I64 = a tensor
# of 2³¹ elements or more).
_C, _L = {"ROWS_CONTIG": True}, {"ROWS_CONTIG": False}
VARIANTS = {
    "S": {"HAS1": True, "HAS2": False, "HAS3": False, "SYMMETRIC": True, **_C},
    "M": {"HAS1": True, "HAS2": True, "HAS3": False, "SYMMETRIC": False, **_C},
    "SME": {"HAS1": True, "HAS2": True, "HAS3": False, "SYMMETRIC": True, **_C},
    "pair": {"HAS1": True, "HAS2": True, "HAS3": True, "SYMMETRIC": False, "COMPOSE": True, **_C},
    "pair2": {"HAS1": True, "HAS2": True, "HAS3": False, "SYMMETRIC": False, "COMPOSE": True, **_C},
    "S_growth": {"HAS1": True, "HAS2": False, "HAS3": False, "SYMMETRIC": True, "WEIGHTED": True, **_C},
    "S_lin": {"HAS1": True, "HAS2": False, "HAS3": False, "SYMMETRIC": True, **_L},
    "M_lin": {"HAS1": True, "HAS2": True, "HAS3": False, "SYMMETRIC": False, **_L},
    "Z3_lin": {"HAS1": True, "HAS2": True, "HAS3": True, "SYMMETRIC": True, **_L},
    "S_i64": {"HAS1": True, "HAS2": False, "HAS3": False, "SYMMETRIC": True, "I64": True, **_C},
}
MODES = ("ieee", "tf32x3", "tf32", "bf16")
DTYPES = {"fp32": ("fp32", 4), "bf16": ("bf16", 2), "fp16": ("fp16", 2), "fp64": ("fp64", 8)}
FAST = [("S", "tf32", "fp32"), ("M", "tf32", "fp32"), ("S", "ieee", "fp32")]

_PIPES = {
    "mma": ("HGMMA", "HMMA", "WARPGROUP", "DMMA"),
    "memory": ("LDG", "LDGSTS", "LDS", "STS", "LDSM", "STG", "LDL", "STL", "ATOM", "RED", "UTMA",
               "SYNCS", "LDGDEPBAR", "DEPBAR"),
    "fp": ("FADD", "FMUL", "FFMA", "FSETP", "FSEL", "FMNMX", "DADD", "DMUL", "DFMA", "DSETP", "FCHK",
           "HADD2", "HMUL2", "HFMA2", "FSET"),
    "convert": ("F2I", "I2F", "F2F", "MUFU", "F2FP", "I2FP", "F2IP", "FRND"),
    "control": ("BRA", "BAR", "CALL", "RET", "EXIT", "BSSY", "BSYNC", "WARPSYNC", "NOP", "YIELD",
                "ELECT", "VOTE", "UCGABAR", "BMOV"),
}


def _pipe(opcode: str) -> str:
    base = opcode.split(".")[0]
    for pipe, names in _PIPES.items():
        if base in names:
            return pipe
    return "uniform" if base.startswith("U") else "int"


def _bin(tool: str) -> str:
    import triton
    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / tool)


# ----------------------------------------------------------------------------------------------
# Compiling one (variant, mode, dtype, config)
# ----------------------------------------------------------------------------------------------


def _configs():
    """(default config of a variant, every autotune config, prune function, auto_split)."""
    from gromo_kernels.triton_impl import configs

    def default(variant):
        flags = VARIANTS[variant]
        return configs.default_config(_segments(flags), flags.get("WEIGHTED", False), flags.get("I64", False))

    return default, configs.AUTOTUNE_CONFIGS, configs.prune_configs, configs.auto_split


def _segments(flags) -> int:
    return sum(bool(flags.get(k)) for k in ("HAS1", "HAS2", "HAS3"))


def _signature(fn, flags, mode, dtype, config) -> tuple[dict, dict, dict]:
    from gromo_kernels.triton_impl.gram import MODES as MODE_IDS
    elem, _ = DTYPES[dtype]
    acc64 = dtype == "fp64"
    const = {"COMPOSE": False, "WEIGHTED": False, "I64": False, "ROWS_CONTIG": True, **flags,
             "MODE": MODE_IDS[mode], "EMULATE": False, "ACC64": acc64, **config.kwargs}
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in const:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*fp64" if (name == "out_ptr" and acc64) else ("*fp32" if name == "out_ptr"
                                                                        else f"*{elem}")
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "i32"
    const = {k: v for k, v in const.items() if k in fn.arg_names}
    return sig, const, attrs


def compile_one(job) -> dict:
    """Compile one (variant, mode, dtype, config) for sm_90 and read its resources and main loop."""
    variant, mode, dtype, config_index, is_default = job
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from gromo_kernels.triton_impl import gram

    default, configs, _, _ = _configs()
    config = default(variant) if is_default else configs[config_index]
    fn = gram._gram_kernel.fn
    sig, const, attrs = _signature(fn, VARIANTS[variant], mode, dtype, config)
    start = time.perf_counter()
    kernel = triton.compile(ASTSource(fn, sig, const, attrs), target=GPUTarget("cuda", 90, 32),
                            options=dict(num_warps=config.num_warps, num_stages=config.num_stages))
    seconds = time.perf_counter() - start
    row = dict(variant=variant, mode=mode, dtype=dtype, config=_config_name(config), default=is_default,
               shared=int(kernel.metadata.shared), compile_s=round(seconds, 2))
    with tempfile.TemporaryDirectory() as tmp:
        cubin, ptx = Path(tmp) / "k.cubin", Path(tmp) / "k.ptx"
        cubin.write_bytes(kernel.asm["cubin"])
        ptx.write_text(kernel.asm["ptx"])
        row.update(_resources(cubin, ptx))
        sass = subprocess.run([_bin("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True,
                              check=True).stdout
    row.update(main_loop(sass, config))
    return row


def _config_name(config) -> str:
    kw = config.kwargs
    return f"D{kw['BLOCK_D']} R{kw['BLOCK_R']} w{config.num_warps} s{config.num_stages}"


def _resources(cubin: Path, ptx: Path) -> dict:
    usage = subprocess.run([_bin("cuobjdump"), "--dump-resource-usage", str(cubin)], capture_output=True,
                           text=True, check=True).stdout
    regs = int(re.search(r"REG:(\d+)", usage).group(1))
    out = subprocess.run([_bin("ptxas"), "-arch=sm_90a", "-v", str(ptx), "-o", os.devnull],
                         capture_output=True, text=True)
    log = out.stdout + out.stderr
    stores = sum(int(v) for v in re.findall(r"(\d+) bytes spill stores", log))
    loads = sum(int(v) for v in re.findall(r"(\d+) bytes spill loads", log))
    return dict(regs=regs, spill_bytes=stores + loads)


# ----------------------------------------------------------------------------------------------
# The main loop of the SASS
# ----------------------------------------------------------------------------------------------

_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_TARGET = re.compile(r"0x([0-9a-f]+)")


def parse_sass(sass: str) -> list[tuple[int, str, str]]:
    """(address, opcode, operands) of every instruction of the (single) kernel function."""
    return [(int(m.group(1), 16), m.group(2), m.group(3)) for m in map(_INSTR.search, sass.splitlines())
            if m]


def _target(operands: str) -> int | None:
    m = _TARGET.search(operands)
    return int(m.group(1), 16) if m else None


def _subroutine_length(instrs, start: int) -> int:
    n = 0
    for addr, op, _ in instrs:
        if addr >= start:
            n += 1
            if op.startswith("RET"):
                break
    return n


def main_loop(sass: str, config) -> dict:
    """Per-iteration instruction count of the main loop, by pipe, and per gathered element."""
    instrs = parse_sass(sass)
    loops = [(t, a) for a, op, o in instrs if op.startswith("BRA") and (t := _target(o)) is not None
             and t < a]
    # The products: tensor-core instructions, or the FMAs of an "ieee" dot on the CUDA cores.
    mma_addrs = [a for a, op, _ in instrs if _pipe(op) == "mma" and not op.startswith("WARPGROUP")]
    if not mma_addrs:
        mma_addrs = [a for a, op, _ in instrs if op.split(".")[0] in ("FFMA", "DFMA")]
    with_mma = [(t, a) for t, a in loops if any(t <= m <= a for m in mma_addrs)]
    if not with_mma:
        return dict(loop_instr=None, instr_per_elem=None, pipes={}, calls=0)
    lo, hi = min(with_mma, key=lambda ta: ta[0] - ta[1])
    inner = [(t, a) for t, a in loops if lo < t and a < hi]
    pipes: dict[str, float] = {}
    calls = 0
    for addr, op, operands in instrs:
        if not lo <= addr <= hi:
            continue
        weight = INNER_TRIPS if any(t <= addr <= a for t, a in inner) else 1
        pipes[_pipe(op)] = pipes.get(_pipe(op), 0) + weight
        if op.startswith("CALL") and (t := _target(operands)) is not None:
            calls += weight
            for a2, op2, _ in instrs:
                if a2 >= t:
                    pipes[_pipe(op2)] = pipes.get(_pipe(op2), 0) + weight
                    if op2.startswith("RET"):
                        break
    total = sum(pipes.values())
    kw = config.kwargs
    elements = 2 * kw["BLOCK_R"] * kw["BLOCK_D"]
    return dict(loop_instr=int(total), calls=calls, pipes={k: int(v) for k, v in sorted(pipes.items())},
                instr_per_elem=round(total * 32 * config.num_warps / elements, 2))


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


def _occupancy(row, config) -> int:
    warps = config.num_warps
    by_regs = REGISTERS_PER_SM // max(1, row["regs"] * 32 * warps)
    by_smem = (228 * 1024) // max(1, row["shared"] + 1024)
    return max(1, min(by_regs, by_smem, MAX_WARPS_PER_SM // warps))


def modelled_fraction(row, config, *, mode="tf32", d=MODEL_D, rows=MODEL_R, itemsize=4) -> float:
    """Upper bound on the fraction of ``mode``'s dense peak for the symmetric S (D × D) over ``rows``.

    Useful flops are those of the upper triangle, R·D·(D+1) (a SYRK); bench/gpu.py's GEMM-equivalent
    2·R·D² would read 2D/(D+1) ≈ 2× higher.
    """
    if row.get("loop_instr") is None:
        return 0.0
    _, _, _, auto_split = _configs()
    bd, br = config.kwargs["BLOCK_D"], config.kwargs["BLOCK_R"]
    tiles = math.ceil(d / bd)
    pairs = tiles * (tiles + 1) // 2
    split = auto_split(SMS, rows, pairs, d * d, 4)
    rows_per_split = math.ceil(rows / split)
    iters = math.ceil(rows_per_split / br)
    issue = row["loop_instr"] * config.num_warps / ISSUE_PER_CLOCK
    mma = 2.0 * bd * bd * br / PEAK_FLOP_PER_CLOCK[mode]
    l1 = 2.0 * br * bd * itemsize / L1_BYTES_PER_CLOCK
    per_iter = max(issue, mma, l1)
    occ = _occupancy(row, config)
    ctas = pairs * split
    waves = math.ceil(ctas / (SMS * occ))
    clocks = waves * occ * iters * per_iter
    return rows * d * (d + 1) / (clocks * SMS * PEAK_FLOP_PER_CLOCK[mode])


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def jobs(fast: bool, dtypes=tuple(DTYPES), default_only: bool = False) -> list[tuple]:
    """Every (variant, mode, dtype, config index, is default) to compile: each variant, mode and
    dtype at the default config; fp32 also at every autotune config the prune keeps (wide output,
    so only the shared-memory estimate prunes)."""
    default, configs, prune, _ = _configs()
    if fast:
        # ... plus S in tf32 at its other configs: the modelled bound is the best the autotuner has.
        others = [c for c in prune(configs, width=1024, segments=1, itemsize=4) if c is not default("S")]
        return ([(v, m, d, -1, True) for v, m, d in FAST]
                + [("S", "tf32", "fp32", configs.index(c), False) for c in others])
    out = []
    for variant, flags in VARIANTS.items():
        for mode in MODES:
            for dtype in dtypes:
                out.append((variant, mode, dtype, -1, True))
                if dtype == "fp32" and not default_only:
                    kept = prune(configs, width=1024, segments=_segments(flags), itemsize=4,
                                 weighted=flags.get("WEIGHTED", False), i64=flags.get("I64", False))
                    out += [(variant, mode, dtype, configs.index(c), False) for c in kept
                            if c is not default(variant)]
    return out


class _InProcess:
    """The Pool interface, run in this process (one compile at a time)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap(fn, items):
        return map(fn, items)


def run(fast: bool, processes: int, dtypes=tuple(DTYPES), default_only: bool = False) -> list[dict]:
    todo = jobs(fast, dtypes, default_only)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) if processes > 1 else _InProcess() as pool:
        rows = []
        for i, row in enumerate(pool.imap(compile_one, todo), 1):
            rows.append(row)
            print(f"[{i}/{len(todo)}] {row['variant']:8s} {row['mode']:6s} {row['dtype']:4s} "
                  f"{row['config']:16s}{' (default)' if row['default'] else '          '} "
                  f"regs={row['regs']} spill={row['spill_bytes']}B smem={row['shared'] // 1024}KB "
                  f"loop={row['loop_instr']} instr/elem={row['instr_per_elem']} {row['compile_s']}s",
                  flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    _, configs, _, _ = _configs()
    by_name = {_config_name(c): c for c in configs}
    spills = max(r["spill_bytes"] for r in rows if r["default"])
    smem_over = sum(r["shared"] > SMEM_LIMIT for r in rows)
    s_rows = [r for r in rows if r["variant"] == "S" and r["mode"] == "tf32" and r["dtype"] == "fp32"]
    s_default = next(r for r in s_rows if r["default"])
    best = max(modelled_fraction(r, by_name[r["config"]]) for r in s_rows)
    return (f"spills={spills} smem_over={smem_over} instr_per_elem_S={s_default['instr_per_elem']} "
            f"modelled_S_tf32={100 * best:.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fast", action="store_true", help="S and M at the default config, S tf32 at its configs (CI)")
    p.add_argument("--summary", action="store_true", help="end with the one-line summary")
    p.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.add_argument("--dtypes", default=",".join(DTYPES), help="input dtypes (comma-separated)")
    p.add_argument("--default-only", action="store_true", help="the default config only")
    p.add_argument("--json", type=Path, help="write every row to this file")
    args = p.parse_args(argv)
    import triton
    print(f"triton {triton.__version__}, target cuda sm_90, {args.jobs} compile processes", flush=True)
    rows = run(args.fast, args.jobs, tuple(args.dtypes.split(",")), args.default_only)
    _, configs, _, _ = _configs()
    by_name = {_config_name(c): c for c in configs}
    for r in rows:
        if r["variant"] == "S" and r["dtype"] == "fp32" and r["mode"] in PEAK_FLOP_PER_CLOCK:
            r["modelled_S"] = round(100 * modelled_fraction(r, by_name[r["config"]], mode=r["mode"]), 1)
    if args.json:
        args.json.write_text(json.dumps(dict(triton=triton.__version__, rows=rows), indent=1))
    if args.summary:
        print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
