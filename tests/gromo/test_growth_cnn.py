"""The growing CNN (Conv2dGrowingBlocks) through the growth loop, on tiny image data."""

from __future__ import annotations

import pytest
import torch

from gromo.containers.growing_cnn import GrowingCNN
from gromo.growth.datasets import ClassificationData, make_synthetic
from gromo.growth.loop import GrowthConfig, grow, growth_step, train_epochs


def _images(seed=0) -> ClassificationData:
    flat = make_synthetic(n_train=256, n_test=64, num_features=16, num_classes=3, teacher_width=12, seed=seed)
    return ClassificationData(
        name="synthetic-images", x_train=flat.x_train.reshape(-1, 1, 4, 4), y_train=flat.y_train,
        x_val=flat.x_val.reshape(-1, 1, 4, 4), y_val=flat.y_val, x_test=flat.x_test.reshape(-1, 1, 4, 4),
        y_test=flat.y_test, num_classes=3, input_shape=(1, 4, 4),
    )


@pytest.mark.parametrize("hidden", [0, 1])
def test_cnn_growth_step_adds_channels_and_keeps_the_function(hidden):
    data = _images()
    torch.manual_seed(0)
    model = GrowingCNN(1, 3, (4, 4), channels=4, hidden_channels=hidden, number_of_blocks=2, device="cpu")
    config = GrowthConfig(neurons_per_step=3, line_search_samples=64, relative_statistical_threshold=0.0)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    train_epochs(model, optimizer, data.x_train, data.y_train, epochs=1, batch_size=32, generator=generator)
    parameters_before = sum(p.numel() for p in model.parameters())
    optimizer, record = growth_step(model, data, config, optimizer, generator=generator)
    assert record.layer in ("blocks.0", "blocks.1") and record.neurons_added == 3
    assert record.layer == max(record.candidate_gains, key=record.candidate_gains.get)
    grown = model.blocks[record.layer_index]
    assert grown.hidden_neurons == hidden + 3
    added = 3 * (4 * 9 + 1) + 4 * 3 * 9  # first conv: 3 new output channels; second: 3 new input channels
    assert sum(p.numel() for p in model.parameters()) == parameters_before + added
    chosen = dict(map(tuple, record.line_search))[record.scale]
    assert record.line_search_loss_after == pytest.approx(chosen, rel=1e-4, abs=1e-6)
    assert record.line_search_loss_after < record.line_search_loss_before
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    for module in model.modules():
        assert getattr(module, "_input", None) is None and getattr(module, "_pre_activity", None) is None


def test_cnn_grows_over_steps():
    data = _images(seed=1)
    torch.manual_seed(1)
    model = GrowingCNN(1, 3, (4, 4), channels=4, hidden_channels=1, number_of_blocks=1, device="cpu")
    result = grow(model, data, GrowthConfig(steps=2, epochs=1, neurons_per_step=2, line_search_samples=64, batch_size=32))
    widths = [r.widths[0] for r in result.records]
    assert widths[0] == 1 and widths[-1] > widths[0]
    assert result.records[-1].train_loss < result.records[0].train_loss
