"""Accuracy of the solves against the float64-from-data truth, worst case per family, ours (the
precision floor) beside the GroMo-style solves (bench/gromo_style_solves.py) and the old relative
cutoff d·ε·λ_max: the table of the solves section of bench/README.md.

Families: the layers 2…L of a ReLU chain of 3×3 convolutions and a trained digits MLP (real
statistics: tests/kernels/real_layers.py), and synthetic fp32 roundings of float64 matrices (κ sweep,
exact rank deficiency from data of rank r, scale 1e±20). Errors: Δ = ‖Δ − Δ*‖/‖Δ*‖, dec =
|d − d*|/d*, σ = max relative error of the kept singular values, sin = sine of the largest angle
between the new neurons' α row spaces (k = 4).

    PYTHONPATH=.:tests/kernels python bench/solves_accuracy.py [--channels 16 --size 16 --batch 16]
"""

from __future__ import annotations

import argparse
import math
import warnings

import gromo_style_solves as gromo_style
import torch
from real_layers import conv_chain_cases, digits_mlp_cases

import gromo_kernels as gk
from gromo_kernels.testing import delta_errors, exact_added_neurons, exact_delta, neuron_errors, random_psd

F64 = torch.float64
K = 4


def _ours(s, m, s_prev, n, rule):
    kw = {} if rule == "floor" else {"rtol": s.shape[0] * torch.finfo(torch.float32).eps}
    out = gk.optimal_delta(s, m, **kw)
    added = None
    if s_prev is not None:
        kwn = {} if rule == "floor" else {"rtol": s_prev.shape[0] * torch.finfo(torch.float32).eps}
        added = gk.optimal_added_neurons(s_prev, n, max_neurons=K, statistical_threshold=0.0, **kwn)
        added = (added.alpha, added.sigma)
    return (out.delta, out.decrease), added


def _gromo(s, m, s_prev, n):
    delta, dec = gromo_style.gromo_optimal_delta(s, m)
    added = None
    if s_prev is not None:
        alpha, _, sigma = gromo_style.gromo_compute_optimal_added_parameters(
            s_prev, n, maximum_added_neurons=K, statistical_threshold=0.0)
        added = (alpha, sigma)
    return (delta, dec), added


def _errors(result, s64, m64, s_prev64, n64):
    (delta, dec), added = result
    e = delta_errors(delta, dec, exact_delta(s64, m64))
    sig = sine = float("nan")
    if added is not None:
        ne = neuron_errors(added[0], added[1], exact_added_neurons(s_prev64, n64, K))
        sig, sine = ne.sigma, ne.subspace
    return [e.delta, e.decrease, sig, sine]


def _synthetic(generator):
    families = {"κ ≤ 1e6": [], "κ ≥ 1e8": [], "exact rank deficiency": [], "scale 1e±20": []}
    for d in (17, 65, 257):
        for cond in (1e2, 1e4, 1e6, 1e8, 1e10, 1e12):
            s64 = random_psd(d, "geometric", cond=cond, generator=generator)
            m = torch.randn(d, 5, generator=generator, dtype=F64).float()
            families["κ ≤ 1e6" if cond <= 1e6 else "κ ≥ 1e8"].append((s64.float(), m, None, None, s64, m.double(),
                                                                    None, None))
        rank = (2 * d) // 3
        b = (torch.randn(4 * d, rank, generator=generator, dtype=F64)
             @ torch.randn(rank, d, generator=generator, dtype=F64)).float()
        g = torch.randn(4 * d, 6, generator=generator).float()
        s32, s64 = b.T @ b, b.double().T @ b.double()
        n64 = s64 @ torch.randn(d, 7, generator=generator, dtype=F64)
        families["exact rank deficiency"].append((s32, b.T @ g, s32, n64.float(), s64, b.double().T @ g.double(),
                                                  s64, n64.float().double()))
        for exponent in (-20, 20):
            s64 = random_psd(d, "geometric", cond=1e3, generator=generator) * 10.0**exponent
            m = (torch.randn(d, 4, generator=generator, dtype=F64) * 10.0 ** (exponent / 2)).float()
            families["scale 1e±20"].append((s64.float(), m, None, None, s64, m.double(), None, None))
    return families


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    families = {}
    chain = conv_chain_cases(channels=args.channels, layers=5, size=args.size, batch=args.batch, steps=30)
    families[f"chain layers 2–5 ({args.channels} ch, {args.size}×{args.size})"] = [
        (c.s32, c.m32, c.s_prev32, c.n32, c.s64, c.m64, c.s_prev64, c.n64) for c in chain]
    digits = digits_mlp_cases(hidden=32, steps=60) + digits_mlp_cases(hidden=256, steps=60)
    families["digits MLPs 64→32→10, 64→256→10"] = [
        (c.s32, c.m32, c.s_prev32, c.n32, c.s64, c.m64, c.s_prev64, c.n64) for c in digits]
    families.update(_synthetic(generator))
    print(f"{'family':40s} {'path':8s} {'Δ':>8s} {'dec':>8s} {'σ':>8s} {'sin∠':>8s}   (worst case)")
    for name, cases in families.items():
        for path in ("ours", "relative", "gromo"):
            worst = [0.0] * 4
            for s, m, sp, n, s64, m64, sp64, n64 in cases:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = (_gromo(s, m, sp, n) if path == "gromo"
                              else _ours(s, m, sp, n, "floor" if path == "ours" else "relative"))
                errs = _errors(result, s64, m64, sp64, n64)
                worst = [w if math.isnan(e) else max(w, e) for w, e in zip(worst, errs)]
            print(f"{name:40s} {path:8s} " + " ".join(f"{w:8.1e}" for w in worst))


if __name__ == "__main__":
    main()
