"""Line search of a scaling factor and two small gradient-descent loops (names of GroMo's
``gromo.utils.utils``, re-exported there).

``line_search`` scans factors geometrically: 0 and 100 points from 1e-6 to 1, then decade after
decade ([1, 10], [10, 100], …, 100 points each, bounds included) while the previous decade lowered the
best loss. The gradient-descent loops return per-epoch histories of the loss and of the accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["batch_gradient_descent", "line_search", "mini_batch_gradient_descent"]


def line_search(cost_fn: Callable[[float], float], return_history: bool = False) -> tuple[Any, Any]:
    """Minimise ``cost_fn`` over a geometric scan of factors γ ≥ 0.

    Args:
        cost_fn: γ (float) → loss (float).
        return_history: return every factor and loss tried instead of the best.
    Returns:
        (first factor of minimal loss, minimal loss), or (factors, losses) lists.
    """
    factors = [0.0, *np.geomspace(1e-6, 1.0, 100).tolist()]
    losses = [cost_fn(factor) for factor in factors]
    best = min(losses)
    decade_start = 1.0
    improved = True
    while improved:
        decade = np.geomspace(decade_start, 10 * decade_start, 100).tolist()
        decade_losses = [cost_fn(factor) for factor in decade]
        factors += decade
        losses += decade_losses
        improved = min(decade_losses) < best
        best = min(best, min(decade_losses))
        decade_start *= 10
    if return_history:
        return factors, losses
    index = int(np.argmin(losses))
    return factors[index], losses[index]


def _accuracy(output: torch.Tensor, target: torch.Tensor) -> float:
    return float((output.argmax(dim=1) == target).float().mean())


def mini_batch_gradient_descent(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    cost_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    X: torch.Tensor | str,
    Y: torch.Tensor | str,
    lrate: float,
    max_epochs: int,
    batch_size: int,
    x_keys: list[str] = [],  # noqa: B006 (GroMo's signature; never mutated)
    y_keys: list[str] = [],  # noqa: B006
    parameters: Iterable[torch.nn.Parameter] | None = None,
    fast: bool = False,
    eval_fn: Callable[[], Any] | None = None,
    verbose: bool = True,
) -> tuple[list[float], list[float]]:
    """AdamW (weight decay 0) on shuffled mini-batches of (X, Y) for ``max_epochs`` epochs.

    Args:
        model: a module, or a forward function (then ``parameters`` are optimised).
        cost_fn: loss(output, target).
        X, Y: tensors (n, …), or paths of saved dicts read through ``MemMapDataset`` with the keys.
        lrate: learning rate.
        max_epochs: epochs.
        batch_size: batch size.
        x_keys, y_keys: keys of the saved dicts (paths only).
        parameters: what to optimise when ``model`` is not a module.
        fast: skip the accuracy and ``eval_fn``.
        eval_fn: called once per epoch unless ``fast``.
        verbose: print every 10th epoch.
    Returns:
        (mean batch loss per epoch, accuracy per epoch — empty when ``fast``).
    Raises:
        TypeError: X and Y of different types, or neither tensors nor paths.
        ValueError: paths without keys.
        AttributeError: a forward function without parameters.
    """
    from gromo.utils.disk_dataset import MemMapDataset
    from gromo.utils.utils import global_device

    if type(X) is not type(Y):
        raise TypeError(f"X and Y should have the same type. Got {type(X)=} and {type(Y)=}")
    if isinstance(X, str):
        if not x_keys or not y_keys:
            raise ValueError("At least one key is required for X and Y")
        dataset = MemMapDataset(X, Y, x_keys, y_keys)
    elif isinstance(X, torch.Tensor):
        dataset = TensorDataset(X, Y)
    else:
        raise TypeError(f"Inappropriate type for X. Expected torch.Tensor or str. Got {type(X)}")
    if isinstance(model, nn.Module):
        parameters = model.parameters()
    else:
        parameters = list(parameters) if parameters is not None else []
        if not parameters:
            raise AttributeError(
                "When the model is just a forward function, the parameters argument must not be None or empty"
            )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(parameters, lr=lrate, weight_decay=0)
    device = global_device()
    loss_history: list[float] = []
    acc_history: list[float] = []
    for epoch in range(max_epochs):
        batch_losses, batch_accuracies = [], []
        for x_batch, y_batch in loader:
            x_batch, y_batch = x_batch.to(device), y_batch.to(device)
            output = model(x_batch)
            loss = cost_fn(output, y_batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())
            if not fast:
                batch_accuracies.append(_accuracy(output.detach(), y_batch))
        loss_history.append(float(np.mean(batch_losses)))
        if not fast:
            acc_history.append(float(np.mean(batch_accuracies)))
            if eval_fn is not None:
                eval_fn()
        if verbose and epoch % 10 == 0:
            if fast:
                print(f"Epoch {epoch}: Train loss {loss_history[-1]}")
            else:
                print(f"Epoch {epoch}: Train loss {loss_history[-1]} Train Accuracy {acc_history[-1]}")
    return loss_history, acc_history


def batch_gradient_descent(
    forward_fn: Callable[[], torch.Tensor],
    cost_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    max_epochs: int = 100,
    tol: float = 1e-5,
    fast: bool = True,
    eval_fn: Callable[[], Any] | None = None,
) -> tuple[list[float], list[float]]:
    """``max_epochs`` full-batch steps on ``cost_fn(forward_fn(), target)``.

    Args:
        forward_fn: () → output (n, …).
        cost_fn: loss(output, target).
        target: (n, …).
        optimizer: steps the parameters behind ``forward_fn``.
        max_epochs: steps.
        tol: unused (GroMo's signature).
        fast: skip the accuracy and ``eval_fn``.
        eval_fn: called once per step unless ``fast``.
    Returns:
        (loss per step, accuracy per step — empty when ``fast``).
    """
    loss_history: list[float] = []
    acc_history: list[float] = []
    for _ in range(max_epochs):
        output = forward_fn()
        loss = cost_fn(output, target)
        loss_history.append(loss.item())
        if not fast:
            acc_history.append(_accuracy(output.detach(), target))
            if eval_fn is not None:
                eval_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return loss_history, acc_history
