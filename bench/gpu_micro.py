"""The steps of the first GPU run (bench/gpu.sh): plan, environment, warm-up, S/M/E microbench.

    python3 bench/gpu_micro.py plan    [--processes 14]      the static time estimate of the run
    python3 bench/gpu_micro.py env                           device, versions
    python3 bench/gpu_micro.py warmup  [--processes 14]      compile every variant into one cache
    python3 bench/gpu_micro.py micro   [--modes ...] [--deadline S]

Every result is one line, printed (flushed) and appended to ``<out>/results.jsonl`` as soon as it
exists, so a run cut off by its time limit keeps everything measured so far. ``--smoke`` runs
each step on CPU under TRITON_INTERPRET=1 with tiny shapes (checks the script).

Warm-up: one process per job (a statistic × mode × dtype launched once on tiny inputs) over a
spawn pool sharing TRITON_CACHE_DIR, with GROMO_KERNELS_TRITON_AUTOTUNE=0 (each variant's pinned
default config — the microbench and the tests use it too, so they only read the cache).

Microbench: conv S, M and E at D ∈ {577, 1153} (C = 64, 128; 3×3, pad 1, 32×32), n ∈ {64, 128},
per precision mode: the Triton backend against per-mode baselines — unfold + mm with TF32 off
("ieee", "tf32x3") or on ("tf32"), in bf16 ("bf16"); cuDNN's weight gradient with TF32 off/on; our
torch backend; torch.mm for E. ms (do_bench median), TFLOP/s (GEMM-equivalent 2·R·D_A·D_B, S
counts its full D²), % of the datasheet peak and of the peak measured here, error / tolerance
against fp64 (the tensor-core chain term for tf32/bf16).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MODES = ("ieee", "tf32x3", "tf32", "bf16")
# Dense datasheet peaks of an H100 SXM (TFLOP/s): fp32 on CUDA cores, TF32, BF16; tf32x3 = TF32 / 3.
DATASHEET = {"ieee": 66.9, "tf32": 494.7, "bf16": 989.4, "tf32x3": 494.7 / 3}
MICRO_D = {577: 64, 1153: 128}
MICRO_N = (64, 128)
# Statistics the warm-up launches (each compiles its kernel variants) and input dtypes.
WARM_STATS = ("conv_s", "conv_m", "linear_s", "linear_m", "e", "restricted", "full", "layer_conv",
              "layer_linear")
WARM_DTYPES = ("float32", "float16", "bfloat16", "float64")
# Static estimate: seconds to compile one variant on one CPU core (bench/gpu_static.py measures
# 1.7–4.4 s per variant for triton 3.6/3.8 on an idle core, up to 8 s on a loaded one: 5 s for a
# machine with a core per process) and the variants one warm-up job compiles.
COMPILE_S = 5.0
VARIANTS_PER_JOB = 2
PLAN_BUDGET_S = 420


def _gpu_script():
    spec = importlib.util.spec_from_file_location("bench_gpu_script", BENCH_DIR / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Results:
    """Prints each record as one line and appends it to ``<out>/results.jsonl`` at once."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "results.jsonl"

    def emit(self, step: str, **record) -> None:
        record = {"step": step, **record}
        line = json.dumps(record, default=str)
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


# ----------------------------------------------------------------------------------------------
# Plan
# ----------------------------------------------------------------------------------------------


def plan(processes: int, modes=MODES) -> dict:
    """Static time estimate (seconds) of each step of bench/gpu.sh on a fresh machine."""
    jobs = len(WARM_STATS) * len(modes) * len(WARM_DTYPES)
    warmup = math.ceil(jobs / processes) * VARIANTS_PER_JOB * COMPILE_S + 20  # + process start-up
    ceilings = len(modes) * 2.0
    timed = len(MICRO_D) * len(MICRO_N) * len(modes) * 9  # triton S/M/E + six baselines
    micro = ceilings + timed * 0.5 + len(MICRO_D) * len(MICRO_N) * 6.0  # do_bench + fp64 references
    tests = 120.0
    steps = {"env": 5.0, "warmup": warmup, "micro": micro, "tests": tests}
    steps["pairs"] = max(0.0, PLAN_BUDGET_S - sum(steps.values()))
    return {"steps": {k: round(v, 1) for k, v in steps.items()}, "jobs": jobs, "processes": processes,
            "total": round(sum(steps.values()), 1), "budget": PLAN_BUDGET_S}


# ----------------------------------------------------------------------------------------------
# Warm-up
# ----------------------------------------------------------------------------------------------


def _warm_job(job) -> dict:
    """Launch one statistic once on tiny inputs (compiles its variants); returns its seconds."""
    stat, mode, dtype_name, device_name = job
    import torch

    import gromo_kernels as gk

    dev = torch.device(device_name)
    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(dev, dtype)

    start = time.perf_counter()
    kw = {"backend": "triton", "precision": mode}
    geo = gk.Conv2dGeometry(3, 1, 1, 1)
    if stat == "conv_s":
        gk.conv2d_input_cov(r(2, 3, 6, 6), geo, **kw)
    elif stat == "conv_m":
        gk.conv2d_input_grad(r(2, 3, 6, 6), r(2, 4, 6, 6), geo, **kw)
    elif stat == "linear_s":
        gk.linear_input_cov(r(8, 5), **kw)
    elif stat == "linear_m":
        gk.linear_input_grad(r(8, 5), r(8, 3), **kw)
    elif stat == "e":
        gk.grad_cov(r(8, 3), **kw)
    elif stat in ("restricted", "full"):
        fn = gk.conv2d_restricted_growth_stats if stat == "restricted" else gk.conv2d_full_growth_stats
        fn(r(2, 2, 6, 6), r(2, 3, 6, 6), r(2, 4, 6, 6), prev=geo, cur=geo, **kw)
    elif stat == "layer_conv":
        gk.layer_statistics("conv2d_full", r(2, 3, 6, 6), r(2, 4, 6, 6), x_prev=r(2, 2, 6, 6), prev=geo,
                            cur=geo, **kw)
    else:
        gk.layer_statistics("linear", r(8, 5), r(8, 3), x_prev=r(8, 4), **kw)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return {"stat": stat, "mode": mode, "dtype": dtype_name, "s": round(time.perf_counter() - start, 2)}


def warmup(results: Results, processes: int, modes, device_name: str, smoke: bool) -> None:
    os.environ["GROMO_KERNELS_TRITON_AUTOTUNE"] = "0"
    dtypes = WARM_DTYPES[:1] if smoke else WARM_DTYPES  # the interpreter compiles nothing
    jobs = [(s, m, d, device_name) for s in WARM_STATS for m in modes for d in dtypes]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for rec in pool.imap_unordered(_warm_job, jobs):
            results.emit("warmup", **rec)
    results.emit("warmup_done", jobs=len(jobs), processes=processes, s=round(time.perf_counter() - start, 1))


# ----------------------------------------------------------------------------------------------
# Microbench
# ----------------------------------------------------------------------------------------------


def _baselines(gpu, torch, gk, mode, geometry):
    """name -> fn(x, grad) for S, M and E: the per-mode torch baselines."""
    from gromo_kernels._precision import torch_fp32_precision

    tf32 = mode == "tf32"
    low = torch.bfloat16 if mode == "bf16" else None

    def under(fn):
        def run(*a):
            with torch_fp32_precision("tf32" if tf32 else "ieee"):
                return fn(*a)
        return run

    def unfold_mm(x, _):
        u = gpu._unfold_rows(x.to(low) if low else x, geometry)
        return torch.mm(u, u.T)

    def rows_mm(_, grad):
        rows = grad.movedim(1, -1).reshape(-1, grad.shape[1])
        rows = rows.to(low) if low else rows
        return torch.mm(rows.T, rows)

    tag = "bf16" if low else ("tf32_on" if tf32 else "tf32_off")
    return {
        "S": {f"unfold_mm_{tag}": under(unfold_mm),
              "torch_backend": lambda x, _: gk.conv2d_input_cov(x, geometry, backend="torch", precision=mode)},
        "M": {f"cudnn_wgrad_{'tf32_on' if tf32 else 'tf32_off'}": under(lambda x, g: gpu._wgrad_m(x, g, geometry)),
              "torch_backend": lambda x, g: gk.conv2d_input_grad(x, g, geometry, backend="torch", precision=mode)},
        "E": {f"mm_{tag}": under(rows_mm),
              "torch_backend": lambda _, g: gk.grad_cov(g.movedim(1, -1), backend="torch", precision=mode)},
    }


def micro(results: Results, modes, deadline: float, smoke: bool) -> None:
    import torch

    import gromo_kernels as gk
    from gromo_kernels import testing as T

    gpu = _gpu_script()
    os.environ["GROMO_KERNELS_TRITON_AUTOTUNE"] = "0"
    device = torch.device("cpu" if smoke else "cuda")
    time_ms = gpu.timer(device)
    ceiling = gpu.ceilings(device, 256 if smoke else 8192, time_ms)
    results.emit("ceilings", tflops=ceiling)
    points = {10: 1, 19: 2} if smoke else MICRO_D
    ns = (2,) if smoke else MICRO_N
    hw = 6 if smoke else 32
    geometry = gk.Conv2dGeometry(3, 1, 1, 1)
    for d, c in points.items():
        for n in ns:
            g = torch.Generator().manual_seed(d + n)
            x = torch.randn(n, c, hw, hw, generator=g).to(device)
            grad = torch.randn(n, c, hw, hw, generator=g).to(device)
            rows = n * hw * hw
            exact = {"S": gk.conv2d_input_cov(x.double(), geometry, backend="torch"),
                     "M": gk.conv2d_input_grad(x.double(), grad.double(), geometry, backend="torch"),
                     "E": gk.grad_cov(grad.double().movedim(1, -1), backend="torch")}
            flops = {"S": 2.0 * rows * d * d, "M": 2.0 * rows * d * c, "E": 2.0 * rows * c * c}
            ours = {"S": lambda x, _, m: gk.conv2d_input_cov(x, geometry, backend="triton", precision=m),
                    "M": lambda x, gr, m: gk.conv2d_input_grad(x, gr, geometry, backend="triton", precision=m),
                    "E": lambda _, gr, m: gk.grad_cov(gr.movedim(1, -1), backend="triton", precision=m)}
            for mode in modes:
                if time.monotonic() > deadline:
                    results.emit("micro_skipped", D=d, n=n, mode=mode, reason="deadline")
                    continue
                base = _baselines(gpu, torch, gk, mode, geometry)
                for stat in ("S", "M", "E"):
                    paths = {"triton": lambda a, b, s=stat, m=mode: ours[s](a, b, m), **base[stat]}
                    for path, fn in paths.items():
                        out = fn(x, grad)
                        ms = time_ms(lambda fn=fn: fn(x, grad))
                        tol = T.tolerance(mode, torch.float32, rows, tensor_core_chain=rows)
                        err = (out.double() - exact[stat]).abs().max().item()
                        bound = tol.atol + tol.rtol * exact[stat].abs().max().item()
                        tf = gpu.tflops(flops[stat], ms)
                        results.emit("micro", D=d, n=n, stat=stat, mode=mode, path=path, ms=round(ms, 4),
                                     tflops=round(tf, 2), pct_datasheet=round(100 * tf / DATASHEET[mode], 1),
                                     pct_measured=round(100 * tf / ceiling[mode], 1) if ceiling.get(mode) else None,
                                     err_over_tol=round(err / bound, 3))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("step", choices=("plan", "env", "warmup", "micro"))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--processes", type=int, default=14)
    p.add_argument("--deadline", type=float, default=300.0, help="seconds from now for this step")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", BENCH_DIR / "results" / "gpu_run")))
    p.add_argument("--smoke", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1")
    args = p.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"--modes: unknown {unknown}; choose from {MODES}")
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    sys.path.insert(0, str(REPO))
    results = Results(args.out)
    deadline = time.monotonic() + args.deadline
    if args.step == "plan":
        results.emit("plan", **plan(args.processes, modes))
        return 0
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("bench/gpu_micro.py needs CUDA (or --smoke)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.smoke else "cuda")
    if args.step == "env":
        results.emit("env", **_gpu_script().environment(device))
    elif args.step == "warmup":
        warmup(results, args.processes, modes[:1] if args.smoke else modes, device.type, args.smoke)
    else:
        micro(results, modes, deadline, args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
