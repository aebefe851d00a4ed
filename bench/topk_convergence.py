"""How the top-k block Krylov triplets converge on the whitened N of trained layers: the numbers
behind the constants of gromo_kernels/torch_impl/singular.py (TOPK_BLOCKS, LATE_RATE_FACTOR).

Cases: the projected gradient P = S₋₂^{-1/2} N that ``compute_optimal_updates(maximum_added_neurons=8)``
hands to the triplets, captured from trained Linear pairs (the module-solves benchmark's
512→256→512 and six variants: widths 256–1024, 20–200 Adam steps, ReLU or Tanh; those whose N is
too small for the top-k path print no row) and from the Full conv layers 3–5 of the benchmark's
5-layer chain. Per case: the Krylov blocks (of
l = k + max(k, 8) columns) needed for ρ ≤ TOPK_RTOL·σ₁; how much faster (in log residual per
block) the next two blocks converge than the average since the start, wherever the residual lies
in [1e-7, 1e-4]; the sizes of the Rayleigh–Ritz tries ``singular_triplets`` makes; its time.

    PYTHONPATH=.:bench python bench/topk_convergence.py
"""

from __future__ import annotations

import math
import time
import warnings

import module_solves
import torch
from torch import nn

import gromo_kernels.torch_impl.linalg as torch_linalg
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo_kernels.torch_impl import singular

K = 8
# (seed, width, hidden, output, samples, Adam steps, activation)
LINEAR_PAIRS = [(1, 512, 256, 512, 2048, 20, nn.ReLU), (2, 512, 256, 512, 2048, 100, nn.ReLU),
                (3, 384, 128, 384, 1024, 50, nn.ReLU), (4, 1024, 256, 1024, 4096, 20, nn.ReLU),
                (5, 256, 64, 256, 1024, 200, nn.ReLU), (6, 512, 32, 512, 2048, 20, nn.Tanh)]


def _captured(run) -> list[torch.Tensor]:
    """The matrices P that ``run()`` hands to the top-k triplets."""
    seen = []
    original = torch_linalg.singular_triplets

    def capture(p, k):
        if k is not None and singular.uses_top_k(k, p.shape[-2], p.shape[-1]):
            seen.append(p.clone())
        return original(p, k)

    torch_linalg.singular_triplets = capture
    try:
        run()
    finally:
        torch_linalg.singular_triplets = original
    return seen


def _linear_pair(seed, width, hidden, output, n, steps, activation):
    torch.manual_seed(seed)
    first = LinearGrowingModule(width, hidden, post_layer_function=activation(), name="first")
    second = LinearGrowingModule(hidden, output, previous_module=first, name="second")
    first.next_module = second
    x = torch.randn(n, width) * torch.logspace(-1, 1, width)
    target = torch.relu(x @ torch.randn(width, output) / width**0.5) @ torch.randn(output, output) / output**0.5
    opt = torch.optim.Adam([*first.parameters(), *second.parameters()], lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        ((second(first(x)) - target) ** 2).mean().backward()
        opt.step()
    opt.zero_grad()
    module_solves._collect([first, second], lambda: second(first(x)), lambda out: ((out - target) ** 2).sum())
    return lambda: second.compute_optimal_updates(maximum_added_neurons=K)


def _full_chain():
    targets, layers, forward, loss_fn = module_solves.conv_chain(FullConv2dGrowingModule, 5, 16)
    module_solves._collect(layers, forward, loss_fn)
    return lambda: module_solves._updates(targets)


def _residual_sequence(p: torch.Tensor) -> list[tuple[int, float]]:
    """(blocks, worst ρ/σ₁ of the k wanted triplets) for growing Krylov spaces, one block at a time."""
    b, s_dim, t_dim = p.shape
    l = singular._block(K, min(s_dim, t_dim))
    blocks = [singular._orth(p @ singular._probe(t_dim, l, p.dtype, p.device).expand(b, t_dim, l))]
    sequence = []
    while l * (len(blocks) + 1) <= singular.TOPK_MAX_FRACTION * min(s_dim, t_dim):
        singular._extend_krylov(p, blocks, 1)
        u, sig, vh, rho = singular._RitzSpace(p, torch.cat(blocks, dim=-1)).rayleigh_ritz(l)
        sequence.append((len(blocks), float((rho[:, :K] / sig[:, :1]).amax())))
        if sequence[-1][1] < 1e-12:
            break
    return sequence


def _tries(p: torch.Tensor) -> list[int]:
    sizes = []
    rayleigh_ritz = singular._RitzSpace.rayleigh_ritz

    def counted(space, l):
        sizes.append(space.q.shape[-1] // l)
        return rayleigh_ritz(space, l)

    singular._RitzSpace.rayleigh_ritz = counted
    try:
        singular.singular_triplets(p, K)
    finally:
        singular._RitzSpace.rayleigh_ritz = rayleigh_ritz
    return sizes


def main():
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    targets, layers, forward, loss_fn = module_solves.linear_pair()
    module_solves._collect(layers, forward, loss_fn)
    cases = [("Linear 512→256→512 (module solves)", p) for p in _captured(lambda: module_solves._updates(targets))]
    for config in LINEAR_PAIRS:
        cases += [(f"Linear {config[1]}→{config[2]}→{config[3]} seed {config[0]}", p)
                  for p in _captured(_linear_pair(*config))]
    cases += [(f"Full conv chain layer {i + 3}", p) for i, p in enumerate(_captured(_full_chain()))]
    rtol = singular.TOPK_RTOL
    print(f"top-k triplets, k = {K}, TOPK_RTOL = {rtol:g}, torch {torch.__version__}, 1 thread")
    print(f"{'case':34s} {'shape':>11s} {'blocks':>6s} {'late/avg rate':>18s} {'tries':>10s} {'ms':>6s}")
    for name, p in cases:
        sequence = _residual_sequence(p)
        needed = next((n for n, r in sequence if r <= rtol), None)
        ratios = []
        for i, (n, r) in enumerate(sequence[:-2]):
            if 1e-7 < r < 1e-4:
                average = -math.log(r) / (n - 1)
                ratios.append((math.log(r) - math.log(sequence[i + 2][1])) / 2 / average)
        rate = f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "-"
        singular.singular_triplets(p, K)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            singular.singular_triplets(p, K)
            times.append(time.perf_counter() - t0)
        print(f"{name:34s} {str(tuple(p.shape[1:])):>11s} {str(needed):>6s} {rate:>18s} "
              f"{str(_tries(p)):>10s} {1e3 * sorted(times)[2]:6.1f}")


if __name__ == "__main__":
    main()
