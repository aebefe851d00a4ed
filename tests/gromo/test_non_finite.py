"""Non-finite batches are refused where they enter (issue 16, defect 5).

``update_computation`` refuses a batch whose input or gradient holds NaN / Inf with one error type
(NonFiniteError, a ValueError and an AssertionError) naming the module and the statistic, and
leaves every accumulated statistic as it was before that batch: skipping the batch and going on
gives exactly the statistics of the finite batches (checked against float64 references).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gromo.modules.conv2d_growing_module import RestrictedConv2dGrowingModule
from gromo.modules.linear_growing_module import (
    LinearGrowingModule,
    LinearMergeGrowingModule,
)
from gromo.utils._nonfinite import NonFiniteError, first_non_finite
from gromo.utils.tensor_statistic import (
    TensorStatistic,
    TensorStatiticWithEstimationError,
    update_together,
)

from .linear_pairs import linear_pair
from .module_state import assert_unchanged, capture_all


def _batch(generator, device, n=16, d=5, o=3):
    return (torch.randn(n, d, generator=generator).to(device), torch.randn(n, o, generator=generator).to(device))


def _forward_backward(first, second, x, target):
    ((second(first(x)) - target) ** 2).sum().div(2).backward()


def _references(first, second, batches):
    """float64 S, M of ``second`` and S of ``first`` over ``batches`` (fixed weights)."""
    s2 = m2 = s1 = 0
    n = 0
    for x, target in batches:
        x64 = x.double()
        w1, b1 = first.weight.detach().double(), first.bias.detach().double()
        w2, b2 = second.weight.detach().double(), second.bias.detach().double()
        hidden = torch.tanh(x64 @ w1.T + b1)
        gradient = hidden @ w2.T + b2 - target.double()
        ones = torch.ones(x.shape[0], 1, dtype=torch.float64, device=x.device)
        h1, x1 = torch.cat([hidden, ones], 1), torch.cat([x64, ones], 1)
        s2, m2, s1 = s2 + h1.T @ h1, m2 + h1.T @ gradient, s1 + x1.T @ x1
        n += x.shape[0]
    return s2 / n, m2 / n, s1 / n


@pytest.mark.parametrize("fault", ["nan_input", "inf_input", "inf_gradient", "nan_gradient"])
def test_update_computation_refuses_a_non_finite_batch_and_keeps_the_statistics(generator, device, fault):
    first, second = linear_pair(generator, device)
    second.init_computation()
    good = [_batch(generator, device) for _ in range(2)]
    _forward_backward(first, second, *good[0])
    second.update_computation()

    x, target = _batch(generator, device)
    if fault.endswith("input"):
        x[3, 1] = math.nan if fault == "nan_input" else math.inf
    else:
        target[5, 2] = math.inf if fault == "inf_gradient" else math.nan
    _forward_backward(first, second, x, target)
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(NonFiniteError) as caught:
        second.update_computation()
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, AssertionError)
    assert second.name in message
    assert any(f"{kind}({second.name})" in message for kind in ("S", "M", "E", "C", "M_{-2}", "M_prev", "S_prev"))
    assert ("gradient" if fault.endswith("gradient") else "input") in message
    assert_unchanged(before, modules)

    # skip the batch and go on: the statistics are exactly those of the finite batches
    _forward_backward(first, second, *good[1])
    second.update_computation()
    s2, m2, s1 = _references(first, second, good)
    torch.testing.assert_close(second.tensor_s().double(), s2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.tensor_m().double(), m2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.tensor_s_growth().double(), s1, rtol=1e-5, atol=1e-6)
    assert second.tensor_s.samples == second.tensor_m.samples == first.tensor_s.samples == 32


def test_the_bad_statistic_is_named_even_when_it_is_the_previous_modules(generator, device):
    first, second = linear_pair(generator, device)
    second.init_computation()
    _forward_backward(first, second, *_batch(generator, device))
    second.update_computation()
    first.tensor_s._tensor[1, 1] = math.inf  # the previous layer's S overflowed
    with pytest.raises(NonFiniteError, match=r"S\((LinearGrowingModule\()?first\)") as caught:
        second.compute_optimal_updates()
    assert second.name in str(caught.value) and "S(second)" not in str(caught.value)


def test_merge_update_computation_refuses_a_non_finite_batch(generator, device):
    left = LinearGrowingModule(3, 4, device=device, name="left")
    merge = LinearMergeGrowingModule(in_features=4, previous_modules=[left], device=device, name="merge")
    right = LinearGrowingModule(4, 2, previous_module=merge, device=device, name="right")
    merge.set_next_modules([right])
    right.init_computation()
    x = torch.randn(8, 3, generator=generator).to(device)
    right(merge(left(x))).sum().backward()
    right.update_computation()
    x = x.clone()
    x[0, 0] = math.nan
    right(merge(left(x))).sum().backward()
    modules = {"left": left, "merge": merge, "right": right}
    before = capture_all(modules)
    with pytest.raises(NonFiniteError, match="merge"):
        right.update_computation()
    assert_unchanged(before, modules)
    with pytest.raises(NonFiniteError):
        merge.update_computation()
    assert_unchanged(before, modules)


def test_conv_update_computation_refuses_a_non_finite_input(generator, device):
    first = RestrictedConv2dGrowingModule(2, 3, 3, padding=1, post_layer_function=nn.ReLU(), device=device,
                                          name="first")
    second = RestrictedConv2dGrowingModule(3, 2, 3, padding=1, previous_module=first, device=device,
                                           name="second")
    first.next_module = second
    second.init_computation()
    x = torch.randn(4, 2, 6, 6, generator=generator).to(device)
    second(first(x)).square().sum().backward()
    second.update_computation()
    x = x.clone()
    x[1, 0, 2, 3] = math.inf
    second(first(x)).square().sum().backward()
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(NonFiniteError, match="second"):
        second.update_computation()
    assert_unchanged(before, modules)


@pytest.mark.parametrize("kind", [TensorStatistic, TensorStatiticWithEstimationError])
def test_a_statistic_refuses_a_non_finite_update_and_keeps_its_sum(kind, generator):
    values = iter([torch.randn(3, 3, generator=generator), torch.full((3, 3), math.nan),
                   torch.randn(3, 3, generator=generator)])
    updates = []

    def update_function():
        updates.append(next(values))
        return updates[-1].clone(), 4  # the first update becomes the running sum

    statistic = kind((3, 3), update_function, name="S(probe)")
    for attempt in range(3):
        statistic.updated = False
        if attempt == 1:
            with pytest.raises(NonFiniteError, match=r"S\(probe\)"):
                statistic.update()
            assert statistic.samples == 4
        else:
            statistic.update()
    assert statistic.samples == 8
    torch.testing.assert_close(statistic(), (updates[0] + updates[2]) / 8)
    if kind is TensorStatiticWithEstimationError:
        assert math.isfinite(statistic.error())


def test_update_together_is_all_or_none(generator):
    good = torch.randn(2, 2, generator=generator)
    first = TensorStatistic((2, 2), lambda: (good, 2), name="A")
    second = TensorStatistic((2, 2), lambda: (torch.tensor([[1.0, math.inf], [0.0, 1.0]]), 2), name="B")
    first.updated = second.updated = False
    with pytest.raises(NonFiniteError, match="B"):
        update_together([first, second])
    assert first.samples == 0 and first._tensor is None and not first.updated


def test_first_non_finite_finds_nan_and_inf_but_not_overflowing_sums():
    ones = torch.ones(3)
    overflowing = torch.tensor([3e38, 3e38])  # finite entries whose sum is inf in float32
    half = torch.full((4,), 60000.0, dtype=torch.float16)  # finite, sum beyond the fp16 maximum
    assert first_non_finite([ones, overflowing, half, None, torch.empty(0)]) is None
    assert first_non_finite([ones, torch.tensor([1.0, math.nan])]) == 1
    assert first_non_finite([overflowing, ones, torch.tensor([math.inf, -math.inf])]) == 2
    assert first_non_finite([torch.tensor([2.0, -math.inf], dtype=torch.bfloat16)]) == 0


def test_has_nan_is_gromos_isnan_any_also_where_the_sum_is_not_finite():
    """has_nan answers ``torch.isnan(t).any()``: a finite sum settles it, an infinite or NaN sum (Inf
    entries, or finite entries overflowing it) goes to the exact test."""
    from gromo.utils._nonfinite import has_nan

    generator = torch.Generator().manual_seed(3)
    finite = torch.randn(40, 40, generator=generator)
    overflowing = torch.full((4, 4), 3e38)
    with_inf = finite.clone()
    with_inf[2, 3] = -math.inf
    with_nan = finite.clone()
    with_nan[7, 1] = math.nan
    half_nan = finite.half()
    half_nan[0, 0] = math.nan
    cases = [finite, overflowing, with_inf, with_nan, finite.double(), half_nan, torch.empty(0, 3)]
    for t in cases:
        assert has_nan(t) == bool(torch.isnan(t).any())
    assert [has_nan(t) for t in cases] == [False, False, False, True, False, True, False]
