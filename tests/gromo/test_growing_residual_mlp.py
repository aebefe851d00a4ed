"""gromo.containers.growing_residual_mlp: GroMo's parameter count, the residual block, selection,
statistics dictionaries and a full growth cycle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.containers.growing_residual_mlp import GrowingResidualBlock, GrowingResidualMLP
from tests.gromo.container_growth import run_growth_cycle


def test_parameter_count_and_shapes(device):
    model = GrowingResidualMLP((3, 32, 32), 10, 64, 32, 4, device=device)
    assert model.number_of_parameters() == 214_090 and model.in_features == 3072
    assert model(torch.randn(2, 3, 32, 32).to(device)).shape == (2, 10)
    assert model._growable_layers == [block.second_layer for block in model.blocks]
    assert [block.name for block in model.blocks] == [f"block {i}" for i in range(4)]


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # torch, for the width-0 block
def test_block_forward_is_normalised_residual(generator, device):
    block = GrowingResidualBlock(5, hidden_features=3, activation=nn.ReLU(), kwargs_layer={"device": device}).double()
    x = torch.randn(7, 5, generator=generator, dtype=torch.float64).to(device)
    z = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)
    expected = z + block.second_layer.layer(torch.relu(block.first_layer.layer(torch.relu(z))))
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(block.extended_forward(x), expected, rtol=1e-12, atol=1e-12)
    empty = GrowingResidualBlock(5, kwargs_layer={"device": device})
    assert torch.equal(empty(x.float()), x.float()) and torch.equal(empty.extended_forward(x.float()), x.float())
    statistics = block.weights_statistics()
    assert statistics["hidden_shape"] == 3 and set(statistics[0]) == {"weight", "bias"}
    assert statistics[1]["weight"]["max"] == pytest.approx(float(block.second_layer.weight.detach().max()))


def test_growth_cycle_selection_and_information(generator, device, capsys):
    torch.manual_seed(0)
    model = GrowingResidualMLP((2, 3), 3, num_features=5, hidden_features=2, num_blocks=3, activation=nn.Tanh(),
                               device=device).double()
    x = torch.randn(48, 2, 3, generator=generator, dtype=torch.float64).to(device)
    y = torch.randn(48, 3, generator=generator, dtype=torch.float64).to(device)
    # selection as GroMo: the others' updates are deleted, the index is returned
    from torch.utils.data import DataLoader, TensorDataset

    from gromo.utils.training_utils import compute_statistics
    compute_statistics(model, DataLoader(TensorDataset(x, y), batch_size=16), device=device)
    model.compute_optimal_updates(dtype=torch.float64)
    information = model.update_information()
    assert set(information) == {0, 1, 2}
    torch.testing.assert_close(information[1]["update_value"], model._growing_layers[1].first_order_improvement)
    assert model.select_update(1, verbose=True) == 1
    out = capsys.readouterr().out
    assert "Block 0 improvement:" in out and "Block 2 eigenvalues extension:" in out and "Deleting block 0" in out
    assert model._growing_layers[0].eigenvalues_extension is None
    assert model._growing_layers[1].eigenvalues_extension is not None
    model.reset_computation()
    model.delete_update()

    widths = [block.second_layer.in_features for block in model.blocks]
    cycle = run_growth_cycle(model, x, y, dtype=torch.float64)
    assert cycle.first_order_ratio == pytest.approx(1.0, abs=0.05) and cycle.loss_after < cycle.loss_before
    assert model.blocks[cycle.index].second_layer.in_features > widths[cycle.index]
    statistics = model.weights_statistics()
    assert set(statistics[0]) == {"weight_0", "bias_0", "weight_1", "bias_1", "hidden_shape"}
