"""The run stops by itself and keeps the model chosen on validation; the scale bracket widens."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.containers.growing_mlp import GrowingMLP
from gromo.growth.datasets import make_synthetic
from gromo.growth.loop import GrowthConfig, grow
from gromo.growth.records import StepRecord, chosen_index
from gromo.growth.scale_search import widening_search
from gromo.growth.stopping import StoppingRule


def _model(seed=0):
    torch.manual_seed(seed)
    return GrowingMLP(8, 3, hidden_size=1, number_hidden_layers=1, activation=nn.ReLU(), device="cpu")


def _data():
    return make_synthetic(n_train=400, n_test=150, num_features=8, num_classes=3, teacher_width=8,
                          val_fraction=0.2, seed=1)


def test_growth_stops_by_itself_on_the_gain_rule_before_steps():
    config = GrowthConfig(steps=40, neurons_per_step=4, epochs=3, batch_size=32, line_search_samples=64,
                          gain_tolerance=2e-3, patience=None)
    result = grow(_model(), _data(), config)
    records = result.records
    assert result.summary["stop_reason"] == "gain" and len(records) - 1 < config.steps
    last = records[-1]
    assert last.first_order_gain < 2e-3 * last.train_loss_before
    # every earlier step was above the tolerance, otherwise the run would have stopped there
    assert all(r.first_order_gain >= 2e-3 * r.train_loss_before for r in records[1:-1])
    assert result.summary["stop_step"] == last.step


def test_patience_stops_and_the_chosen_model_is_kept():
    config = GrowthConfig(steps=40, neurons_per_step=4, epochs=3, batch_size=32, line_search_samples=64,
                          gain_tolerance=0.0, patience=2)
    result = grow(_model(), _data(), config)
    records = result.records
    assert result.summary["stop_reason"] == "patience" and len(records) - 1 < config.steps
    chosen = records[chosen_index(records)]
    assert records[-1].step - chosen.step == 2
    assert result.summary["val_selected_step"] == chosen.step
    # the kept model is the chosen one: its widths and its test accuracy are the chosen record's
    kept = result.chosen_model
    assert [layer.hidden_neurons if hasattr(layer, "hidden_neurons") else layer.in_features
            for layer in kept._growing_layers] == chosen.widths
    data = _data()
    with torch.no_grad():
        accuracy = int((kept(data.x_test).argmax(1) == data.y_test).sum()) / len(data.y_test)
    assert accuracy == chosen.test_accuracy


def test_rule_reasons_from_records():
    rule = StoppingRule(gain_tolerance=1e-2, patience=2)
    records = [StepRecord(step=0, val_accuracy=0.5, val_loss=1.0)]
    assert rule.reason(records) is None
    records.append(StepRecord(step=1, layer="l", first_order_gain=0.5, train_loss_before=1.0, val_accuracy=0.6, val_loss=0.9))
    assert rule.reason(records) is None
    records.append(StepRecord(step=2, layer="l", first_order_gain=0.5, train_loss_before=1.0, val_accuracy=0.6, val_loss=0.95))
    assert rule.reason(records) is None
    records.append(StepRecord(step=3, layer="l", first_order_gain=0.5, train_loss_before=1.0, val_accuracy=0.55, val_loss=0.8))
    assert rule.reason(records) == "patience"  # the best (step 1) is 2 steps old; ties in accuracy need a lower loss
    assert rule.reason(records[:2] + [StepRecord(step=2, layer="l", first_order_gain=0.009, train_loss_before=1.0)]) == "gain"
    assert StoppingRule(0.0, None).reason(records) is None
    for bad in (StoppingRule(-1.0, None), StoppingRule(float("nan"), None), StoppingRule(0.0, 0)):
        with pytest.raises(ValueError):
            bad.validate()


def test_chosen_index_breaks_accuracy_ties_by_validation_loss():
    records = [StepRecord(step=0, val_accuracy=0.9, val_loss=0.5), StepRecord(step=1, val_accuracy=0.9, val_loss=0.4),
               StepRecord(step=2, val_accuracy=0.9, val_loss=0.4), StepRecord(step=3, val_accuracy=0.8, val_loss=0.1)]
    assert chosen_index(records) == 1
    assert chosen_index([StepRecord(step=0), StepRecord(step=1)]) == 1  # no validation: the last model


@pytest.mark.parametrize("optimum", [300.0, 1e-4])
def test_scale_bracket_widens_when_the_optimum_is_outside(optimum):
    import math

    calls = []

    def loss_at(scale):
        calls.append(scale)
        return (math.log2(scale) - math.log2(optimum)) ** 2

    scales = [2.0**e for e in range(-6, 5)]
    best, curve, extensions = widening_search(loss_at, scales, max_extensions=12)
    assert abs(math.log2(best) - math.log2(optimum)) <= 0.5
    assert min(s for s, _ in curve) < min(scales) or max(s for s, _ in curve) > max(scales)
    assert 1 <= extensions <= 12 and len(curve) == len(scales) + extensions == len(calls)
    assert [s for s, _ in curve] == sorted(s for s, _ in curve)
    assert best not in (curve[0][0], curve[-1][0])  # the chosen scale is interior: the range did not bind


def test_scale_bracket_is_bounded_and_does_not_move_for_an_interior_optimum():
    best, curve, extensions = widening_search(lambda s: -s, [1.0, 2.0, 4.0], max_extensions=3)
    assert extensions == 3 and best == 32.0 and len(curve) == 6
    best, curve, extensions = widening_search(lambda s: (s - 2.0) ** 2, [1.0, 2.0, 4.0], max_extensions=3)
    assert extensions == 0 and best == 2.0 and len(curve) == 3
    best, _, _ = widening_search(lambda s: float("nan") if s > 1 else s, [0.5, 1.0, 2.0], max_extensions=0)
    assert best == 0.5  # a non-finite loss never wins


def test_growth_records_the_widened_curve():
    config = GrowthConfig(steps=2, neurons_per_step=4, epochs=2, batch_size=32, line_search_samples=64,
                          scales=(1.0, 2.0), max_scale_extensions=6, gain_tolerance=0.0, patience=None)
    result = grow(_model(), _data(), config)
    for record in result.records[1:]:
        scales = [s for s, _ in record.line_search]
        assert len(scales) == 2 + record.line_search_extensions and scales == sorted(scales)
        assert record.scale == min(record.line_search, key=lambda p: (p[1], p[0]))[0]
    assert any(r.line_search_extensions > 0 for r in result.records[1:])
