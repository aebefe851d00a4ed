"""Was growth worth it? A fixed network of the kept model's widths, trained from scratch for the same budget.

The baseline is the grown run's architecture at the widths of the model it kept, freshly initialised
(PyTorch's default initialisation of every linear / conv layer), trained with the same optimizer
settings, batch size and loss for as many epochs as the whole growth run trained in total. Like the
grown run, it is evaluated after every epoch and the epoch chosen on validation is reported next to
the final one.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .data import make_sources
from .distributed import Communicator
from .models import rebuild
from .passes import evaluate_source, train_source
from .records import StepRecord, chosen_index


def total_epochs(records: list[StepRecord], config) -> int:
    """Training epochs a growth run spent: the initial ones plus ``epochs`` per growth step."""
    initial = config.epochs if config.initial_epochs is None else config.initial_epochs
    return initial + config.epochs * max(len(records) - 1, 0)


def fresh_model(spec: dict, device=None, seed: int = 0) -> nn.Module:
    """The network of ``spec`` at its widths with freshly initialised weights (seeded)."""
    model = rebuild(spec, device=device)
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.reset_parameters()
    return model


def train_baseline(spec: dict, data, config, epochs: int, *, device=None, comm: Communicator | None = None,
                   progress: bool = False) -> dict:
    """Train the fixed network of ``spec`` for ``epochs`` epochs; returns its results.

    Returns:
        ``{"epochs", "parameters", "widths", "final_test_accuracy", "final_val_accuracy",
        "val_selected_epoch", "val_selected_test_accuracy", "val_selected_val_accuracy", "time"}``.
    """
    from .loop import make_adam, number_of_parameters

    start = time.perf_counter()
    comm = comm or Communicator()
    model = fresh_model(spec, device=device, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train, val, test = make_sources(
        data, batch_size=config.batch_size, evaluation_batch_size=config.evaluation_batch_size,
        generator=generator, comm=comm, device=device,
    )
    optimizer = make_adam(model, config)
    kwargs = {"batch_size": config.evaluation_batch_size, "label_smoothing": config.label_smoothing}
    history: list[StepRecord] = []
    epoch_iter = range(epochs + 1)
    if progress and comm.is_main:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="baseline", unit="epoch", dynamic_ncols=True)
    for epoch in epoch_iter:
        if epoch > 0:
            train_source(model, optimizer, train, epochs=1, comm=comm, label_smoothing=config.label_smoothing)
        record = StepRecord(step=epoch)
        record.val_loss, record.val_accuracy = evaluate_source(model, val, comm, **kwargs)
        record.test_loss, record.test_accuracy = evaluate_source(model, test, comm, **kwargs)
        history.append(record)
    chosen = history[chosen_index(history)]
    return {
        "epochs": epochs, "parameters": number_of_parameters(model), "widths": list(spec.get("widths") or []),
        "final_test_accuracy": history[-1].test_accuracy, "final_val_accuracy": history[-1].val_accuracy,
        "val_selected_epoch": chosen.step, "val_selected_test_accuracy": chosen.test_accuracy,
        "val_selected_val_accuracy": chosen.val_accuracy, "time": time.perf_counter() - start,
    }
