"""LinearGrowingModule / LinearMergeGrowingModule specifics: sizes, surgery, safe forward, legacy
updates, printing, merge graph (TINY, TMLR 2024)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gromo.modules.growing_module import MergeGrowingModule
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from gromo_kernels import testing as ref


def _filled(module, generator):
    with torch.no_grad():
        for p in module.layer.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return module


def test_sizes_and_parameters(device):
    module = LinearGrowingModule(5, 3, device=device)
    assert (module.in_features, module.in_neurons, module.out_features) == (5, 5, 3)
    assert (module.input_volume, module.output_volume) == (5, 3)
    assert module.number_of_parameters() == 5 * 3 + 3
    assert LinearGrowingModule(5, 3, use_bias=False, device=device).number_of_parameters() == 15
    assert list(module.parameters()) == [module.layer.weight, module.layer.bias]
    assert module._layer_type is nn.Linear
    assert module.tensor_s._shape == (6, 6) and module.tensor_m._shape == (6, 3)


def test_neighbours_are_not_submodules(device):
    first = LinearGrowingModule(2, 3, device=device)
    second = LinearGrowingModule(3, 2, previous_module=first, device=device)
    first.next_module = second
    keys = set(nn.ModuleList([first, second]).state_dict())
    assert keys == {"0.layer.weight", "0.layer.bias", "1.layer.weight", "1.layer.bias"}


def test_input_extended(generator, device):
    module = LinearGrowingModule(3, 2, device=device)
    module.store_input = True
    x = torch.randn(4, 2, 3, generator=generator).to(device)
    module(x)
    assert torch.equal(module.input_extended, torch.cat([x, torch.ones(4, 2, 1, device=device)], -1))
    plain = LinearGrowingModule(3, 2, use_bias=False, device=device)
    plain.store_input = True
    plain(x)
    assert plain.input_extended is plain.input


def test_zero_input_layer_outputs_zeros_and_has_bias_statistics(generator, device):
    module = _filled(LinearGrowingModule(0, 3, device=device), generator)
    module.init_computation()
    for shape in ((4, 0), (4, 2, 0)):
        out = module(torch.zeros(*shape, device=device))
        assert out.shape == (*shape[:-1], 3) and not out.any() and out.requires_grad
    (out.sum() * 2).backward()
    module.update_computation()
    assert torch.equal(module.tensor_s(), torch.full((1, 1), 2.0, device=device))  # 2 tokens per sample
    torch.testing.assert_close(module.tensor_m(), torch.full((1, 3), 4.0, device=device))
    module.layer_in_extension(torch.randn(3, 2, generator=generator).to(device))
    assert module(torch.randn(4, 2, generator=generator).to(device)).abs().sum() > 0


def test_layer_of_tensor(generator, device):
    module = LinearGrowingModule(3, 2, device=device)
    weight = torch.randn(4, 5, generator=generator, dtype=torch.float64).to(device)
    bias = torch.randn(4, generator=generator, dtype=torch.float64).to(device)
    layer = module.layer_of_tensor(weight, bias)
    assert (layer.in_features, layer.out_features) == (5, 4) and layer.weight.dtype == torch.float64
    assert layer.weight.data_ptr() == weight.data_ptr()
    with pytest.raises(AssertionError, match="bias"):
        module.layer_of_tensor(weight)
    assert module.layer_of_tensor(weight, force_bias=False).bias is None


def test_layer_extensions_concatenate(generator, device):
    module = _filled(LinearGrowingModule(3, 2, device=device), generator)
    w, b = module.weight.detach().clone(), module.bias.detach().clone()
    extra_in = torch.randn(2, 4, generator=generator).to(device)
    module.layer_in_extension(extra_in)
    assert torch.equal(module.weight, torch.cat([w, extra_in], 1)) and torch.equal(module.bias, b)
    assert module.tensor_s._shape == (8, 8) and module.tensor_m._shape == (8, 2)
    extra_out, extra_bias = torch.randn(3, 7, generator=generator).to(device), torch.randn(3, generator=generator).to(device)
    module.layer_out_extension(extra_out, extra_bias)
    assert module.weight.shape == (5, 7) and torch.equal(module.bias[2:], extra_bias)
    assert module.tensor_m._shape == (8, 5)
    with pytest.raises(AssertionError, match="bias"):
        module.layer_out_extension(extra_out)
    with pytest.raises(AssertionError, match="shape"):
        module.layer_in_extension(torch.zeros(2, 1, device=device))
    with pytest.raises(AssertionError, match="shape"):
        module.layer_out_extension(torch.zeros(1, 3, device=device), torch.zeros(1, device=device))


def test_add_parameters(generator, device):
    module = _filled(LinearGrowingModule(3, 2, device=device), generator)
    with pytest.warns(UserWarning, match="updated by the user"):
        module.add_parameters(None, None, added_in_features=2)
    assert module.weight.shape == (2, 5) and not module.weight[:, 3:].any()
    with pytest.warns(UserWarning, match="updated by the user"):
        module.add_parameters(torch.ones(1, 5, device=device), None, added_out_features=1)
    assert module.weight.shape == (3, 5) and module.bias[2] == 0 and module.weight[2].eq(1).all()
    with pytest.raises(AssertionError, match="same time"):
        module.add_parameters(None, None, added_in_features=1, added_out_features=1)
    with pytest.raises(AssertionError, match="matrix_extension"):
        module.add_parameters(torch.ones(2, 2, device=device), None, added_in_features=2)


def test_parameter_step(generator, device):
    module = _filled(LinearGrowingModule(3, 2, device=device), generator)
    w, b = module.weight.detach().clone(), module.bias.detach().clone()
    dw, db = torch.randn(2, 3, generator=generator).to(device), torch.randn(2, generator=generator).to(device)
    module.parameter_step(dw, db)
    torch.testing.assert_close(module.weight, w + dw)
    torch.testing.assert_close(module.bias, b + db)


def test_extension_layers_and_fan_in(device):
    first = LinearGrowingModule(4, 3, device=device)
    second = LinearGrowingModule(3, 2, use_bias=False, previous_module=first, device=device)
    first.create_layer_out_extension(5)
    second.create_layer_in_extension(5)
    assert first.extended_output_layer.weight.shape == (5, 4) and first.extended_output_layer.bias is not None
    assert second.extended_input_layer.weight.shape == (2, 5) and second.extended_input_layer.bias is None
    assert second.get_fan_in_from_layer(second.layer) == 3 and second.get_fan_in_from_layer(num_neurons=7) == 7
    with pytest.raises(AssertionError, match="nn.Linear"):
        second.get_fan_in_from_layer(nn.Conv2d(1, 1, 1))
    with pytest.raises(AssertionError, match="layer"):
        second.get_fan_in_from_layer()


def test_legacy_n_update_and_projected_goal(generator, device):
    first = _filled(LinearGrowingModule(4, 3, post_layer_function=nn.ReLU(), device=device), generator)
    second = _filled(LinearGrowingModule(3, 2, previous_module=first, device=device), generator)
    first.next_module = second
    second.init_computation()
    first.store_input = True
    x = torch.randn(7, 4, generator=generator).to(device)
    y = second(first(x))
    (y**2).sum().backward()
    second.update_computation()
    with pytest.raises(AssertionError, match="optimal delta"):
        second.projected_v_goal(second.input)
    second.compute_optimal_delta()
    v = second.projected_v_goal(second.input)
    with torch.no_grad():
        torch.testing.assert_close(v, second.pre_activity.grad - second.optimal_delta_layer(second.input))
    n_update, count = first.compute_n_update()
    torch.testing.assert_close(n_update.double(), ref.linear_input_grad_reference(x, v.detach(), bias=False),
                               rtol=1e-5, atol=1e-5)
    assert count == 7
    with pytest.raises(TypeError, match="next module"):
        second.compute_n_update()


def test_printing_and_weight_statistics(generator, device):
    module = _filled(LinearGrowingModule(3, 2, device=device, name="layer"), generator)
    assert str(module) == "LinearGrowingModule(layer)(in_features=3, out_features=2, use_bias=True)"
    assert "8 parameters" in module.__str__(verbose=1)
    assert "Tensor S" in module.__str__(verbose=2) and len(module.__str__(verbose=2).splitlines()) > 5
    with pytest.raises(ValueError, match="verbose"):
        module.__str__(verbose=-1)
    stats = module.weights_statistics()
    w = module.weight.detach()
    assert stats["weight"] == pytest.approx({"min": float(w.min()), "max": float(w.max()),
                                             "mean": float(w.mean()), "std": float(w.std())})
    assert set(stats) == {"weight", "bias"}
    assert set(LinearGrowingModule(3, 2, use_bias=False, device=device).weights_statistics()) == {"weight"}


# ----------------------------------------------------------------------------------------------
# merge graph
# ----------------------------------------------------------------------------------------------


def test_merge_graph_checks(device):
    merge = LinearMergeGrowingModule(in_features=3, device=device, name="m")
    assert (merge.out_features, merge.input_volume, merge.output_volume) == (3, 3, 3)
    assert merge.number_of_parameters == 0 and list(merge.parameters()) == []
    assert merge.previous_tensor_s is None and merge.previous_tensor_m is None
    with pytest.raises(TypeError, match="LinearGrowingModule"):
        merge.set_previous_modules([nn.Linear(2, 3)])
    with pytest.raises(ValueError, match="in_features"):
        merge.set_previous_modules([LinearGrowingModule(2, 4, device=device)])
    with pytest.raises(AssertionError, match="in_features"):
        merge.set_next_modules([LinearGrowingModule(4, 2, device=device)])
    a = LinearGrowingModule(2, 3, device=device)
    merge.add_previous_module(a)
    merge.add_previous_module(LinearGrowingModule(5, 3, use_bias=False, device=device))
    assert merge.number_of_predecessors == 2 and merge.total_in_features == 8
    assert merge.sum_in_features() == 7 and merge.sum_in_features(with_bias=True) == 8
    assert merge.previous_tensor_s._shape == (8, 8) and merge.previous_tensor_m._shape == (8, 3)
    merge.add_next_module(LinearGrowingModule(3, 1, device=device))
    assert merge.number_of_successors == 1 and merge.sum_out_features() == 1
    merge.previous_tensor_s.samples = 1
    with pytest.warns(UserWarning, match="non-empty"):
        merge.set_previous_modules([a])
    with pytest.raises(AssertionError, match="previous modules"):
        LinearMergeGrowingModule(in_features=3, device=device).construct_full_activity()
    with pytest.raises(AssertionError, match="activity"):
        merge.compute_s_update()
    assert "LinearMergeGrowingModule(m)" in merge.__str__(verbose=2)


def test_merge_follows_a_growing_predecessor(generator, device):
    merge = LinearMergeGrowingModule(in_features=3, device=device)
    before = LinearGrowingModule(2, 3, next_module=merge, device=device)
    previous = LinearGrowingModule(4, 2, device=device)
    before.previous_module = previous
    merge.set_previous_modules([before])
    before.layer_out_extension(torch.zeros(2, 2, device=device), torch.zeros(2, device=device))
    merge.update_size()
    assert merge.in_features == 5 and merge.tensor_s._shape == (6, 6)
    assert merge.previous_tensor_m._shape == (3, 5)


def test_merge_abstract_members(device):
    merge = MergeGrowingModule(device=device)
    for name in ("input_volume", "output_volume"):
        with pytest.raises(NotImplementedError):
            getattr(merge, name)
    for call in (merge.compute_s_update, merge.compute_previous_s_update, merge.compute_previous_m_update,
                 merge.update_size):
        with pytest.raises(NotImplementedError):
            call()
    with pytest.raises(NotImplementedError):
        merge.set_next_modules([])


def test_merge_computation_lifecycle(generator, device):
    merge = LinearMergeGrowingModule(post_merge_function=nn.ReLU(), in_features=3, device=device)
    a = LinearGrowingModule(2, 3, next_module=merge, device=device)
    merge.set_previous_modules([a])
    merge.init_computation()
    assert a.store_input and a.store_pre_activity and merge.store_input >= 1 and merge.store_activity >= 1
    y = merge(a(torch.randn(5, 2, generator=generator).to(device)))
    y.sum().backward()
    merge.update_computation()
    assert merge.previous_tensor_s.samples == 5 and merge.tensor_s.samples == 5
    merge.reset_computation()
    assert merge.store_input == 0 and merge.store_activity == 0 and not a.store_pre_activity
    assert merge.input is None and merge.activity is None and merge.previous_tensor_s.samples == 0
    a.optimal_delta_layer = nn.Linear(2, 3)
    a.extended_output_layer = nn.Linear(2, 1)
    merge.delete_update(include_previous=True)
    assert a.optimal_delta_layer is None and a.extended_output_layer is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merge.grow()


def test_conversions_follow_the_layer(device):
    first = LinearGrowingModule(3, 2, device=device)
    second = LinearGrowingModule(2, 2, previous_module=first, device=device)
    second.scaling_factor = 0.5
    second.double()
    assert second.weight.dtype == torch.float64 and second.optimal_delta_scaling.dtype == torch.float64
    assert float(second.optimal_delta_scaling.detach()) == 0.25 and second.optimal_delta_scaling.requires_grad
    second.to("meta")
    assert second.device == torch.device("meta") and second.input_extension_scaling.device.type == "meta"
