"""GroMo's observable behaviours of the module layer ("match GroMo" items), one test per item."""

import warnings

import pytest
import torch
from torch import nn

from gromo.containers.growing_block import LinearGrowingBlock
from gromo.containers.growing_container import GrowingContainer
from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    Conv2dMergeGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.growing_module import GrowingModule
from gromo.modules.linear_growing_module import (
    LinearGrowingModule,
    LinearMergeGrowingModule,
)
from gromo.utils import tools

CPU = "cpu"


def _pair(generator, in_features=2, hidden=3, out=2):
    first = LinearGrowingModule(in_features, hidden, device=CPU)
    second = LinearGrowingModule(hidden, out, previous_module=first, device=CPU)
    first.next_module = second
    with torch.no_grad():
        for module in (first, second):
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
    return first, second


def test_tools_warn_is_the_module_attribute_looked_up_at_call_time(monkeypatch):
    from warnings import warn

    assert tools.warn is warn
    messages = []
    monkeypatch.setattr(tools, "warn", lambda message, *args, **kwargs: messages.append(message))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches the warnings machinery
        tools.optimal_delta(torch.ones(3, 3), torch.ones(3, 2))
        tools.compute_optimal_added_parameters(torch.tensor([[2.0, 1.0], [0.0, 2.0]]), torch.ones(2, 2))
    assert messages[0].startswith("Using the pseudo-inverse for the computation of the optimal delta.")
    assert messages[1].startswith("Warning: The input matrix S is not symmetric.")


def test_svd_failure_prints_gromo_diagnostics_and_reraises(monkeypatch, capsys, generator):
    error = torch.linalg.LinAlgError("svd did not converge")

    def failing_svd(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch.linalg, "svd", failing_svd)
    a = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    matrix_s = a.T @ a + torch.eye(3, dtype=torch.float64)
    matrix_n = torch.randn(3, 2, generator=generator, dtype=torch.float64)
    with pytest.raises(torch.linalg.LinAlgError) as caught:
        tools.compute_optimal_added_parameters(matrix_s, matrix_n)
    assert caught.value is error
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Warning: An error occurred during the SVD computation."
    assert lines[1] == (f"matrix_s: matrix_s.min()={matrix_s.min()!r}, matrix_s.max()={matrix_s.max()!r}, "
                        f"matrix_s.shape={matrix_s.shape!r}")
    assert lines[2].startswith("matrix_n: matrix_n.min()=") and lines[2].endswith("torch.Size([3, 2])")
    assert lines[3].startswith("matrix_s_inverse_sqrt: ") and lines[4].startswith("matrix_p: ")
    # the printed S^{-1/2} is the pseudo-inverse square root of S
    eigenvalues, vectors = torch.linalg.eigh(matrix_s)
    reference = (vectors * eigenvalues**-0.5) @ vectors.T
    assert f"matrix_s_inverse_sqrt.max()={reference.max()!r}"[:40] in lines[3]
    # without S the identity is reported
    with pytest.raises(torch.linalg.LinAlgError):
        tools.compute_optimal_added_parameters(None, matrix_n)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "matrix_s_inverse_sqrt.min()=tensor(0., dtype=torch.float64)" in lines[2]


def test_input_and_pre_activity_follow_the_internal_flags(generator):
    merge = LinearMergeGrowingModule(in_features=3, device=CPU)
    layer = LinearGrowingModule(3, 2, previous_module=merge, device=CPU)
    layer.store_input = True
    assert layer._internal_store_input is False
    merge.activity = torch.randn(4, 3, generator=generator)
    assert layer.input is merge.activity
    # the flag set directly wins over the neighbour's type
    layer._internal_store_input = True
    x = torch.randn(4, 3, generator=generator)
    layer(x)
    assert torch.equal(layer.input, x)
    layer.store_pre_activity = True
    assert layer._internal_store_pre_activity
    out = layer(x)
    assert torch.equal(layer.pre_activity, out)  # identity post-layer function
    layer._pre_activity = None
    with pytest.raises(AssertionError, match="Apparently it was not computed yet"):
        layer.pre_activity


def test_scale_layer_returns_weightless_modules_unchanged():
    relu = nn.ReLU()
    assert GrowingModule.scale_layer(relu, 3.0) is relu
    linear = nn.Linear(2, 2, bias=False)
    before = linear.weight.detach().clone()
    assert GrowingModule.scale_layer(linear, 2.0) is linear
    torch.testing.assert_close(linear.weight.detach(), 2 * before)


def test_initialisers_are_instance_methods_dispatched_through_self(generator):
    first, second = _pair(generator)
    calls = []

    def marker(tensor, reference_tensor, fan_in, distribution="uniform"):
        calls.append((tuple(tensor.shape), distribution))
        with torch.no_grad():
            tensor.fill_(0.5)

    second.kaiming_initialization = marker
    second.copy_initialization_variance(torch.empty(3), None, 4)  # fallback goes through self
    assert calls == [((3,), "uniform")]
    calls.clear()
    second.copy_initialization_variance = marker
    second.create_layer_extensions(2, input_extension_init="copy_normal", output_extension_init="copy_uniform")
    # input extension weight, previous output extension weight and its bias
    assert calls == [((2, 2), "normal"), ((2, 2), "uniform"), ((2,), "uniform")]
    assert torch.all(second.extended_input_layer.weight == 0.5)
    assert torch.all(first.extended_output_layer.bias == 0.5)


def test_zero_width_layers_emit_torchs_initialisation_warning():
    for build in (lambda: LinearGrowingModule(0, 2, device=CPU), lambda: Conv2dGrowingModule(0, 2, 3, device=CPU),
                  lambda: RestrictedConv2dGrowingModule(2, 0, 3, device=CPU)):
        with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
            build()


def test_gradmax_scales_the_eigenvalues_in_place(generator):
    first, second = _pair(generator)
    second.create_layer_extensions(2)
    eigenvalues = torch.tensor([1.0, 2.0])
    second.eigenvalues_extension = eigenvalues
    extension_before = second.extended_input_layer.weight.detach().clone()
    second.normalize_optimal_updates(normalization_type="gradmax_normalization")
    assert second.eigenvalues_extension is eigenvalues  # same tensor, scaled in place
    target = second.weight.detach().norm(dim=0).mean()
    ratios = target / extension_before.norm(dim=0)
    torch.testing.assert_close(eigenvalues, torch.tensor([1.0, 2.0]) * ratios.sqrt())


def test_std_of_a_one_element_weight_lets_torch_warn(generator):
    first = LinearGrowingModule(1, 1, device=CPU)
    second = LinearGrowingModule(1, 1, previous_module=first, device=CPU)
    second.create_layer_extensions(1)
    with pytest.warns(UserWarning, match="degrees of freedom"):
        second.normalize_optimal_updates(std_target=0.5, normalization_type="equalize_extensions")
    # NaN std falls back to fan_in^{-1/2}: the extensions are scaled towards 0.5 from 1.0
    assert torch.isfinite(second.extended_input_layer.weight).all()


def test_apply_change_warns_about_null_input_scaling_before_the_size_check(generator):
    first, second = _pair(generator)
    second.create_layer_extensions(2)
    with pytest.warns(UserWarning, match="input_extension_scaling is null") as record:
        with pytest.raises(AssertionError, match="We need to determine the size of the extension"):
            second.apply_change()
    assert len(record) == 1 and second.in_features == 3  # nothing applied


def test_extension_size_differing_from_the_rows_added_warns(generator):
    first, second = _pair(generator)
    second.create_layer_extensions(2)
    with pytest.warns(UserWarning, match="differs from the 2 rows"):
        second.apply_change(scaling_factor=1.0, extension_size=3)
    assert first.out_features == 5 and second.in_features == 5  # grown by the rows actually added


def test_scaling_factor_tensor_fans_out_values_to_leaf_sub_factors(generator):
    first, second = _pair(generator)
    t = torch.tensor([0.3], requires_grad=True)
    second.scaling_factor = t
    assert second.scaling_factor is t
    for tensor, value in ((second.optimal_delta_scaling, 0.09), (second.input_extension_scaling, 0.3),
                          (first.output_extension_scaling, 0.3)):
        assert tensor is not t and tensor.is_leaf and tensor.requires_grad
        assert float(tensor.detach()) == pytest.approx(value)
    second.create_layer_extensions(2)
    x = torch.randn(5, 2, generator=generator)
    hidden, hidden_extension = first.extended_forward(x)
    out, _ = second.extended_forward(hidden, hidden_extension)
    out.sum().backward()
    assert t.grad is None  # gradients reach the sub-factors, not t
    assert second.input_extension_scaling.grad is not None and first.output_extension_scaling.grad is not None


def test_merge_use_bias_false_is_honoured(generator):
    merge = LinearMergeGrowingModule(in_features=3, device=CPU)
    merge.use_bias = False
    merge.update_size()
    assert merge.tensor_s._shape == (3, 3)
    merge.activity = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    s, n = merge.compute_s_update()
    torch.testing.assert_close(s, merge.activity.T @ merge.activity)
    assert n == 6
    conv_merge = Conv2dMergeGrowingModule(2, (4, 4), 3, device=CPU)
    conv_merge.use_bias = False
    conv_merge.update_size()
    assert conv_merge.tensor_s._shape == (18, 18)
    conv_merge.activity = torch.randn(2, 2, 4, 4, generator=generator)
    with pytest.warns(UserWarning, match="Cannot derive the padding"):
        unfolded = conv_merge.unfolded_extended_activity
    assert unfolded.shape[1] == 2 * 9


def test_conv_merge_volumes(generator):
    previous = Conv2dGrowingModule(2, 3, 3, padding=1, input_size=(4, 4), device=CPU)
    merge = Conv2dMergeGrowingModule(3, None, 3, previous_modules=[previous], device=CPU)
    merge.input_size = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # taken from the previous module silently
        assert merge.input_volume == previous.output_volume == 48
        assert merge.output_volume == 48  # no input size: the input volume
    merge.input_size = (4, 4)
    merge.reshape_function = nn.AvgPool2d(2)
    assert merge.output_volume == 3 * 2 * 2


def test_conv_input_size_getter_and_setter(generator):
    layer = Conv2dGrowingModule(2, 3, 3, padding=1, device=CPU)
    with pytest.raises(ValueError, match="The input size of the layer Conv2dGrowingModule is not defined."):
        layer.input_size
    layer.input_size = (6, 6)
    assert layer.input_size == (6, 6)
    layer.store_input = True
    layer(torch.randn(1, 2, 5, 5, generator=generator))
    assert layer.input_size == (6, 6)  # the explicit assignment is read back
    with pytest.warns(UserWarning, match=r"has changed from \(6, 6\) to \(7, 7\)"):
        layer.input_size = (7, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.input_size = None  # clears silently
    assert layer.input_size == (5, 5)  # recorded from the stored input


def test_growing_block_str_levels():
    block = LinearGrowingBlock(3, 3, hidden_features=2, name="blk", device=CPU)
    first, second = block.first_layer, block.second_layer
    assert str(block) == f"blk ({first.__str__()} -> {second.__str__()})"
    assert block.__str__(verbose=1) == f"blk:\n{first.__str__(verbose=1)}\n->\n{second.__str__(verbose=1)}"
    assert block.__str__(verbose=2) == (
        f"blk:\nPre-activation: {block.pre_activation}\nDownsample: {block.downsample}\n"
        f"{first.__str__(verbose=2)}\n->\n{second.__str__(verbose=2)}"
    )


def test_update_information_is_not_swapped(generator):
    first, second = _pair(generator)
    container = GrowingContainer(2, 2, device=CPU)
    container._growing_layers = [second]
    second.parameter_update_decrease = torch.tensor(0.25)
    second.eigenvalues_extension = torch.tensor([2.0])
    information = container.update_information()[0]
    assert float(information["parameter_improvement"]) == 0.25
    assert float(information["update_value"]) == pytest.approx(float(second.first_order_improvement))
    assert float(information["update_value"]) != 0.25
