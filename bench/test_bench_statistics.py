"""CPU benchmark: "update the statistics of a pair of layers", ours beside GroMo's formulation.

For each pair (bench/cases.py) both implementations are timed in the same run with pytest-benchmark
(median of ``rounds`` after ``warmup`` rounds; the cheap linear case interleaves the two), their peak
extra memory and their single-thread CPU time (stable on a shared machine) are measured in fresh
processes (bench/memory.py), and ours is checked equal to the baseline within the fp32 tolerance
table, so a fast wrong answer cannot win. Nothing about speed is asserted: the table at the end of
the run (bench/conftest.py) reports the ratios; bench/results/cpu_statistics.md holds a measured one.

    pytest bench/test_bench_statistics.py                           linear, Restricted n=64, Full n=16
    pytest bench/test_bench_statistics.py --full64 -k full_n64      Full n=64 alone (GroMo ~40 s, 5 GiB)
"""

from __future__ import annotations

import gromo_baseline as baseline
import pytest
import torch
from cases import CASES
from memory import cpu_time_in_subprocess, measure_in_subprocess

import gromo_kernels as gk
from gromo_kernels import testing

CASE_PARAMS = [pytest.param(name, marks=pytest.mark.full64) if name == "full_n64" else name for name in CASES]

# Baseline results of this session, so ours is compared without running GroMo's Full again.
_BASELINE_OUTPUTS: dict[str, dict] = {}

# Both sides accumulate in fp32 with their own summation order: allow each its own error.
_AGREEMENT_SLACK = 4.0


def agreement(ours: dict, reference: dict, lengths: dict) -> float:
    """Max over statistics and entries of |ours − reference| / bound, bound from testing.tolerance."""
    assert list(ours) == list(reference), (list(ours), list(reference))
    worst = 0.0
    for key, ref in reference.items():
        out = ours[key]
        assert tuple(out.shape) == tuple(ref.shape), f"{key}: {tuple(out.shape)} != {tuple(ref.shape)}"
        tol = testing.tolerance(None, torch.float32, lengths[key])
        ref64, out64 = ref.double(), out.double()
        bound = _AGREEMENT_SLACK * (tol.atol + tol.rtol * ref64.abs())
        worst = max(worst, float(((out64 - ref64).abs() / bound).max()))
    return worst


@pytest.mark.parametrize("impl", ["gromo", "ours"])
@pytest.mark.parametrize("case_name", CASE_PARAMS)
def test_update_statistics(benchmark, bench_results, case_name, impl):
    case = CASES[case_name]
    inputs = case.inputs()
    fn = case.ours() if impl == "ours" else case.gromo(inputs)
    benchmark.group = case.description
    benchmark.extra_info.update(case=case_name, impl=impl, interleaved=case.interleave)
    setup = None
    if case.interleave:
        other = case.gromo(inputs) if impl == "ours" else case.ours()

        def setup():
            other(inputs)
            return (inputs,), {}

    out = benchmark.pedantic(fn, args=None if setup else (inputs,), setup=setup, rounds=case.rounds[impl],
                             warmup_rounds=case.warmup[impl], iterations=1)
    stats = benchmark.stats.stats if benchmark.stats is not None else None

    memory = measure_in_subprocess(case_name, impl)
    cpu1 = cpu_time_in_subprocess(case_name, impl, case.cpu1_rounds[impl])
    benchmark.extra_info.update(peak_extra_bytes=memory["peak_extra_bytes"], memory_method=memory["method"],
                                cpu1_time_s=cpu1["cpu1_time_s"])
    bench_results["runs"][(case_name, impl)] = dict(
        description=case.description, time_s=stats.median if stats else None,
        min_time_s=stats.min if stats else None, rounds=case.rounds[impl],
        peak_extra_bytes=memory["peak_extra_bytes"], memory_method=memory["method"],
        cpu1_time_s=cpu1["cpu1_time_s"], cpu1_rounds=case.cpu1_rounds[impl],
    )

    if impl == "gromo":
        _BASELINE_OUTPUTS[case_name] = out
        return
    reference = _BASELINE_OUTPUTS.pop(case_name, None)
    if reference is None:
        reference = case.gromo(inputs)(inputs)
    ratio = agreement(out, reference, case.reduction_lengths())
    bench_results["agreement"][case_name] = ratio
    benchmark.extra_info["agreement"] = ratio
    assert ratio <= 1.0, f"ours differs from the GroMo baseline on {case_name}: error/bound {ratio:.3g}"


@pytest.mark.parametrize("kind", ["linear", "conv2d_restricted", "conv2d_full"])
def test_baseline_and_ours_match_the_float64_reference(kind):
    """At tiny fp64 shapes the baseline (GroMo's formulation) and ours both equal testing's references,
    so the baseline we time is GroMo's computation and not a strawman."""
    g = torch.Generator().manual_seed(7)
    if kind == "linear":
        x_prev, x, grad = (torch.randn(6, d, generator=g, dtype=torch.float64) for d in (4, 3, 5))
        base = baseline.linear_pair_statistics(x_prev, x, grad)
        ours = gk.layer_statistics(kind, x, grad, x_prev=x_prev, backend="torch")
        refs = dict(
            s=testing.linear_input_cov_reference(x), m=testing.linear_input_grad_reference(x, grad),
            e=testing.grad_cov_reference(grad), s_growth=testing.linear_input_cov_reference(x_prev),
            m_prev=testing.linear_input_grad_reference(x_prev, grad),
            cross_cov=testing.linear_cross_cov_reference(x_prev, x),
        )
    else:
        prev, cur = gk.Conv2dGeometry(3, 1, 1), gk.Conv2dGeometry((3, 2), (2, 1), (1, 0), (1, 2))
        x_prev = torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64)
        x = torch.randn(2, 4, 7, 8, generator=g, dtype=torch.float64)
        grad = torch.randn(2, 5, *cur.output_size(7, 8), generator=g, dtype=torch.float64)
        ours = gk.layer_statistics(kind, x, grad, x_prev=x_prev, prev=prev, cur=cur, backend="torch")
        refs = dict(
            s=testing.conv2d_input_cov_reference(x, cur), m=testing.conv2d_input_grad_reference(x, grad, cur),
            e=testing.grad_cov_reference(grad, channel_dim=1),
        )
        if kind == "conv2d_restricted":
            base = baseline.restricted_pair_statistics(x_prev, x, grad, prev=prev, cur=cur)
            growth = testing.conv2d_restricted_growth_stats_reference(x_prev, x, grad, prev=prev, cur=cur)
            refs.update(s_growth=testing.conv2d_input_cov_reference(x_prev, prev), m_prev=growth.m_prev,
                        cross_cov=growth.cross_cov)
        else:
            base = baseline.full_pair_statistics(x_prev, x, grad, prev=prev, cur=cur)
            growth = testing.conv2d_full_growth_stats_reference(x_prev, x, grad, prev=prev, cur=cur)
            refs.update(s_growth=growth.s_growth, m_prev=growth.m_prev, cross_cov=growth.cross_cov)
    for key, ref in refs.items():
        torch.testing.assert_close(base[key], ref, rtol=1e-12, atol=1e-11, msg=f"baseline {key}")
        torch.testing.assert_close(ours[key], ref, rtol=1e-12, atol=1e-11, msg=f"ours {key}")
