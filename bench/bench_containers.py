"""One growth step of a ResNet-18 (Restricted and Full growth) and of a VGG-11 at CIFAR-10 shapes, phase
by phase, beside a GroMo-style baseline, with peak memory.

Phases of the step (every growable layer of the network):

1. statistics over ``--batches`` batches of 64 (3×32×32): ours = ``training_utils.compute_statistics``
   (forward, backward, ``update_computation``); baseline = the same forward/backward with the modules
   storing their tensors, then GroMo's formulations of the pair statistics
   (``bench/gromo_baseline.py``: F.unfold + einsum, unfold recomputed per statistic, the dense mask T
   and the masked unfold B̂ five times for Full growth; ``linear_pair_statistics`` for linears);
2. solves: ours = ``model.compute_optimal_updates()`` (every layer through the modules' public
   path, one ``factorization_cache()`` block); baseline = ``bench/gromo_style_solves.py`` (fp32 LU →
   pinv → fp64 retry for the delta, fp32 eigh + SVD for the new neurons) on the same statistics;
3. line search of the best layer's scaling factor (``select_best_update``, then the extended forward
   on one batch at 12 values of γ) and 4. ``apply_change``: the same code on both sides (GroMo runs
   the equivalent module code), timed once.

Agreement (a fast wrong answer cannot win): the first growable layer's S from both sides, and every
layer's delta decrease from both solvers, are compared before the table is printed.
Peak memory: the resident-set high-water mark above the level before the phase (bench/memory.py).

    python bench/bench_containers.py [--batches 2] [--full-inplanes 16]

The Full-growth baseline's masked unfold B̂ is (n, L, 9, D_prev) per evaluation: at full width
(inplanes 64) 1.4 GB for a stage-0 block, five times per block; the Full case therefore runs at a
reduced width (``--full-inplanes``), reported in the table.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gromo_baseline as baseline  # noqa: E402
import gromo_style_solves as baseline_solves  # noqa: E402
from memory import peak_extra_bytes  # noqa: E402

from gromo.containers.resnet import init_full_resnet_structure  # noqa: E402
from gromo.containers.vgg import init_full_vgg_structure  # noqa: E402
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule, RestrictedConv2dGrowingModule  # noqa: E402
from gromo.modules.growing_module import GrowingModule  # noqa: E402
from gromo.modules.linear_growing_module import LinearGrowingModule  # noqa: E402
from gromo.utils.training_utils import compute_statistics  # noqa: E402
from gromo_kernels import Conv2dGeometry  # noqa: E402

_LOSS = nn.CrossEntropyLoss(reduction="sum")


def _pairs(model) -> list[tuple[GrowingModule, GrowingModule]]:
    """(previous, growing) module pairs of every growable layer."""
    pairs = []
    for layer in model._growing_layers:
        module = layer.second_layer if hasattr(layer, "second_layer") else layer
        pairs.append((module.previous_module, module))
    return pairs


def _geometry(module) -> Conv2dGeometry:
    conv = module.layer
    return Conv2dGeometry(conv.kernel_size, conv.stride, conv.padding, conv.dilation)


def _baseline_pair(previous, module, full: bool) -> dict[str, torch.Tensor]:
    x_prev, x, grad = previous._input, module._input, module._pre_activity.grad
    if isinstance(module, LinearGrowingModule):
        return baseline.linear_pair_statistics(x_prev, x, grad)
    if full:
        return baseline.full_pair_statistics(x_prev, x, grad, prev=_geometry(previous), cur=_geometry(module))
    return baseline.restricted_pair_statistics(x_prev, x, grad, prev=_geometry(previous), cur=_geometry(module))


def _baseline_statistics(model, loader, full: bool) -> list[dict[str, torch.Tensor]]:
    """GroMo-style: forward/backward storing the tensors, then the pair statistics, summed over batches."""
    pairs = _pairs(model)
    totals: list[dict[str, torch.Tensor]] = [{} for _ in pairs]
    model.init_computation()
    model.eval()
    for x, y in loader:
        model.zero_grad()
        _LOSS(model(x), y).backward()
        for total, (previous, module) in zip(totals, pairs):
            for key, value in _baseline_pair(previous, module, full).items():
                total[key] = total.get(key, 0) + value
    model.reset_computation()
    return totals


def _our_statistics(model, loader) -> None:
    compute_statistics(model, loader, _LOSS)


def _baseline_solves(model) -> list[float]:
    decreases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _, module in _pairs(model):
            _, decrease = baseline_solves.gromo_optimal_delta(module.tensor_s(), module.tensor_m())
            baseline_solves.gromo_compute_optimal_added_parameters(module.tensor_s_growth(), module.tensor_n)
            decreases.append(float(decrease))
    return decreases


def _our_solves(model) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.compute_optimal_updates()
    return [float(module.parameter_update_decrease) for _, module in _pairs(model)]


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - start
    print(f"  {getattr(fn, '__name__', fn)}: {elapsed:.2f} s", file=sys.stderr, flush=True)
    return elapsed, result


def _measure(name: str, build, batches: int, full: bool) -> dict:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(64 * batches, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (64 * batches,), generator=generator)
    loader = DataLoader(TensorDataset(data, labels), batch_size=64)
    model = build()
    row: dict = {"case": name, "parameters": model.number_of_parameters(), "layers": len(model._growing_layers)}

    row["stats_baseline_s"], totals = _timed(_baseline_statistics, model, loader, full)
    row["stats_baseline_mem"], _ = peak_extra_bytes(_baseline_statistics, model, loader, full)
    row["stats_ours_s"], _ = _timed(_our_statistics, model, loader)
    model.reset_computation()
    row["stats_ours_mem"], _ = peak_extra_bytes(_our_statistics, model, loader)
    first = _pairs(model)[0][1]
    ours_s = first.tensor_s()
    theirs_s = totals[0]["s"][: ours_s.shape[0], : ours_s.shape[1]] / len(data)
    row["s_rel_error"] = float((ours_s - theirs_s).norm() / theirs_s.norm())

    row["solves_ours_s"], ours = _timed(_our_solves, model)
    # N = −M₋₂ + P·Δ needs a delta: the baseline forms N from our Δ, so it runs after ours
    for _, module in _pairs(model):
        _ = module.tensor_n
    row["solves_baseline_s"], theirs = _timed(_baseline_solves, model)
    row["decrease_rel_error"] = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(ours, theirs))
    model.reset_computation()

    def line_search() -> float:
        model.select_best_update()
        x, y = data[:64], labels[:64]
        best, best_loss = 0.0, float("inf")
        with torch.no_grad():
            for gamma in (0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0):
                model.set_scaling_factor(gamma)
                loss = float(_LOSS(model.extended_forward(x), y))
                if loss < best_loss:
                    best, best_loss = gamma, loss
        model.set_scaling_factor(best)
        return best

    row["line_search_s"], row["gamma"] = _timed(line_search)
    row["apply_s"], _ = _timed(model.apply_change)
    row["parameters_after"] = model.number_of_parameters()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--full-inplanes", type=int, default=16)
    parser.add_argument("--cases", default="resnet-restricted,resnet-full,vgg")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    cases = {
        "resnet-restricted": ("ResNet-18 Restricted, inplanes 64 (full width)", lambda: init_full_resnet_structure(
            (3, 32, 32), out_features=10, growing_conv_type=RestrictedConv2dGrowingModule, device="cpu"), False),
        "resnet-full": (f"ResNet-18 Full, inplanes {args.full_inplanes}", lambda: init_full_resnet_structure(
            (3, 32, 32), out_features=10, inplanes=args.full_inplanes, growing_conv_type=FullConv2dGrowingModule,
            device="cpu"), True),
        "vgg": ("VGG-11 Restricted (CIFAR)", lambda: init_full_vgg_structure((3, 32, 32), out_features=10,
                                                                            device="cpu"), False),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batches of 64 × {args.batches}")
    print("| case | params | layers | statistics GroMo-style / ours | ratio | peak MiB GroMo-style / ours "
          "| solves GroMo-style / ours | ratio | line search | apply | S rel. err | decrease rel. err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for key in args.cases.split(","):
        r = _measure(cases[key][0], cases[key][1], args.batches, cases[key][2])
        print(f"| {r['case']} | {r['parameters']:,} | {r['layers']} | {r['stats_baseline_s']:.2f} s / "
              f"{r['stats_ours_s']:.2f} s | {r['stats_baseline_s'] / r['stats_ours_s']:.1f}× | "
              f"{r['stats_baseline_mem'] / 2**20:.0f} / {r['stats_ours_mem'] / 2**20:.0f} | "
              f"{r['solves_baseline_s'] * 1e3:.0f} / {r['solves_ours_s'] * 1e3:.0f} ms | "
              f"{r['solves_baseline_s'] / r['solves_ours_s']:.1f}× | {r['line_search_s']:.2f} s | "
              f"{r['apply_s'] * 1e3:.1f} ms | {r['s_rel_error']:.1e} | {r['decrease_rel_error']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
