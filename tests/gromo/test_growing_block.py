"""GrowingBlock / LinearGrowingBlock / Conv2dGrowingBlock (TINY, TMLR 2024):
hidden width 0, statistics, extended forward, pairing, variance transfer with batch norms, delegations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.containers.growing_block import (
    Conv2dGrowingBlock,
    GrowingBlock,
    LinearGrowingBlock,
    RestrictedConv2dGrowingBlock,
)
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule, RestrictedConv2dGrowingModule
from gromo.modules.growing_normalisation import GrowingBatchNorm1d, GrowingBatchNorm2d
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo_kernels import Conv2dGeometry
from gromo_kernels import testing as ref

KINDS = ["linear", "restricted", "full"]


def _randn(generator, *shape, device):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)


def make_block(kind, hidden, device, **kwargs):
    if kind == "linear":
        block = LinearGrowingBlock(4, 4, hidden_features=hidden, device=device, **kwargs)
    else:
        conv_type = RestrictedConv2dGrowingModule if kind == "restricted" else FullConv2dGrowingModule
        kwargs.setdefault("kwargs_layer", {"padding": 1})
        block = Conv2dGrowingBlock(4, 4, (3, 3), hidden_channels=hidden, growing_conv_type=conv_type,
                                   device=device, **kwargs)
    return block.double()


def make_input(kind, generator, device, n=5):
    if kind == "linear":
        return _randn(generator, n, 4, device=device)
    return _randn(generator, n, 4, 5, 4, device=device)


def accumulate(block, x, target):
    block.init_computation()
    block.zero_grad()
    loss = ((block(x) - target) ** 2).sum() / 2
    loss.backward()
    block.update_computation()
    return float(loss.detach())


@pytest.mark.parametrize("kind", KINDS)
def test_block_at_hidden_width_zero_collects_statistics_and_grows(kind, generator, device):
    block = make_block(kind, 0, device, activation=nn.ReLU())
    x = make_input(kind, generator, device)
    target = _randn(generator, *x.shape, device=device)
    with torch.no_grad():
        assert torch.equal(block(x), x)
    loss = accumulate(block, x, target)
    second = block.second_layer
    assert block.first_layer.store_input and second.store_pre_activity and not second.store_input
    x_prev = torch.relu(x)
    grad = x - target  # d loss / d branch output
    if kind == "linear":
        m_prev = ref.linear_input_grad_reference(x_prev, grad)
        s_growth = ref.linear_input_cov_reference(x_prev)
    else:
        geometry = Conv2dGeometry(3, 1, 1, 1)
        empty = x.new_zeros(x.shape[0], 0, *x.shape[2:])
        if kind == "restricted":
            m_prev = ref.conv2d_restricted_growth_stats_reference(x_prev, empty, grad, prev=geometry, cur=geometry).m_prev
            s_growth = ref.conv2d_input_cov_reference(x_prev, geometry)
        else:
            full = ref.conv2d_full_growth_stats_reference(x_prev, empty, grad, prev=geometry, cur=geometry)
            m_prev, s_growth = full.m_prev, full.s_growth
    n = x.shape[0]
    ref.assert_close_to_reference(second.tensor_m_prev(), m_prev / n, dtype=torch.float64, reduction_length=200, scale=10)
    ref.assert_close_to_reference(second.tensor_s_growth(), s_growth / n, dtype=torch.float64, reduction_length=200, scale=10)
    ref.assert_close_to_reference(second.covariance_loss_gradient(),
                                  ref.grad_cov_reference(grad, channel_dim=1) / n, dtype=torch.float64,
                                  reduction_length=200, scale=10)

    block.compute_optimal_updates(dtype=torch.float64, maximum_added_neurons=3)
    block.reset_computation()
    assert float(block.parameter_update_decrease) == 0.0 and block.optimal_delta_layer is None
    assert float(block.first_order_improvement) > 0
    assert block.eigenvalues_extension.shape[0] <= 3
    k = block.eigenvalues_extension.shape[0]
    block.set_scaling_factor(0.2)
    with torch.no_grad():
        extended = block.extended_forward(x)
        assert float(((extended - target) ** 2).sum() / 2) < loss
    block.apply_change()
    block.delete_update()
    assert block.hidden_neurons == k and block.first_layer.out_features == k
    with torch.no_grad():
        torch.testing.assert_close(block(x), extended, rtol=1e-12, atol=1e-12)
    # A second growth step, now at hidden width > 0 (delta + projected new neurons).
    accumulate(block, x, target)
    block.compute_optimal_updates(dtype=torch.float64, maximum_added_neurons=2)
    assert block.optimal_delta_layer is not None and block.second_layer.cross_covariance.samples == n
    block.set_scaling_factor(0.1)
    with torch.no_grad():
        extended = block.extended_forward(x)
    block.apply_change()
    block.delete_update()
    with torch.no_grad():
        torch.testing.assert_close(block(x), extended, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hidden", [0, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_pairing_preserves_the_block_function(kind, hidden, generator, device):
    block = make_block(kind, hidden, device, activation=nn.SELU())
    x = make_input(kind, generator, device)
    with torch.no_grad():
        before = block(x)
    block.create_layer_extensions(4, neuron_pairing="vv_z_negz", noise_ratio=0.0)
    for gamma in (0.3, 2.0):
        block.set_scaling_factor(gamma)
        with torch.no_grad():
            torch.testing.assert_close(block.extended_forward(x), before, rtol=1e-12, atol=1e-12)
    block.apply_change(extension_size=4, apply_delta=False)
    block.delete_update()
    assert block.hidden_neurons == hidden + 4
    with torch.no_grad():
        torch.testing.assert_close(block(x), before, rtol=1e-12, atol=1e-12)


def test_default_vt_rescaling_with_pairing_scales_the_branch(generator, device):
    block = make_block("restricted", 3, device, activation=nn.ReLU())
    x = make_input("restricted", generator, device)
    with torch.no_grad():
        branch = block(x) - x
    block.create_layer_extensions(2, neuron_pairing="vv_z_negz", rescaling="default_vt", noise_ratio=0.0)
    beta = (3 / 5) ** 0.5  # √(f_old / f_new) with f = channels·kh·kw
    block.set_scaling_factor(1.0)
    with torch.no_grad():
        torch.testing.assert_close(block.extended_forward(x), x + beta * branch, rtol=1e-12, atol=1e-12)


def test_batch_norm_running_statistics_follow_vt_rescaling(generator, device):
    mid_norm = GrowingBatchNorm2d(3, eps=1e-14)
    out_norm = GrowingBatchNorm2d(4, eps=1e-14)
    block = make_block("full", 3, device, pre_activation=nn.Identity(),
                       mid_activation=nn.Sequential(mid_norm, nn.ReLU()), pre_addition_function=out_norm)
    for norm in (mid_norm, out_norm):
        c = norm.num_features
        with torch.no_grad():
            norm.running_mean.copy_(torch.randn(c, generator=generator, dtype=torch.float64))
            norm.running_var.copy_(torch.rand(c, generator=generator, dtype=torch.float64) + 0.5)
            norm.weight.copy_(torch.rand(c, generator=generator, dtype=torch.float64) + 0.5)
    block.eval()
    x = make_input("full", generator, device)
    with torch.no_grad():
        before = block(x)
    first, second = block.first_layer, block.second_layer
    old = {name: t.detach().clone() for name, t in (
        ("w1", first.weight), ("b1", first.bias), ("w2", second.weight), ("m1", mid_norm.running_mean),
        ("v1", mid_norm.running_var), ("m2", out_norm.running_mean), ("v2", out_norm.running_var))}
    block.apply_rescaling("vt_constraint_old_shape")
    alpha = (1.0 / (4 * 9 * float(old["w1"].var()))) ** 0.5
    beta = (1.0 / (3 * 9 * float(old["w2"].var()))) ** 0.5
    torch.testing.assert_close(first.weight, alpha * old["w1"], rtol=1e-14, atol=0)
    torch.testing.assert_close(first.bias, alpha * old["b1"], rtol=1e-14, atol=0)
    torch.testing.assert_close(second.weight, beta * old["w2"], rtol=1e-14, atol=0)
    torch.testing.assert_close(mid_norm.running_mean, alpha * old["m1"], rtol=1e-14, atol=0)
    torch.testing.assert_close(mid_norm.running_var, alpha**2 * old["v1"], rtol=1e-14, atol=0)
    torch.testing.assert_close(out_norm.running_mean, beta * old["m2"], rtol=1e-14, atol=0)
    torch.testing.assert_close(out_norm.running_var, beta**2 * old["v2"], rtol=1e-14, atol=0)
    # In eval mode both batch norms absorb the rescaling: the block computes the same function.
    with torch.no_grad():
        torch.testing.assert_close(block(x), before, rtol=1e-9, atol=1e-9)


def test_growth_through_a_growing_batch_norm(generator, device):
    norm = GrowingBatchNorm1d(0)
    block = LinearGrowingBlock(4, 4, hidden_features=0, mid_activation=nn.Sequential(norm, nn.ReLU()),
                               device=device).double()
    block.eval()
    x = make_input("linear", generator, device)
    target = _randn(generator, *x.shape, device=device)
    accumulate(block, x, target)
    block.compute_optimal_updates(dtype=torch.float64)
    k = block.eigenvalues_extension.shape[0]
    block.set_scaling_factor(0.5)
    with torch.no_grad():
        extended = block.extended_forward(x)
    block.apply_change()
    block.delete_update()
    assert norm.num_features == k and block.hidden_neurons == k
    with torch.no_grad():
        # New channels are normalised with mean 0, variance 1: x/√(1 + eps) instead of x.
        torch.testing.assert_close(block(x), extended, rtol=1e-4, atol=1e-4)


def test_block_delegations_and_properties(generator, device):
    block = LinearGrowingBlock(3, 3, hidden_features=2, target_hidden_features=6, activation=nn.Tanh(),
                               device=device).double()
    second = block.second_layer
    assert isinstance(block, GrowingBlock) and second.previous_module is block.first_layer
    with pytest.warns(DeprecationWarning, match="hidden_neurons"):
        assert block.hidden_features == 2
    assert block.missing_neurons() == 4 and block.number_of_neurons_to_add(number_of_growth_steps=2) == 2
    layer = nn.Linear(2, 3)
    block.optimal_delta_layer = layer
    assert second.optimal_delta_layer is layer and block.optimal_delta_layer is layer
    assert "optimal_delta_layer" not in block._modules
    block.parameter_update_decrease = 0.25
    assert isinstance(block.parameter_update_decrease, torch.Tensor)
    assert float(block.first_order_improvement) == 0.25
    with pytest.raises(TypeError, match="parameter_update_decrease"):
        block.parameter_update_decrease = "big"
    block.scaling_factor = 0.5
    assert float(block.scaling_factor.detach()) == 0.5 and float(second.optimal_delta_scaling.detach()) == 0.25
    block.set_scaling_factor(0.3)
    assert float(block.first_layer.output_extension_scaling.detach()) == pytest.approx(0.3)
    with pytest.raises(AssertionError, match="eigenvalues"):
        block.sub_select_optimal_added_parameters(keep_neurons=1)
    block.delete_update()
    assert block.optimal_delta_layer is None

    x = _randn(generator, 6, 3, device=device)
    accumulate(block, x, _randn(generator, 6, 3, device=device))
    block.compute_optimal_updates(dtype=torch.float64, compute_delta=False, statistical_threshold=0.0)
    assert block.eigenvalues_extension.shape[0] == 3
    block.sub_select_optimal_added_parameters(keep_neurons=2)
    assert second.extended_input_layer.in_features == 2 and block.first_layer.extended_output_layer.out_features == 2
    block.normalize_optimal_updates(normalization_type="equalize_second_layer")
    block.apply_change(scaling_factor=0.1)
    block.delete_update()
    assert block.hidden_neurons == 4
    block.complete_growth(extension_kwargs={"output_extension_init": "zeros", "input_extension_init": "zeros"})
    assert block.hidden_neurons == 6 and float(second.weight[:, 4:].detach().abs().max()) == 0.0
    assert block.weights_statistics()[1]["weight"]["max"] >= block.weights_statistics()[1]["weight"]["min"]
    assert block.number_of_parameters() == 3 * 6 + 6 + 6 * 3 + 3
    block.reset_computation()
    assert not block.first_layer.store_input and not second.store_pre_activity
    assert second.tensor_m_prev.samples == 0 and second.tensor_s.samples == 0


def test_block_neuron_pairing_and_rescaling_delegations(generator, device):
    block = make_block("linear", 2, device, activation=nn.Tanh())
    block.create_layer_extensions(2)
    block.apply_neuron_pairing("vv_z_negz", noise_ratio=0.0)
    z = block.second_layer.extended_input_layer.weight
    torch.testing.assert_close(z[:, 1], -z[:, 0])
    weight = block.second_layer.weight.detach().clone()
    block.apply_rescaling("default_vt", extension_size=2)
    torch.testing.assert_close(block.second_layer.weight, weight * 0.5**0.5)
    with pytest.raises(ValueError, match="target_in_neurons"):
        block.complete_growth()


def test_block_constructors_and_errors(device):
    with pytest.raises(AssertionError, match="downsample"):
        LinearGrowingBlock(3, 4, device=device)
    block = LinearGrowingBlock(3, 4, hidden_features=1, downsample=nn.Linear(3, 4), device=device)
    assert block(torch.randn(2, 3)).shape == (2, 4)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2dGrowingBlock(2, 2, device=device)
    with pytest.warns(UserWarning, match="kernel_size"):
        conv_block = Conv2dGrowingBlock(2, 2, 3, kwargs_first_layer={"kernel_size": 5, "padding": 2},
                                        kwargs_second_layer={"padding": 1}, hidden_channels=1, device=device)
    assert conv_block.first_layer.kernel_size == (5, 5) and conv_block.second_layer.kernel_size == (3, 3)
    with pytest.warns(DeprecationWarning, match="Conv2dGrowingBlock"):
        legacy = RestrictedConv2dGrowingBlock(2, 2, 3, device=device)
    assert isinstance(legacy.second_layer, RestrictedConv2dGrowingModule) and legacy.hidden_neurons == 0
    pre, mid, first_kwargs, second_kwargs = GrowingBlock.set_default_values(
        activation=nn.ReLU(), mid_activation=nn.Tanh(), kwargs_layer={"use_bias": False})
    assert isinstance(pre, nn.ReLU) and isinstance(mid, nn.Tanh)
    assert first_kwargs == second_kwargs == {"use_bias": False} and first_kwargs is not second_kwargs
    assert str(legacy) == (  # GroMo's form: name (first layer -> second layer)
        "conv_block (Conv2dGrowingModule(conv_block(first_layer))(in_channels=2, out_channels=0, use_bias=True) -> "
        "Conv2dGrowingModule(conv_block(second_layer))(in_channels=0, out_channels=2, use_bias=True))"
    )


def test_block_compute_optimal_delta_is_a_no_op_and_extended_forward_without_update(generator, device):
    block = make_block("restricted", 2, device)
    x = make_input("restricted", generator, device)
    block.compute_optimal_delta()
    assert block.optimal_delta_layer is None
    with torch.no_grad():
        torch.testing.assert_close(block.extended_forward(x), block(x))
    empty = make_block("full", 0, device)
    with torch.no_grad():
        torch.testing.assert_close(empty.extended_forward(x), x)


def test_first_layer_linear_block_uses_linear_modules(device):
    block = LinearGrowingBlock(3, 3, hidden_features=2, kwargs_layer={"use_bias": False}, device=device)
    assert isinstance(block.first_layer, LinearGrowingModule) and block.first_layer.bias is None
    assert block.second_layer._name == "block(second_layer)"
    assert block.second_layer.name == "LinearGrowingModule(block(second_layer))"  # GroMo's composite
