"""Pieces of the growth command that do not need a growing model: data, records, optimizer state, plots."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from gromo.growth.datasets import load_dataset, load_digits, make_synthetic, stratified_split
from gromo.growth.optim import ParameterSnapshot, rebuild_optimizer
from gromo.growth.records import GrowthLog, StepRecord, summarise, write_json_atomic


def test_digits_split_is_sklearns_stratified_split():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    x, y = sklearn_datasets.load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(x, y, test_size=450, stratify=y, random_state=0)
    train, test = stratified_split(y, 450, random_state=0)
    assert np.array_equal(x[train], x_tr) and np.array_equal(y[train], y_tr)
    assert np.array_equal(x[test], x_te) and np.array_equal(y[test], y_te)


def test_digits_standardised_with_train_statistics():
    data = load_digits()
    assert data.x_train.shape == (1347, 1, 8, 8) and data.x_test.shape == (450, 1, 8, 8)
    flat = data.x_train.reshape(1347, 64).double()
    varying = flat.std(dim=0) > 0
    torch.testing.assert_close(flat.mean(dim=0), torch.zeros(64, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat[:, varying].std(dim=0, unbiased=False), torch.ones(int(varying.sum()), dtype=torch.float64), atol=1e-5, rtol=0)
    # test statistics are NOT used: the test mean is not exactly zero
    assert data.x_test.reshape(450, 64).mean(dim=0).abs().max() > 1e-3
    assert torch.equal(torch.bincount(data.y_test), torch.tensor([45, 46, 44, 46, 45, 46, 45, 45, 43, 45]))


def test_validation_carve_out_keeps_test_split():
    plain, with_val = load_digits(), load_digits(val_fraction=0.1, seed=3)
    assert len(with_val.y_val) == 135 and len(with_val.y_train) == 1347 - 135
    assert torch.equal(plain.y_test, with_val.y_test)


def test_synthetic_is_reproducible_and_balanced():
    a, b = make_synthetic(seed=5), make_synthetic(seed=5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    counts = torch.bincount(a.y_train, minlength=4)
    assert counts.min() > 0.15 * len(a.y_train)
    assert not torch.equal(make_synthetic(seed=6).y_train, a.y_train)


@pytest.mark.parametrize("name, kwargs, match", [
    ("imagenet", {}, "unknown dataset"),
    ("synthetic_bad", {}, "unknown dataset"),
])
def test_unknown_dataset(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(name, **kwargs)


def test_synthetic_bad_sizes():
    with pytest.raises(ValueError, match="num_classes"):
        make_synthetic(num_classes=1)
    with pytest.raises(ValueError, match="val_fraction"):
        make_synthetic(val_fraction=1.0)


def test_growth_json_atomic_and_valid_after_each_step(tmp_path):
    path = tmp_path / "out" / "growth.json"
    log = GrowthLog(str(path), {"seed": 1})
    log.set_initial(StepRecord(step=0, test_accuracy=0.5, parameters=10, widths=[1]))
    log.append(StepRecord(step=1, layer="layers.1", neurons_added=3, test_accuracy=0.75, train_loss=float("nan")))
    payload = json.loads(path.read_text())
    assert payload["status"] == "running"
    assert [s["step"] for s in payload["steps"]] == [1]
    assert payload["steps"][0]["test_accuracy"] == 0.75
    assert payload["steps"][0]["train_loss"] is None  # NaN is not JSON
    assert os.listdir(path.parent) == ["growth.json"]  # no temporary file left behind

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"steps": [Unserialisable()]})
    assert json.loads(path.read_text())["steps"][0]["neurons_added"] == 3  # old file intact
    assert os.listdir(path.parent) == ["growth.json"]


def test_summary_picks_validation_model():
    records = [
        StepRecord(step=0, val_accuracy=0.5, test_accuracy=0.4, parameters=10),
        StepRecord(step=1, val_accuracy=0.9, test_accuracy=0.8, parameters=20, time_training=1.0),
        StepRecord(step=2, val_accuracy=0.9, test_accuracy=0.95, parameters=30, time_training=2.0),
    ]
    summary = summarise(records)
    assert summary["best_test_accuracy"] == 0.95 and summary["best_test_step"] == 2
    assert summary["val_selected_step"] == 1 and summary["val_selected_test_accuracy"] == 0.8
    assert summary["time_training"] == 3.0


def _train(model, optimizer, generator, steps=3):
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(7, model[0].in_features, generator=generator)).pow(2).sum().backward()
        optimizer.step()


def test_adam_state_survives_growth(generator):
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    _train(model, optimizer, generator)
    old_state = {name: {k: v.clone() for k, v in optimizer.state[p].items()} for name, p in model.named_parameters()}
    snapshot = ParameterSnapshot(model, optimizer)
    # grow the hidden layer from 2 to 5 neurons with new layer objects, as apply_change does
    first, second = nn.Linear(3, 5), nn.Linear(5, 4)
    with torch.no_grad():
        first.weight[:2], first.bias[:2] = model[0].weight, model[0].bias
        second.weight[:, :2], second.bias[:] = model[2].weight, model[2].bias
    model[0], model[2] = first, second
    new_optimizer = rebuild_optimizer(model, snapshot)
    assert new_optimizer.param_groups[0]["lr"] == 1e-2 and new_optimizer.param_groups[0]["betas"] == (0.8, 0.95)
    state = new_optimizer.state[first.weight]
    assert float(state["step"]) == 3.0
    torch.testing.assert_close(state["exp_avg"][:2], old_state["0.weight"]["exp_avg"], rtol=0, atol=0)
    torch.testing.assert_close(state["exp_avg_sq"][:2], old_state["0.weight"]["exp_avg_sq"], rtol=0, atol=0)
    assert torch.count_nonzero(state["exp_avg"][2:]) == 0 and torch.count_nonzero(state["exp_avg_sq"][2:]) == 0
    second_state = new_optimizer.state[second.weight]
    torch.testing.assert_close(second_state["exp_avg_sq"][:, :2], old_state["2.weight"]["exp_avg_sq"], rtol=0, atol=0)
    assert torch.count_nonzero(second_state["exp_avg_sq"][:, 2:]) == 0
    torch.testing.assert_close(new_optimizer.state[second.bias]["exp_avg"], old_state["2.bias"]["exp_avg"], rtol=0, atol=0)
    _train(model, new_optimizer, generator, steps=1)
    assert float(new_optimizer.state[first.weight]["step"]) == 4.0


def test_state_cannot_be_carried_into_a_smaller_parameter(generator):
    model = nn.Sequential(nn.Linear(3, 4))
    optimizer = torch.optim.Adam(model.parameters())
    _train(model, optimizer, generator, steps=1)
    snapshot = ParameterSnapshot(model, optimizer)
    model[0] = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="parameter shape"):
        rebuild_optimizer(model, snapshot)


def test_plots_written(tmp_path):
    pytest.importorskip("matplotlib")
    from gromo.growth.plots import PLOT_FILES, plot_all

    records = [StepRecord(step=0, parameters=85, widths=[1], train_accuracy=0.3, test_accuracy=0.28, train_loss=1.9, test_loss=2.0)]
    for step in range(1, 4):
        records.append(StepRecord(
            step=step, layer="layers.1", neurons_added=8, first_order_gain=1.0 / step, scale=0.5,
            candidate_gains={"layers.1": 1.0 / step, "layers.2": 0.3 / step}, parameters=85 + 600 * step,
            widths=[1 + 8 * step, 3], singular_values=[1.0, 0.5], singular_values_all=[1.0, 0.5, 1e-3],
            train_accuracy=0.5 + 0.1 * step, val_accuracy=0.5 + 0.1 * step, test_accuracy=0.5 + 0.1 * step,
            train_loss=1.0 / step, val_loss=1.1 / step, test_loss=1.2 / step,
        ))
    paths = plot_all(records, ["layers.1", "layers.2"], str(tmp_path), "test")
    assert [os.path.basename(p) for p in paths] == list(PLOT_FILES)
    for path in paths:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 5000


@pytest.mark.parametrize("fused", [False, True])
def test_lean_adam_is_adam_bit_for_bit(fused, generator):
    import copy

    from gromo.growth.optim import LeanAdam

    lean_model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    torch_model = copy.deepcopy(lean_model)
    lean = LeanAdam(lean_model.parameters(), lr=1e-2, fused=fused)
    reference = torch.optim.Adam(torch_model.parameters(), lr=1e-2, fused=fused)
    x = torch.randn(9, 3, generator=generator)
    for _ in range(4):
        for model, optimizer in ((lean_model, lean), (torch_model, reference)):
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
    for mine, theirs in zip(lean_model.parameters(), torch_model.parameters()):
        assert torch.equal(mine, theirs)
    snapshot = ParameterSnapshot(lean_model, lean)
    assert isinstance(rebuild_optimizer(lean_model, snapshot), LeanAdam)


def test_lean_adam_does_not_import_dynamo():
    import subprocess
    import sys

    code = (
        "import sys, torch; from gromo.growth.optim import LeanAdam; m = torch.nn.Linear(2, 2); "
        "o = LeanAdam(m.parameters(), fused=True); o.zero_grad(); m(torch.ones(1, 2)).sum().backward(); o.step(); "
        "print('torch._dynamo' in sys.modules)"
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
