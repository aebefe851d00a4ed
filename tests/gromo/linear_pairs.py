"""A two-layer LinearGrowingModule chain with random weights, shared by the GrowingModule tests."""

from __future__ import annotations

import torch
from torch import nn

from gromo.modules.linear_growing_module import LinearGrowingModule


def linear_pair(generator, device, d=5, h=4, o=3, activation=None, first_bias=True, second_bias=True,
                dtype=torch.float32):
    """first: Linear(d→h) + activation (Tanh by default), second: Linear(h→o) growing from first.

    Weights and biases are drawn from ``generator`` (never zeros); both layers cast to ``dtype``.
    """
    first = LinearGrowingModule(d, h, use_bias=first_bias, post_layer_function=activation or nn.Tanh(),
                                device=device, name="first")
    second = LinearGrowingModule(h, o, use_bias=second_bias, previous_module=first, device=device, name="second")
    first.next_module = second
    with torch.no_grad():
        for layer in (first, second):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
    first.to(dtype)
    second.to(dtype)
    return first, second
