"""gromo.utils.training_utils: meters, the batch iterator, and the train / evaluate / statistics
loops, checked against losses and accuracies recomputed directly from the same data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo.utils import training_utils as tu


def _regression(generator, n=37, d_in=5, d_out=3):
    x = torch.randn(n, d_in, generator=generator)
    y = x @ torch.randn(d_in, d_out, generator=generator) + 0.1 * torch.randn(n, d_out, generator=generator)
    return x, y


def _classification(generator, n=41, d_in=4, classes=3):
    x = torch.randn(n, d_in, generator=generator)
    return x, torch.randint(0, classes, (n,), generator=generator)


def test_average_meter_weights_and_skips_non_finite():
    meter = tu.AverageMeter()
    assert float(meter.compute()) == 0.0
    meter.update(2.0, 3)
    meter.update(float("nan"), 10)
    meter.update(torch.tensor(5.0), 1)
    assert meter.count == 4 and float(meter.compute()) == pytest.approx(11 / 4)
    meter.reset()
    assert meter.sum is None and meter.count == 0


def test_dummy_metric_is_zero():
    metric = tu.DummyMetric()
    metric.update(torch.randn(3), torch.randn(3))
    assert float(metric.compute()) == 0.0


def test_enumerate_dataloader_limits_and_errors(generator):
    loader = DataLoader(TensorDataset(torch.arange(10.0)), batch_size=2)
    assert [i for i, _ in tu.enumerate_dataloader(loader)] == [0, 1, 2, 3, 4]
    assert [i for i, _ in tu.enumerate_dataloader(loader, batch_limit=-1)] == [0, 1, 2, 3, 4]
    assert [i for i, _ in tu.enumerate_dataloader(loader, batch_limit=2)] == [0, 1]
    assert [i for i, _ in tu.enumerate_dataloader(loader, batch_limit=0)] == []
    assert [i for i, _ in tu.enumerate_dataloader(loader, epochs=0.5)] == [0, 1]
    with pytest.raises(TypeError, match=r"Only one  of `epochs` and `batch_limit` can be provided, but got "
                                         r"epochs=1 and batch_limit=2"):
        list(tu.enumerate_dataloader(loader, batch_limit=2, epochs=1))
    with pytest.raises(AssertionError, match="Epochs must be non-negative"):
        list(tu.enumerate_dataloader(loader, epochs=-1))
    with pytest.raises(AssertionError, match="Batch limit must be -1 or non-negative"):
        list(tu.enumerate_dataloader(loader, batch_limit=-2))
    with pytest.raises(AttributeError, match="does not have a 'generator' attribute"):
        list(tu.enumerate_dataloader(loader, dataloader_seed=3))
    shuffled = DataLoader(TensorDataset(torch.arange(10.0)), batch_size=10, shuffle=True,
                          generator=torch.Generator())
    first = next(iter(tu.enumerate_dataloader(shuffled, dataloader_seed=7)))[1][0]
    again = next(iter(tu.enumerate_dataloader(shuffled, dataloader_seed=7)))[1][0]
    assert torch.equal(first, again) and sorted(first.tolist()) == list(range(10))


def test_linear_growing_module_tutorial_train_and_evaluate(generator, device):
    """GroMo's first tutorial: a LinearGrowingModule trained with gradient_descent and scored with
    evaluate_model; the returned losses are the per-sample means of the loss over the data."""
    x, y = _regression(generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    torch.manual_seed(0)
    module = LinearGrowingModule(5, 3, device=device)
    loss_fn = nn.MSELoss()
    with torch.no_grad():
        expected = float(((module(x.to(device)) - y.to(device)) ** 2).mean())
    loss, metric = tu.evaluate_model(module, loader, loss_fn, device=device)
    assert loss == pytest.approx(expected, rel=1e-5) and metric == 0.0
    assert not module.training

    # lr = 0: the training loss is the same per-sample mean, weighted by batch size (last batch 5 < 8)
    frozen = torch.optim.SGD(module.parameters(), lr=0.0)
    train_loss, _ = tu.gradient_descent(module, loader, frozen, None, loss_fn, device=device)
    assert train_loss == pytest.approx(expected, rel=1e-5) and module.training

    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.95)
    for _ in range(20):
        tu.gradient_descent(module, loader, optimizer, scheduler, loss_fn, device=device)
    trained, _ = tu.evaluate_model(module, loader, loss_fn, device=device)
    assert trained < 0.5 * expected
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.95 ** 20)  # one step per epoch

    per_batch = torch.optim.SGD(module.parameters(), lr=0.05)
    batch_scheduler = torch.optim.lr_scheduler.StepLR(per_batch, step_size=1, gamma=0.5)
    tu.gradient_descent(module, loader, per_batch, batch_scheduler, loss_fn, device=device,
                        scheduler_step_granularity="batch")
    assert per_batch.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5 ** len(loader))


def test_evaluate_model_accuracy_matches_direct_count(generator, device):
    x, y = _classification(generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    torch.manual_seed(1)
    module = LinearGrowingModule(4, 3, device=device)
    with torch.no_grad():
        logits = module(x.to(device))
    direct_accuracy = float((logits.argmax(1).cpu() == y).double().mean())
    direct_loss = float(nn.functional.cross_entropy(logits.cpu(), y))
    loss, accuracy = tu.evaluate_model(module, loader, nn.CrossEntropyLoss(),
                                       metrics=MulticlassAccuracy(num_classes=3, average="micro"), device=device)
    assert accuracy == pytest.approx(direct_accuracy) and loss == pytest.approx(direct_loss, rel=1e-5)
    accuracy_ds, loss_ds = tu.evaluate_dataset(module.to(tu.global_device()), loader, nn.CrossEntropyLoss())
    assert accuracy_ds == pytest.approx(direct_accuracy) and loss_ds == pytest.approx(direct_loss, rel=1e-5)
    regression = DataLoader(TensorDataset(*_regression(generator, d_in=4)), batch_size=16)
    no_accuracy, mse = tu.evaluate_dataset(module, regression, nn.MSELoss())
    assert no_accuracy == -1 and math.isfinite(mse) and mse > 0


def test_loop_argument_errors(generator, device):
    x, y = _regression(generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    module = LinearGrowingModule(5, 3, device=device)
    with pytest.raises(AssertionError, match="The loss function should be averaged over the batch"):
        tu.evaluate_model(module, loader, nn.MSELoss(reduction="sum"), device=device)
    with pytest.raises(AssertionError, match="The loss function should be averaged over the batch"):
        tu.gradient_descent(module, loader, torch.optim.SGD(module.parameters(), lr=0.1), None,
                            nn.MSELoss(reduction="sum"), device=device)
    with pytest.raises(AssertionError, match="The loss function should not be averaged over the batch"):
        tu.compute_statistics(module, loader, nn.MSELoss(), device=device)
    with pytest.raises(TypeError, match="Model must be an instance of GrowingModel or GrowingContainer"):
        tu.evaluate_model(module, loader, nn.MSELoss(), use_extended_model=True, device=device)
    with pytest.raises(ValueError, match="scheduler_step_granularity"):
        tu.gradient_descent(module, loader, torch.optim.SGD(module.parameters(), lr=0.1), None, nn.MSELoss(),
                            device=device, scheduler_step_granularity="step")
    nan_loader = DataLoader(TensorDataset(torch.full((4, 5), float("nan")), y[:4]), batch_size=2)
    with pytest.raises(AssertionError, match="loss is NaN: .* sample index: 0.0"):
        tu.gradient_descent(module, nan_loader, torch.optim.SGD(module.parameters(), lr=0.1), None, nn.MSELoss(),
                            device=device)
