"""The growth loop on small synthetic data: it grows, the loss goes down, nothing stays cached, the
optimizer keeps its state, statistics use the sum-reduced cross-entropy."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gromo.containers.growing_mlp import GrowingMLP, Perceptron
from gromo.growth.datasets import make_synthetic
from gromo.growth.loop import (
    GrowthConfig,
    accumulate_statistics,
    evaluate,
    grow,
    growth_step,
    train_epochs,
)


def _data(seed=0, n_train=480):
    return make_synthetic(n_train=n_train, n_test=200, num_features=8, num_classes=3, teacher_width=16, seed=seed)


def _model(hidden_layers=1, width=1, seed=0):
    torch.manual_seed(seed)
    return GrowingMLP(8, 3, hidden_size=width, number_hidden_layers=hidden_layers, activation=nn.ReLU(), device="cpu")


def _config(**overrides):
    # These tests check the mechanics of a fixed number of steps over the given scales: the stopping
    # rules and the bracket widening are off here (their own tests are in test_growth_stopping.py).
    defaults = dict(steps=4, neurons_per_step=4, epochs=2, line_search_samples=64, seed=0, batch_size=32,
                    gain_tolerance=0.0, patience=None, max_scale_extensions=0)
    defaults.update(overrides)
    return GrowthConfig(**defaults)


def test_growth_loop_grows_and_loss_decreases():
    data, model = _data(), _model()
    result = grow(model, data, _config())
    initial, steps = result.records[0], result.records[1:]
    assert len(steps) == 4 and initial.widths == [1]
    assert all(r.layer == "layers.1" and 1 <= r.neurons_added <= 4 for r in steps)
    assert sum(r.neurons_added for r in steps) > len(steps)  # relative threshold: not one neuron per step
    assert model.layers[0].out_features == 1 + sum(r.neurons_added for r in steps) == steps[-1].widths[0]
    assert steps[-1].parameters == sum(p.numel() for p in model.parameters()) > initial.parameters
    assert steps[-1].train_loss < 0.8 * initial.train_loss
    assert steps[0].line_search_loss_after < steps[0].line_search_loss_before - 1e-3  # growth itself helps
    for r in steps:
        assert r.scale > 0 and r.scale in GrowthConfig().scales
        assert r.first_order_gain > 0 and r.singular_values == sorted(r.singular_values, reverse=True)
        # the best scale never makes the held-out loss worse than no growth (up to rounding)
        assert r.line_search_loss_after <= r.line_search_loss_before + 1e-5
        assert r.test_accuracy is not None and r.time_statistics > 0 and r.time_training > 0


def test_apply_change_keeps_the_line_search_function():
    data, model = _data(), _model()
    config = _config()
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_epochs(model, optimizer, data.x_train, data.y_train, epochs=2, batch_size=32, generator=generator)
    optimizer, record = growth_step(model, data, config, optimizer, generator=generator)
    chosen = dict((scale, loss) for scale, loss in record.line_search)[record.scale]
    assert record.line_search_loss_after == pytest.approx(chosen, rel=1e-5, abs=1e-6)
    assert record.scale == min(record.line_search, key=lambda p: p[1])[0]


def test_no_cached_tensors_after_a_step():
    data, model = _data(), _model(hidden_layers=2, width=2)
    grow(model, data, _config(steps=2, epochs=1))
    for module in model.modules():
        for name in ("_input", "_pre_activity"):
            assert getattr(module, name, None) is None, f"{name} still cached in {module}"
    for layer in model.layers:
        assert layer.extended_input_layer is None and layer.extended_output_layer is None
        assert layer.optimal_delta_layer is None
        for statistic in (layer.tensor_m, layer.covariance_loss_gradient):
            assert statistic.samples == 0 and statistic._tensor is None


def test_optimizer_state_of_old_parameters_survives_a_growth_step():
    data, model = _data(), _model(width=3)
    config = _config()
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_epochs(model, optimizer, data.x_train, data.y_train, epochs=1, batch_size=32, generator=generator)
    before = {
        name: {k: v.clone() for k, v in optimizer.state[p].items()} for name, p in model.named_parameters()
    }
    old_params = {name: p for name, p in model.named_parameters()}
    optimizer, record = growth_step(model, data, config, optimizer, generator=generator)
    added = record.neurons_added
    assert added >= 1
    new_params = dict(model.named_parameters())
    assert new_params["layers.0.layer.weight"] is not old_params["layers.0.layer.weight"]  # layers were rebuilt
    w0 = optimizer.state[new_params["layers.0.layer.weight"]]
    assert w0["exp_avg"].shape == (3 + added, 8)
    torch.testing.assert_close(w0["exp_avg"][:3], before["layers.0.layer.weight"]["exp_avg"], rtol=0, atol=0)
    torch.testing.assert_close(w0["exp_avg_sq"][:3], before["layers.0.layer.weight"]["exp_avg_sq"], rtol=0, atol=0)
    assert torch.count_nonzero(w0["exp_avg"][3:]) == 0
    w1 = optimizer.state[new_params["layers.1.layer.weight"]]
    torch.testing.assert_close(w1["exp_avg_sq"][:, :3], before["layers.1.layer.weight"]["exp_avg_sq"], rtol=0, atol=0)
    assert float(w1["step"]) == float(before["layers.1.layer.weight"]["step"])
    torch.testing.assert_close(
        optimizer.state[new_params["layers.1.layer.bias"]]["exp_avg"], before["layers.1.layer.bias"]["exp_avg"], rtol=0, atol=0
    )
    # every parameter of the model is optimised, and training goes on
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    train_epochs(model, optimizer, data.x_train, data.y_train, epochs=1, batch_size=32, generator=generator)


def test_statistics_use_sum_reduced_cross_entropy(generator):
    data, model = _data(), _model(width=5)
    indices = torch.arange(100)
    accumulate_statistics(model, data.x_train, data.y_train, indices, batch_size=30)
    last = model.layers[1]
    x = data.x_train[:100].double()
    with torch.no_grad():
        hidden = torch.relu(x @ model.layers[0].weight.double().T + model.layers[0].bias.double())
        logits = hidden @ last.weight.double().T + last.bias.double()
    grad = torch.softmax(logits, dim=1) - F.one_hot(data.y_train[:100], 3).double()  # per-sample dℓ/da
    hidden1 = torch.cat([hidden, torch.ones(100, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(last.tensor_m().double(), hidden1.T @ grad / 100, rtol=1e-4, atol=1e-6)
    assert last.tensor_m.samples == 100
    assert not model.training  # statistics are accumulated in eval mode
    model.reset_computation()


def test_selection_picks_the_largest_first_order_gain():
    data, model = _data(seed=1), _model(hidden_layers=2, width=2, seed=1)
    result = grow(model, data, _config(steps=2, epochs=1))
    for r in result.records[1:]:
        assert set(r.candidate_gains) == {"layers.1", "layers.2"}
        assert r.layer == max(r.candidate_gains, key=r.candidate_gains.get)
        assert r.first_order_gain == r.candidate_gains[r.layer]


@pytest.mark.parametrize("threshold, expected", [(1.0, 1), (0.0, 3)])
def test_relative_threshold_sets_the_number_of_neurons(threshold, expected):
    data, model = _data(), _model()
    config = _config(relative_statistical_threshold=threshold, neurons_per_step=3)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    _, record = growth_step(model, data, config, optimizer, generator=generator)
    assert record.neurons_added == expected == len(record.singular_values)


def test_evaluate_matches_manual_accuracy():
    data, model = _data(), Perceptron(8, 4, 3, activation=nn.ReLU(), device="cpu")
    loss, accuracy = evaluate(model, data.x_test, data.y_test)
    with torch.no_grad():
        logits = model(data.x_test)
    assert loss == pytest.approx(float(F.cross_entropy(logits, data.y_test)), rel=1e-5)
    assert accuracy == pytest.approx(float((logits.argmax(1) == data.y_test).float().mean()))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="neurons_per_step"):
        grow(_model(), _data(), GrowthConfig(neurons_per_step=0))
    with pytest.raises(ValueError, match="scales"):
        grow(_model(), _data(), GrowthConfig(scales=(0.0, 1.0)))
    with pytest.raises(ValueError, match="too few"):
        grow(_model(), _data(n_train=3), _config())


def test_batched_solve_equals_each_layers_own_solve():
    from gromo.growth.loop import _compute_updates, _growth_covariance, _largest_eigenvalue

    data, model = _data(seed=2), _model(hidden_layers=3, width=4, seed=2)
    accumulate_statistics(model, data.x_train, data.y_train, torch.arange(len(data.y_train)), batch_size=128)
    config = _config(neurons_per_step=100, relative_statistical_threshold=0.0, relative_numerical_threshold=1e-5)
    own = []
    for layer in model._growing_layers:
        lam_max = _largest_eigenvalue(_growth_covariance(layer))
        layer.compute_optimal_updates(
            numerical_threshold=1e-5 * lam_max, statistical_threshold=0.0, compute_delta=False,
        )
        own.append((
            layer.eigenvalues_extension.clone(), layer.extended_input_layer.weight.detach().clone(),
            layer.previous_module.extended_output_layer.weight.detach().clone(),
            layer.previous_module.extended_output_layer.bias.detach().clone(),
        ))
        layer.delete_update()
    info = _compute_updates(model, config)
    assert len(info) == 3
    for layer, (sigma, omega, alpha_w, alpha_b) in zip(model._growing_layers, own):
        torch.testing.assert_close(layer.eigenvalues_extension, sigma, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(layer.extended_input_layer.weight, omega, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(layer.previous_module.extended_output_layer.weight, alpha_w, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(layer.previous_module.extended_output_layer.bias, alpha_b, rtol=1e-4, atol=1e-6)
        assert float(layer.parameter_update_decrease) == 0.0 and layer.optimal_delta_layer is None
        torch.testing.assert_close(layer.first_order_improvement, layer.activation_gradient * (sigma**2).sum())
    model.reset_computation()
    model.delete_update()


def test_the_step_solves_reuse_the_delta_factorisations(factorization_caches):
    """_compute_updates runs in one factorization_cache block: the new-neuron solve of layer l finds
    S_{l-1} already factored by layer l-1's delta solve. 3 growable layers: the delta solves factor
    S_1, S_2, S_3; the neuron solves find S_1, S_2 and factor S_0 (2 hits, 4 misses)."""
    from gromo.growth.loop import _compute_updates

    data, model = _data(seed=3), _model(hidden_layers=3, width=4, seed=3)
    accumulate_statistics(model, data.x_train, data.y_train, torch.arange(len(data.y_train)), batch_size=128)
    _compute_updates(model, _config())
    assert len(factorization_caches) == 1
    assert factorization_caches[0].hits == 2 and factorization_caches[0].misses == 4
    model.reset_computation()
    model.delete_update()


def test_a_failing_candidate_raises_naming_the_layer_never_a_zero_gain(monkeypatch):
    from gromo.growth.candidates import CandidateError

    data, model = _data(), _model(hidden_layers=2, width=2)
    broken = model._growing_layers[1]

    def fail(*args, **kwargs):
        raise ValueError("S contains NaN")

    monkeypatch.setattr(broken, "compute_optimal_updates", fail)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with pytest.raises(CandidateError, match=re.escape(f"candidate '{broken.name}': ValueError: S contains NaN")):
        growth_step(model, data, _config(), optimizer, generator=generator)
    for layer in model._growing_layers:  # nothing pending is left behind
        assert layer.extended_input_layer is None and layer.eigenvalues_extension is None
