"""Solves on the benchmark device (called by bench/gpu.py; ``--smoke`` shapes run on CPU).

1. One growth step of the 20-layer network of bench/test_bench_solves.py (D ∈ {65, 257, 577, 1153},
   fp32 statistics, "healthy" and "mixed" conditioning): the GroMo-style per-layer loop (fp32 LU →
   pinv → fp64 retry; fp32 eigh + SVD) against ours — grouped, inside one factorization_cache()
   block, fp64 (default) and dtype=float32, and fp64 without the block — each with its accuracy
   against float64 truth (scipy on the CPU), so a fast wrong answer cannot win.
2. The decompositions behind them, for a batch of 5 matrices per D in fp32 and fp64:
   ``torch.linalg.eigh`` batched and looped per matrix (pytorch#175585: above d = 32 the batched CUDA
   call loops internally, so batched ≈ looped there), eigh forced through each CUDA linalg library
   (cusolver, magma), ``eigvalsh``, and ``cholesky_ex`` batched (our fast path, which needs no eigh
   where S is numerically positive definite).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DECOMPOSITION_D = (65, 257, 577, 1153)
SMOKE_DIMS = [9, 17, 33, 17, 9]


def _solves_module():
    spec = importlib.util.spec_from_file_location("bench_solves_cases", BENCH_DIR / "test_bench_solves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _to(value, device):
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value.to(device)


def bench_network(device, time_ms, smoke: bool) -> list[dict]:
    """Rows: scenario, path, ms, speed-up vs the GroMo-style loop, errors (Δ, σ, α/ω)."""
    import torch

    solves = _solves_module()
    variants = [("GroMo-style loop", solves.run_gromo_style, ()),
                ("ours fp64, one block", solves.run_ours, (None, True)),
                ("ours fp64, no block", solves.run_ours, (None, False)),
                ("ours dtype=float32, one block", solves.run_ours, (torch.float32, True))]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for scenario in ("healthy", "mixed"):
            net = solves.build_network(scenario, dims=SMOKE_DIMS if smoke else None)
            truth = solves._truth(net)
            on_device = {key: _to(value, device) for key, value in net.items()}
            base = None
            for name, fn, extra in variants:
                ms = time_ms(lambda: fn(on_device, *extra))
                errors = solves.accuracy(_to(fn(on_device, *extra), "cpu"), truth)
                base = ms if base is None else base
                rows.append({"scenario": scenario, "path": name, "ms": ms, "speedup": base / ms, **errors})
                print(f"  solves {scenario:7s} {name:30s} {ms:9.2f} ms  {base / ms:5.2f}×  "
                      f"Δ err {errors['delta']:.1e}", flush=True)
    return rows


def _with_library(torch, library: str, fn):
    previous = torch.backends.cuda.preferred_linalg_library()
    torch.backends.cuda.preferred_linalg_library(library)
    try:
        return fn()
    finally:
        torch.backends.cuda.preferred_linalg_library(previous)


def bench_decompositions(device, time_ms, smoke: bool) -> list[dict]:
    """Rows: D, dtype, {method: ms or an error string} for a batch of 5 PSD matrices (κ = 1e3)."""
    import torch

    from gromo_kernels.testing import random_psd

    g = torch.Generator().manual_seed(0)
    rows = []
    for d in ((9, 33) if smoke else DECOMPOSITION_D):
        base = torch.stack([random_psd(d, "geometric", cond=1e3, generator=g) for _ in range(5)])
        for dtype in (torch.float32, torch.float64):
            a = base.to(device=device, dtype=dtype)
            methods = {
                "eigh batched": lambda: torch.linalg.eigh(a),
                "eigh looped": lambda: [torch.linalg.eigh(m) for m in a],
                "eigvalsh batched": lambda: torch.linalg.eigvalsh(a),
                "cholesky_ex batched": lambda: torch.linalg.cholesky_ex(a),
            }
            if device.type == "cuda":
                for library in ("cusolver", "magma"):
                    methods[f"eigh batched ({library})"] = (
                        lambda library=library: _with_library(torch, library, lambda: torch.linalg.eigh(a)))
            times = {}
            for name, fn in methods.items():
                try:
                    times[name] = time_ms(fn)
                except RuntimeError as err:  # a library that is not built in: recorded, not fatal
                    times[name] = f"unavailable: {str(err).splitlines()[0][:80]}"
            rows.append({"D": d, "dtype": str(dtype).replace("torch.", ""), "ms": times})
            print(f"  decompositions D={d} {dtype}: " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in times.items()), flush=True)
    return rows


def bench_solves(device, time_ms, smoke: bool) -> dict:
    return {"network": bench_network(device, time_ms, smoke),
            "decompositions": bench_decompositions(device, time_ms, smoke)}


def markdown_solves(record: dict) -> list[str]:
    lines = ["## Solves: one growth step, 20 layers (D ∈ {65, 257, 577, 1153}, fp32 statistics)", "",
             "| scenario | path | ms | vs GroMo-style | Δ rel. err | σ rel. err | α, ω rel. err |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in record["network"]:
        lines.append(f"| {r['scenario']} | {r['path']} | {r['ms']:.2f} | {r['speedup']:.2f}× | "
                     f"{r['delta']:.2e} | {r['sigma']:.2e} | {r['vectors']:.2e} |")
    if record["decompositions"]:
        names = list(dict.fromkeys(k for r in record["decompositions"] for k in r["ms"]))
        lines += ["", "## Decompositions, batch of 5 (ms)", "",
                  "| D | dtype | " + " | ".join(names) + " |", "|---:|---|" + "---:|" * len(names)]
        for r in record["decompositions"]:
            cells = [r["ms"].get(n, "-") for n in names]
            lines.append(f"| {r['D']} | {r['dtype']} | " + " | ".join(
                f"{c:.2f}" if isinstance(c, float) else str(c) for c in cells) + " |")
    lines.append("")
    return lines
