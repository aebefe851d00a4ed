"""Training, evaluation and statistics passes over a dataloader (GroMo's ``gromo.utils.training_utils``).

The loops a growth script runs between growth steps:

* ``gradient_descent``: one epoch of optimiser steps on a mean-reduced loss;
* ``evaluate_model``: the mean loss and a metric, optionally through ``extended_forward`` (the
  network with its pending updates at the current scaling factor);
* ``compute_statistics``: one pass that accumulates the growth statistics of every growable layer
  (``init_computation`` then ``update_computation`` per batch) on a sum-reduced loss.

Losses are averaged per sample (``AverageMeter`` weighted by the batch size); metrics are
``torchmetrics`` metrics (``MulticlassAccuracy`` for ``evaluate_dataset``), ``DummyMetric`` when none
is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from gromo.containers.growing_container import GrowingContainer, GrowingModel
from gromo.utils._assertions import gromo_assert
from gromo.utils.utils import global_device

__all__ = [
    "AverageMeter",
    "DummyMetric",
    "compute_statistics",
    "enumerate_dataloader",
    "evaluate_dataset",
    "evaluate_extended_dataset",
    "evaluate_model",
    "gradient_descent",
]

# GroMo's defaults, built once (a default argument is evaluated once anyway).
_CPU = torch.device("cpu")
_SUM_MSE = nn.MSELoss(reduction="sum")


class AverageMeter:
    """Running weighted mean ``Σ val·n / Σ n`` of the finite values it is given."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every value (sum None, count 0)."""
        self.sum: Any = None
        self.count = 0

    def update(self, val: torch.Tensor | float, n: int = 1) -> None:
        """Add ``val`` with weight ``n``; a value with a non-finite entry is ignored.

        Args:
            val: a number or a tensor (any shape; the mean is taken entrywise).
            n: weight (e.g. the batch size).
        """
        finite = torch.isfinite(torch.as_tensor(val)).all()
        if not bool(finite):
            return
        self.sum = val * n if self.sum is None else self.sum + val * n
        self.count += n

    def compute(self) -> torch.Tensor:
        """The weighted mean (``tensor(0.)`` before any value)."""
        if self.count == 0:
            return torch.tensor(0.0)
        return torch.as_tensor(self.sum / self.count)


class DummyMetric(Metric):
    """A metric that records nothing and computes ``tensor(0.)`` (the default of the loops)."""

    def update(self, *_: Any, **__: Any) -> None:
        """Ignore the batch."""

    def compute(self) -> torch.Tensor:
        """``tensor(0.)`` on the metric's device."""
        return torch.tensor(0.0, device=self.device)


def enumerate_dataloader(
    dataloader: torch.utils.data.DataLoader,
    dataloader_seed: int | None = None,
    batch_limit: int | None = None,
    epochs: float | None = None,
) -> Iterator[tuple[int, Any]]:
    """``enumerate`` over one pass of ``dataloader``, stopped after a number of batches.

    Args:
        dataloader: a DataLoader (its ``generator`` is re-seeded when a seed is given).
        dataloader_seed: seed of ``dataloader.generator`` (the shuffling order), or None.
        batch_limit: at most this many batches (-1 or None: the whole pass).
        epochs: at most ``int(len(dataloader)·epochs)`` batches (a fraction of the pass).
    Yields:
        (batch index, batch).
    Raises:
        TypeError: both ``epochs`` and ``batch_limit`` are given.
        AssertionError: a negative ``epochs`` or a ``batch_limit`` below -1.
        AttributeError: a seed is given but the dataloader has no torch.Generator.
    """
    if epochs is not None and batch_limit is not None:
        raise TypeError(
            f"Only one  of `epochs` and `batch_limit` can be provided, but got {epochs=} and {batch_limit=}"
        )
    if epochs is not None:
        gromo_assert(epochs >= 0, "Epochs must be non-negative")
        batch_limit = int(len(dataloader) * epochs)
    elif batch_limit is not None:
        gromo_assert(batch_limit == -1 or batch_limit >= 0, "Batch limit must be -1 or non-negative")
    if dataloader_seed is not None:
        if not isinstance(getattr(dataloader, "generator", None), torch.Generator):
            raise AttributeError(
                "The dataloader does not have a 'generator' attribute of type torch.Generator, "
                "so the seed cannot be set."
            )
        dataloader.generator.manual_seed(dataloader_seed)
    limit = None if batch_limit is None or batch_limit == -1 else batch_limit
    if limit == 0:
        return
    for index, batch in enumerate(dataloader):
        yield index, batch
        if limit is not None and index + 1 >= limit:
            return


def _check_reduction(loss_function: Any, reduction: str, message: str) -> None:
    """A torch loss module must use ``reduction``; a plain function is taken as it is."""
    if isinstance(loss_function, nn.Module) and hasattr(loss_function, "reduction"):
        gromo_assert(loss_function.reduction == reduction, message)


def _as_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _prepared_metric(metrics: Metric | None, device: torch.device | str) -> Metric:
    metric = DummyMetric() if metrics is None else metrics
    metric.reset()
    return metric.to(device)


def evaluate_model(
    model: nn.Module,
    dataloader: torch.utils.data.DataLoader,
    loss_function: nn.Module,
    use_extended_model: bool = False,
    metrics: Metric | None = None,
    batch_limit: int | None = None,
    dataloader_seed: int | None = None,
    mask: dict | None = None,
    device: torch.device = _CPU,
) -> tuple[float, float]:
    """Mean loss and metric of ``model`` over ``dataloader`` (no gradients; leaves ``model.eval()``).

    With ``use_extended_model`` the prediction is ``model.extended_forward(x, mask=mask)`` (the first
    element of the pair for a container that is not a ``GrowingModel``): the network with its pending
    updates at the current scaling factor.

    Args:
        model: maps x (n, *in) to predictions (n, *out).
        dataloader: yields (x, y) batches.
        loss_function: mean-reduced loss(pred, y).
        use_extended_model: predict with ``extended_forward``.
        metrics: a torchmetrics Metric (reset first), or None.
        batch_limit: at most this many batches (-1/None: all).
        dataloader_seed: seed of the dataloader's generator.
        mask: forwarded to ``extended_forward``.
        device: where batches and the metric go.
    Returns:
        (per-sample mean loss, metric value) as floats.
    Raises:
        AssertionError: a loss module that is not mean-reduced.
        TypeError: ``use_extended_model`` on a model that is not a GrowingContainer.
    """
    _check_reduction(loss_function, "mean", "The loss function should be averaged over the batch")
    if use_extended_model and not isinstance(model, GrowingContainer):
        raise TypeError("Model must be an instance of GrowingModel or GrowingContainer when use_extended_model is True")
    metric = _prepared_metric(metrics, device)
    meter = AverageMeter()
    model.eval()
    with torch.no_grad():
        for _, (x, y) in enumerate_dataloader(dataloader, dataloader_seed=dataloader_seed, batch_limit=batch_limit):
            x, y = x.to(device), y.to(device)
            if not use_extended_model:
                prediction = model(x)
            elif isinstance(model, GrowingModel):
                prediction = model.extended_forward(x, mask=mask)
            else:
                prediction = model.extended_forward(x, mask=mask)[0]
            meter.update(loss_function(prediction, y), x.size(0))
            metric.update(prediction, y)
    return _as_float(meter.compute()), _as_float(metric.compute())


def gradient_descent(
    model: nn.Module,
    train_dataloader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loss_function: nn.Module,
    metrics: Metric | None = None,
    batch_limit: int | None = None,
    dataloader_seed: int | None = None,
    device: torch.device = _CPU,
    scheduler_step_granularity: Literal["epoch", "batch"] = "epoch",
) -> tuple[float, float]:
    """One epoch (or ``batch_limit`` batches) of optimiser steps (``model.train()``).

    Args:
        model: maps x (n, *in) to predictions (n, *out).
        train_dataloader: yields (x, y) batches.
        optimizer: steps the model's parameters.
        scheduler: a learning-rate scheduler (stepped per batch or once after the epoch), or None.
        loss_function: mean-reduced loss(pred, y).
        metrics: a torchmetrics Metric, or None.
        batch_limit: at most this many batches (-1/None: all).
        dataloader_seed: seed of the dataloader's generator.
        device: where batches and the metric go.
        scheduler_step_granularity: "epoch" or "batch".
    Returns:
        (per-sample mean training loss, metric value) as floats.
    Raises:
        AssertionError: a loss module that is not mean-reduced; a NaN loss.
        ValueError: an unknown ``scheduler_step_granularity``.
    """
    _check_reduction(loss_function, "mean", "The loss function should be averaged over the batch")
    if scheduler_step_granularity not in ("epoch", "batch"):
        raise ValueError(
            f"scheduler_step_granularity must be 'epoch' or 'batch', got {scheduler_step_granularity!r}"
        )
    metric = _prepared_metric(metrics, device)
    meter = AverageMeter()
    model.train()
    for index, (x, y) in enumerate_dataloader(train_dataloader, dataloader_seed=dataloader_seed,
                                              batch_limit=batch_limit):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        prediction = model(x)
        loss = loss_function(prediction, y)
        gromo_assert(
            not bool(torch.isnan(loss).any()),
            f"During training of {model}, loss is NaN: {loss}, sample index: {index / len(train_dataloader)}",
        )
        loss.backward()
        optimizer.step()
        meter.update(loss.detach(), x.size(0))
        metric.update(prediction.detach(), y)
        if scheduler is not None and scheduler_step_granularity == "batch":
            scheduler.step()
    if scheduler is not None and scheduler_step_granularity == "epoch":
        scheduler.step()
    return _as_float(meter.compute()), _as_float(metric.compute())


def compute_statistics(
    model: GrowingContainer,
    dataloader: torch.utils.data.DataLoader,
    loss_function: nn.Module = _SUM_MSE,
    metrics: Metric | None = None,
    batch_limit: int | None = None,
    dataloader_seed: int | None = None,
    device: torch.device = _CPU,
) -> tuple[float, float]:
    """Accumulate the growth statistics of every growable layer of ``model`` over the batches.

    Calls ``model.init_computation()`` and, per batch, forward, backward of the sum-reduced loss and
    ``model.update_computation()``. The statistics are not reset (the caller resets them after
    ``compute_optimal_updates``).

    Args:
        model: a growing container.
        dataloader: yields (x, y) batches.
        loss_function: sum-reduced loss(pred, y) (the statistics are sums over samples).
        metrics: a torchmetrics Metric, or None.
        batch_limit: at most this many batches (-1/None: all).
        dataloader_seed: seed of the dataloader's generator.
        device: where batches and the metric go.
    Returns:
        (per-sample mean loss, metric value) as floats.
    Raises:
        AssertionError: a loss module that is mean-reduced.
    """
    _check_reduction(loss_function, "sum", "The loss function should not be averaged over the batch")
    metric = _prepared_metric(metrics, device)
    meter = AverageMeter()
    model.init_computation()
    model.eval()
    for _, (x, y) in enumerate_dataloader(dataloader, dataloader_seed=dataloader_seed, batch_limit=batch_limit):
        x, y = x.to(device), y.to(device)
        model.zero_grad()
        prediction = model(x)
        loss = loss_function(prediction, y)
        loss.backward()
        model.update_computation()
        meter.update(loss.detach() / x.size(0), x.size(0))
        metric.update(prediction.detach(), y)
    return _as_float(meter.compute()), _as_float(metric.compute())


def _accuracy_metric(model: nn.Module, dataloader: torch.utils.data.DataLoader) -> Metric | None:
    """Micro-averaged multiclass accuracy when the targets are class indices and there are classes."""
    _, first_targets = next(iter(dataloader))
    if first_targets.dim() == 1 and model.out_features > 1:
        return MulticlassAccuracy(num_classes=model.out_features, average="micro")
    return None


def _evaluate_with_accuracy(model: nn.Module, dataloader: torch.utils.data.DataLoader, loss_fn: nn.Module,
                            use_extended_model: bool, mask: dict | None) -> tuple[float, float]:
    metric = _accuracy_metric(model, dataloader)
    loss, accuracy = evaluate_model(model, dataloader, loss_fn, use_extended_model=use_extended_model,
                                    metrics=metric, mask=mask, device=global_device())
    return (accuracy if metric is not None else -1.0), loss


def evaluate_extended_dataset(model: GrowingContainer, dataloader: torch.utils.data.DataLoader,
                              loss_fn: nn.Module, mask: dict | None = None) -> tuple[float, float]:
    """Accuracy and mean loss through ``extended_forward``, on the global device.

    Returns:
        (accuracy, loss) — accuracy is -1 unless the targets are 1-D class indices and
        ``model.out_features > 1``.
    """
    return _evaluate_with_accuracy(model, dataloader, loss_fn, use_extended_model=True, mask=mask)


def evaluate_dataset(model: nn.Module, dataloader: torch.utils.data.DataLoader,
                     loss_fn: nn.Module) -> tuple[float, float]:
    """Accuracy and mean loss through the plain forward, on the global device.

    Returns:
        (accuracy, loss) — accuracy is -1 unless the targets are 1-D class indices and
        ``model.out_features > 1``.
    """
    return _evaluate_with_accuracy(model, dataloader, loss_fn, use_extended_model=False, mask=None)

