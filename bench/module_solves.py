"""Solves where users call them: ``compute_optimal_updates`` through the gromo modules, ours beside
a GroMo-style module path, with the accuracy of both against the float64-from-data truth.

The GroMo-style path is the very same modules with their two solve helpers replaced by the
spec transcriptions of bench/gromo_style_solves.py (fp32 LU → pinv → fp64 retry; fp32 eigh with
the absolute numerical_threshold; fp32 full SVD). Statistics, tensor_n and the packaging of the
neurons are shared, so the ratio is the solves' alone.

Cases: a Linear pair 512→256→512 (trained a few Adam steps on a teacher) and a tiny one 8→4→8
(where per-call overhead, not arithmetic, is what is timed), a Restricted and a Full
conv pair 64→64→64 (3×3, padding 1, 32×32), and a 5-layer ReLU chain of Restricted convs
(``compute_optimal_updates`` of layers 2–5, one by one, then as a container's joint solve);
``maximum_added_neurons=8``. The truth: each layer's S
and M accumulated again in float64 from the very inputs and output gradients the modules stored,
solved exactly (gromo_kernels.testing); "Δ err" is the worst ‖Δ − Δ*‖/‖Δ*‖ over the case's layers.
Also the whole growth step of the Linear pair (forward/backward, update_computation,
compute_optimal_updates, reset) with either solve path.

    PYTHONPATH=. python bench/module_solves.py [--rounds 5] [--n-conv 16]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings

import gromo_style_solves as gromo_style
import torch
from torch import nn

import gromo.modules.growing_module as growing_module
import gromo_kernels as gk
from gromo.modules._growing.together import compute_updates_together, growth_entry
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule, RestrictedConv2dGrowingModule
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo_kernels.testing import exact_delta

K = 8


def _gromo_optimal_delta(tensor_s, tensor_m, dtype=torch.float32, force_pseudo_inverse=False,
                         tensor_covariance_loss_gradient=None):
    return gromo_style.gromo_optimal_delta(tensor_s, tensor_m, dtype=dtype, force_pseudo_inverse=force_pseudo_inverse,
                                           E=tensor_covariance_loss_gradient)


@contextlib.contextmanager
def solve_path(name: str):
    """"ours" (the modules as they are) or "gromo" (the GroMo-style solve helpers patched in)."""
    if name == "ours":
        yield
        return
    saved = growing_module.optimal_delta, growing_module.compute_optimal_added_parameters
    growing_module.optimal_delta = _gromo_optimal_delta
    growing_module.compute_optimal_added_parameters = gromo_style.gromo_compute_optimal_added_parameters
    try:
        yield
    finally:
        growing_module.optimal_delta, growing_module.compute_optimal_added_parameters = saved


def _collect(layers, forward, loss_fn):
    for layer in layers:
        layer.init_computation()
    loss_fn(forward()).backward()
    for layer in layers:
        layer.update_computation()


def linear_pair(width: int = 512, hidden: int = 256, n: int = 2048):
    torch.manual_seed(0)
    first = LinearGrowingModule(width, hidden, post_layer_function=nn.ReLU(), name="first")
    second = LinearGrowingModule(hidden, width, previous_module=first, name="second")
    first.next_module = second
    # Features of different scales (Jacobi scaling makes them irrelevant to the solves).
    x = torch.randn(n, width) * torch.logspace(-1, 1, width)
    teacher = torch.randn(width, width) / width**0.5
    target = torch.relu(x @ teacher) @ teacher
    opt = torch.optim.Adam([*first.parameters(), *second.parameters()], lr=1e-3)
    for _ in range(20):
        opt.zero_grad()
        ((second(first(x)) - target) ** 2).mean().backward()
        opt.step()
    opt.zero_grad()

    def forward():
        return second(first(x))

    return [second], [first, second], forward, lambda out: ((out - target) ** 2).sum()


def conv_chain(conv_type, n_layers: int, n: int):
    torch.manual_seed(0)
    layers, previous = [], None
    for i in range(n_layers):
        layer = conv_type(64 if i else 3, 64, 3, padding=1, post_layer_function=nn.ReLU(), previous_module=previous,
                          name=f"conv{i + 1}")
        if previous is not None:
            previous.next_module = layer
        layers.append(layer)
        previous = layer
    x = torch.randn(n, 3, 32, 32)
    head = nn.Linear(64, 10)
    y = torch.randint(0, 10, (n,))

    def forward():
        out = x
        for layer in layers:
            out = layer(out)
        return head(out.mean(dim=(2, 3)))

    return layers[1:], layers, forward, lambda out: nn.functional.cross_entropy(out, y, reduction="sum")


def _truth(layer) -> tuple:
    x, grad = layer.input.detach().double(), layer.pre_activity.grad.detach().double()
    if isinstance(layer, LinearGrowingModule):
        s, m = gk.linear_input_cov(x), gk.linear_input_grad(x, grad)
    else:
        s = gk.conv2d_input_cov(x, 3, padding=1)
        m = gk.conv2d_input_grad(x, grad, 3, padding=1)
    return exact_delta(s, m)


def _delta_error(layer, truth) -> float:
    t_delta = truth[0]
    ours = layer.delta_raw.double()
    return float((ours - t_delta).norm() / t_delta.norm())


def _updates(targets):
    for layer in targets:
        layer.compute_optimal_updates(maximum_added_neurons=K)


def _container_updates(targets):
    """What a container's ``compute_optimal_updates`` runs over these layers: one joint solve in one
    factorisation cache (the GroMo-style path, its solvers replaced, solves layer by layer)."""
    with gk.factorization_cache():
        compute_updates_together([growth_entry(layer, maximum_added_neurons=K) for layer in targets])


PATHS = ("gromo", "ours")


def _time_paths(fn, rounds: int) -> dict[str, float]:
    """Median seconds of ``fn()`` under each solve path, the paths alternating round by round (so a
    noisy machine's drift falls on both alike), after one warm-up call each."""
    def under(path):
        with solve_path(path):
            fn()

    for path in PATHS:
        under(path)
    times = {path: [] for path in PATHS}
    for _ in range(rounds):
        for path in PATHS:
            t0 = time.perf_counter()
            under(path)
            times[path].append(time.perf_counter() - t0)
    return {path: statistics.median(ts) for path, ts in times.items()}


def run_case(name, build, rounds, updates=_updates):
    targets, layers, forward, loss_fn = build()
    _collect(layers, forward, loss_fn)
    truths = [_truth(layer) for layer in targets]
    row = {"case": name}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, seconds in _time_paths(lambda: updates(targets), rounds).items():
            row[f"{path}_s"] = seconds
    for path in PATHS:
        with solve_path(path), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            updates(targets)
        row[f"{path}_err"] = max(_delta_error(layer, t) for layer, t in zip(targets, truths))
        row[f"{path}_pinv_warnings"] = sum("pseudo-inverse" in str(w.message) for w in caught)
    return row


def growth_step(rounds):
    targets, layers, forward, loss_fn = linear_pair()

    def step():
        _collect(layers, forward, loss_fn)
        _updates(targets)
        for layer in layers:
            layer.reset_computation()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _time_paths(step, rounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n-conv", type=int, default=16, help="batch of the conv cases")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [
        ("Linear pair 512→256→512", linear_pair),
        ("tiny Linear pair 8→4→8", lambda: linear_pair(8, 4, 256)),
        ("Restricted pair 64→64→64", lambda: conv_chain(RestrictedConv2dGrowingModule, 2, args.n_conv)),
        ("Full pair 64→64→64", lambda: conv_chain(FullConv2dGrowingModule, 2, args.n_conv)),
        ("5-layer ReLU Restricted chain", lambda: conv_chain(RestrictedConv2dGrowingModule, 5, args.n_conv)),
        ("  same, as a container solves it", lambda: conv_chain(RestrictedConv2dGrowingModule, 5, args.n_conv),
         _container_updates),
    ]
    print(f"compute_optimal_updates(maximum_added_neurons={K}), median of {args.rounds}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'case':32s} {'GroMo-style ms':>14s} {'ours ms':>8s} {'speed-up':>8s} {'Δ err GroMo':>11s} "
          f"{'Δ err ours':>10s} {'pinv warn G/ours':>16s}")
    for name, build, *updates in cases:
        r = run_case(name, build, args.rounds, *updates)
        print(f"{name:32s} {1e3 * r['gromo_s']:14.1f} {1e3 * r['ours_s']:8.1f} {r['gromo_s'] / r['ours_s']:7.2f}× "
              f"{r['gromo_err']:11.1e} {r['ours_err']:10.1e} {r['gromo_pinv_warnings']:>8d}/{r['ours_pinv_warnings']}")
    step = growth_step(args.rounds)
    print(f"{'Linear pair whole growth step':32s} {1e3 * step['gromo']:14.1f} {1e3 * step['ours']:8.1f} "
          f"{step['gromo'] / step['ours']:7.2f}×")


if __name__ == "__main__":
    main()
