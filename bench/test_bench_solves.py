"""Benchmark: one growth step's solves for a 20-layer network, GroMo-style per-layer loop vs ours.

Network: 20 layers with D ∈ {65, 257, 577, 1153} mixed (linear 64/256 inputs, 3×3 convs with 64/128
input channels), o ∈ {64, 128}; layer l needs optimal_delta(S_l, M_l) and, for l ≥ 1, the new-neuron
solve on (S_{l-1}, N_l (D_{l-1}, o_l)). Statistics arrive in fp32 (means), as GroMo stores them.

* baseline (bench/gromo_style_solves.py): a Python loop, fp32 LU solve (→ pinv → fp64 retry) and
  fp32 eigh + SVD per layer;
* ours: ``optimal_delta(list, list)`` and ``optimal_added_neurons(list, list)`` — grouped by shape,
  batched, fp64 by default (``dtype=None``) or fp32 with fp64 escalation — inside one
  ``factorization_cache()`` block, so each S_l is factored once for both of its uses (the way a
  growth step is meant to run them; gromo's growth loop and containers do), and without the block.

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
import contextlib
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


def build_network(scenario: str, seed: int = 0, dims=None):
    """fp32 statistics of a 20-layer network (``dims``: other layer sizes, for smoke runs; their
    output widths are 4) plus the float64 matrices they were rounded from."""
    dims = DIMS if dims is None else dims
    g = torch.Generator().manual_seed(seed)
    s64, m64 = [], []
    for layer, d in enumerate(dims):
        o = OUTS.get(d, 4)
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
    n64 = [s64[i - 1] @ torch.randn(dims[i - 1], OUTS.get(dims[i], 4), generator=g, dtype=torch.float64)
           for i in range(1, len(dims))]
    s32 = [s.float() for s in s64]
    return dict(
        s64=s64, m64=m64, n64=n64, s32=s32, m32=[m.float() for m in m64], n32=[n.float() for n in n64],
        s_prev32=s32[:-1],
    )


def run_gromo_style(net):
    layers = list(zip(net["s32"], net["m32"]))
    growth = list(zip(net["s_prev32"], net["n32"]))
    return gromo.gromo_style_layer_loop(layers, growth, dtype=torch.float32)


def run_ours(net, dtype=None, cache=True):
    """One growth step's solves: two grouped calls, inside one factorization_cache() block (each S
    factored once for its delta and its role as the next layer's growth covariance) or, with
    ``cache=False``, each call factoring on its own."""
    block = gk.factorization_cache() if cache else contextlib.nullcontext()
    with block:
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
# Failure cases: what each path did (the closing note of the issue)
# ----------------------------------------------------------------------------------------------


def _data_stats(kind, g, n_rows=2000, d=48, o=6, summed=False):
    """Linear-layer statistics from data, float64 (x̃ = [x, 1]): S = x̃ᵀx̃, M = x̃ᵀg (means unless summed)."""
    x = torch.relu(torch.randn(n_rows, d, generator=g, dtype=torch.float64))
    if kind == "simplex":
        x = torch.rand(n_rows, d, generator=g, dtype=torch.float64)
        x = x / x.sum(dim=1, keepdim=True)
    elif kind == "dead":
        x[:, :8] = 0
    elif kind == "duplicate":
        x[:, 1] = 3 * x[:, 0]
    xt = torch.cat([x, torch.ones(n_rows, 1, dtype=torch.float64)], dim=1)
    grad = torch.randn(n_rows, o, generator=g, dtype=torch.float64)
    div = 1 if summed else n_rows
    s64 = xt.T @ xt / div
    s64 = 0.5 * (s64 + s64.T)
    s32 = xt.float().T @ xt.float() / div
    return s64, xt.T @ grad / div, s32, xt.float().T @ grad.float() / div


def _delta_case(name, s64, m64, s32, m32, rtol32=True):
    d = s64.shape[0]
    cut = d * 1.1920929e-07 if rtol32 else d * 2.220446049250313e-16
    truth = torch.from_numpy(sla.pinvh(s64.numpy(), atol=0.0, rtol=cut) @ m64.numpy()).T
    truth_dec = float(torch.trace(m64 @ truth))
    events = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g_delta, g_dec = gromo.gromo_optimal_delta(s32, m32, dtype=torch.float32, events=events)
        gromo_cell = (f"{'+'.join(events) or 'LU'}: Δ err {_rel(g_delta, truth):.1e}, "
                      f"decrease {float(g_dec) / truth_dec:.3g}× truth")
    except Exception as err:  # noqa: BLE001 — the baseline's own failure is the result here
        gromo_cell = f"{type(err).__name__}: {err}"
    try:
        ours = gk.optimal_delta(s32, m32)
        rank = int(gk.solve_psd(s32, m32).rank)
        ours32 = gk.optimal_delta(s32, m32, dtype=torch.float32)
        escalated = bool(torch.equal(ours32.delta, ours.delta))
        ours_cell = (f"{'pinv' if bool(ours.used_pinv) else 'Cholesky'} rank {rank}/{d}: Δ err "
                     f"{_rel(ours.delta, truth):.1e}, decrease {float(ours.decrease) / truth_dec:.3g}× truth")
        ours32_cell = f"Δ err {_rel(ours32.delta, truth):.1e}{' (escalated to fp64)' if escalated else ''}"
    except Exception as err:  # noqa: BLE001
        ours_cell = ours32_cell = f"{type(err).__name__}: {err}"
    return (name, gromo_cell, ours_cell, ours32_cell)


def _growth_case(name, s64, n64, s32, n32, **kw):
    ref = gk.optimal_added_neurons(s64, n64, statistical_threshold=0.0, **kw)
    events = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ga, gw, gs = gromo.gromo_compute_optimal_added_parameters(s32, n32, dtype=torch.float32,
                                                                  statistical_threshold=0.0, events=events)
    ga, gw = _fix_signs(ga, gw)

    def errs(a, w, s):
        if s.shape != ref.sigma.shape:
            return (f"k = {s.shape[0]} vs {ref.sigma.shape[0]}, "
                    f"σ_max {float(s.max()):.3g} vs {float(ref.sigma.max()):.3g}")
        return f"σ err {_rel(s, ref.sigma):.1e}, α err {_rel(a, ref.alpha):.1e}, ω err {_rel(w, ref.omega):.1e}"

    ours = gk.optimal_added_neurons(s32, n32, statistical_threshold=0.0, **kw)
    ours32 = gk.optimal_added_neurons(s32, n32, statistical_threshold=0.0, dtype=torch.float32, **kw)
    return (name, ("eigh retry: " if events else "") + errs(ga, gw, gs), errs(*ours), errs(*ours32))


def failure_cases():
    """Every failure case tried, through the GroMo-style fp32 path and ours (fp64 and fp32 modes)."""
    g = torch.Generator().manual_seed(7)
    rows = []
    for kind, label in (("relu", "control: ReLU features + bias, n = 2000, D = 49"),
                        ("dead", "dead ReLUs (8 zero rows/columns)"),
                        ("simplex", "bias column dependent (features sum to 1)"),
                        ("duplicate", "duplicated feature (x₁ = 3x₀)")):
        rows.append(_delta_case(label, *_data_stats(kind, g)))
    for cond in (1e6, 1e8, 1e12):
        s64 = random_psd(64, "geometric", cond=cond, generator=g)
        m64 = torch.randn(64, 10, generator=g, dtype=torch.float64)
        rows.append(_delta_case(f"κ = {cond:.0e}, D = 64", s64, m64, s64.float(), m64.float()))
    for rank in (63, 32):
        s64 = random_psd(64, "geometric", cond=1e3, rank=rank, generator=g)
        m64 = torch.randn(64, 10, generator=g, dtype=torch.float64)
        rows.append(_delta_case(f"exact rank {rank}/64, M ⟂̸ null space", s64, m64, s64.float(), m64.float()))
    lam = torch.cat([torch.logspace(0, -2, 40, dtype=torch.float64), torch.full((8,), -1e-7, dtype=torch.float64)])
    s64 = random_psd(48, lam, generator=g)
    m64 = torch.randn(48, 6, generator=g, dtype=torch.float64)
    rows.append(_delta_case("indefinite noise (8 eigenvalues −1e-7)", s64, m64, s64.float(), m64.float()))
    for scale in (1e-20, 1e20):
        s64 = random_psd(48, "geometric", cond=1e2, rank=40, scale=scale, generator=g)
        m64 = s64 @ torch.randn(48, 6, generator=g, dtype=torch.float64)
        rows.append(_delta_case(f"rank 40/48 at scale {scale:.0e}", s64, m64, s64.float(), m64.float()))
    nan = random_psd(8, cond=10.0, generator=g).float()
    nan[2, 2] = float("nan")
    rows.append(_delta_case("NaN in S", nan.double().nan_to_num(), torch.ones(8, 2, dtype=torch.float64),
                            nan, torch.ones(8, 2)))
    asym = random_psd(8, cond=10.0, generator=g).float()
    asym[0, 5] += 0.5
    rows.append(_delta_case("non-symmetric S (|S − Sᵀ| = 0.5)", asym.double(), torch.ones(8, 2, dtype=torch.float64),
                            asym, torch.ones(8, 2)))
    growth = []
    s64, _, s32, _ = _data_stats("simplex", g, n_rows=4000, d=39, summed=True)
    grad = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    x = torch.rand(4000, 39, generator=g, dtype=torch.float64)
    x = x / x.sum(dim=1, keepdim=True)
    xt = torch.cat([x, torch.ones(4000, 1, dtype=torch.float64)], dim=1)
    s64, n64 = xt.T @ xt, xt.T @ grad
    growth.append(_growth_case("summed stats, bias column dependent", 0.5 * (s64 + s64.T), n64,
                               xt.float().T @ xt.float(), xt.float().T @ grad.float()))
    s64 = random_psd(20, "geometric", cond=1e2, scale=1e-8, generator=g)
    n64 = torch.randn(20, 5, generator=g, dtype=torch.float64)
    growth.append(_growth_case("scale 1e-8 (GroMo's absolute 1e-6 drops everything; ours numerical_threshold=0)",
                               s64, n64, s64.float(), n64.float(), numerical_threshold=0.0))
    s64 = random_psd(40, "geometric", cond=1e2, generator=g)
    n64 = torch.randn(40, 12, generator=g, dtype=torch.float64)
    growth.append(_growth_case("control: κ = 1e2", s64, n64, s64.float(), n64.float()))
    return rows, growth


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


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("dtype", [None, torch.float32], ids=["fp64", "fp32-escalate"])
@pytest.mark.parametrize("scenario", ["healthy", "mixed"])
def test_ours_grouped(benchmark, scenario, dtype, cache):
    net = _net(scenario)
    benchmark.group = f"20-layer solves, {scenario}"
    benchmark.pedantic(run_ours, args=(net, dtype, cache), rounds=3, iterations=1, warmup_rounds=1)


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
                ("ours, grouped, fp64 (default), one factorization_cache() block", run_ours, (None, True)),
                ("ours, grouped, fp64, no block (each call factors)", run_ours, (None, False)),
                ("ours, grouped, dtype=float32 (fp32 Cholesky, fp64 pinv and escalation), one block",
                 run_ours, (torch.float32, True))]
    rows = []
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        for scenario in ("healthy", "mixed"):
            net = build_network(scenario)
            truth = _truth(net)
            times = {name: [] for name, _, _ in variants}
            for name, fn, extra in variants:  # warm-up
                fn(net, *extra)
            for _ in range(args.rounds):
                for name, fn, extra in variants:
                    times[name].append(_time(fn, net, *extra))
            base = min(times[variants[0][0]])
            for name, fn, extra in variants:
                acc = accuracy(fn(net, *extra), truth)
                best, med = min(times[name]), statistics.median(times[name])
                rows.append((threads, scenario, name, best, med, base / best, acc))
    torch.set_num_threads(default_threads)
    lines = [
        "# CPU: one growth step's solves, 20-layer network (GroMo-style loop vs ours)",
        "",
        f"Date {datetime.date.today().isoformat()}, git {_git_sha()}, torch {torch.__version__}, "
        f"numpy {np.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.rounds} interleaved rounds per thread setting. "
        "Shared 2-core machine (other jobs running): absolute times are noisy, so the speed-up is the "
        "ratio of the best rounds, measured side by side; medians shown for reference.",
        "",
        "Layers: D = " + ", ".join(map(str, DIMS)) + "; o = 64 (D ∈ {65, 577}) or 128 (D ∈ {257, 1153}); "
        "statistics in fp32. Per layer: optimal_delta(S_l, M_l) and, for l ≥ 1, the new-neuron solve on "
        "(S_{l-1}, N_l). healthy: κ = 1e3, dead units (zero rows) in 4 layers. mixed: healthy plus 4 layers "
        "with exact rank D−1 and 2 with κ = 1e8.",
        "",
        "Accuracy = max over layers of the relative error against float64 truth (pinvh of the unrounded "
        "matrices, fp32 cutoff D·ε₃₂); α, ω sign-fixed.",
        "",
        "| threads | scenario | path | best (s) | median (s) | speed-up vs GroMo-style | Δ rel. err | σ rel. err | α, ω rel. err |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, scenario, name, best, med, ratio, acc in rows:
        lines.append(f"| {threads} | {scenario} | {name} | {best:.3f} | {med:.3f} | {ratio:.2f}× | {acc['delta']:.2e} | "
                     f"{acc['sigma']:.2e} | {acc['vectors']:.2e} |")
    delta_rows, growth_rows = failure_cases()
    lines += [
        "",
        "## Failure cases: what each path did",
        "",
        "optimal_delta on fp32 statistics. Truth: pinvh of the float64 matrix with cutoff D·ε₃₂ (D·ε₃₂ is "
        "the noise floor of an fp32 S). 'decrease' is tr(M·Δ) relative to the truth's.",
        "",
        "| case | GroMo-style fp32 (path taken) | ours, fp64 default | ours, dtype=float32 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in delta_rows]
    lines += [
        "",
        "optimal_added_neurons (S^{-1/2} N, SVD) on fp32 statistics, statistical_threshold = 0 (all kept). "
        "Truth: ours in float64 on the float64 matrices.",
        "",
        "| case | GroMo-style fp32 | ours, fp64 default | ours, dtype=float32 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in growth_rows]
    text = "\n".join(lines) + "\n"
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
