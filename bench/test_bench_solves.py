"""Benchmark: one growth step's solves for a 20-layer network, GroMo-style per-layer loop vs ours.

Network: 20 layers with D ∈ {65, 257, 577, 1153} mixed (linear 64/256 inputs, 3×3 convs with 64/128
input channels), o ∈ {64, 128}; layer l needs optimal_delta(S_l, M_l) and, for l ≥ 1, the new-neuron
solve on (S_{l-1}, N_l (D_{l-1}, o_l)). Statistics arrive in fp32 (means), as GroMo stores them.

* baseline (bench/gromo_style_solves.py): a Python loop, fp32 LU solve (→ pinv → fp64 retry) and
  fp32 eigh + SVD per layer;
* ours: ``optimal_delta(list, list)`` and ``optimal_added_neurons(list, list)`` — grouped by shape,
  batched, fp64 by default (``dtype=None``) or fp32 with fp64 escalation.

Scenarios: "healthy" (κ ≈ 1e3 everywhere, dead units in 4 layers: every solve takes the Cholesky
path) and "mixed" (as healthy, plus 4 layers with an exactly dependent bias column and 2 layers with
κ = 1e8: those go through eigh). Accuracy is measured against float64 truth (scipy pinvh of the
unrounded matrices with the fp32 cutoff): max relative error of Δ over layers, and of σ and
α, ω (sign-fixed) for the new neurons.

Run as pytest-benchmark:   pytest bench/test_bench_solves.py --benchmark-only
Write the results table:   python bench/test_bench_solves.py  [--rounds 5]  -> bench/results/cpu_solves.md
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import pathlib
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import torch

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))

import gromo_kernels as gk  # noqa: E402
from gromo_kernels.testing import random_psd  # noqa: E402

_spec = importlib.util.spec_from_file_location("gromo_style_solves", _HERE / "gromo_style_solves.py")
gromo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gromo)

DIMS = [65, 257, 577, 1153, 577, 65, 1153, 257, 577, 65, 257, 1153, 65, 577, 257, 1153, 577, 65, 257, 1153]
OUTS = {65: 64, 257: 128, 577: 64, 1153: 128}


def build_network(scenario: str, seed: int = 0):
    """fp32 statistics of a 20-layer network plus the float64 matrices they were rounded from."""
    g = torch.Generator().manual_seed(seed)
    s64, m64 = [], []
    for layer, d in enumerate(DIMS):
        o = OUTS[d]
        if scenario == "mixed" and layer in (3, 8, 13, 17):
            # Bias column dependent on the features (they sum to a constant): exact rank d − 1.
            s = random_psd(d, "geometric", cond=1e3, rank=d - 1, generator=g)
        elif scenario == "mixed" and layer in (6, 15):
            s = random_psd(d, "geometric", cond=1e8, generator=g)
        else:
            s = random_psd(d, "geometric", cond=1e3, generator=g)
        if layer % 5 == 2:  # dead ReLUs: exactly zero rows/columns
            dead = torch.randperm(d, generator=g)[: d // 10]
            s[dead, :] = 0
            s[:, dead] = 0
        s64.append(s)
        # M and N in range(S) as real statistics are (Σ x̃ dAᵀ): S times something.
        m64.append(s @ torch.randn(d, o, generator=g, dtype=torch.float64))
    n64 = [s64[i - 1] @ torch.randn(DIMS[i - 1], OUTS[DIMS[i]], generator=g, dtype=torch.float64)
           for i in range(1, len(DIMS))]
    s32 = [s.float() for s in s64]
    return dict(
        s64=s64, m64=m64, n64=n64, s32=s32, m32=[m.float() for m in m64], n32=[n.float() for n in n64],
        s_prev32=s32[:-1],
    )


def run_gromo_style(net):
    layers = list(zip(net["s32"], net["m32"]))
    growth = list(zip(net["s_prev32"], net["n32"]))
    return gromo.gromo_style_layer_loop(layers, growth, dtype=torch.float32)


def run_ours(net, dtype=None):
    deltas = gk.optimal_delta(net["s32"], net["m32"], dtype=dtype)
    added = gk.optimal_added_neurons(net["s_prev32"], net["n32"], dtype=dtype)
    return [(r.delta, r.decrease) for r in deltas], [(a.alpha, a.omega, a.sigma) for a in added]


# ----------------------------------------------------------------------------------------------
# Accuracy against float64 truth
# ----------------------------------------------------------------------------------------------


def _truth(net):
    """Δ from pinvh of the unrounded S with the fp32 cutoff; new neurons from ours in fp64 on the
    unrounded matrices with the same cutoff (checked against GroMo's fp64 transcription in tests)."""
    deltas = []
    for s, m in zip(net["s64"], net["m64"]):
        d = s.shape[0]
        deltas.append(torch.from_numpy(sla.pinvh(s.numpy(), atol=0.0, rtol=d * 1.1920929e-07) @ m.numpy()).T)
    added = [gk.optimal_added_neurons(s, n, rtol=s.shape[0] * 1.1920929e-07)
             for s, n in zip(net["s64"][:-1], net["n64"])]
    return deltas, added


def _fix_signs(alpha, omega):
    if alpha.shape[0] == 0:
        return alpha, omega
    idx = alpha.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(alpha.gather(1, idx)).squeeze(1)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return alpha * sign[:, None], omega * sign[None, :]


def _rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def accuracy(result, truth):
    deltas, added = result
    t_deltas, t_added = truth
    delta_err = max(_rel(d, t) for (d, _), t in zip(deltas, t_deltas))
    sigma_err = vec_err = 0.0
    for (a, w, s), t in zip(added, t_added):
        k = min(s.shape[0], t.sigma.shape[0])
        if s.shape[0] != t.sigma.shape[0]:
            sigma_err = max(sigma_err, float("inf"))
        a, w = _fix_signs(a.double(), w.double())
        sigma_err = max(sigma_err, _rel(s[:k], t.sigma[:k]))
        vec_err = max(vec_err, _rel(a[:k], t.alpha[:k]), _rel(w[:, :k], t.omega[:, :k]))
    return dict(delta=delta_err, sigma=sigma_err, vectors=vec_err)


# ----------------------------------------------------------------------------------------------
# pytest-benchmark cases (baseline beside ours, same run)
# ----------------------------------------------------------------------------------------------

_NETS: dict = {}


def _net(scenario):
    if scenario not in _NETS:
        _NETS[scenario] = build_network(scenario)
    return _NETS[scenario]


@pytest.mark.parametrize("scenario", ["healthy", "mixed"])
def test_gromo_style_loop(benchmark, scenario):
    net = _net(scenario)
    benchmark.group = f"20-layer solves, {scenario}"
    benchmark.pedantic(run_gromo_style, args=(net,), rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("dtype", [None, torch.float32], ids=["fp64", "fp32-escalate"])
@pytest.mark.parametrize("scenario", ["healthy", "mixed"])
def test_ours_grouped(benchmark, scenario, dtype):
    net = _net(scenario)
    benchmark.group = f"20-layer solves, {scenario}"
    benchmark.pedantic(run_ours, args=(net, dtype), rounds=3, iterations=1, warmup_rounds=1)


# ----------------------------------------------------------------------------------------------
# Results table (interleaved timing: baseline and ours alternate, medians reported)
# ----------------------------------------------------------------------------------------------


def _time(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=_HERE, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(_HERE / "results" / "cpu_solves.md"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    variants = [("GroMo-style loop (fp32 LU/pinv/retry, fp32 eigh+SVD)", run_gromo_style, ()),
                ("ours, grouped, fp64 (default)", run_ours, (None,)),
                ("ours, grouped, fp32 + fp64 escalation", run_ours, (torch.float32,))]
    rows = []
    for scenario in ("healthy", "mixed"):
        net = build_network(scenario)
        truth = _truth(net)
        times = {name: [] for name, _, _ in variants}
        for name, fn, extra in variants:  # warm-up
            fn(net, *extra)
        for _ in range(args.rounds):
            for name, fn, extra in variants:
                times[name].append(_time(fn, net, *extra))
        base = statistics.median(times[variants[0][0]])
        for name, fn, extra in variants:
            acc = accuracy(fn(net, *extra), truth)
            med = statistics.median(times[name])
            rows.append((scenario, name, med, base / med, acc))
    lines = [
        "# CPU: one growth step's solves, 20-layer network (GroMo-style loop vs ours)",
        "",
        f"Date {datetime.date.today().isoformat()}, git {_git_sha()}, torch {torch.__version__}, "
        f"numpy {np.__version__}, {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, {args.rounds} interleaved rounds (median). "
        "Shared 2-core machine: absolute times are noisy, the ratio is what was measured side by side.",
        "",
        "Layers: D = " + ", ".join(map(str, DIMS)) + "; o = 64 (D ∈ {65, 577}) or 128 (D ∈ {257, 1153}); "
        "statistics in fp32. Per layer: optimal_delta(S_l, M_l) and, for l ≥ 1, the new-neuron solve on "
        "(S_{l-1}, N_l). healthy: κ = 1e3, dead units (zero rows) in 4 layers. mixed: healthy plus 4 layers "
        "with exact rank D−1 and 2 with κ = 1e8.",
        "",
        "Accuracy = max over layers of the relative error against float64 truth (pinvh of the unrounded "
        "matrices, fp32 cutoff D·ε₃₂); α, ω sign-fixed.",
        "",
        "| scenario | path | median time (s) | speed-up vs GroMo-style | Δ rel. err | σ rel. err | α, ω rel. err |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario, name, med, ratio, acc in rows:
        lines.append(f"| {scenario} | {name} | {med:.3f} | {ratio:.2f}× | {acc['delta']:.2e} | "
                     f"{acc['sigma']:.2e} | {acc['vectors']:.2e} |")
    text = "\n".join(lines) + "\n"
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
