"""Statistics of growing modules after real forward/backward passes (TINY, TMLR 2024).

Every statistic is compared with gromo_kernels' float64 brute-force references on the stored
tensors; the loss is sum-reduced, the sample count is the batch size.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules import growing_module as growing_module_mod
from gromo.modules.growing_module import GrowingModule
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from gromo_kernels import testing as ref

from .linear_pairs import linear_pair


def _run_batch(first, second, x, target):
    y = second(first(x))
    loss = ((y - target) ** 2).sum() / 2
    loss.backward()
    return loss


def _assert_mean(stat_value, reference_sum, n, rows, scale):
    ref.assert_close_to_reference(stat_value, reference_sum / n, reduction_length=rows, scale=scale / n)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("token_dims", [(), (3,)])
def test_statistics_equal_the_references(generator, device, use_bias, token_dims):
    first, second = linear_pair(generator, device, first_bias=use_bias, second_bias=use_bias)
    n = 11
    x = torch.randn(n, *token_dims, 5, generator=generator).to(device)
    target = torch.randn(n, *token_dims, 3, generator=generator).to(device)
    second.init_computation()
    _run_batch(first, second, x, target)
    second.update_computation()

    x2 = second.input
    grad = second.pre_activity.grad
    x1 = first.input
    rows = x.numel() // 5
    scale = float(max(x1.abs().max(), x2.abs().max(), 1.0)) * float(max(grad.abs().max(), 1.0))
    _assert_mean(second.tensor_s(), ref.linear_input_cov_reference(x2, bias=use_bias), n, rows, scale)
    _assert_mean(second.tensor_m(), ref.linear_input_grad_reference(x2, grad, bias=use_bias), n, rows, scale)
    _assert_mean(second.covariance_loss_gradient(), ref.grad_cov_reference(grad), n, rows, scale)
    _assert_mean(second.tensor_m_prev(), ref.linear_input_grad_reference(x1, grad, bias=use_bias), n, rows, scale)
    _assert_mean(second.cross_covariance(),
                 ref.linear_cross_cov_reference(x1, x2, bias_prev=use_bias, bias=use_bias), n, rows, scale)
    _assert_mean(second.tensor_s_growth(), ref.linear_input_cov_reference(x1, bias=use_bias), n, rows, scale)
    assert second.tensor_s.samples == n and second.tensor_m_prev.samples == n


def test_gradient_is_the_per_sample_gradient_of_a_sum_loss(generator, device):
    first, second = linear_pair(generator, device)
    x = torch.randn(6, 5, generator=generator).to(device)
    target = torch.randn(6, 3, generator=generator).to(device)
    with torch.no_grad():
        expected_grad = second(first(x)) - target  # d(½‖y − t‖²)/dy per sample
    second.init_computation()
    _run_batch(first, second, x, target)
    torch.testing.assert_close(second.pre_activity.grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_batch_duplication_and_accumulation_invariance(generator, device):
    x = torch.randn(8, 5, generator=generator).to(device)
    target = torch.randn(8, 3, generator=generator).to(device)
    values = []
    for batches in ([(x, target)], [(torch.cat([x, x]), torch.cat([target, target]))],
                    [(x[:3], target[:3]), (x[3:], target[3:])]):
        first, second = linear_pair(torch.Generator().manual_seed(7), device)
        second.init_computation()
        for xb, tb in batches:
            _run_batch(first, second, xb, tb)
            second.update_computation()
        values.append([s().double() for s in (second.tensor_s, second.tensor_m, second.tensor_m_prev,
                                              second.cross_covariance, second.covariance_loss_gradient,
                                              second.tensor_s_growth)])
    for other in values[1:]:
        for a, b in zip(values[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_one_kernel_call_per_layer_and_batch(generator, device, monkeypatch):
    calls = []
    original = gk.layer_statistics

    def counting(kind, x, grad, **kwargs):
        calls.append(tuple(kwargs["want"]))
        return original(kind, x, grad, **kwargs)

    monkeypatch.setattr(growing_module_mod.gk, "layer_statistics", counting)
    first, second = linear_pair(generator, device)
    first.init_computation()
    second.init_computation()
    for _ in range(2):
        calls.clear()
        x = torch.randn(4, 5, generator=generator).to(device)
        _run_batch(first, second, x, torch.randn(4, 3, generator=generator).to(device))
        second.update_computation()
        first.update_computation()
        assert sorted(map(sorted, calls)) == [["cross_cov", "e", "m", "m_prev", "s"], ["e", "m", "s"]]


def test_statistics_hold_no_autograd_graph(generator, device):
    first, second = linear_pair(generator, device)
    second.init_computation()
    x = torch.randn(5, 5, generator=generator).to(device)
    loss = _run_batch(first, second, x, torch.randn(5, 3, generator=generator).to(device))
    second.update_computation()
    for entry in second._statistics_cache.values():
        assert entry.value.grad_fn is None and not entry.value.requires_grad
    for stat in (second.tensor_s, second.tensor_m, second.tensor_m_prev, second.cross_covariance):
        assert stat._tensor.grad_fn is None
    pre_activity = weakref.ref(second._pre_activity)
    del loss
    second.reset_computation()
    first.reset_computation()
    gc.collect()
    assert pre_activity() is None
    assert second._input is None and second._pre_activity is None and second._statistics_cache == {}


def test_cache_follows_the_stored_tensors(generator, device):
    # A container may overwrite the stored input without a forward (GroMo's GrowingBlock does).
    first, second = linear_pair(generator, device)
    second.init_computation()
    _run_batch(first, second, torch.randn(4, 5, generator=generator).to(device),
               torch.randn(4, 3, generator=generator).to(device))
    second.update_computation()
    first._input = torch.randn(4, 5, generator=generator).to(device)
    first._tensor_s.updated = False
    value, samples = first.compute_s_update()
    torch.testing.assert_close(value.double(), ref.linear_input_cov_reference(first._input), rtol=1e-5, atol=1e-5)
    assert samples == 4


def test_desired_activation_replaces_the_gradient(generator, device):
    first, second = linear_pair(generator, device)
    second.init_computation()
    _run_batch(first, second, torch.randn(4, 5, generator=generator).to(device),
               torch.randn(4, 3, generator=generator).to(device))
    desired = torch.randn(4, 3, generator=generator).to(device)
    m, n = second.compute_m_update(desired_activation=desired)
    torch.testing.assert_close(m.double(), ref.linear_input_grad_reference(second.input, desired), rtol=1e-5, atol=1e-5)
    m_prev, _ = second.compute_m_prev_update(desired_activation=desired)
    torch.testing.assert_close(m_prev.double(), ref.linear_input_grad_reference(first.input, desired),
                               rtol=1e-5, atol=1e-5)
    assert n == 4


def test_missing_tensors_raise_gromo_errors(generator, device):
    first, second = linear_pair(generator, device)
    with pytest.raises(ValueError, match="input"):
        second.compute_s_update()
    with pytest.raises(ValueError, match="pre-activity"):
        second.pre_activity
    second.init_computation()
    second(first(torch.randn(3, 5, generator=generator).to(device)))
    with pytest.raises(AssertionError, match="gradient"):
        second.compute_m_update()
    with pytest.raises(AssertionError, match="gradient"):
        second.compute_covariance_loss_gradient_update()
    with pytest.raises(ValueError, match="previous module"):
        first.compute_m_prev_update()
    with pytest.raises(ValueError, match="previous module"):
        first.compute_cross_covariance_update()
    with pytest.raises(ValueError, match="previous module"):
        first.tensor_s_growth
    with pytest.raises(AttributeError, match="tensor_s_growth"):
        second.tensor_s_growth = None
    with pytest.raises(ValueError, match="not been computed"):
        second.tensor_m()


def test_unsupported_previous_modules(generator, device):
    lonely = LinearGrowingModule(3, 2, device=device)
    lonely.previous_module = nn.Linear(2, 3)
    with pytest.raises(NotImplementedError):
        lonely.init_computation()
    with pytest.raises(NotImplementedError):
        lonely.tensor_s_growth
    with pytest.raises(NotImplementedError):
        lonely.compute_m_prev_update()
    with pytest.raises(NotImplementedError):
        lonely.compute_cross_covariance_update()
    with pytest.raises(NotImplementedError):
        lonely.activation_gradient


def test_store_flags_route_through_merges(generator, device):
    merge = LinearMergeGrowingModule(in_features=3, device=device, name="merge")
    before = LinearGrowingModule(2, 3, next_module=merge, device=device)
    after = LinearGrowingModule(3, 2, previous_module=merge, device=device)
    merge.set_previous_modules([before])
    merge.set_next_modules([after])
    after.store_input = True
    after.store_input = True  # no double counting
    before.store_pre_activity = True
    assert merge.store_activity == 1 and merge.store_input == 1
    assert not after._internal_store_input and not before._internal_store_pre_activity
    x = torch.randn(4, 2, generator=generator).to(device)
    y = after(merge(before(x)))
    assert after.input is merge.activity and before.pre_activity is merge.input
    assert after.tensor_s is merge.tensor_s
    with pytest.raises(NotImplementedError):
        after.tensor_s_growth
    after.store_input = False
    after.store_input = False
    assert merge.store_activity == 0
    assert y.shape == (4, 2)


def test_merge_statistics_equal_the_references(generator, device):
    merge = LinearMergeGrowingModule(post_merge_function=nn.ReLU(), in_features=3, device=device)
    a = LinearGrowingModule(2, 3, next_module=merge, device=device, name="a")
    b = LinearGrowingModule(4, 3, use_bias=False, next_module=merge, device=device, name="b")
    after = LinearGrowingModule(3, 2, previous_module=merge, device=device, name="after")
    merge.set_previous_modules([a, b])
    merge.set_next_modules([after])
    assert merge.total_in_features == 3 + 4
    merge.init_computation()
    after.init_computation()
    xa = torch.randn(6, 2, generator=generator).to(device)
    xb = torch.randn(6, 4, generator=generator).to(device)
    y = after(merge(a(xa) + b(xb)))
    (y**2).sum().backward()
    merge.update_computation()
    after.update_computation()
    full = torch.cat([xa, torch.ones(6, 1, device=device), xb], dim=1)
    torch.testing.assert_close(merge.construct_full_activity(), full)
    dA = merge.input.grad
    torch.testing.assert_close(merge.previous_tensor_s().double(), ref.linear_input_cov_reference(full, bias=False) / 6,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merge.previous_tensor_m().double(),
                               ref.linear_input_grad_reference(full, dA, bias=False) / 6, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merge.tensor_s().double(), ref.linear_input_cov_reference(merge.activity) / 6,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after.tensor_s().double(), merge.tensor_s().double())
    # M of the successor uses the merge activity as input
    torch.testing.assert_close(after.tensor_m().double(),
                               ref.linear_input_grad_reference(merge.activity, after.pre_activity.grad) / 6,
                               rtol=1e-5, atol=1e-6)


def test_base_class_is_abstract(device):
    module = GrowingModule(nn.Linear(2, 2), tensor_s_shape=(3, 3), allow_growing=False, device=device)
    for name in ("in_neurons", "in_features", "out_features", "input_volume", "output_volume", "tensor_n"):
        with pytest.raises(NotImplementedError):
            getattr(module, name)
    for call in (module.compute_s_update, module.compute_m_update, module.compute_m_prev_update,
                 module.compute_cross_covariance_update, module.compute_n_update,
                 module.compute_covariance_loss_gradient_update, module.add_parameters,
                 module.update_input_size, module._compute_optimal_added_parameters):
        with pytest.raises(NotImplementedError):
            call()
    for call in (module.layer_in_extension, module.create_layer_in_extension, module.create_layer_out_extension):
        with pytest.raises(NotImplementedError):
            call(1)
    with pytest.raises(NotImplementedError):
        module.layer_of_tensor(torch.zeros(2, 2))
    with pytest.raises(NotImplementedError):
        module.get_fan_in_from_layer(nn.Linear(2, 2))


def test_constructor_checks(device):
    with pytest.warns(UserWarning, match="tensor S shape"):
        GrowingModule(nn.Linear(2, 2), allow_growing=False, device=device)
    with pytest.raises(AssertionError, match="square"):
        GrowingModule(nn.Linear(2, 2), tensor_s_shape=(3, 2), allow_growing=False, device=device)
    with pytest.raises(AssertionError, match="allow_growing"):
        LinearGrowingModule(2, 2, allow_growing=True, device=device)
    with pytest.warns(DeprecationWarning, match="extended_post_layer_function"):
        LinearGrowingModule(2, 2, extended_post_layer_function=nn.ReLU(), device=device)


def test_unsupported_growth_statistics_are_not_fused(generator, device):
    # a linear layer after a growing layer of another type: S, M, E work, M_{-2} is GroMo's
    # NotImplementedError when asked for, and never breaks the fused S/M/E call.
    class OtherGrowing(LinearGrowingModule):
        pass

    before = OtherGrowing(4, 3, device=device)
    after = LinearGrowingModule(3, 2, previous_module=before, device=device)

    def not_linear(previous):
        return False

    after._statistics_accept_previous = not_linear
    after.init_computation()
    y = after(before(torch.randn(5, 4, generator=generator).to(device)))
    y.sum().backward()
    after.tensor_s.update()
    after.tensor_m.update()
    assert set(after._statistics_cache) == {"s", "m", "e"}
    assert after.tensor_s.samples == 5 and after.tensor_m.samples == 5
