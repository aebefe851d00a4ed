"""The solvers are looked up at GroMo's public path when called, so replacing
``gromo.modules.growing_module.optimal_delta`` / ``compute_optimal_added_parameters`` (as a GroMo
user's script or a GroMo-style benchmark does) changes what the modules compute."""

from __future__ import annotations

import torch

from gromo.modules import growing_module
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from gromo.utils import tools

from .test_atomic_growth import _gathered_pair


def test_a_replaced_optimal_delta_is_the_one_compute_optimal_delta_calls(generator, device, monkeypatch):
    _, second = _gathered_pair(generator, device)
    calls = []

    def recording_delta(tensor_s, tensor_m, **kwargs):
        calls.append((tensor_s.shape, tensor_m.shape))
        return tools.optimal_delta(tensor_s, tensor_m, **kwargs)

    monkeypatch.setattr(growing_module, "optimal_delta", recording_delta)
    second.compute_optimal_delta()
    assert calls == [((5, 5), (5, 3))]  # in_features 4 + bias, out_features 3
    expected, _ = tools.optimal_delta(second.tensor_s(), second.tensor_m())
    torch.testing.assert_close(second.delta_raw, expected)


def test_a_replaced_new_neuron_solver_is_the_one_compute_optimal_updates_calls(generator, device, monkeypatch):
    _, second = _gathered_pair(generator, device)
    seen = []

    def recording_solver(**arguments):
        seen.append(arguments["maximum_added_neurons"])
        return tools.compute_optimal_added_parameters(**arguments)

    monkeypatch.setattr(growing_module, "compute_optimal_added_parameters", recording_solver)
    second.compute_optimal_updates(maximum_added_neurons=2)
    assert seen == [2] and second.eigenvalues_extension.numel() <= 2


def test_a_replaced_optimal_delta_is_the_one_a_merge_calls(generator, device, monkeypatch):
    left = LinearGrowingModule(3, 4, device=device, name="left")
    right = LinearGrowingModule(2, 4, use_bias=False, device=device, name="right")
    merge = LinearMergeGrowingModule(in_features=4, previous_modules=[left, right], device=device, name="merge")
    left.next_module = right.next_module = merge
    merge.init_computation()
    a, b = torch.randn(16, 3, generator=generator).to(device), torch.randn(16, 2, generator=generator).to(device)
    (merge(left(a) + right(b)) ** 2).sum().backward()
    merge.update_computation()
    calls = []

    def recording_delta(tensor_s, tensor_m, **kwargs):
        calls.append(tensor_s.shape)
        return tools.optimal_delta(tensor_s, tensor_m, **kwargs)

    monkeypatch.setattr(growing_module, "optimal_delta", recording_delta)
    merge.compute_optimal_delta()
    assert calls == [(6, 6)]  # left 3 + bias, right 2 (no bias): the stacked predecessor inputs
