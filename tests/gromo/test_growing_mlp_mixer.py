"""gromo.containers.growing_mlp_mixer: GroMo's parameter count, the mixing formulas, the statistics
dictionaries, errors and a full growth cycle of token and channel MLPs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.containers.growing_mlp_mixer import (
    GrowingChannelMixer,
    GrowingMLPBlock,
    GrowingMLPMixer,
    GrowingMixerLayer,
    GrowingTokenMixer,
    check_sizes,
)
from tests.gromo.container_growth import run_growth_cycle


def test_parameter_count_shapes_and_sizes(device):
    model = GrowingMLPMixer(device=device)
    assert model.number_of_parameters() == 1_131_914 and model.num_patches == 64
    assert model.patcher.weight.device.type == model.device.type == model.classifier.weight.device.type
    assert model(torch.randn(2, 3, 32, 32).to(device)).shape == (2, 10)
    assert len(model._growable_layers) == 16 and model._growing_layers is model._growable_layers
    assert check_sizes(32, 4) == 64
    with pytest.raises(AssertionError, match="`image_size` must be divisible by `patch_size`"):
        check_sizes(30, 4)
    with pytest.raises(AssertionError, match="`image_size` must be divisible by `patch_size`"):
        GrowingMLPMixer((3, 30, 30), device=device)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # torch, for the width-0 block
def test_mixing_formulas(generator, device):
    x = torch.randn(4, 6, 5, generator=generator, dtype=torch.float64).to(device)
    token = GrowingTokenMixer(6, 5, 3, 0.0, device=device).double()
    mlp = token.mlp
    normed = nn.functional.layer_norm(x, (5,), token.norm.weight, token.norm.bias).transpose(1, 2)
    branch = mlp.second_layer.layer(nn.functional.gelu(mlp.first_layer.layer(normed))).transpose(1, 2)
    torch.testing.assert_close(token(x), x + branch, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(token.extended_forward(x), x + branch, rtol=1e-12, atol=1e-12)
    channel = GrowingChannelMixer(5, 4, 0.0, device=device).double()
    normed = nn.functional.layer_norm(x, (5,), channel.norm.weight, channel.norm.bias)
    branch = channel.mlp.second_layer.layer(nn.functional.gelu(channel.mlp.first_layer.layer(normed)))
    torch.testing.assert_close(channel(x), x + branch, rtol=1e-12, atol=1e-12)
    layer = GrowingMixerLayer(6, 5, 3, 4, 0.0, device=device).double()
    assert layer._growing_layers == [layer.token_mixer.mlp.second_layer, layer.channel_mixer.mlp.second_layer]
    torch.testing.assert_close(layer(x), layer.channel_mixer(layer.token_mixer(x)), rtol=0, atol=0)
    statistics = layer.weights_statistics()
    assert statistics[0][1]["input_shape"] == 3 and statistics[1][0]["output_shape"] == 4
    empty = GrowingMLPBlock(5, 0, kwargs_layer={"device": device})
    assert empty.weights_statistics() == {} and empty.name is None


def test_growth_cycle(generator, device):
    torch.manual_seed(0)
    model = GrowingMLPMixer((3, 8, 8), out_features=3, patch_size=4, num_features=6, hidden_dim_token=2,
                            hidden_dim_channel=3, num_blocks=2, device=device).double()
    x = torch.randn(24, 3, 8, 8, generator=generator, dtype=torch.float64).to(device)
    y = torch.randn(24, 3, generator=generator, dtype=torch.float64).to(device)
    widths = [layer.in_features for layer in model._growable_layers]
    from torch.utils.data import DataLoader, TensorDataset

    from gromo.utils.training_utils import compute_statistics
    compute_statistics(model, DataLoader(TensorDataset(x, y), batch_size=12), device=device)
    model.compute_optimal_updates(dtype=torch.float64)
    information = model.update_information()
    assert set(information) == {0, 1} and set(information[0]) == {"token_mixer", "channel_mixer"}
    token_second = model.mixers[1].token_mixer.mlp.second_layer
    assert information[1]["token_mixer"]["added_neurons"] == len(token_second.eigenvalues_extension)
    model.reset_computation()
    model.delete_update()
    cycle = run_growth_cycle(model, x, y, dtype=torch.float64, gammas=(0.1, 0.5, 2.0, 8.0))
    assert cycle.first_order_ratio == pytest.approx(1.0, abs=0.05) and cycle.loss_after < cycle.loss_before
    assert model._growable_layers[cycle.index].in_features > widths[cycle.index]
    with pytest.raises(AssertionError):  # applied updates are deleted: nothing to report
        model.update_information()
