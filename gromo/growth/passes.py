"""One pass over a batch source: train, evaluate, or accumulate growth statistics.

Each function reads the batches of one pass of a source (:mod:`gromo.growth.data`) once, so its
memory is one batch whatever the dataset's size. Losses are the task's cross-entropy (optionally
label-smoothed); the statistics use the **sum**-reduced loss, so their per-sample gradients do not
depend on the batch size. In a data-parallel run every worker reads its own batches and sums are
reduced; a global training batch gives the same update as one process on the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import Communicator, all_reduce_gradients, sync_statistics


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite (a too-large learning rate, a poisoned batch)."""


def loss_sum(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Sum over the batch of the cross-entropy of ``logits`` (b, C) against ``targets`` (b,)."""
    return F.cross_entropy(logits, targets, reduction="sum", label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate_source(model: nn.Module, source, comm: Communicator | None = None, *, extended: bool = False,
                    batch_size: int | None = None, label_smoothing: float = 0.0) -> tuple[float | None, float | None]:
    """(mean loss, accuracy) of ``model`` over one pass of ``source``, in eval mode; (None, None) if empty.

    ``extended`` uses ``extended_forward`` (the pending growth at its scaling factor).
    """
    comm = comm or Communicator()
    if source is None:
        return None, None
    was_training = model.training
    model.eval()
    forward = model.extended_forward if extended else model
    total, correct, count = 0.0, 0.0, 0.0
    for x, y, _ in source.passes(batch_size):
        if len(y) == 0:
            continue
        logits = forward(x)
        total += float(loss_sum(logits, y, label_smoothing))
        correct += float((logits.argmax(dim=1) == y).sum())
        count += len(y)
    total, correct, count = comm.sum_floats(total, correct, count)
    model.train(was_training)
    if count == 0:
        return None, None
    return total / count, correct / count


def train_source(model: nn.Module, optimizer: torch.optim.Optimizer, source, *, epochs: int,
                 comm: Communicator | None = None, on_epoch: Callable[[], None] | None = None,
                 label_smoothing: float = 0.0) -> None:
    """``epochs`` passes of mini-batch training with the mean loss of each global batch.

    Each worker back-propagates ``(sum of its losses) / (global batch size)`` and the gradients are
    summed across workers.

    Raises:
        DivergenceError: the summed training loss of an epoch is not finite.
    """
    comm = comm or Communicator()
    model.train()
    for _ in range(epochs):
        epoch_loss = None  # summed on the device: no host sync per batch
        for x, y, n_global in source.passes():
            if n_global is None:
                n_global = int(comm.sum_floats(float(len(y)))[0])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_sum(model(x), y, label_smoothing) / max(n_global, 1)
            loss.backward()
            all_reduce_gradients(model, comm)
            optimizer.step()
            batch_loss = loss.detach().double()
            epoch_loss = batch_loss if epoch_loss is None else epoch_loss + batch_loss
        (total,) = comm.sum_floats(0.0 if epoch_loss is None else float(epoch_loss))
        if not math.isfinite(total):
            raise DivergenceError(f"training loss is {total} (not finite)")
        if on_epoch is not None:
            on_epoch()


def statistics_source(model: nn.Module, source, *, held_out: int, batch_size: int | None = None,
                      comm: Communicator | None = None, label_smoothing: float = 0.0,
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """init_computation, then per batch: forward, sum-reduced loss backward, update_computation.

    The first ``held_out`` samples this worker reads are kept out of the statistics and returned
    (for the line search); the model is in ``eval()`` throughout; statistics are summed across
    workers at the end and parameter gradients produced on the way are cleared.

    Returns:
        (x_held (h, ...), y_held (h,)), or (None, None) when ``held_out`` is 0.
    """
    comm = comm or Communicator()
    model.eval()
    model.init_computation()
    kept_x, kept_y, need = [], [], int(held_out)
    for x, y, _ in source.passes(batch_size):
        if need > 0:
            take = min(need, len(y))
            kept_x.append(x[:take])
            kept_y.append(y[:take])
            x, y, need = x[take:], y[take:], need - take
        if len(y) == 0:
            continue
        model.zero_grad(set_to_none=True)
        loss_sum(model(x), y, label_smoothing).backward()
        model.update_computation()
    model.zero_grad(set_to_none=True)
    sync_statistics(model, comm)
    if not kept_y:
        return None, None
    return torch.cat(kept_x), torch.cat(kept_y)


def held_out_share(total: int, comm: Communicator) -> int:
    """This worker's share of ``total`` held-out samples (workers' shares sum to ``total``)."""
    return total // comm.world_size + (1 if comm.rank < total % comm.world_size else 0)
