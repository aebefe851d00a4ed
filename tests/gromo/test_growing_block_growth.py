"""End to end: a Conv2dGrowingBlock that starts at hidden width 0 grows on a small real problem
(8×8 handwritten digits, scikit-learn's bundled copy) and the loss goes down at every growth step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gromo.containers.growing_block import Conv2dGrowingBlock
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule, RestrictedConv2dGrowingModule


def _digits(device):
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.images[:128], dtype=torch.float64).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target[:128], dtype=torch.long)
    return x.to(device), y.to(device)


@pytest.mark.parametrize("conv_type", [RestrictedConv2dGrowingModule, FullConv2dGrowingModule],
                         ids=["restricted", "full"])
def test_conv_block_grows_on_digits_and_the_loss_goes_down(conv_type, generator, device):
    x, y = _digits(device)
    stem = nn.Conv2d(1, 4, 3, padding=1).double().to(device)
    head = nn.Sequential(nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 16, 10)).double().to(device)
    with torch.no_grad():
        for parameter in (*stem.parameters(), *head.parameters()):
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    block = Conv2dGrowingBlock(4, 4, 3, hidden_channels=0, activation=nn.ReLU(), kwargs_layer={"padding": 1},
                               growing_conv_type=conv_type, device=device).double()
    features = stem(x).detach()

    def loss_of(forward) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(head(forward(features)), y))

    losses = [loss_of(block)]
    for _ in range(3):
        block.init_computation()
        block.zero_grad()
        F.cross_entropy(head(block(features)), y, reduction="sum").backward()
        block.update_computation()
        block.compute_optimal_updates(dtype=torch.float64, maximum_added_neurons=3)
        block.reset_computation()
        candidates = []
        for gamma in (0.1, 0.3, 1.0, 3.0):
            block.set_scaling_factor(gamma)
            candidates.append((loss_of(block.extended_forward), gamma))
        best_loss, best_gamma = min(candidates)
        block.set_scaling_factor(best_gamma)
        block.apply_change()
        block.delete_update()
        losses.append(loss_of(block))
        assert losses[-1] == pytest.approx(best_loss, rel=1e-9)
    assert block.hidden_neurons > 0
    assert all(after < before for before, after in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.9 * losses[0], losses
