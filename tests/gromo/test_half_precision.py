"""Half precision end to end (issue 16, defect 3): float16 / bfloat16 modules grow.

Statistics accumulate in float32; the update and extension layers come back in the module's dtype;
``extended_forward`` (the line search) runs in that dtype and equals ``forward`` after
``apply_change`` within the dtype's rounding bound: |y_ext − y| ≤ c·ε·M element-wise, M the same
network evaluated in float64 on |weights| and |inputs| (the classic bound of a dot product's
rounding error, carried through 1-Lipschitz activations).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gromo.modules.conv2d_growing_module import (
    FullConv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.linear_growing_module import (
    LinearGrowingModule,
    LinearMergeGrowingModule,
)
from gromo.utils.tensor_statistic import TensorStatistic

HALF = [torch.float16, torch.bfloat16]
# c of the bound: the rounding of the merged weights, of both layers' outputs and of the scalings
# (about 0.3·ε·M was measured on CPU for float16 and bfloat16)
_BOUND_FACTOR = 2.0


def _linear_pair(device, dtype, generator):
    first = LinearGrowingModule(6, 5, post_layer_function=nn.Tanh(), device=device, name="first")
    second = LinearGrowingModule(5, 4, previous_module=first, device=device, name="second")
    first.next_module = second
    def inputs():
        return torch.randn(32, 6, generator=generator).to(device, dtype)
    def targets():
        return torch.randn(32, 4, generator=generator).to(device, dtype)
    return first.to(dtype), second.to(dtype), inputs, targets


def _conv_pair(scheme, device, dtype, generator):
    first = scheme(2, 3, 3, padding=1, post_layer_function=nn.ReLU(), device=device, name="first")
    second = scheme(3, 2, 3, padding=1, previous_module=first, device=device, name="second")
    first.next_module = second
    def inputs():
        return torch.randn(8, 2, 6, 6, generator=generator).to(device, dtype)
    def targets():
        return torch.randn(8, 2, 6, 6, generator=generator).to(device, dtype)
    return first.to(dtype), second.to(dtype), inputs, targets


def _abs_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """float64 ``|W| x + |b|`` of a Linear or Conv2d layer."""
    weight = layer.weight.detach().double().abs()
    bias = None if layer.bias is None else layer.bias.detach().double().abs()
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation)


def _magnitude(first, second, x):
    """M: the grown network on |weights|, |x|, plus the hidden activations' magnitude."""
    hidden = _abs_layer(first.layer, x.double().abs())
    with torch.no_grad():
        activations = first(x).double().abs()
    return _abs_layer(second.layer, hidden + activations)


BUILDERS = {
    "linear": _linear_pair,
    "restricted_conv": lambda d, t, g: _conv_pair(RestrictedConv2dGrowingModule, d, t, g),
    "full_conv": lambda d, t, g: _conv_pair(FullConv2dGrowingModule, d, t, g),
}


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_growth_cycle(generator, device, dtype, kind):
    first, second, inputs, targets = BUILDERS[kind](device, dtype, generator)
    second.init_computation()
    for _ in range(3):
        first.zero_grad()
        second.zero_grad()
        output = second(first(inputs()))
        ((output.float() - targets().float()) ** 2).sum().div(2).backward()
        second.update_computation()
    for statistic in (second.tensor_s, second.tensor_m, second.tensor_m_prev, second.cross_covariance,
                      second.tensor_s_growth):
        assert statistic().dtype == torch.float32, statistic.name

    second.compute_optimal_updates(maximum_added_neurons=2)
    second.reset_computation()
    assert second.optimal_delta_layer.weight.dtype == dtype
    assert second.extended_input_layer.weight.dtype == dtype
    assert first.extended_output_layer.weight.dtype == dtype
    assert second.eigenvalues_extension.shape[0] >= 1
    assert bool(torch.isfinite(second.eigenvalues_extension).all())

    gamma = 0.5
    second.scaling_factor = gamma
    x = inputs()
    with torch.no_grad():
        before = second(first(x))
        hidden, hidden_ext = first.extended_forward(x)
        extended, _ = second.extended_forward(hidden, hidden_ext)
    assert extended.dtype == dtype and hidden_ext.dtype == dtype

    second.apply_change()
    second.delete_update()
    assert second.in_neurons == first.out_features
    with torch.no_grad():
        after = second(first(x))
    bound = _BOUND_FACTOR * torch.finfo(dtype).eps * _magnitude(first, second, x)
    error = (extended.double() - after.double()).abs()
    assert bool((error <= bound).all()), f"max error / bound = {float((error / bound).max()):.3g}"
    # the change is real: the grown network differs from the old one beyond rounding
    assert bool(((after.double() - before.double()).abs() > bound).any())


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_merge_delta_layers(generator, device, dtype):
    left = LinearGrowingModule(3, 4, device=device, name="left")
    right = LinearGrowingModule(2, 4, use_bias=False, device=device, name="right")  # one ones column
    merge = LinearMergeGrowingModule(in_features=4, previous_modules=[left, right], device=device, name="merge")
    left.next_module = right.next_module = merge
    for module in (left, right, merge):
        module.to(dtype)
    merge.init_computation()
    a, b = torch.randn(16, 3, generator=generator), torch.randn(16, 2, generator=generator)
    out = merge(left(a.to(device, dtype)) + right(b.to(device, dtype)))
    (out.float() ** 2).sum().backward()
    merge.update_computation()
    assert merge.previous_tensor_s().dtype == torch.float32
    merge.compute_optimal_delta()
    for module in (left, right):
        assert module.optimal_delta_layer.weight.dtype == dtype
        with torch.no_grad():
            extended, _ = module.extended_forward(a.to(device, dtype) if module is left else b.to(device, dtype))
        assert extended.dtype == dtype and bool(torch.isfinite(extended).all())


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_updates_accumulate_in_float32(dtype):
    # each update is representable in the half dtype; their sum is not (fp16 max 65504)
    update = torch.full((2, 2), 40000.0, dtype=dtype)
    statistic = TensorStatistic((2, 2), lambda: (update, 1), name="S(half)")
    for _ in range(3):
        statistic.updated = False
        statistic.update()
    assert statistic._tensor.dtype == torch.float32
    expected = 3 * float(update[0, 0])
    torch.testing.assert_close(statistic(), torch.full((2, 2), expected / 3), rtol=0, atol=0)
    assert float(statistic._tensor[0, 0]) == expected
