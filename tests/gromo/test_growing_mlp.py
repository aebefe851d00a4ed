"""GrowingMLP / Perceptron rebased on SequentialGrowingModel: GroMo's signatures, schedule, text,
normalisation, parameter counts, a full growth cycle and GroMo's container tutorial."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from gromo.containers.growing_container import GrowingModel
from gromo.containers.growing_mlp import GrowingMLP, Perceptron
from gromo.containers.sequential_growing_container import SequentialGrowingModel
from gromo.utils import training_utils as tu
from tests.gromo.container_growth import run_growth_cycle


def test_parameter_count_and_shapes(device):
    model = GrowingMLP(784, 10, 128, 3, device=device)
    assert model.number_of_parameters() == 134_794
    assert isinstance(model, SequentialGrowingModel) and isinstance(model, GrowingModel)
    assert model(torch.randn(2, 1, 28, 28).to(device)).shape == (2, 10)
    assert [layer.name for layer in model.layers] == ["Layer 0", "Layer 1", "Layer 2", "Layer 3"]
    assert model._growable_layers == list(model.layers[1:]) and model._growing_layers is model._growable_layers


def test_in_features_and_flatten(device):
    assert GrowingMLP((3, 4), 2, 5, 1, device=device).layers[0].in_features == 12
    assert GrowingMLP([3, 4], 2, 5, 1, device=device).layers[0].in_features == 12
    assert GrowingMLP(torch.Size([3, 4]), 2, 5, 1, device=device).layers[0].in_features == 12
    unflattened = GrowingMLP((10, 4), 2, 5, 1, flatten=False, device=device)
    assert unflattened.layers[0].in_features == 4 and isinstance(unflattened.flatten, nn.Identity)
    assert unflattened(torch.randn(3, 10, 4).to(device)).shape == (3, 10, 2)
    assert unflattened.extended_forward(torch.randn(3, 10, 4).to(device)).shape == (3, 10, 2)
    with pytest.raises(TypeError, match="Expected in_features to be int, list, or tuple, got <class 'float'>"):
        GrowingMLP(3.0, 2, 5, 1, device=device)
    perceptron = Perceptron(6, 4, 2, device=device)
    assert isinstance(perceptron.layers[0].post_layer_function, nn.Sigmoid) and len(perceptron.layers) == 2
    assert Perceptron((2, 3), 4, 2, flatten=False, device=device).layers[0].in_features == 3


def test_schedule_getitem_and_text(device):
    model = GrowingMLP(5, 3, 4, 3, device=device)
    model.set_growing_layers(index=1)
    assert model._growing_layers == [model.layers[2]] and model.layer_to_grow_index == 1
    model.set_growing_layers("sequential")
    assert model._growing_layers == [model.layers[3]] and model.layer_to_grow_index == 2
    model.set_growing_layers("sequential")
    assert model._growing_layers == [model.layers[1]] and model.layer_to_grow_index == 0
    with pytest.raises(IndexError, match=r"Index 3 is out of bounds for _growable_layers with length 3\."):
        model.set_growing_layers(index=3)
    with pytest.raises(ValueError, match=r"Invalid scheduling method: random\. Supported methods are "
                                         r"'sequential' and 'all'\."):
        model.set_growing_layers("random")
    model.set_growing_layers("all")
    assert model.layer_to_grow_index == -1
    with pytest.raises(RuntimeError, match="only supported when a single layer is being grown"):
        model.number_of_neurons_to_add()
    assert model[0] is model.layers[0] and model[3] is model.layers[3]
    with pytest.raises(AssertionError, match=r"item=4 should be in \[0, 4\)"):
        model[4]
    with pytest.raises(AssertionError, match=r"item=-1 should be in \[0, 4\)"):
        model[-1]
    assert str(model) == "\n".join(str(layer) for layer in model.layers) == repr(model)
    assert set(model.weights_statistics()) == {layer.name for layer in model.layers}


def test_normalisation_factor_and_normalise_preserve_the_function(generator, device):
    factors = GrowingMLP.normalisation_factor(torch.tensor([1.0, 4.0, 2.0]))
    torch.testing.assert_close(factors, torch.tensor([2.0, 0.5, 1.0]))
    torch.manual_seed(3)
    model = GrowingMLP(5, 3, 6, 2, activation=nn.ReLU(), device=device).double()
    x = torch.randn(20, 5, generator=generator, dtype=torch.float64).to(device)
    with torch.no_grad():
        before = model(x)
    model.normalise(verbose=False)
    maxima = torch.stack([layer.weight.abs().max() for layer in model.layers])
    torch.testing.assert_close(maxima, maxima.prod().pow(1 / 3).repeat(3), rtol=1e-12, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-12, atol=1e-12)


def test_growth_cycle_matches_first_order_and_extended_forward(generator, device):
    torch.manual_seed(0)
    model = GrowingMLP(5, 3, 4, 2, activation=nn.Tanh(), device=device).double()
    x = torch.randn(64, 5, generator=generator, dtype=torch.float64).to(device)
    y = torch.randn(64, 3, generator=generator, dtype=torch.float64).to(device)
    widths = [layer.in_features for layer in model.layers]
    cycle = run_growth_cycle(model, x, y, dtype=torch.float64)
    assert cycle.first_order_ratio == pytest.approx(1.0, abs=0.05)
    assert cycle.gamma > 0 and cycle.loss_after < cycle.loss_before
    grown = cycle.index + 1  # growable layer i is layer i + 1
    assert model.layers[grown].in_features > widths[grown] and cycle.parameters_after > cycle.parameters_before


@pytest.mark.filterwarnings("ignore:Using the pseudo-inverse")
def test_gromo_container_tutorial(generator, device):
    """GroMo's container tutorial, unchanged: grow one chosen layer of a GrowingMLP from its
    statistics, score the extended model, apply the change."""
    torch.manual_seed(0)
    x = torch.randn(96, 8, generator=generator).to(device)
    labels = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()
    train = DataLoader(TensorDataset(x, labels), batch_size=32)
    model = GrowingMLP(8, 3, hidden_size=2, number_hidden_layers=2, activation=nn.ReLU(), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tu.gradient_descent(model, train, optimizer, None, nn.CrossEntropyLoss(), device=device)

    model.set_growing_layers(index=0)
    loss_stat, _ = tu.compute_statistics(model, train, nn.CrossEntropyLoss(reduction="sum"), device=device)
    model.compute_optimal_updates(maximum_added_neurons=2)
    model.reset_computation()
    assert model.dummy_select_update() == 0
    information = model.update_information()
    layer = model.currently_updated_layer
    assert layer is model.layers[1] and information[0]["eigenvalues_extension"] is layer.eigenvalues_extension
    torch.testing.assert_close(information[0]["update_value"], layer.first_order_improvement)

    accuracy = MulticlassAccuracy(num_classes=3, average="micro")
    plain_loss, plain_accuracy = tu.evaluate_model(model, train, nn.CrossEntropyLoss(), metrics=accuracy,
                                                   device=device)
    assert plain_loss == pytest.approx(loss_stat, rel=1e-5)
    model.set_scaling_factor(0.0)
    loss_zero, accuracy_zero = tu.evaluate_model(model, train, nn.CrossEntropyLoss(), use_extended_model=True,
                                                 metrics=accuracy, device=device)
    assert loss_zero == pytest.approx(plain_loss, rel=1e-6) and accuracy_zero == pytest.approx(plain_accuracy)
    model.set_scaling_factor(0.5)
    extended_loss, _ = tu.evaluate_model(model, train, nn.CrossEntropyLoss(), use_extended_model=True, device=device)
    width = model.layers[1].in_features
    added = layer.eigenvalues_extension.shape[0]
    model.apply_change()
    assert model.layers[1].in_features == width + added and model.currently_updated_layer_index is None
    grown_loss, _ = tu.evaluate_model(model, train, nn.CrossEntropyLoss(), device=device)
    assert grown_loss == pytest.approx(extended_loss, rel=1e-5)
