"""A failing growth call leaves every module exactly as it was (issue 16, defects 1, 2, 4 and 6).

Each test captures the full state of every module (state dicts, pending updates, scalings, stored
tensors, statistics), makes a call fail, checks the error type and that nothing changed; the
rollback tests make a step fail half-way through (after weights were already changed in place).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gromo.modules import growing_module
from gromo.modules.conv2d_growing_module import (
    FullConv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.linear_growing_module import (
    LinearGrowingModule,
    LinearMergeGrowingModule,
)
from gromo.utils._nonfinite import NonFiniteError

from .linear_pairs import linear_pair
from .module_state import assert_unchanged, capture_all


def _gathered_pair(generator, device, batches=2):
    first, second = linear_pair(generator, device, d=5, h=4, o=3)
    second.init_computation()
    for _ in range(batches):
        x = torch.randn(16, 5, generator=generator).to(device)
        target = torch.randn(16, 3, generator=generator).to(device)
        ((second(first(x)) - target) ** 2).sum().div(2).backward()
        second.update_computation()
    return first, second


def _grown_pair(generator, device):
    """A pair with statistics, a computed update and extensions (everything pending)."""
    first, second = _gathered_pair(generator, device)
    second.compute_optimal_updates(maximum_added_neurons=2)
    return first, second


# ----------------------------------------------------------------------------------------------
# defect 1: compute_optimal_updates stores nothing when its thresholds or its solves fail
# ----------------------------------------------------------------------------------------------

BAD_UPDATE_ARGUMENTS = [
    ({"numerical_threshold": -1e-6}, ValueError, "numerical_threshold"),
    ({"numerical_threshold": math.nan}, ValueError, "numerical_threshold"),
    ({"statistical_threshold": -1e-3}, ValueError, "statistical_threshold"),
    ({"statistical_threshold": math.nan}, ValueError, "statistical_threshold"),
    ({"statistical_threshold": math.inf}, ValueError, "statistical_threshold"),
    ({"statistical_threshold": "0.1"}, TypeError, "statistical_threshold"),
    ({"maximum_added_neurons": -1}, ValueError, "maximum_added_neurons"),
    ({"maximum_added_neurons": 1.5}, TypeError, "maximum_added_neurons"),
    ({"maximum_added_neurons": True}, TypeError, "maximum_added_neurons"),
]


@pytest.mark.parametrize("pending", [False, True], ids=["fresh", "with_pending_update"])
@pytest.mark.parametrize(("kwargs", "error", "argument"), BAD_UPDATE_ARGUMENTS)
def test_compute_optimal_updates_refuses_bad_arguments_before_storing(
    generator, device, kwargs, error, argument, pending
):
    first, second = _grown_pair(generator, device) if pending else _gathered_pair(generator, device)
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(error, match=argument) as caught:
        second.compute_optimal_updates(**kwargs)
    assert second.name in str(caught.value)
    assert "max_neurons" not in str(caught.value).replace("maximum_added_neurons", "")
    assert_unchanged(before, modules)
    if not pending:
        # nothing pending: a later apply_change must not move the weights
        weight = second.weight.detach().clone()
        second.apply_change(scaling_factor=1.0, apply_previous=False)
        torch.testing.assert_close(second.weight, weight, rtol=0, atol=0)


@pytest.mark.parametrize("statistic", ["tensor_s", "tensor_m", "tensor_m_prev", "cross_covariance",
                                       "previous_tensor_s"])
def test_compute_optimal_updates_refuses_non_finite_statistics_before_storing(
    generator, device, statistic
):
    first, second = _grown_pair(generator, device)
    owner, name = (first, "tensor_s") if statistic == "previous_tensor_s" else (second, statistic)
    getattr(owner, name)._tensor[0, 0] = math.inf  # an accumulated sum that overflowed
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(NonFiniteError) as caught:
        second.compute_optimal_updates()
    message = str(caught.value)
    assert second.name in message and getattr(owner, name).name in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, AssertionError)
    assert_unchanged(before, modules)


def test_compute_optimal_updates_rolls_back_when_the_growth_solve_fails(generator, device, monkeypatch):
    first, second = _gathered_pair(generator, device)
    modules = {"first": first, "second": second}
    before = capture_all(modules)

    def failing_solve(*args, **kwargs):
        raise RuntimeError("solve failed")

    # the delta is computed (and would be stored) before the growth solve runs
    monkeypatch.setattr(growing_module, "compute_optimal_added_parameters", failing_solve)
    with pytest.raises(RuntimeError, match="solve failed"):
        second.compute_optimal_updates(numerical_threshold=1e-7)
    assert_unchanged(before, modules)
    assert second.optimal_delta_layer is None and second.delta_raw is None


# ----------------------------------------------------------------------------------------------
# defect 2: create_layer_extensions validates sizes before rescaling or creating anything
# ----------------------------------------------------------------------------------------------

BAD_EXTENSIONS = [
    ({"extension_size": -2}, ValueError, "extension_size"),
    ({"extension_size": 2, "output_extension_size": -1}, ValueError, "output_extension_size"),
    ({"extension_size": 2, "input_extension_size": -4}, ValueError, "input_extension_size"),
    ({"extension_size": 1.5}, TypeError, "extension_size"),
    ({"extension_size": 2, "noise_ratio": math.inf}, ValueError, "noise_ratio"),
    ({"extension_size": 2, "noise_ratio": math.nan}, ValueError, "noise_ratio"),
    ({"extension_size": 2, "noise_ratio": -0.1}, ValueError, "noise_ratio"),
]


@pytest.mark.parametrize("rescaling", [None, "default_vt", "vt_constraint_old_shape"])
@pytest.mark.parametrize(("kwargs", "error", "argument"), BAD_EXTENSIONS)
def test_create_layer_extensions_refuses_bad_sizes_before_changing_anything(
    generator, device, kwargs, error, argument, rescaling
):
    first, second = linear_pair(generator, device)
    first.post_layer_function = nn.Sequential(nn.BatchNorm1d(4), nn.ReLU())
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(error, match=argument) as caught:
        second.create_layer_extensions(rescaling=rescaling, **kwargs)
    assert second.name in str(caught.value)
    assert_unchanged(before, modules)
    assert second.extended_input_layer is None and first.extended_output_layer is None


def test_create_layer_extensions_rolls_back_a_failure_after_rescaling(generator, device, monkeypatch):
    first, second = linear_pair(generator, device)
    modules = {"first": first, "second": second}
    before = capture_all(modules)

    def failing_pairing(self, *args, **kwargs):
        raise RuntimeError("pairing failed")

    # rescaling (in place) and creation have already happened when pairing runs
    monkeypatch.setattr(LinearGrowingModule, "apply_neuron_pairing", failing_pairing)
    with pytest.raises(RuntimeError, match="pairing failed"):
        second.create_layer_extensions(4, rescaling="vt_constraint_new_shape", neuron_pairing="vv_z_negz")
    assert_unchanged(before, modules)
    assert second.extended_input_layer is None and first.extended_output_layer is None


# ----------------------------------------------------------------------------------------------
# defect 4: NaN / Inf scalings and noise ratios are refused
# ----------------------------------------------------------------------------------------------

BAD_SCALINGS = [
    {"scaling_factor": math.nan},
    {"scaling_factor": math.inf},
    {"scaling_factor": 1e20},  # its square (the delta scaling) overflows float32
    {"scaling_factor": torch.tensor([math.nan])},
    {"scaling_factor": 0.5, "optimal_delta_scaling": math.nan},
    {"scaling_factor": 0.5, "input_extension_scaling": -math.inf},
    {"scaling_factor": 0.5, "output_extension_scaling": math.nan},
]


@pytest.mark.parametrize("kwargs", BAD_SCALINGS, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()))
def test_apply_change_refuses_non_finite_scalings(generator, device, kwargs):
    first, second = _grown_pair(generator, device)
    second.scaling_factor = 0.25
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(ValueError, match="must be finite") as caught:
        second.apply_change(**kwargs)
    assert second.name in str(caught.value)
    assert_unchanged(before, modules)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e20, torch.tensor([math.inf])])
def test_set_scaling_factor_refuses_non_finite_values(generator, device, value):
    first, second = _grown_pair(generator, device)
    second.scaling_factor = 0.25
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(ValueError, match="scaling_factor must be finite"):
        second.set_scaling_factor(value)
    if not (isinstance(value, float) and math.isfinite(value)):  # 1e20 itself fits in float32
        with pytest.raises(ValueError, match="input_extension_scaling must be finite"):
            second.input_extension_scaling = value
    assert_unchanged(before, modules)
    assert second.scaling_factor.item() == 0.25 and second.optimal_delta_scaling.item() == 0.0625


def test_merge_update_scaling_factor_refuses_non_finite_values(generator, device):
    left = LinearGrowingModule(3, 4, device=device, name="left")
    merge = LinearMergeGrowingModule(in_features=4, previous_modules=[left], device=device, name="merge")
    right = LinearGrowingModule(4, 2, previous_module=merge, device=device, name="right")
    merge.set_next_modules([right])
    modules = {"left": left, "merge": merge, "right": right}
    before = capture_all(modules)
    with pytest.raises(ValueError, match="must be finite"):
        merge.update_scaling_factor(math.nan)
    assert_unchanged(before, modules)


def test_apply_change_rolls_back_a_failure_after_the_delta_step(generator, device, monkeypatch):
    first, second = _grown_pair(generator, device)
    second.scaling_factor = 0.5
    modules = {"first": first, "second": second}
    before = capture_all(modules)

    def failing_output_changes(self, *args, **kwargs):
        raise RuntimeError("surgery failed")

    # W −= γ²δ (in place) and the input extension are applied before the previous module's rows
    monkeypatch.setattr(LinearGrowingModule, "_apply_output_changes", failing_output_changes)
    with pytest.raises(RuntimeError, match="surgery failed"):
        second.apply_change()
    assert_unchanged(before, modules)
    assert second.in_features == 4 and first.out_features == 4


def test_a_successful_call_after_a_refused_one_applies_the_update(generator, device):
    first, second = _grown_pair(generator, device)
    x = torch.randn(8, 5, generator=generator).to(device)
    second.scaling_factor = 0.5
    with torch.no_grad():
        hidden, hidden_ext = first.extended_forward(x)
        expected, _ = second.extended_forward(hidden, hidden_ext)
    with pytest.raises(ValueError):
        second.apply_change(scaling_factor=math.nan)
    second.apply_change()
    second.delete_update()
    with torch.no_grad():
        torch.testing.assert_close(second(first(x)), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# defect 6: a failing forward keeps the stored input (and the pending batch's statistics)
# ----------------------------------------------------------------------------------------------


def test_failing_forward_keeps_the_pending_batch(generator, device):
    first, second = linear_pair(generator, device, d=5, h=4, o=3)
    second.init_computation()
    x = torch.randn(16, 5, generator=generator).to(device)
    target = torch.randn(16, 3, generator=generator).to(device)
    ((second(first(x)) - target) ** 2).sum().div(2).backward()
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    stored = second._input
    with pytest.raises(RuntimeError):
        second(torch.randn(16, 7, generator=generator).to(device))  # wrong width: the layer fails
    assert second._input is stored
    assert_unchanged(before, modules)
    # the pending batch is still the one accumulated
    second.update_computation()
    hidden = first(x).detach().double()
    ones = torch.ones(16, 1, dtype=torch.float64, device=device)
    extended = torch.cat([hidden, ones], dim=1)
    torch.testing.assert_close(second.tensor_s().double(), extended.T @ extended / 16, rtol=1e-5, atol=1e-6)


def test_failing_post_layer_function_keeps_the_pending_batch(generator, device):
    first, second = linear_pair(generator, device, d=5, h=4, o=3)
    second.init_computation()
    x = torch.randn(16, 5, generator=generator).to(device)
    second(first(x)).sum().backward()
    # the layer's 3 outputs cannot be unflattened to 2 × 2: the post-layer function fails
    second.post_layer_function = nn.Unflatten(1, (2, 2))
    modules = {"second": second}
    before = capture_all(modules)
    stored = second._input
    with pytest.raises(RuntimeError):
        second(torch.randn(8, 4, generator=generator).to(device))
    assert second._input is stored
    assert_unchanged(before, modules)


def test_failing_merge_forward_keeps_the_stored_input(generator, device):
    left = LinearGrowingModule(3, 4, device=device, name="left")
    merge = LinearMergeGrowingModule(
        post_merge_function=nn.LayerNorm(4), in_features=4, previous_modules=[left], device=device,
        name="merge",
    )
    merge.init_computation()
    merge(left(torch.randn(6, 3, generator=generator).to(device)))
    modules = {"left": left, "merge": merge}
    before = capture_all(modules)
    with pytest.raises(RuntimeError):
        merge(torch.randn(6, 5, generator=generator).to(device))  # LayerNorm(4) refuses width 5
    assert_unchanged(before, modules)


# ----------------------------------------------------------------------------------------------
# the other public mutating calls validate before they change anything
# ----------------------------------------------------------------------------------------------


def test_parameter_step_checks_both_shapes_before_stepping(generator, device):
    _, second = linear_pair(generator, device)
    modules = {"second": second}
    before = capture_all(modules)
    with pytest.raises(ValueError, match="delta_biases"):
        second.parameter_step(torch.ones_like(second.weight), torch.ones(7, device=device))
    assert_unchanged(before, modules)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"keep_neurons": -1}, ValueError),
    ({"keep_neurons": 1.0}, TypeError),
    ({"keep_neurons": None, "threshold": math.nan}, ValueError),
])
def test_sub_select_refuses_bad_arguments(generator, device, kwargs, error):
    first, second = _grown_pair(generator, device)
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(error, match="keep_neurons|threshold"):
        second.sub_select_optimal_added_parameters(**kwargs)
    assert_unchanged(before, modules)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"std_target": math.inf}, "std_target"),
    ({"normalization_type": "gradmax_normalization", "gradmax_scale": math.inf}, "gradmax_scale"),
])
def test_normalize_optimal_updates_refuses_non_finite_targets(generator, device, kwargs, argument):
    first, second = _grown_pair(generator, device)
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(ValueError, match=argument):
        second.normalize_optimal_updates(**kwargs)
    assert_unchanged(before, modules)


def test_scale_layer_extension_refuses_non_finite_scales(generator, device):
    first, second = _grown_pair(generator, device)
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(ValueError, match="scale_output"):
        second.scale_layer_extension(None, math.inf, 1.0)
    with pytest.raises(ValueError, match="scale"):
        second.scale_parameter_update(math.nan)
    assert_unchanged(before, modules)


@pytest.mark.parametrize("scheme", [RestrictedConv2dGrowingModule, FullConv2dGrowingModule],
                         ids=lambda s: s.__name__)
def test_conv_growth_calls_are_atomic(generator, device, scheme):
    first = scheme(2, 3, 3, padding=1, post_layer_function=nn.ReLU(), device=device, name="first")
    second = scheme(3, 2, 3, padding=1, previous_module=first, device=device, name="second")
    first.next_module = second
    second.init_computation()
    x = torch.randn(4, 2, 6, 6, generator=generator).to(device)
    second(first(x)).square().sum().backward()
    second.update_computation()
    modules = {"first": first, "second": second}
    before = capture_all(modules)
    with pytest.raises(ValueError, match="maximum_added_neurons"):
        second.compute_optimal_updates(maximum_added_neurons=-1)
    with pytest.raises(ValueError, match="extension_size"):
        second.create_layer_extensions(-3, rescaling="default_vt")
    assert_unchanged(before, modules)
    second.compute_optimal_updates(maximum_added_neurons=2)
    second.scaling_factor = 0.5
    before = capture_all(modules)
    with pytest.raises(ValueError, match="scaling_factor"):
        second.apply_change(scaling_factor=math.inf)
    assert_unchanged(before, modules)
