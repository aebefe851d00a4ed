"""Growing convolutions (TINY, TMLR 2024): statistics against float64
brute-force references after real forward/backward passes, growth packaging, surgery, caches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    FullConv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo_kernels import Conv2dGeometry
from gromo_kernels import testing as ref

# (kernel, stride, padding, dilation) of the previous conv and of the current conv.
GEOMETRIES = {
    "same3x3": (((3, 3), 1, 1, 1), ((3, 3), 1, 1, 1)),
    "rect_stride": (((3, 2), 1, (1, 0), 1), ((2, 3), 2, (0, 1), 1)),
    "dilated_padded": (((3, 3), 1, 2, 2), ((3, 3), (1, 2), 2, (2, 1))),
    "strided_prev": (((3, 3), 2, 1, 1), ((1, 3), 1, (0, 1), 1)),
}
SCHEMES = [RestrictedConv2dGrowingModule, FullConv2dGrowingModule]


def _geometry(spec) -> Conv2dGeometry:
    return Conv2dGeometry(*spec)


def make_pair(scheme, prev_spec, cur_spec, channels=(3, 4, 5), bias=(True, True), device="cpu",
              dtype=torch.float64, activation=None):
    """prev conv C_p -> C (activation), current conv C -> C_out of the given growth scheme."""
    c_p, c, c_out = channels
    kernel, stride, padding, dilation = prev_spec
    first = scheme(c_p, c, kernel, stride=stride, padding=padding, dilation=dilation, use_bias=bias[0],
                   post_layer_function=activation if activation is not None else nn.ReLU(), device=device,
                   name="first")
    kernel, stride, padding, dilation = cur_spec
    second = scheme(c, c_out, kernel, stride=stride, padding=padding, dilation=dilation, use_bias=bias[1],
                    previous_module=first, device=device, name="second")
    first.next_module = second
    return first.to(dtype), second.to(dtype)


def run_batch(first, second, x, target):
    """One forward/backward of a sum-reduced MSE; returns the loss."""
    first.zero_grad()
    second.zero_grad()
    out = second(first(x))
    loss = ((out - target) ** 2).sum() / 2
    loss.backward()
    return float(loss.detach())


def _randn(generator, *shape, device="cpu", dtype=torch.float64):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device, dtype)


def _output_shape(first, second, x):
    with torch.no_grad():
        return second(first(x)).shape


STATISTICS_CASES = [(geometry, (True, True)) for geometry in GEOMETRIES] + [
    ("rect_stride", (False, True)), ("dilated_padded", (True, False)), ("strided_prev", (False, False)),
]


@pytest.mark.parametrize(("geometry", "bias"), STATISTICS_CASES,
                         ids=[f"{g}-{'b' if b[0] else 'n'}{'b' if b[1] else 'n'}" for g, b in STATISTICS_CASES])
@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_pair_statistics_match_float64_reference(scheme, geometry, bias, generator, device):
    prev_spec, cur_spec = GEOMETRIES[geometry]
    first, second = make_pair(scheme, prev_spec, cur_spec, bias=bias, device=device)
    second.init_computation()
    batches = []
    for n in (3, 2):
        x = _randn(generator, n, 3, 7, 6, device=device)
        target = _randn(generator, *_output_shape(first, second, x), device=device)
        run_batch(first, second, x, target)
        second.update_computation()
        batches.append((x, second.input.clone(), second.pre_activity.grad.clone()))
    total = sum(b[0].shape[0] for b in batches)
    prev_g, cur_g = _geometry(prev_spec), _geometry(cur_spec)

    def mean(fn):
        return sum(fn(*b) for b in batches) / total

    expected = {
        "S": mean(lambda xp, x, g: ref.conv2d_input_cov_reference(x, cur_g, bias=bias[1])),
        "M": mean(lambda xp, x, g: ref.conv2d_input_grad_reference(x, g, cur_g, bias=bias[1])),
        "E": mean(lambda xp, x, g: ref.grad_cov_reference(g, channel_dim=1)),
    }
    if scheme is RestrictedConv2dGrowingModule:
        stats = [ref.conv2d_restricted_growth_stats_reference(xp, x, g, prev=prev_g, cur=cur_g,
                                                              bias_prev=bias[0], bias=bias[1])
                 for xp, x, g in batches]
        expected["M_prev"] = sum(s.m_prev for s in stats) / total
        expected["P"] = sum(s.cross_cov for s in stats) / total
        expected["S_growth"] = mean(lambda xp, x, g: ref.conv2d_input_cov_reference(xp, prev_g, bias=bias[0]))
    else:
        stats = [ref.conv2d_full_growth_stats_reference(xp, x, g, prev=prev_g, cur=cur_g,
                                                        bias_prev=bias[0], bias=bias[1])
                 for xp, x, g in batches]
        expected["M_prev"] = sum(s.m_prev for s in stats) / total
        expected["P"] = sum(s.cross_cov for s in stats) / total
        expected["S_growth"] = sum(s.s_growth for s in stats) / total
    got = {
        "S": second.tensor_s(), "M": second.tensor_m(), "E": second.covariance_loss_gradient(),
        "M_prev": second.tensor_m_prev(), "P": second.cross_covariance(), "S_growth": second.tensor_s_growth(),
    }
    for name, value in got.items():
        assert value.dtype == torch.float64 and value.device.type == device.type, name
        ref.assert_close_to_reference(value, expected[name], dtype=torch.float64, reduction_length=500,
                                      scale=100.0, name=name)
    assert second.tensor_s.samples == total and second.tensor_m_prev.samples == total


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_float32_pair_statistics_within_table_tolerance(scheme, generator, device):
    prev_spec, cur_spec = GEOMETRIES["same3x3"]
    first, second = make_pair(scheme, prev_spec, cur_spec, device=device, dtype=torch.float32)
    second.init_computation()
    x = _randn(generator, 4, 3, 7, 7, device=device, dtype=torch.float32)
    target = _randn(generator, 4, 5, 7, 7, device=device, dtype=torch.float32)
    run_batch(first, second, x, target)
    second.update_computation()
    xc, g = second.input, second.pre_activity.grad
    prev_g, cur_g = _geometry(prev_spec), _geometry(cur_spec)
    if scheme is RestrictedConv2dGrowingModule:
        r = ref.conv2d_restricted_growth_stats_reference(x, xc, g, prev=prev_g, cur=cur_g)
    else:
        r = ref.conv2d_full_growth_stats_reference(x, xc, g, prev=prev_g, cur=cur_g)
    assert second.tensor_m_prev().dtype == torch.float32
    scale = float(g.abs().max()) * float(x.abs().max())
    ref.assert_close_to_reference(second.tensor_m_prev(), r.m_prev / 4, reduction_length=400, scale=scale)
    ref.assert_close_to_reference(second.cross_covariance(), r.cross_cov / 4, reduction_length=400,
                                  scale=float(x.abs().max()) * float(xc.abs().max()) + 1)


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_zero_bottleneck_statistics_and_growth(scheme, generator, device):
    """Previous conv with 0 output channels: P has only the bias column, M₋₂ / S₋₂ are exact,
    and growth adds channels to both layers."""
    prev_spec, cur_spec = GEOMETRIES["rect_stride"]
    first, second = make_pair(scheme, prev_spec, cur_spec, channels=(3, 0, 4), device=device,
                              activation=nn.Identity())
    second.init_computation()
    x = _randn(generator, 5, 3, 9, 8, device=device)
    target = _randn(generator, *_output_shape(first, second, x), device=device)
    loss_before = run_batch(first, second, x, target)
    second.update_computation()
    xc, g = second.input, second.pre_activity.grad
    assert xc.shape[1] == 0
    prev_g, cur_g = _geometry(prev_spec), _geometry(cur_spec)
    if scheme is RestrictedConv2dGrowingModule:
        r = ref.conv2d_restricted_growth_stats_reference(x, xc, g, prev=prev_g, cur=cur_g)
        s_growth = ref.conv2d_input_cov_reference(x, prev_g)
    else:
        r = ref.conv2d_full_growth_stats_reference(x, xc, g, prev=prev_g, cur=cur_g)
        s_growth = r.s_growth
    assert second.cross_covariance().shape[-1] == 1
    for got, want in ((second.tensor_m_prev(), r.m_prev), (second.cross_covariance(), r.cross_cov),
                      (second.tensor_s_growth(), s_growth), (second.tensor_s(), ref.conv2d_input_cov_reference(xc, cur_g))):
        ref.assert_close_to_reference(got, want / 5, dtype=torch.float64, reduction_length=500, scale=10.0)
    second.compute_optimal_updates(dtype=torch.float64, maximum_added_neurons=2)
    assert second.eigenvalues_extension.shape == (2,)
    second.scaling_factor = 0.1
    with torch.no_grad():
        extended = second.extended_forward(*first.extended_forward(x))[0]
    second.apply_change()
    second.delete_update()
    assert first.out_channels == 2 and second.in_channels == 2
    with torch.no_grad():
        grown = second(first(x))
        assert float(((grown - target) ** 2).sum() / 2) < loss_before
    torch.testing.assert_close(grown, extended, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_tensor_n_is_minus_m_prev_of_the_projected_gradient(scheme, generator, device):
    """N = −M₋₂ + P δᵀ equals −E[Ũ vᵀ] with v = dA − δ(x) (the projected gradient)."""
    prev_spec, cur_spec = GEOMETRIES["dilated_padded"]
    first, second = make_pair(scheme, prev_spec, cur_spec, device=device)
    second.init_computation()
    x = _randn(generator, 4, 3, 9, 8, device=device)
    target = _randn(generator, *_output_shape(first, second, x), device=device)
    run_batch(first, second, x, target)
    second.update_computation()
    second.compute_optimal_delta(dtype=torch.float64)
    projected = second.projected_v_goal(second.input).detach()
    m_projected, n = second.compute_m_prev_update(desired_activation=projected)
    torch.testing.assert_close(second.tensor_n, -m_projected / n, rtol=1e-9, atol=1e-11)
    m_direct, _ = second.compute_m_update(desired_activation=projected)
    # δ is the least-squares fit of dA on U: the projected gradient is orthogonal to U.
    assert float(m_direct.abs().max()) < 1e-9 * float(second.tensor_m().abs().max() * n)


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_first_order_improvement_predicts_the_loss_change(scheme, generator, device):
    """With linear activations and N = −M₋₂, L(0) − L(γ) = γ²·n·first_order_improvement + O(γ⁴):
    checks the packaging of α (previous kernel) and ω (centre tap / full kernel permutation)."""
    prev_spec, cur_spec = GEOMETRIES["rect_stride"]
    first, second = make_pair(scheme, prev_spec, cur_spec, device=device, activation=nn.Identity())
    second.init_computation()
    x = _randn(generator, 6, 3, 9, 8, device=device)
    target = _randn(generator, *_output_shape(first, second, x), device=device)
    loss0 = run_batch(first, second, x, target)
    second.update_computation()
    second.compute_optimal_updates(dtype=torch.float64, compute_delta=False, use_projection=False)
    improvement = float(second.first_order_improvement)
    assert improvement > 0
    gamma = 1e-3
    second.set_scaling_factor(gamma)
    with torch.no_grad():
        out, _ = second.extended_forward(*first.extended_forward(x))
        loss_gamma = float(((out - target) ** 2).sum() / 2)
    predicted = gamma**2 * x.shape[0] * improvement
    assert abs((loss0 - loss_gamma) - predicted) < 1e-4 * predicted


def test_restricted_extension_lives_on_the_centre_tap(generator, device):
    first, second = make_pair(RestrictedConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 5), 1, (1, 2), 1),
                              device=device)
    second.init_computation()
    x = _randn(generator, 3, 3, 6, 6, device=device)
    run_batch(first, second, x, _randn(generator, 3, 5, 6, 6, device=device))
    second.update_computation()
    alpha_w, alpha_b, omega, eigenvalues = second._compute_optimal_added_parameters(
        dtype=torch.float64, use_projection=False)
    k = eigenvalues.shape[0]
    weight = second.extended_input_layer.weight.detach()
    assert weight.shape == (5, k, 3, 5) and alpha_w.shape == (k, 3, 3, 3) and alpha_b.shape == (k,)
    torch.testing.assert_close(weight[:, :, 1, 2], omega, rtol=0, atol=0)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 2] = False
    assert float(weight[:, :, mask].abs().max()) == 0.0
    assert float(second.extended_input_layer.bias.detach().abs().max()) == 0.0
    layer = first.extended_output_layer
    assert (layer.kernel_size, layer.padding) == ((3, 3), (1, 1))
    torch.testing.assert_close(layer.weight, alpha_w, rtol=0, atol=0)


def test_full_extension_kernel_layout(generator, device):
    """ω (C_out·kk, k) → (C_out, k, kh, kw) with column c·kk + i·kw + j."""
    first, second = make_pair(FullConv2dGrowingModule, ((3, 3), 1, 1, 1), ((2, 3), 1, (0, 1), 1),
                              device=device, bias=(False, False))
    second.init_computation()
    x = _randn(generator, 3, 3, 6, 6, device=device)
    run_batch(first, second, x, _randn(generator, *_output_shape(first, second, x), device=device))
    second.update_computation()
    second.compute_optimal_updates(dtype=torch.float64, compute_delta=False, use_projection=False)
    k = second.eigenvalues_extension.shape[0]
    weight = second.extended_input_layer.weight
    assert weight.shape == (5, k, 2, 3) and second.extended_input_layer.bias is None
    n_matrix = -second.tensor_m_prev()
    omega_matrix = weight.permute(0, 2, 3, 1).reshape(5 * 6, k)
    alpha = first.extended_output_layer.weight.reshape(k, -1)
    # Σ_i α_iᵀ N ω_i = Σ σ_i² (α = S^{-1/2} U √σ, ω = √σ V): a layout error in ω breaks it.
    value = torch.einsum("ka,at,tk->", alpha, n_matrix, omega_matrix)
    torch.testing.assert_close(value, (second.eigenvalues_extension**2).sum(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_extensions_with_pairing_preserve_the_function(scheme, generator, device):
    prev_spec, cur_spec = GEOMETRIES["same3x3"]
    first, second = make_pair(scheme, prev_spec, cur_spec, device=device)
    x = _randn(generator, 3, 3, 7, 7, device=device)
    with torch.no_grad():
        before = second(first(x))
    second.create_layer_extensions(4, neuron_pairing="vv_z_negz", noise_ratio=0.0)
    second.set_scaling_factor(0.7)
    assert second.extended_input_layer.weight.shape == (5, 4, 3, 3)
    assert first.extended_output_layer.weight.shape == (4, 3, 3, 3)
    with torch.no_grad():
        extended = second.extended_forward(*first.extended_forward(x))[0]
        torch.testing.assert_close(extended, before, rtol=1e-12, atol=1e-12)
        second.apply_change(apply_delta=False, extension_size=4)
        second.delete_update()
        after = second(first(x))
    assert second.in_channels == 8 and first.out_channels == 8
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)


def test_statistics_after_growth_have_the_correct_shapes(generator, device):
    """GroMo re-declares S / M with (C+b)·kh·kw and C+b after surgery and fails on the next update."""
    first, second = make_pair(RestrictedConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 3), 1, 1, 1),
                              device=device)
    third = RestrictedConv2dGrowingModule(5, 2, 3, padding=1, previous_module=second, device=device).double()
    second.next_module = third
    second.create_layer_extensions(2)
    second.apply_change(scaling_factor=0.5, extension_size=2)
    second.delete_update()
    assert second.tensor_s._shape == (6 * 9 + 1, 6 * 9 + 1) and second.tensor_m._shape == (55, 5)
    first.init_computation()
    second.init_computation()
    x = _randn(generator, 2, 3, 6, 6, device=device)
    out = third(second(first(x)))
    out.pow(2).sum().backward()
    first.update_computation()
    second.update_computation()
    expected_s = ref.conv2d_input_cov_reference(second.input, Conv2dGeometry(3, 1, 1, 1)) / 2
    ref.assert_close_to_reference(second.tensor_s(), expected_s, dtype=torch.float64, reduction_length=100, scale=10)
    assert first.tensor_m().shape == (28, 6)
    third.create_layer_extensions(3)
    third.apply_change(scaling_factor=1.0, extension_size=3)
    assert second.tensor_m._shape == (55, 8)


def test_zero_width_layers_forward_and_survive_surgery(generator, device):
    layer = RestrictedConv2dGrowingModule(0, 3, 3, padding=1, device=device).double()
    x = _randn(generator, 2, 0, 5, 4, device=device)
    out = layer(x)
    assert out.shape == (2, 3, 5, 4) and out.requires_grad
    assert float(layer.bias.detach().abs().max()) == 0.0
    with torch.no_grad():
        layer.layer.bias.fill_(0.5)
    torch.testing.assert_close(layer(x), torch.full((2, 3, 5, 4), 0.5, dtype=torch.float64, device=device))
    layer.layer_in_extension(_randn(generator, 3, 2, 3, 3, device=device))
    assert layer(_randn(generator, 2, 2, 5, 4, device=device)).shape == (2, 3, 5, 4)
    empty = Conv2dGrowingModule(3, 0, (2, 3), stride=2, dilation=(1, 2), device=device).double()
    y = empty(_randn(generator, 2, 3, 9, 9, device=device))
    assert y.shape == (2, 0, 4, 3)
    empty.layer_out_extension(_randn(generator, 1, 3, 2, 3, device=device), _randn(generator, 1, device=device))
    assert empty(_randn(generator, 2, 3, 9, 9, device=device)).shape == (2, 1, 4, 3)


def test_sizes_geometry_and_bookkeeping(device):
    layer = Conv2dGrowingModule(3, 4, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1),
                                input_size=(11, 9), use_bias=True, device=device, target_in_channels=7)
    assert (layer.in_channels, layer.out_channels, layer.in_neurons) == (3, 4, 3)
    assert (layer.in_features, layer.out_features) == (45, 4)
    assert (layer.stride, layer.padding, layer.dilation, layer.kernel_size) == ((2, 1), (1, 2), (2, 1), (3, 5))
    # ⌊(11 + 2 − 2·2 − 1)/2⌋ + 1 = 5, ⌊(9 + 4 − 4 − 1)/1⌋ + 1 = 9 (dilation included).
    assert (layer.out_width, layer.out_height) == (5, 9)
    assert layer.input_volume == 3 * 11 * 9 and layer.output_volume == 4 * 5 * 9
    assert layer.number_of_parameters() == 3 * 4 * 15 + 4 == sum(p.numel() for p in layer.parameters())
    assert layer.get_fan_in_from_layer(layer.layer) == 45 and layer.get_fan_in_from_layer(num_neurons=2) == 30
    assert layer.missing_neurons() == 4 and layer.number_of_neurons_to_add(number_of_growth_steps=2) == 2
    layer.padding = 0
    assert layer.layer.padding == (0, 0) and layer.out_width == 4
    layer.create_layer_in_extension(2)
    layer.create_layer_out_extension(3)
    assert layer.extended_input_layer.weight.shape == (4, 2, 3, 5) and layer.extended_input_layer.bias is None
    assert layer.extended_output_layer.weight.shape == (3, 3, 3, 5) and layer.extended_output_layer.bias is not None
    assert layer.extended_output_layer.stride == (2, 1) and layer.extended_input_layer.dilation == (2, 1)
    assert "in_channels=3" in str(layer) and "parameters" in layer.__str__(verbose=1)
    assert "Layer" in layer.__str__(verbose=2)


def test_input_size_tracking(generator, device):
    first = Conv2dGrowingModule(2, 3, 3, stride=2, device=device)
    second = RestrictedConv2dGrowingModule(3, 2, 3, padding=1, previous_module=first, device=device)
    with pytest.raises(ValueError, match="input size"):
        _ = second.input_size
    assert second.update_input_size() is None
    first.update_input_size((9, 7))
    assert second.update_input_size(compute_from_previous=True) == (4, 3)
    assert second.input_size == (4, 3)
    second.init_computation()
    x = torch.randn(2, 2, 13, 13, generator=generator).to(device)
    second(first(x)).sum().backward()
    with pytest.warns(UserWarning, match="input size"):
        second.update_computation()
    assert second._input_size == (6, 6)
    with pytest.warns(UserWarning, match="input size"):
        assert first.update_input_size(force_update=False) == (13, 13)
    with pytest.warns(UserWarning, match="input size"):
        assert second.update_input_size((5, 5), force_update=False) == (5, 5)
    assert second.input_size == (5, 5)  # GroMo: the recorded size is what is read back
    second.update_input_size()  # refreshed from the stored input (update_computation does this)
    assert second.input_size == (6, 6)


def test_caches_follow_the_previous_layer_and_the_geometry(generator, device):
    """GroMo never rebuilds the bordering kernel / mask after growth or a size change."""
    first, second = make_pair(RestrictedConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 3), 1, 1, 1),
                              device=device)
    second.init_computation()
    x = _randn(generator, 2, 3, 5, 5, device=device)
    second(first(x))
    bordered = second.bordered_unfolded_extended_prev_input
    assert bordered.shape == (2, 28, 25) and second.bordering_weight.shape == (28, 1, 3, 3)
    first.layer_in_extension(_randn(generator, 4, 2, 3, 3, device=device))
    x = _randn(generator, 2, 5, 6, 5, device=device)
    second(first(x))
    bordered = second.bordered_unfolded_extended_prev_input
    assert bordered.shape == (2, 46, 30) and second.bordering_weight.shape == (46, 1, 3, 3)
    expected = ref.unfold_reference(x, Conv2dGeometry(3, 1, 1, 1), bias=True)
    torch.testing.assert_close(bordered, expected, rtol=0, atol=1e-12)

    full_first, full = make_pair(FullConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 3), 2, 1, 1), device=device)
    full.update_input_size((5, 5))
    assert full.mask_tensor_t.shape == (9, 9, 25)
    with pytest.warns(UserWarning, match="input size"):
        full.update_input_size((6, 4))
    assert full.mask_tensor_t.shape == (6, 9, 24)
    full.padding = 0
    assert full.mask_tensor_t.shape == (2, 9, 24)


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_on_demand_unfold_properties_match_references(scheme, generator, device):
    prev_spec, cur_spec = GEOMETRIES["rect_stride"]
    first, second = make_pair(scheme, prev_spec, cur_spec, device=device)
    second.init_computation()
    x = _randn(generator, 2, 3, 9, 8, device=device)
    second(first(x))
    xc = second.input
    torch.testing.assert_close(second.unfolded_extended_input,
                               ref.unfold_reference(xc, _geometry(cur_spec), bias=True).to(device), rtol=0, atol=1e-12)
    g = torch.ones(*_output_shape(first, second, x), dtype=torch.float64, device=device)
    if scheme is RestrictedConv2dGrowingModule:
        r = ref.conv2d_restricted_growth_stats_reference(x, xc, g, prev=_geometry(prev_spec), cur=_geometry(cur_spec))
        u_tilde = second.bordered_unfolded_extended_prev_input
        torch.testing.assert_close(torch.einsum("ial,icl->ac", u_tilde, g.flatten(2)).cpu(), r.m_prev, rtol=1e-12, atol=1e-12)
    else:
        r = ref.conv2d_full_growth_stats_reference(x, xc, g, prev=_geometry(prev_spec), cur=_geometry(cur_spec))
        bhat = second.masked_unfolded_prev_input
        torch.testing.assert_close(torch.einsum("ilea,ileb->ab", bhat, bhat).cpu(), r.s_growth, rtol=1e-12, atol=1e-12)
        mask = second.mask_tensor_t.to(torch.float64)
        via_mask = torch.einsum("ial,jel->ijea", first.unfolded_extended_input, mask)
        torch.testing.assert_close(via_mask, bhat, rtol=0, atol=1e-12)


def test_layer_of_tensor_shares_storage_and_skips_bias_when_asked(generator, device):
    layer = RestrictedConv2dGrowingModule(3, 4, (3, 3), padding=1, device=device).double()
    weight = _randn(generator, 4, 2, 3, 3, device=device)
    built = layer.layer_of_tensor(weight, _randn(generator, 4, device=device))
    assert built.weight.data_ptr() == weight.data_ptr() and built.padding == (1, 1)
    no_bias = layer.layer_of_tensor(weight, None, force_bias=False)
    assert no_bias.bias is None
    centre = layer.linear_layer_of_tensor(_randn(generator, 4, 2, 1, 1, device=device), torch.zeros(4, dtype=torch.float64, device=device))
    assert centre.weight.shape == (4, 2, 3, 3)


def test_float64_growth_end_to_end(generator, device):
    first, second = make_pair(FullConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 3), 1, 1, 1), device=device)
    second.init_computation()
    x = _randn(generator, 3, 3, 6, 6, device=device)
    run_batch(first, second, x, _randn(generator, 3, 5, 6, 6, device=device))
    second.update_computation()
    second.compute_optimal_updates(dtype=torch.float64)
    for tensor in (second.delta_raw, second.eigenvalues_extension, second.extended_input_layer.weight,
                   first.extended_output_layer.weight, second.optimal_delta_layer.weight):
        assert tensor.dtype == torch.float64 and tensor.device.type == device.type
    second.apply_change(scaling_factor=0.1)
    assert second.weight.dtype == torch.float64 and first.weight.dtype == torch.float64


# ----- errors (TINY, TMLR 2024) ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_growth_statistics_without_previous_module_raise_value_error(scheme, device):
    layer = scheme(2, 3, 3, device=device)
    with pytest.raises(ValueError, match="no previous module"):
        layer.compute_m_prev_update()
    with pytest.raises(ValueError, match="no previous module"):
        layer.compute_cross_covariance_update()
    prop = "bordered_unfolded_extended_prev_input" if scheme is RestrictedConv2dGrowingModule else "masked_unfolded_prev_input"
    with pytest.raises(ValueError, match="no previous module"):
        getattr(layer, prop)
    with pytest.raises(ValueError, match="no previous module"):
        layer._compute_optimal_added_parameters()


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_growth_with_a_linear_previous_module_is_not_implemented(scheme, device):
    previous = LinearGrowingModule(4, 2, device=device)
    layer = scheme(2, 3, 3, previous_module=previous, device=device)
    with pytest.raises(NotImplementedError, match="LinearGrowingModule"):
        layer.compute_m_prev_update()
    with pytest.raises(NotImplementedError, match="LinearGrowingModule"):
        layer.compute_cross_covariance_update()
    with pytest.raises(NotImplementedError, match="LinearGrowingModule"):
        layer._compute_optimal_added_parameters()


@pytest.mark.parametrize("scheme", SCHEMES, ids=["restricted", "full"])
def test_growth_with_a_conv_merge_previous_module_is_not_implemented(scheme, device):
    from gromo.modules.conv2d_growing_module import Conv2dMergeGrowingModule

    merge = Conv2dMergeGrowingModule(2, (4, 4), 3, device=device)
    layer = scheme(2, 3, 3, previous_module=merge, device=device)
    with pytest.raises(NotImplementedError, match="Conv2dMergeGrowingModule"):
        layer.compute_m_prev_update()
    with pytest.raises(NotImplementedError, match="Conv2dMergeGrowingModule"):
        layer._compute_optimal_added_parameters()
    prop = "bordered_unfolded_extended_prev_input" if scheme is RestrictedConv2dGrowingModule else "masked_unfolded_prev_input"
    with pytest.raises(NotImplementedError, match="Conv2dMergeGrowingModule"):
        getattr(layer, prop)


def test_plain_conv_cannot_grow(device):
    first = Conv2dGrowingModule(2, 3, 3, device=device)
    second = Conv2dGrowingModule(3, 2, 3, previous_module=first, device=device)
    with pytest.raises(NotImplementedError):
        second.compute_m_prev_update()
    with pytest.raises(NotImplementedError):
        second.compute_cross_covariance_update()
    with pytest.raises(NotImplementedError):
        _ = second.tensor_n
    with pytest.raises(NotImplementedError):
        second._compute_optimal_added_parameters()


def test_full_with_fisher_is_not_implemented(generator, device):
    first, second = make_pair(FullConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 3), 1, 1, 1), device=device)
    second.init_computation()
    x = _randn(generator, 2, 3, 5, 5, device=device)
    run_batch(first, second, x, _randn(generator, 2, 5, 5, 5, device=device))
    second.update_computation()
    with pytest.raises(NotImplementedError, match="use_fisher"):
        second.compute_optimal_updates(use_fisher=True, compute_delta=False, use_projection=False)


def test_full_tensor_s_growth_cannot_be_assigned_and_mask_needs_a_size(device):
    layer = FullConv2dGrowingModule(2, 3, 3, device=device)
    with pytest.raises(AttributeError, match="tensor_s_growth"):
        layer.tensor_s_growth = None
    with pytest.raises(ValueError, match="input size"):
        _ = layer.mask_tensor_t


def test_tensor_n_needs_a_delta(generator, device):
    first, second = make_pair(RestrictedConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 3), 1, 1, 1), device=device)
    with pytest.raises(AssertionError, match="optimal delta"):
        _ = second.tensor_n
    first_f, full = make_pair(FullConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 3), 1, 1, 1), device=device)
    with pytest.raises(AssertionError, match="optimal delta"):
        _ = full.tensor_n


def test_missing_gradient_raises_assertion(generator, device):
    first, second = make_pair(RestrictedConv2dGrowingModule, ((3, 3), 1, 1, 1), ((3, 3), 1, 1, 1), device=device)
    second.init_computation()
    with torch.no_grad():
        second(first(_randn(generator, 2, 3, 5, 5, device=device)))
    with pytest.raises(AssertionError, match="grad"):
        second.compute_m_update()
    with pytest.raises(AssertionError, match="grad"):
        second.compute_covariance_loss_gradient_update()
    second.reset_computation()
    with pytest.raises(AssertionError, match="grad"):
        second.compute_covariance_loss_gradient_update()


def test_surgery_shape_errors(generator, device):
    layer = RestrictedConv2dGrowingModule(3, 4, (3, 3), device=device).double()
    with pytest.raises(AssertionError, match="bias"):
        layer.layer_of_tensor(_randn(generator, 4, 3, 3, 3, device=device), None)
    with pytest.raises(AssertionError, match="weight"):
        layer.layer_of_tensor(_randn(generator, 4, 3, 2, 3, device=device), _randn(generator, 4, device=device))
    with pytest.raises(AssertionError, match="input extension"):
        layer.layer_in_extension(_randn(generator, 5, 2, 3, 3, device=device))
    with pytest.raises(AssertionError, match="output extension"):
        layer.layer_out_extension(_randn(generator, 2, 4, 3, 3, device=device), _randn(generator, 2, device=device))
    with pytest.raises(AssertionError, match="bias"):
        layer.layer_out_extension(_randn(generator, 2, 3, 3, 3, device=device), None)
    with pytest.raises(AssertionError, match="2-D"):
        layer.linear_layer_of_tensor(_randn(generator, 4, device=device), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(AssertionError, match="1, 1"):
        layer.linear_layer_of_tensor(_randn(generator, 4, 2, 3, 3, device=device), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(AssertionError, match="bias"):
        layer.linear_layer_of_tensor(_randn(generator, 4, 2, device=device), None)
    with pytest.raises(AssertionError, match="nn.Conv2d"):
        layer.get_fan_in_from_layer(nn.Linear(2, 3))
    with pytest.raises(AssertionError, match="neurons"):
        layer.get_fan_in_from_layer()
    with pytest.raises(ValueError, match="verbose"):
        layer.__str__(verbose=-1)
    no_bias = Conv2dGrowingModule(3, 4, 3, use_bias=False, device=device)
    with pytest.warns(UserWarning, match="bias"):
        no_bias.layer_out_extension(torch.randn(1, 3, 3, 3, generator=generator).to(device), torch.zeros(1).to(device))
    assert no_bias.out_channels == 5 and no_bias.bias is None


def test_input_size_follows_the_previous_geometry(device):
    """GroMo: a recorded size is read back until update_input_size re-derives it from the previous
    conv (as the growth accessors do)."""
    first = RestrictedConv2dGrowingModule(2, 3, 3, stride=2, input_size=(9, 7), device=device)
    second = RestrictedConv2dGrowingModule(3, 2, 3, previous_module=first, input_size=(4, 3), device=device)
    assert second.input_size == (4, 3)
    first.padding = 1
    assert second.input_size == (4, 3)
    with pytest.warns(UserWarning, match="has changed from"):
        assert second.update_input_size(compute_from_previous=True) == (5, 4)
    assert second.input_size == (5, 4) and second.output_volume == 2 * 3 * 2
