"""CPU benchmark through the module layer: ``update_computation`` of a Restricted and a Full conv pair
(gromo.modules.conv2d_growing_module) beside GroMo's formulation (bench/gromo_baseline.py) on the
same stored tensors.

A pair = previous conv 64→64 (ReLU) and current conv 64→64, 3×3, padding 1, on 32×32 inputs. After
one real forward/backward, each round re-arms the statistics (``init()`` + pending flag, empty cache)
and times ``second.update_computation()``: S, M, E of the current layer, and M₋₂, P, S₋₂ for its
growth (S₋₂ = previous S for Restricted, computed by the previous module). The baseline computes
the same six sums GroMo's way. The module results (means × n) are checked against the baseline
within the fp32 tolerance table, so a fast wrong answer cannot win. Nothing about speed is asserted;
the ratios appear in the table at the end of the run (bench/conftest.py).

    pytest bench/test_bench_modules.py                     Restricted n=64, Full n=16
    pytest bench/test_bench_modules.py --full64            also Full n=64 (GroMo ~40 s, ~5 GiB)
"""

from __future__ import annotations

import gromo_baseline as baseline
import pytest
import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule, RestrictedConv2dGrowingModule
from gromo_kernels import testing

SEED = 20240611
_GEOMETRY = gk.Conv2dGeometry(3, 1, 1)
_AGREEMENT_SLACK = 4.0

MODULE_CASES = {
    "modules_restricted_n64": (RestrictedConv2dGrowingModule, 64, {"ours": 5, "gromo": 3}),
    "modules_full_n16": (FullConv2dGrowingModule, 16, {"ours": 5, "gromo": 2}),
    "modules_full_n64": (FullConv2dGrowingModule, 64, {"ours": 3, "gromo": 1}),
}
_DESCRIPTION = {
    "modules_restricted_n64": "modules: Restricted pair update_computation, 64→64→64, 3×3 pad 1, 32×32, n=64",
    "modules_full_n16": "modules: Full pair update_computation, 64→64→64, 3×3 pad 1, 32×32, n=16",
    "modules_full_n64": "modules: Full pair update_computation, 64→64→64, 3×3 pad 1, 32×32, n=64",
}
CASE_PARAMS = [
    pytest.param(name, marks=pytest.mark.full64) if name.endswith("full_n64") else name for name in MODULE_CASES
]
_BASELINE_OUTPUTS: dict[str, dict] = {}


_PAIRS: dict[str, tuple] = {}


def build_pair(case_name: str):
    """The case's pair after one forward / sum-loss backward, every statistic of the second layer
    in use; built once per session so that every implementation reads the same tensors."""
    if case_name not in _PAIRS:
        conv_type, n, _ = MODULE_CASES[case_name]
        with torch.random.fork_rng():
            torch.manual_seed(SEED)
            first = conv_type(64, 64, 3, padding=1, post_layer_function=nn.ReLU(), device="cpu", name="first")
            second = conv_type(64, 64, 3, padding=1, previous_module=first, device="cpu", name="second")
            first.next_module = second
            second.init_computation()
            x = torch.randn(n, 64, 32, 32)
            target = torch.randn(n, 64, 32, 32)
        ((second(first(x)) - target) ** 2).sum().backward()
        _PAIRS[case_name] = (first, second)
    return _PAIRS[case_name]


def rearm(first, second) -> None:
    """Make the next update_computation recompute everything (as after a new forward)."""
    for statistic in (second._tensor_s, second.tensor_m, second.covariance_loss_gradient, second.tensor_m_prev,
                      second.cross_covariance, second.tensor_s_growth):
        statistic.init()
        statistic.updated = False
    first._clear_statistics_cache()
    second._clear_statistics_cache()


def module_sums(second, n: int) -> dict[str, torch.Tensor]:
    """The statistics of the pair as sums, in the baseline's key order."""
    return {
        "s": second.tensor_s() * n, "m": second.tensor_m() * n, "e": second.covariance_loss_gradient() * n,
        "s_growth": second.tensor_s_growth() * n, "m_prev": second.tensor_m_prev() * n,
        "cross_cov": second.cross_covariance() * n,
    }


def agreement(ours: dict, reference: dict, lengths: dict) -> float:
    """Max over statistics and entries of |ours − reference| / bound (fp32 tolerance table)."""
    worst = 0.0
    for key, ref in reference.items():
        out = ours[key]
        assert tuple(out.shape) == tuple(ref.shape), f"{key}: {tuple(out.shape)} != {tuple(ref.shape)}"
        tol = testing.tolerance(None, torch.float32, lengths[key])
        bound = _AGREEMENT_SLACK * (tol.atol + tol.rtol * ref.double().abs())
        worst = max(worst, float(((out.double() - ref.double()).abs() / bound).max()))
    return worst


@pytest.mark.parametrize("impl", ["gromo", "ours", "kernels"])
@pytest.mark.parametrize("case_name", CASE_PARAMS)
def test_module_update_computation(benchmark, bench_results, case_name, impl):
    """impl: "gromo" (baseline), "ours" (the modules), "kernels" (one direct gromo_kernels
    layer_statistics call on the same tensors: the module layer's overhead is ours − kernels)."""
    conv_type, n, rounds = MODULE_CASES[case_name]
    first, second = build_pair(case_name)
    x_prev, x, grad = first.input, second.input, second.pre_activity.grad
    benchmark.group = _DESCRIPTION[case_name]
    benchmark.extra_info.update(case=case_name, impl=impl)
    if impl == "kernels":
        kind = "conv2d_restricted" if conv_type is RestrictedConv2dGrowingModule else "conv2d_full"
        benchmark.pedantic(
            lambda: gk.layer_statistics(kind, x, grad, x_prev=x_prev, prev=_GEOMETRY, cur=_GEOMETRY),
            rounds=rounds["ours"], warmup_rounds=1, iterations=1,
        )
        return
    if impl == "gromo":
        if conv_type is RestrictedConv2dGrowingModule:
            weight = baseline.bordering_weight(64 * 9 + 1, _GEOMETRY)

            def run():
                return baseline.restricted_pair_statistics(x_prev, x, grad, prev=_GEOMETRY, cur=_GEOMETRY,
                                                           weight=weight)
        else:
            mask = baseline.mask_tensor_t(32, 32, _GEOMETRY)

            def run():
                return baseline.full_pair_statistics(x_prev, x, grad, prev=_GEOMETRY, cur=_GEOMETRY, mask=mask)

        out = benchmark.pedantic(run, rounds=rounds["gromo"], warmup_rounds=0, iterations=1)
    else:
        def run():
            second.update_computation()

        benchmark.pedantic(run, setup=lambda: rearm(first, second), rounds=rounds["ours"], warmup_rounds=1,
                           iterations=1)
        rearm(first, second)
        second.update_computation()
        out = module_sums(second, n)
    stats = benchmark.stats.stats if benchmark.stats is not None else None
    bench_results["runs"][(case_name, impl)] = dict(
        description=_DESCRIPTION[case_name], time_s=stats.median if stats else None,
        min_time_s=stats.min if stats else None, rounds=rounds[impl], peak_extra_bytes=None,
        memory_method=None,
    )
    if impl == "gromo":
        _BASELINE_OUTPUTS[case_name] = out
        return
    reference = _BASELINE_OUTPUTS.pop(case_name, None)
    if reference is None:
        return
    positions = n * 32 * 32
    lengths = dict.fromkeys(reference, positions)
    if conv_type is FullConv2dGrowingModule:
        lengths["s_growth"] = positions * 9
    ratio = agreement(out, reference, lengths)
    bench_results["agreement"][case_name] = ratio
    benchmark.extra_info["agreement"] = ratio
    assert ratio <= 1.0, f"the modules differ from the GroMo baseline on {case_name}: error/bound {ratio:.3g}"


def test_module_pair_matches_the_float64_reference():
    """At a tiny fp64 shape the module pair's statistics equal testing's references (sanity)."""
    g = torch.Generator().manual_seed(7)
    for conv_type in (RestrictedConv2dGrowingModule, FullConv2dGrowingModule):
        first = conv_type(3, 4, 3, padding=1, device="cpu").double()
        second = conv_type(4, 5, 3, padding=1, previous_module=first, device="cpu").double()
        second.init_computation()
        x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
        second(first(x)).pow(2).sum().backward()
        second.update_computation()
        xc, grad = second.input, second.pre_activity.grad
        if conv_type is RestrictedConv2dGrowingModule:
            growth = testing.conv2d_restricted_growth_stats_reference(x, xc, grad, prev=_GEOMETRY, cur=_GEOMETRY)
            s_growth = testing.conv2d_input_cov_reference(x, _GEOMETRY)
        else:
            growth = testing.conv2d_full_growth_stats_reference(x, xc, grad, prev=_GEOMETRY, cur=_GEOMETRY)
            s_growth = growth.s_growth
        got = module_sums(second, 2)
        torch.testing.assert_close(got["m_prev"], growth.m_prev, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(got["cross_cov"], growth.cross_cov, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(got["s_growth"], s_growth, rtol=1e-12, atol=1e-10)
