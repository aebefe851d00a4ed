"""Real layer statistics for the solve accuracy tests: a trained digits MLP and a ReLU chain of
convolutions, each as (fp32 statistics, float64-from-data statistics) of the very same inputs and
gradients, for the delta solve of every layer and the new-neuron solve between consecutive layers."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

import gromo_kernels as gk
from gromo_kernels.testing import float64_statistics


class LayerCase(NamedTuple):
    name: str
    s32: torch.Tensor  # input covariance (D, D)
    m32: torch.Tensor  # input-gradient statistic (D, o)
    s64: torch.Tensor
    m64: torch.Tensor
    s_prev32: torch.Tensor | None  # growth covariance (previous layer's input) for new neurons
    n32: torch.Tensor | None  # −M₋₂ (D_prev, o)
    s_prev64: torch.Tensor | None
    n64: torch.Tensor | None


def _train(model, x, y, steps, lr, seed):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _capture(model, layers, x, y):
    """Inputs and output gradients (sum-reduced loss) of each layer in ``layers``."""
    inputs, grads, handles = {}, {}, []
    for i, layer in enumerate(layers):
        def hook(module, args, out, i=i):
            inputs[i] = args[0].detach()
            out.register_hook(lambda g, i=i: grads.__setitem__(i, g.detach()))
        handles.append(layer.register_forward_hook(hook))
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    for h in handles:
        h.remove()
    return inputs, grads


def digits_mlp_cases(hidden: int = 32, steps: int = 150, seed: int = 0) -> list[LayerCase]:
    """64→hidden→10 ReLU MLP trained on digits (inputs x/16), statistics of its second layer."""
    from gromo.growth.datasets import load_digits_arrays

    features, labels = load_digits_arrays()
    x = torch.from_numpy(features).float() / 16.0
    y = torch.from_numpy(labels)
    torch.manual_seed(seed)
    first, second = nn.Linear(64, hidden), nn.Linear(hidden, 10)
    model = nn.Sequential(first, nn.ReLU(), second)
    _train(model, x, y, steps, 1e-2, seed)
    inputs, grads = _capture(model, [first, second], x, y)
    return [_linear_case(f"digits-{hidden}", inputs[0], inputs[1], grads[1])]


def _linear_case(name, x_prev, x, grad) -> LayerCase:
    stats = [(gk.linear_input_cov, (x,)), (gk.linear_input_grad, (x, grad)),
             (gk.linear_input_cov, (x_prev,)), (gk.linear_input_grad, (x_prev, grad))]
    s32, m32, sp32, mp32 = [fn(*t) for fn, t in stats]
    s64, m64, sp64, mp64 = [float64_statistics(fn, *t) for fn, t in stats]
    return LayerCase(name, s32, m32, s64, m64, sp32, -mp32, sp64, -mp64)


def conv_chain_cases(channels: int = 16, layers: int = 5, size: int = 12, batch: int = 16,
                     steps: int = 30, seed: int = 0) -> list[LayerCase]:
    """A ReLU chain of 3×3 convolutions (padding 1) on random images with random labels, trained a
    few steps; cases for layers 2…L: delta of layer l, new neurons between layers l−1 and l
    (Restricted growth: N = −M₋₂ at the centre tap of the previous layer's input)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    torch.manual_seed(seed)
    convs = [nn.Conv2d(3 if i == 0 else channels, channels, 3, padding=1) for i in range(layers)]
    body = []
    for conv in convs:
        body += [conv, nn.ReLU()]
    model = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))
    _train(model, x, y, steps, 1e-3, seed)
    inputs, grads = _capture(model, convs, x, y)
    cases = []
    for i in range(1, layers):
        x_prev, xi, gi = inputs[i - 1], inputs[i], grads[i]
        stats = [(gk.conv2d_input_cov, (xi,)), (gk.conv2d_input_grad, (xi, gi)), (gk.conv2d_input_cov, (x_prev,))]
        s32, m32, sp32 = [fn(*t, 3, padding=1) for fn, t in stats]
        s64, m64, sp64 = [float64_statistics(fn, *t, 3, padding=1) for fn, t in stats]
        geometry = gk.Conv2dGeometry(kernel_size=3, padding=1)
        r32 = gk.conv2d_restricted_growth_stats(x_prev, xi, gi, prev=geometry, cur=geometry)
        r64 = float64_statistics(gk.conv2d_restricted_growth_stats, x_prev, xi, gi, prev=geometry, cur=geometry)
        cases.append(LayerCase(f"chain-{i + 1}", s32, m32, s64, m64, sp32, -r32.m_prev, sp64, -r64.m_prev))
    return cases
