"""ConstantModule: zero output that carries a gradient, and an optimal update that never moves it."""

from __future__ import annotations

import pytest
import torch

from gromo.modules.constant_module import ConstantModule
from gromo.modules.linear_growing_module import LinearGrowingModule


def test_constant_output_and_gradient(generator, device):
    module = ConstantModule(3, 4, device=device)
    assert module.bias is None and module.in_features == 3 and isinstance(module, LinearGrowingModule)
    x = torch.randn(5, 3, generator=generator).to(device)
    out = module(x)
    assert out.shape == (5, 4) and torch.equal(out, torch.zeros(5, 4, device=device))
    assert out.is_leaf and out.requires_grad and module.constant is out
    (out * torch.arange(4.0, device=device)).sum().backward()
    assert torch.equal(out.grad, torch.arange(4.0, device=device).expand(5, 4))
    assert module(x[:2]).shape == (2, 4)


def test_optimal_delta_layer_is_always_zero(generator, device):
    module = ConstantModule(3, 4, device=device)
    with pytest.raises(AttributeError):  # read before any assignment
        _ = module.optimal_delta_layer
    module.optimal_delta_layer = module.layer_of_tensor(torch.randn(4, 3, generator=generator).to(device))
    delta = module.optimal_delta_layer
    assert delta.bias is None and delta.weight.shape == (4, 3)
    assert float(delta.weight.detach().abs().sum()) == 0.0
    assert "optimal_delta_layer" not in dict(module.named_children())
