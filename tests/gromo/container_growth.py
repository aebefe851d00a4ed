"""One full growth cycle of a container on small random data, with the checks every container test
makes: statistics (training_utils.compute_statistics) → compute_optimal_updates → selection → line
search of the scaling factor γ → apply_change, where

* the extended forward at γ = 0 is the plain forward;
* for small γ the mean loss drops by γ²·(first-order improvement) to first order (the delta is
  applied at γ², the new neurons' two layers at γ each);
* after apply_change at γ the plain forward equals the extended forward at γ.

γ comes from ``gromo.utils.utils.line_search`` or, for bigger networks, the best of a few values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gromo.utils.training_utils import compute_statistics
from gromo.utils.utils import line_search


@dataclass
class GrowthCycle:
    index: int
    improvement: float
    gamma: float
    loss_before: float
    loss_after: float
    parameters_before: int
    parameters_after: int
    first_order_ratio: float


def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, extended: bool) -> float:
    with torch.no_grad():
        out = model.extended_forward(x) if extended else model(x)
        if isinstance(out, tuple):
            out = out[0]
        return float(((out - y) ** 2).sum() / x.shape[0])


def run_growth_cycle(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, select: int | None = None,
                     small_gamma: float = 1e-3, rtol: float = 1e-9, atol: float = 1e-10,
                     batch_size: int = 16, gammas: tuple[float, ...] | None = None, **update_kwargs) -> GrowthCycle:
    """Grow ``model`` (float64, eval mode) once; assert the three identities; return the numbers."""
    parameters_before = model.number_of_parameters()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    compute_statistics(model, loader, nn.MSELoss(reduction="sum"), device=x.device)
    model.compute_optimal_updates(**update_kwargs)
    model.reset_computation()
    index = model.select_best_update() if select is None else model.select_update(select)
    improvement = float(model.currently_updated_layer.first_order_improvement)
    model.eval()

    loss_before = _mean_loss(model, x, y, extended=False)
    model.set_scaling_factor(0.0)
    assert abs(_mean_loss(model, x, y, extended=True) - loss_before) <= 1e-12 * max(1.0, loss_before)

    model.set_scaling_factor(small_gamma)
    drop = loss_before - _mean_loss(model, x, y, extended=True)
    ratio = drop / (small_gamma**2 * improvement)

    def cost(gamma: float) -> float:
        model.set_scaling_factor(float(gamma))
        return _mean_loss(model, x, y, extended=True)

    if gammas is None:  # GroMo's line search (200 to 400 extended forwards)
        gamma, _ = line_search(cost)
    else:  # a coarse search for the bigger networks
        gamma = min(gammas, key=cost)
    gamma = float(gamma)
    model.set_scaling_factor(gamma)
    with torch.no_grad():
        extended = model.extended_forward(x)
    extended = extended[0] if isinstance(extended, tuple) else extended
    model.apply_change()
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, extended, rtol=rtol, atol=atol)
    return GrowthCycle(index, improvement, gamma, loss_before, _mean_loss(model, x, y, extended=False),
                       parameters_before, model.number_of_parameters(), ratio)
