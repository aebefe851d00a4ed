"""Conv2dMergeGrowingModule (TINY, TMLR 2024): graphs Conv→ConvMerge→LinearMerge→Linear and
Conv,Conv→ConvMerge→Conv computing optimal deltas against float64 references; sizes and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    Conv2dMergeGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from gromo_kernels import Conv2dGeometry
from gromo_kernels import testing as ref


def _randn(generator, *shape, device):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)


def _natural_gradient(s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """δ = (S⁻¹ M)ᵀ in float64 on CPU."""
    return torch.linalg.solve(s.cpu().double(), m.cpu().double()).T


def test_conv_merge_linear_merge_linear_graph_optimal_deltas(generator, device):
    conv = Conv2dGrowingModule(2, 3, (3, 2), padding=(1, 0), input_size=(5, 6), device=device, name="conv")
    conv_merge = Conv2dMergeGrowingModule(
        in_channels=3, input_size=(5, 5), next_kernel_size=3, post_merge_function=nn.ReLU(),
        reshape_function=nn.Flatten(), previous_modules=[conv], device=device, name="conv_merge",
    )
    linear_merge = LinearMergeGrowingModule(in_features=75, previous_modules=[conv_merge], device=device)
    linear = LinearGrowingModule(75, 4, previous_module=linear_merge, device=device, name="linear")
    conv.next_module = conv_merge
    conv_merge.set_next_modules([linear_merge])
    linear_merge.set_next_modules([linear])
    conv.double()
    linear.double()
    assert conv_merge.output_volume == 75 and conv_merge.input_volume == 75
    assert conv_merge.padding == (1, 1) and conv_merge.stride == (1, 1) and conv_merge.dilation == (1, 1)

    conv_merge.init_computation()
    linear.init_computation()
    batches = []
    for n in (4, 3):
        x = _randn(generator, n, 2, 5, 6, device=device)
        target = _randn(generator, n, 4, device=device)
        out = linear(linear_merge(conv_merge(conv(x))))
        (((out - target) ** 2).sum() / 2).backward()
        conv_merge.update_computation()
        linear.update_computation()
        batches.append((x, conv_merge.input.grad.detach().clone(), linear.input.clone(),
                        linear.pre_activity.grad.detach().clone()))
    total = 7
    geometry = Conv2dGeometry((3, 2), 1, (1, 0), 1)
    s_conv = sum(ref.conv2d_input_cov_reference(x, geometry) for x, _, _, _ in batches) / total
    m_conv = sum(ref.conv2d_input_grad_reference(x, g, geometry) for x, g, _, _ in batches) / total
    ref.assert_close_to_reference(conv_merge.previous_tensor_s(), s_conv, dtype=torch.float64,
                                  reduction_length=200, scale=10)
    ref.assert_close_to_reference(conv_merge.previous_tensor_m(), m_conv, dtype=torch.float64,
                                  reduction_length=200, scale=10)
    conv_merge.compute_optimal_delta(dtype=torch.float64)
    delta = _natural_gradient(s_conv, m_conv)
    assert conv.optimal_delta_layer is not None and conv.optimal_delta_layer.padding == (1, 0)
    torch.testing.assert_close(conv.optimal_delta_layer.weight.detach().cpu(), delta[:, :-1].reshape(3, 2, 3, 2),
                               rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(conv.optimal_delta_layer.bias.detach().cpu(), delta[:, -1], rtol=1e-8, atol=1e-10)
    decrease = torch.trace(m_conv.T @ delta.T)
    torch.testing.assert_close(conv_merge.parameter_update_decrease.cpu(), decrease, rtol=1e-8, atol=1e-12)

    s_linear = sum(ref.linear_input_cov_reference(a) for _, _, a, _ in batches) / total
    m_linear = sum(ref.linear_input_grad_reference(a, g) for _, _, a, g in batches) / total
    with pytest.warns(UserWarning, match="pseudo-inverse"):
        _, _, linear_decrease = linear.compute_optimal_delta(dtype=torch.float64)
    # 7 samples for 76 features: S is singular, the delta is the pseudo-inverse solution.
    expected = (torch.linalg.pinv(s_linear, hermitian=True, rtol=1e-10) @ m_linear).T
    torch.testing.assert_close(linear.delta_raw.cpu(), expected, rtol=1e-6, atol=1e-8)
    assert float(linear_decrease) > 0
    # The conv merge's own S (its activity unfolded with the next geometry) is collected too.
    activity_s = conv_merge.tensor_s()
    assert activity_s.shape == (28, 28) and conv_merge.tensor_s.samples == total


def test_two_convs_merge_into_a_conv(generator, device):
    conv_a = Conv2dGrowingModule(2, 3, 3, padding=1, input_size=(5, 5), device=device, name="a")
    conv_b = RestrictedConv2dGrowingModule(1, 3, (1, 3), padding=(0, 1), use_bias=False, input_size=(5, 5),
                                           device=device, name="b")
    merge = Conv2dMergeGrowingModule(3, None, (3, 3), post_merge_function=nn.Tanh(),
                                     previous_modules=[conv_a, conv_b], device=device)
    conv_c = Conv2dGrowingModule(3, 2, 3, stride=2, padding=1, previous_module=merge, device=device, name="c")
    merge.set_next_modules([conv_c])
    conv_a.next_module = merge
    conv_b.next_module = merge
    for module in (conv_a, conv_b, conv_c):
        module.double()
    assert merge.input_size == (5, 5) and merge.total_in_features == 19 + 3
    assert (merge.padding, merge.stride) == ((1, 1), (2, 2))

    merge.init_computation()
    conv_c.init_computation()
    xa = _randn(generator, 5, 2, 5, 5, device=device)
    xb = _randn(generator, 5, 1, 5, 5, device=device)
    out = conv_c(merge(conv_a(xa) + conv_b(xb)))
    out.pow(2).sum().backward()
    merge.update_computation()
    conv_c.update_computation()
    full = torch.cat([ref.unfold_reference(xa, Conv2dGeometry(3, 1, 1, 1), bias=True),
                      ref.unfold_reference(xb, Conv2dGeometry((1, 3), 1, (0, 1), 1), bias=False)], dim=1)
    torch.testing.assert_close(merge.construct_full_activity().cpu(), full, rtol=0, atol=1e-12)
    grad = merge.input.grad.detach().cpu().flatten(2)
    s_prev = torch.einsum("iam,ibm->ab", full, full) / 5
    m_prev = torch.einsum("iam,icm->ac", full, grad) / 5
    torch.testing.assert_close(merge.previous_tensor_s().cpu(), s_prev, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(merge.previous_tensor_m().cpu(), m_prev, rtol=1e-10, atol=1e-10)
    deltas = merge.compute_optimal_delta(return_deltas=True, dtype=torch.float64)
    delta = torch.linalg.pinv(s_prev) @ m_prev
    torch.testing.assert_close(deltas[0][0].cpu(), delta[:18].T.reshape(3, 2, 3, 3), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(deltas[0][1].cpu(), delta[18], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(deltas[1][0].cpu(), delta[19:].T.reshape(3, 1, 1, 3), rtol=1e-6, atol=1e-8)
    assert deltas[1][1] is None and conv_b.optimal_delta_layer.bias is None

    # conv_c reads the merge's S: the activity unfolded with conv_c's geometry.
    activity = merge.activity.cpu()
    expected_s = ref.conv2d_input_cov_reference(activity, Conv2dGeometry(3, 2, 1, 1)) / 5
    torch.testing.assert_close(conv_c.tensor_s().cpu(), expected_s, rtol=1e-10, atol=1e-10)
    unfolded = merge.unfolded_extended_activity.cpu()
    torch.testing.assert_close(unfolded, ref.unfold_reference(activity, Conv2dGeometry(3, 2, 1, 1), bias=True),
                               rtol=0, atol=1e-12)
    conv_c.compute_optimal_delta(dtype=torch.float64)
    assert conv_c.optimal_delta_layer.weight.shape == (2, 3, 3, 3)


def test_update_size_follows_a_grown_predecessor(generator, device):
    first = RestrictedConv2dGrowingModule(2, 3, 3, padding=1, input_size=(4, 4), device=device)
    merge = Conv2dMergeGrowingModule(3, (4, 4), 3, previous_modules=[first], device=device)
    first.next_module = merge
    first.layer_out_extension(torch.randn(2, 2, 3, 3, generator=generator).to(device),
                              torch.zeros(2).to(device))
    merge.update_size()
    assert merge.in_channels == 5 and merge.tensor_s._shape == (46, 46)
    assert merge.previous_tensor_m._shape == (19, 5) and merge.input_volume == 80
    assert merge.out_channels == merge.in_features == merge.out_features == 5
    assert merge.output_size == (4, 4)


def test_merge_sizes_without_neighbours(device):
    merge = Conv2dMergeGrowingModule(4, (3, 5), (1, 3), reshape_function=nn.Flatten(), input_volume=7,
                                     device=device)
    assert merge.input_volume == 7 and merge.output_volume == 60
    with pytest.warns(UserWarning, match="no next module"):
        assert merge.padding == (0, 0)
    with pytest.warns(UserWarning, match="no next module"):
        assert merge.stride == (1, 1)
    assert merge.previous_tensor_s is None and merge.number_of_parameters == 0
    unknown = Conv2dMergeGrowingModule(4, None, 3, device=device)
    # GroMo: without input size nor previous module, the volumes are -1 with a warning
    with pytest.warns(UserWarning, match="Cannot derive the number of features"):
        assert unknown.input_volume == -1
    with pytest.warns(UserWarning, match="Cannot derive the number of features"):
        assert unknown.output_volume == -1


def test_merge_errors(generator, device):
    merge = Conv2dMergeGrowingModule(3, (4, 4), 3, device=device)
    with pytest.raises(TypeError, match="Conv2dGrowingModule"):
        merge.set_previous_modules([LinearGrowingModule(2, 3, device=device)])
    with pytest.raises(ValueError, match="output channels"):
        merge.set_previous_modules([Conv2dGrowingModule(2, 4, 3, padding=1, input_size=(4, 4), device=device)])
    with pytest.raises(ValueError, match="volume"):
        merge.set_previous_modules([Conv2dGrowingModule(2, 3, 3, input_size=(4, 4), device=device)])
    with pytest.raises(NotImplementedError, match="Identity"):
        merge.set_next_modules([nn.Identity()])
    with pytest.raises(AssertionError, match="kernel size"):
        merge.set_next_modules([Conv2dGrowingModule(3, 2, 5, device=device)])
    with pytest.raises(AssertionError, match="input channels"):
        merge.set_next_modules([Conv2dGrowingModule(2, 2, 3, device=device)])
    with pytest.raises(AssertionError, match="in_features"):
        merge.set_next_modules([LinearGrowingModule(5, 2, device=device)])
    with pytest.raises(AssertionError, match="no previous modules"):
        merge.construct_full_activity()
    with pytest.raises(AssertionError, match="activity"):
        merge.compute_s_update()
    merge.next_modules = [nn.Identity()]
    with pytest.raises(NotImplementedError, match="padding"):
        _ = merge.padding
