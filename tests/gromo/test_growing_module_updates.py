"""Optimal delta, new neurons and first-order improvements (TINY, TMLR 2024)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from gromo.utils.utils import ReLUDerivativeOneAtZero

from .linear_pairs import linear_pair


def _loss(first, second, x, target, **extended):
    if extended:
        hidden, hidden_ext = first.extended_forward(x)
        y, _ = second.extended_forward(hidden, hidden_ext, **extended)
    else:
        y = second(first(x))
    return ((y - target) ** 2).sum() / 2


def _gather(first, second, x, target):
    second.init_computation()
    _loss(first, second, x, target).backward()
    second.update_computation()
    # GroMo's driver resets only after the updates are computed (reset forgets the statistics)
    second.store_input = second.store_pre_activity = first.store_input = False


def _data(generator, device, n=32, d=5, o=3, dtype=torch.float32):
    x = torch.randn(n, d, generator=generator, dtype=dtype).to(device)
    target = torch.randn(n, o, generator=generator, dtype=dtype).to(device)
    return x, target


# ----------------------------------------------------------------------------------------------
# optimal delta
# ----------------------------------------------------------------------------------------------


def test_optimal_delta_solves_the_normal_equations(generator, device):
    first, second = linear_pair(generator, device)
    x, target = _data(generator, device)
    _gather(first, second, x, target)
    delta_w, delta_b, decrease = second.compute_optimal_delta()
    s, m = second.tensor_s().double(), second.tensor_m().double()
    expected = torch.linalg.solve(s, m).T
    torch.testing.assert_close(torch.cat([delta_w, delta_b[:, None]], 1).double(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(decrease.double(), torch.trace(m @ expected), rtol=1e-4, atol=0)
    assert second.parameter_update_decrease is decrease
    # GroMo's aliasing: the delta layer's parameters are views of delta_raw
    assert second.optimal_delta_layer.weight.data_ptr() == second.delta_raw.data_ptr()
    assert isinstance(second.optimal_delta_layer, nn.Linear)


def test_optimal_delta_without_update_only_sets_delta_raw(generator, device):
    first, second = linear_pair(generator, device, second_bias=False)
    _gather(first, second, *_data(generator, device))
    delta_w, delta_b, _ = second.compute_optimal_delta(update=False)
    assert delta_b is None and second.optimal_delta_layer is None and second.parameter_update_decrease is None
    assert torch.equal(second.delta_raw, delta_w)


def test_natural_gradient_step_follows_the_first_order_decrease(generator, device):
    first, second = linear_pair(generator, device, dtype=torch.float64)
    x, target = _data(generator, device, dtype=torch.float64)
    _gather(first, second, x, target)
    second.compute_optimal_delta(dtype=torch.float64)
    decrease = float(second.parameter_update_decrease)
    n = x.shape[0]
    with torch.no_grad():
        loss0 = float(_loss(first, second, x, target))
        for gamma in (1e-3, 1e-2):
            second.optimal_delta_scaling = gamma
            loss = float(_loss(first, second, x, target, use_extended_input=False))
            # the loss is quadratic in the last layer: exact ratio 1 − γ/2 (tr(δSδᵀ) = d)
            assert abs((loss0 - loss) / (n * gamma * decrease) - (1 - gamma / 2)) < 1e-6
        second.apply_change(optimal_delta_scaling=1.0, apply_extension=False)
        loss1 = float(_loss(first, second, x, target))
    # the full step is the least-squares fit of the last layer
    with torch.no_grad():
        hidden = torch.cat([first(x), torch.ones(n, 1, dtype=torch.float64, device=x.device)], 1)
    fit = torch.linalg.lstsq(hidden, target).solution
    best = float(((hidden @ fit - target) ** 2).sum() / 2)
    assert abs(loss1 - best) <= 1e-9 * max(1.0, best)


def test_fisher_delta_uses_the_gradient_covariance(generator, device):
    first, second = linear_pair(generator, device)
    _gather(first, second, *_data(generator, device))
    delta_w, delta_b, decrease = second.compute_optimal_delta(use_fisher=True)
    s, m, e = (t().double() for t in (second.tensor_s, second.tensor_m, second.covariance_loss_gradient))
    expected = torch.linalg.solve(e, torch.linalg.solve(s, m).T)
    torch.testing.assert_close(torch.cat([delta_w, delta_b[:, None]], 1).double(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(decrease.double(), torch.trace(m @ expected), rtol=1e-4, atol=0)


# ----------------------------------------------------------------------------------------------
# new neurons
# ----------------------------------------------------------------------------------------------


def _neurons_reference(s, n_matrix, ignore=False):
    lam, v = torch.linalg.eigh(s.double())
    keep = lam > 1e-6
    r = (v[:, keep] * lam[keep] ** -0.5) @ v[:, keep].T
    u, sigma, vh = torch.linalg.svd(r @ n_matrix.double(), full_matrices=False)
    k = int((sigma >= min(1e-3, float(sigma.max()))).sum())
    scale = torch.ones(k, dtype=torch.float64) if ignore else sigma[:k].sqrt()
    return (r @ u[:, :k] * scale).T, (scale[:, None] * vh[:k]).T, sigma[:k]


def test_default_update_is_tiny_with_delta(generator, device):
    first, second = linear_pair(generator, device)
    _gather(first, second, *_data(generator, device))
    alpha_w, alpha_b = second.compute_optimal_updates()
    s_growth = second.tensor_s_growth()
    n_matrix = -second.tensor_m_prev() + second.cross_covariance() @ second.delta_raw.T
    torch.testing.assert_close(second.tensor_n, n_matrix)
    ref_alpha, ref_omega, ref_sigma = _neurons_reference(s_growth, n_matrix)
    k = ref_sigma.shape[0]
    torch.testing.assert_close(second.eigenvalues_extension.double(), ref_sigma, rtol=1e-4, atol=1e-6)
    alpha = torch.cat([alpha_w, alpha_b[:, None]], 1)
    products = torch.einsum("ti,is->its", second.extended_input_layer.weight.double(), alpha.double())
    torch.testing.assert_close(products, torch.einsum("ti,is->its", ref_omega, ref_alpha), rtol=1e-3, atol=1e-5)
    assert first.extended_output_layer.weight.shape == (k, 5)
    assert torch.equal(first.extended_output_layer.weight, alpha_w)
    assert torch.count_nonzero(second.extended_input_layer.bias) == 0
    assert second.optimal_delta_layer is not None


def test_tiny_preset(generator, device):
    first, second = linear_pair(generator, device)
    _gather(first, second, *_data(generator, device))
    second.compute_optimal_updates(compute_delta=False)
    assert second.optimal_delta_layer is None
    assert second.parameter_update_decrease == 0 and second.parameter_update_decrease.dtype == torch.float32
    assert second.delta_raw is not None  # computed for the projection only
    assert second._first_order_uses_squared_singular_values
    torch.testing.assert_close(second.first_order_improvement,
                               second.activation_gradient * (second.eigenvalues_extension**2).sum())


def test_gradmax_preset(generator, device):
    first, second = linear_pair(generator, device)
    _gather(first, second, *_data(generator, device))
    second.compute_optimal_updates(compute_delta=False, use_covariance=False, alpha_zero=True,
                                   use_projection=False, ignore_singular_values=True)
    assert second.delta_raw is None
    assert torch.count_nonzero(first.extended_output_layer.weight) == 0
    sigma = torch.linalg.svdvals(-second.tensor_m_prev().double())
    k = second.eigenvalues_extension.shape[0]
    torch.testing.assert_close(second.eigenvalues_extension.double(), sigma[:k], rtol=1e-4, atol=1e-6)
    omega = second.extended_input_layer.weight.double()
    torch.testing.assert_close(omega.T @ omega, torch.eye(k, dtype=torch.float64), rtol=0, atol=1e-5)
    assert not second._first_order_uses_squared_singular_values
    torch.testing.assert_close(second.new_neurons_fo_improvement, second.eigenvalues_extension.sum())


def test_update_options(generator, device):
    first, second = linear_pair(generator, device)
    _gather(first, second, *_data(generator, device))
    second.compute_optimal_updates(maximum_added_neurons=1, update_previous=False)
    assert second.eigenvalues_extension.shape == (1,) and second.extended_input_layer.weight.shape == (3, 1)
    assert first.extended_output_layer is None
    second.compute_optimal_updates(use_fisher=True, omega_zero=True)
    assert torch.count_nonzero(second.extended_input_layer.weight) == 0


def test_zero_bottleneck_when_the_network_can_represent_the_target(generator, device):
    # one-hot inputs: the hidden layer represents every sample independently, so the best update of
    # the last layer fits the target exactly and no new neuron can help (N = 0, eigenvalues = 0).
    n = 6
    first, second = linear_pair(generator, device, d=n, h=n, o=3, second_bias=False, dtype=torch.float64)
    x = torch.eye(n, dtype=torch.float64, device=device)
    target = torch.randn(n, 3, generator=generator, dtype=torch.float64).to(device)
    _gather(first, second, x, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second.compute_optimal_updates(dtype=torch.float64, use_projection=False)
    control = second.eigenvalues_extension.max()
    second.compute_optimal_updates(dtype=torch.float64)
    m_prev = second.tensor_m_prev()
    assert second.tensor_n.abs().max() < 1e-10 * m_prev.abs().max()
    assert second.eigenvalues_extension.max() < 1e-9 * control
    assert second.new_neurons_fo_improvement < 1e-15


def test_new_neurons_first_order_improvement(generator, device):
    first, second = linear_pair(generator, device, dtype=torch.float64)
    x, target = _data(generator, device, dtype=torch.float64)
    _gather(first, second, x, target)
    second.compute_optimal_updates(dtype=torch.float64, compute_delta=False, use_projection=False)
    improvement = float(second.first_order_improvement)
    assert improvement > 0
    with torch.no_grad():
        loss0 = float(_loss(first, second, x, target))
        gamma = 1e-3
        second.set_scaling_factor(gamma)
        loss = float(_loss(first, second, x, target, use_optimal_delta=True))
    # Z tanh(γ V x)·γ ≈ γ² σ'(0) Z V x: the loss drops by n·γ²·Σλ² to first order in γ²
    assert abs((loss0 - loss) / (x.shape[0] * gamma**2 * improvement) - 1) < 1e-3


def test_compute_optimal_updates_neighbours(generator, device):
    first, second = linear_pair(generator, device)
    first.init_computation()
    x, target = _data(generator, device)
    _loss(first, second, x, target).backward()
    first.update_computation()
    assert first.compute_optimal_updates() == (None, None)
    assert first.optimal_delta_layer is not None

    merge = LinearMergeGrowingModule(in_features=4, device=device)
    after = LinearGrowingModule(4, 2, previous_module=merge, device=device)
    with pytest.raises(NotImplementedError):
        after.compute_optimal_updates()
    assert after.optimal_delta_layer is None and after.delta_raw is None
    with pytest.raises(AssertionError, match="delta"):
        after.first_order_improvement


def test_merge_joint_delta_is_split_per_predecessor(generator, device):
    merge = LinearMergeGrowingModule(in_features=3, device=device)
    a = LinearGrowingModule(2, 3, next_module=merge, device=device, name="a")
    b = LinearGrowingModule(4, 3, use_bias=False, next_module=merge, device=device, name="b")
    merge.set_previous_modules([a, b])
    merge.init_computation()
    xa, xb = torch.randn(20, 2, generator=generator).to(device), torch.randn(20, 4, generator=generator).to(device)
    target = torch.randn(20, 3, generator=generator).to(device)
    y = merge(a(xa) + b(xb))
    (((y - target) ** 2).sum() / 2).backward()
    merge.update_computation()
    deltas = merge.compute_optimal_delta(return_deltas=True)
    joint = torch.linalg.solve(merge.previous_tensor_s().double(), merge.previous_tensor_m().double()).T
    torch.testing.assert_close(deltas[0][0].double(), joint[:, :2], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(deltas[0][1].double(), joint[:, 2], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(deltas[1][0].double(), joint[:, 3:], rtol=1e-4, atol=1e-5)
    assert deltas[1][1] is None and b.optimal_delta_layer.bias is None
    assert merge.parameter_update_decrease > 0
    # the projected goal removes the joint least-squares fit from the gradient
    v = merge.projected_v_goal()
    full = merge.construct_full_activity()
    torch.testing.assert_close((full.T @ v).double() / 20, torch.zeros(7, 3, dtype=torch.float64), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "function,value",
    [(nn.ReLU(), 1.0), (ReLUDerivativeOneAtZero(), 1.0), (nn.GELU(), 0.5), (nn.SELU(), 1.0507),
     (nn.SiLU(), 0.5), (nn.Tanh(), 1.0), (nn.Sigmoid(), 0.25), (nn.Identity(), 1.0),
     (nn.Sequential(nn.BatchNorm1d(4), nn.Sigmoid()), 0.25)],
)
def test_activation_gradient_table(device, function, value):
    first = LinearGrowingModule(3, 4, post_layer_function=function, device=device)
    second = LinearGrowingModule(4, 2, previous_module=first, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(second.activation_gradient) == pytest.approx(value, abs=1e-6)


def test_activation_gradient_unknown_is_numerical(device):
    first = LinearGrowingModule(3, 4, post_layer_function=nn.Softplus(), device=device)
    second = LinearGrowingModule(4, 2, previous_module=first, device=device)
    with pytest.warns(UserWarning, match="numerically"):
        value = float(second.activation_gradient)
    assert value == pytest.approx(torch.sigmoid(torch.tensor(1e-5)).item(), abs=1e-7)
    # cached: no second warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second.activation_gradient
