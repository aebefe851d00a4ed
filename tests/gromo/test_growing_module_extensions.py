"""Extensions: creation and initialisation, variance transfer, pairing, extended forward,
apply_change, sub-selection, scaling, normalisation, growth bookkeeping (TINY, TMLR 2024)."""

from __future__ import annotations

import warnings
import zlib

import pytest
import torch
from torch import nn

from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule

from .linear_pairs import linear_pair


class _GrowRecorder(nn.Identity):
    """A post-layer function that records the sizes it is grown by."""

    def __init__(self):
        super().__init__()
        self.grown = []

    def grow(self, size):
        self.grown.append(size)


def _seed(request):
    return zlib.crc32(request.node.nodeid.encode())


def _with_updates(generator, device, **kwargs):
    first, second = linear_pair(generator, device, **kwargs)
    x = torch.randn(24, first.in_features, generator=generator).to(device)
    target = torch.randn(24, second.out_features, generator=generator).to(device)
    second.init_computation()
    y = second(first(x))
    (((y - target) ** 2).sum() / 2).backward()
    second.update_computation()
    second.compute_optimal_updates()
    second.reset_computation()
    return first, second, x


def _forward(first, second, x):
    with torch.no_grad():
        return second(first(x))


def _extended(first, second, x):
    with torch.no_grad():
        hidden, hidden_ext = first.extended_forward(x)
        return second.extended_forward(hidden, hidden_ext)[0]


def _snapshot(*modules):
    return [p.detach().clone() for m in modules for p in m.layer.parameters()]


# ----------------------------------------------------------------------------------------------
# create_layer_extensions: initialisations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["copy_uniform", "copy_normal", "kaiming", "kaiming_normal", "zeros"])
def test_extension_initialisations(request, generator, device, init):
    first, second = linear_pair(generator, device, d=60, h=40, o=50)
    k = 300
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(request))
        second.create_layer_extensions(k, output_extension_init=init, input_extension_init=init)
    z = second.extended_input_layer.weight.detach()
    v = first.extended_output_layer.weight.detach()
    bias = first.extended_output_layer.bias.detach()
    assert z.shape == (50, k) and v.shape == (k, 60) and second.extended_input_layer.bias is None
    if init == "zeros":
        assert not z.any() and not v.any() and not bias.any()
        return
    if init.startswith("copy"):
        expected = (second.weight.detach().std(), first.weight.detach().std(), first.bias.detach().std())
    else:
        expected = ((2 / (k + 40)) ** 0.5, (2 / 60) ** 0.5, (2 / 60) ** 0.5)
    for tensor, std in zip((z, v), expected[:2]):
        assert abs(float(tensor.std()) / float(std) - 1) < 0.05
    assert abs(float(bias.std()) / float(expected[2]) - 1) < 0.25  # 300 samples
    if init in ("copy_uniform", "kaiming"):
        assert float(z.abs().max()) <= 3**0.5 * float(expected[0]) * (1 + 1e-6)


def test_copy_initialization_falls_back_to_kaiming(request, device):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(request))
        tensor = torch.empty(20000)
        # instance methods, as in GroMo (the fallback dispatches through self)
        module = LinearGrowingModule(2, 2, device=device)
        module.copy_initialization_variance(tensor, torch.zeros(5), fan_in=8)
        assert abs(float(tensor.std()) - (2 / 8) ** 0.5) < 0.01
        module.copy_initialization_variance(tensor, None, fan_in=8, distribution="normal")
        assert abs(float(tensor.std()) - (2 / 8) ** 0.5) < 0.01
    with pytest.raises(ValueError, match="distribution"):
        module.copy_initialization_variance(tensor, None, 8, distribution="cauchy")
    with pytest.raises(ValueError, match="distribution"):
        module.kaiming_initialization(tensor, None, 8, distribution="cauchy")


def test_failed_creation_leaves_the_module_unchanged(generator, device):
    first, second = linear_pair(generator, device)
    before = _snapshot(first, second)
    for kwargs in (dict(input_extension_init="glorot", rescaling="vt_constraint_new_shape"),
                   dict(output_extension_init="glorot"), dict(rescaling="vt_magic"),
                   dict(neuron_pairing="vv_z_negz", rescaling="default_vt", extension_size=3),
                   dict(neuron_pairing="vv_z_negz", input_extension_size=3),
                   dict(neuron_pairing="zz")):
        kwargs.setdefault("extension_size", 2)
        with pytest.raises(ValueError, match="init|rescaling|extension_size|neuron_pairing"):
            second.create_layer_extensions(**kwargs)
        assert second.extended_input_layer is None and first.extended_output_layer is None
        for a, b in zip(before, _snapshot(first, second)):
            assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="GrowingModule"):
        first.create_layer_extensions(2)


# ----------------------------------------------------------------------------------------------
# pairing
# ----------------------------------------------------------------------------------------------


def test_pairing_preserves_the_function(request, generator, device):
    first, second = linear_pair(generator, device)
    x = torch.randn(9, 5, generator=generator).to(device)
    reference = _forward(first, second, x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(request))
        second.create_layer_extensions(6, neuron_pairing="vv_z_negz", noise_ratio=0.0)
    z = second.extended_input_layer.weight
    v, b = first.extended_output_layer.weight, first.extended_output_layer.bias
    assert torch.equal(z[:, 3:], -z[:, :3]) and torch.equal(v[3:], v[:3]) and torch.equal(b[3:], b[:3])
    assert z[:, :3].abs().min() > 0
    second.set_scaling_factor(1.0)
    torch.testing.assert_close(_extended(first, second, x), reference, rtol=0, atol=1e-5)
    second.apply_change(extension_size=6)
    second.delete_update()
    assert first.out_features == 10 and second.in_features == 10
    torch.testing.assert_close(_forward(first, second, x), reference, rtol=0, atol=1e-5)


def test_pairing_noise_breaks_the_symmetry(request, generator, device):
    first, second = linear_pair(generator, device, o=40)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(request))
        second.create_layer_extensions(100, neuron_pairing="vv_z_negz", noise_ratio=0.0)
        z = second.extended_input_layer.weight.detach().clone()
        second.apply_neuron_pairing("vv_z_negz", noise_ratio=0.1)
    noise = second.extended_input_layer.weight.detach() - z
    assert abs(float(noise.std()) / (0.1 * float(z.std())) - 1) < 0.05


def test_pairing_errors(generator, device):
    first, second = linear_pair(generator, device)
    second.apply_neuron_pairing(None)
    with pytest.raises(ValueError, match="neuron_pairing"):
        second.apply_neuron_pairing("pairs")
    with pytest.raises(RuntimeError, match="output extension"):
        second.apply_neuron_pairing("vv_z_negz")
    first.create_layer_out_extension(2)
    with pytest.raises(RuntimeError, match="input extension"):
        second.apply_neuron_pairing("vv_z_negz")
    first.create_layer_out_extension(3)
    second.create_layer_in_extension(2)
    with pytest.raises(ValueError, match="odd"):
        second.apply_neuron_pairing("vv_z_negz")
    first.create_layer_out_extension(2)
    second.create_layer_in_extension(3)
    with pytest.raises(ValueError, match="odd"):
        second.apply_neuron_pairing("vv_z_negz")


# ----------------------------------------------------------------------------------------------
# variance transfer
# ----------------------------------------------------------------------------------------------


def test_default_vt_rescales_the_growing_layer(generator, device):
    first, second = linear_pair(generator, device, d=7, h=6)
    w1, w2, b2 = first.weight.detach().clone(), second.weight.detach().clone(), second.bias.detach().clone()
    second.apply_rescaling("default_vt", extension_size=4)
    beta = (6 / 10) ** 0.5
    torch.testing.assert_close(second.weight, w2 * beta)
    torch.testing.assert_close(second.bias, b2 * beta)
    assert torch.equal(first.weight, w1)


@pytest.mark.parametrize("strategy,fan_in", [("vt_constraint_old_shape", 6), ("vt_constraint_new_shape", 10)])
def test_vt_constraints_set_the_variances(generator, device, strategy, fan_in):
    bn = nn.BatchNorm1d(6)
    bn.running_mean.copy_(torch.randn(6, generator=generator))
    bn.running_var.copy_(torch.rand(6, generator=generator) + 0.5)
    first, second = linear_pair(generator, device, d=7, h=6, activation=nn.Sequential(bn, nn.ReLU()))
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    alpha = float((1 / (7 * first.weight.detach().var())) ** 0.5)
    second.apply_rescaling(strategy, extension_size=4)
    assert float(second.weight.detach().var()) == pytest.approx(1 / fan_in, rel=1e-5)
    assert float(first.weight.detach().var()) == pytest.approx(1 / 7, rel=1e-5)
    torch.testing.assert_close(bn.running_mean, mean * alpha)
    torch.testing.assert_close(bn.running_var, var * alpha**2)


def test_rescaling_reads_the_extension_size_and_validates(generator, device):
    first, second = linear_pair(generator, device, h=6)
    before = _snapshot(first, second)
    second.apply_rescaling(None)
    second.apply_rescaling("none")
    with pytest.raises(ValueError, match="rescaling"):
        second.apply_rescaling("vt")
    with pytest.raises(ValueError, match="neuron_pairing"):
        second.apply_rescaling("default_vt", neuron_pairing="pairs")
    for a, b in zip(before, _snapshot(first, second)):
        assert torch.equal(a, b)
    second.create_layer_in_extension(3)
    w2 = second.weight.detach().clone()
    second.apply_rescaling("default_vt")
    torch.testing.assert_close(second.weight, w2 * (6 / 9) ** 0.5)


# ----------------------------------------------------------------------------------------------
# extended forward and apply_change
# ----------------------------------------------------------------------------------------------


def test_zero_scaling_preserves_the_function(generator, device):
    first, second, x = _with_updates(generator, device)
    reference = _forward(first, second, x)
    torch.testing.assert_close(_extended(first, second, x), reference, rtol=0, atol=0)
    with pytest.warns(UserWarning, match="zero input"):
        second.apply_change()
    second.delete_update()
    assert second.in_features == 4 + second.eigenvalues_extension.shape[0] if second.eigenvalues_extension is not None \
        else second.in_features > 4
    torch.testing.assert_close(_forward(first, second, x), reference, rtol=0, atol=1e-6)


def test_apply_change_realises_the_extended_forward(generator, device):
    first, second, x = _with_updates(generator, device)
    k = second.eigenvalues_extension.shape[0]
    second.set_scaling_factor(0.3)
    assert float(second.optimal_delta_scaling) == pytest.approx(0.09)
    assert float(first.output_extension_scaling) == pytest.approx(0.3)
    expected = _extended(first, second, x)
    second.apply_change()
    second.delete_update()
    assert (first.out_features, second.in_features) == (4 + k, 4 + k)
    assert first.extended_output_layer is None and second.extended_input_layer is None
    torch.testing.assert_close(_forward(first, second, x), expected, rtol=1e-5, atol=1e-5)


def test_apply_change_grows_post_layer_functions(generator, device):
    recorder = _GrowRecorder()
    first, second, _ = _with_updates(generator, device, activation=nn.Sequential(nn.Tanh(), recorder))
    k = second.eigenvalues_extension.shape[0]
    second.apply_change(scaling_factor=0.5)
    assert recorder.grown == [k]


def test_apply_change_overrides_and_partial_application(generator, device):
    first, second, x = _with_updates(generator, device)
    w2 = second.weight.detach().clone()
    delta = second.optimal_delta_layer.weight.detach().clone()
    second.apply_change(optimal_delta_scaling=0.5, apply_extension=False)
    torch.testing.assert_close(second.weight, w2 - 0.5 * delta)
    assert float(second.optimal_delta_scaling) == 0.5 and second.in_features == 4
    second.apply_change(apply_delta=False, apply_previous=False, input_extension_scaling=1.0,
                        output_extension_scaling=1.0)
    assert second.in_features > 4 and first.out_features == 4 and float(first.output_extension_scaling) == 1.0


def test_extended_forward_checks(generator, device):
    first, second, x = _with_updates(generator, device)
    with torch.no_grad():
        hidden = first(x)
        with pytest.raises(ValueError, match="x_ext"):
            second.extended_forward(hidden)
        out, out_ext = second.extended_forward(hidden, use_extended_input=False)
        assert out_ext is None
        _, hidden_ext = first.extended_forward(x)
        assert hidden_ext.shape == (x.shape[0], second.eigenvalues_extension.shape[0])
        assert first.extended_forward(x, use_extended_output=False)[1] is None
        second.delete_update()
        with pytest.warns(UserWarning, match="x_ext"):
            second.extended_forward(hidden, hidden_ext)


def test_apply_change_errors_leave_the_module_unchanged(generator, device):
    first, second, _ = _with_updates(generator, device)
    first.extended_output_layer = None
    before = _snapshot(first, second)
    with pytest.raises(ValueError, match="extension_size"):
        second.apply_change(scaling_factor=1.0, extension_size=2)
    for a, b in zip(before, _snapshot(first, second)):
        assert torch.equal(a, b)
    with torch.no_grad():
        second.extended_input_layer = nn.Linear(2, 3)
    with pytest.raises(AssertionError, match="bias"):
        second.apply_change(apply_previous=False)
    merge = LinearMergeGrowingModule(in_features=4, device=device)
    after = LinearGrowingModule(4, 2, previous_module=merge, device=device)
    with pytest.raises(NotImplementedError):
        after.apply_change()


# ----------------------------------------------------------------------------------------------
# sub-selection and scaling
# ----------------------------------------------------------------------------------------------


def _three_neurons(generator, device):
    first, second, x = _with_updates(generator, device, d=6, h=5, o=4)
    assert second.eigenvalues_extension.shape[0] >= 3
    return first, second, x


def test_sub_select_keeps_the_first_neurons(generator, device):
    first, second, _ = _three_neurons(generator, device)
    z = second.extended_input_layer.weight.detach().clone()
    v = first.extended_output_layer.weight.detach().clone()
    lam = second.eigenvalues_extension.clone()
    second.sub_select_optimal_added_parameters(2)
    assert torch.equal(second.extended_input_layer.weight, z[:, :2])
    assert torch.equal(first.extended_output_layer.weight, v[:2])
    assert torch.equal(second.eigenvalues_extension, lam[:2])
    second.sub_select_optimal_added_parameters(threshold=float(lam[1]) * 1.0001)
    assert second.eigenvalues_extension.shape == (1,) and first.extended_output_layer.weight.shape[0] == 1
    second.sub_select_optimal_added_parameters(0)
    assert second.extended_input_layer is None and second.eigenvalues_extension is None
    assert first.extended_output_layer is None


def test_sub_select_zeroing_mode(generator, device):
    first, second, _ = _three_neurons(generator, device)
    k = second.eigenvalues_extension.shape[0]
    second.sub_select_optimal_added_parameters(1, zeros_if_not_enough=True, zeros_fan_out=True)
    assert second.extended_input_layer.weight.shape[1] == k and first.extended_output_layer.weight.shape[0] == k
    assert not second.eigenvalues_extension[1:].any() and second.eigenvalues_extension[0] > 0
    assert not second.extended_input_layer.weight[:, 1:].any()
    assert not first.extended_output_layer.weight[1:].any() and not first.extended_output_layer.bias[1:].any()
    assert first.extended_output_layer.weight[0].abs().sum() > 0


def test_sub_select_errors(generator, device):
    first, second, _ = _three_neurons(generator, device)
    with pytest.raises(AssertionError, match="zeros_fan"):
        second.sub_select_optimal_added_parameters(1, zeros_if_not_enough=True, zeros_fan_in=False)
    lonely = LinearGrowingModule(3, 2, device=device)
    lonely.eigenvalues_extension = torch.ones(1)
    with pytest.raises(ValueError, match="previous"):
        lonely.sub_select_optimal_added_parameters(1)
    with pytest.raises(AssertionError, match="eigenvalues"):
        first.sub_select_optimal_added_parameters(1)

    class OtherLinear(LinearGrowingModule):
        pass

    third = OtherLinear(3, 2, previous_module=second, device=device)
    third.eigenvalues_extension = torch.ones(2)
    third.extended_input_layer = nn.Linear(2, 2, bias=False)
    third.sub_select_optimal_added_parameters(1, sub_select_previous=False)
    assert third.extended_input_layer.weight.shape == (2, 1)
    second.eigenvalues_extension = torch.ones(3)
    with pytest.raises(NotImplementedError):
        LinearGrowingModule.sub_select_optimal_added_parameters(third, 1)
    assert third.extended_input_layer.weight.shape == (2, 1)


@pytest.mark.parametrize("ignore", [False, True])
def test_scale_layer_extension_scales_the_first_order_improvement(generator, device, ignore):
    first, second, _ = _three_neurons(generator, device)
    second._first_order_uses_squared_singular_values = not ignore
    improvement = second.new_neurons_fo_improvement.clone()
    z = second.extended_input_layer.weight.detach().clone()
    v = first.extended_output_layer.weight.detach().clone()
    second.scale_layer_extension(None, 2.0, 0.25)
    torch.testing.assert_close(second.extended_input_layer.weight, 0.25 * z)
    torch.testing.assert_close(first.extended_output_layer.weight, 2.0 * v)
    torch.testing.assert_close(second.new_neurons_fo_improvement, improvement * 0.5, rtol=1e-5, atol=0)
    second.scale_layer_extension(3.0, None, None)
    torch.testing.assert_close(second.new_neurons_fo_improvement, improvement * 4.5, rtol=1e-5, atol=0)


def test_scale_errors(generator, device):
    first, second, _ = _three_neurons(generator, device)
    with pytest.raises(AssertionError, match="float"):
        second.scale_layer_extension(2, None, None)
    with pytest.raises(AssertionError, match="scale"):
        second.scale_layer_extension(None, None, 1.0)
    first.extended_output_layer = None
    with pytest.raises(ValueError, match="output extension"):
        second.scale_layer_extension(1.0, None, None)
    decrease = float(second.parameter_update_decrease)
    delta = second.optimal_delta_layer.weight.detach().clone()
    second.scale_parameter_update(0.5)
    assert float(second.parameter_update_decrease) == pytest.approx(0.5 * decrease)
    torch.testing.assert_close(second.optimal_delta_layer.weight, 0.5 * delta)
    torch.testing.assert_close(second.delta_raw[:, :-1], 0.5 * delta)  # GroMo's aliasing


# ----------------------------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------------------------


def _stds(first, second):
    return (float(second.optimal_delta_layer.weight.std()), float(second.extended_input_layer.weight.std()),
            float(first.extended_output_layer.weight.std()))


def test_normalisation_types(generator, device):
    for kind in ("equalize_second_layer", "equalize_extensions", "match_extending_layer",
                 "legacy_normalization", "weird_normalization"):
        first, second, _ = _three_neurons(torch.Generator().manual_seed(3), device)
        delta, z, v = _stds(first, second)
        improvement = float(second.new_neurons_fo_improvement)
        s = 0.125
        second.normalize_optimal_updates(std_target=s, normalization_type=kind)
        new_delta, new_z, new_v = _stds(first, second)
        if kind == "equalize_second_layer":
            expected = (s, s, v * (s / delta) / (s / z))
        elif kind == "equalize_extensions":
            expected = (delta * (s / z) * (s / v), s, s)
        elif kind == "match_extending_layer":
            w2, w1 = float(second.weight.std()), float(first.weight.std())
            expected = (w2, w2, w1)
        else:
            expected = (s, z, v * s / z)
        for got, want in zip((new_delta, new_z, new_v), expected):
            assert got == pytest.approx(want, rel=1e-5)
        scale_product = (new_z / z) * (new_v / v)
        assert float(second.new_neurons_fo_improvement) == pytest.approx(improvement * scale_product, rel=1e-4)


def test_normalisation_default_target_is_the_layer_std(generator, device):
    first, second, _ = _three_neurons(generator, device)
    second.normalize_optimal_updates(normalization_type="equalize_second_layer")
    assert _stds(first, second)[:2] == pytest.approx((float(second.weight.std()),) * 2, rel=1e-5)


def test_gradmax_normalisation(generator, device):
    first, second, _ = _three_neurons(generator, device)
    lam = second.eigenvalues_extension.clone()
    z = second.extended_input_layer.weight.detach().clone()
    v = first.extended_output_layer.weight.detach().clone()
    second.normalize_optimal_updates(normalization_type="gradmax_normalization", gradmax_scale=2.0)
    target = 2.0 * float(second.weight.norm(dim=0).mean())
    norms = second.extended_input_layer.weight.norm(dim=0)
    torch.testing.assert_close(norms, torch.full_like(norms, target), rtol=1e-5, atol=0)
    torch.testing.assert_close(second.eigenvalues_extension, lam * (target / z.norm(dim=0)).sqrt(), rtol=1e-5, atol=0)
    assert torch.equal(first.extended_output_layer.weight, v)


def test_normalisation_errors(generator, device):
    first, second, _ = _three_neurons(generator, device)
    with pytest.raises(ValueError, match="normalization_type"):
        second.normalize_optimal_updates(normalization_type="unit")
    with pytest.raises(ValueError, match="gradmax_scale"):
        second.normalize_optimal_updates(normalization_type="gradmax_normalization", gradmax_scale=0.0)
    with pytest.raises(AssertionError, match="std_target"):
        second.normalize_optimal_updates(std_target=1)
    with pytest.raises(ValueError, match="previous"):
        first.normalize_optimal_updates(std_target=0.1, normalization_type="equalize_extensions")
    with pytest.raises(ValueError, match="previous"):
        first.normalize_optimal_updates(std_target=0.1, normalization_type="match_extending_layer")
    with pytest.raises(ValueError, match="input extension"):
        first.normalize_optimal_updates(normalization_type="gradmax_normalization")


# ----------------------------------------------------------------------------------------------
# scaling factors, bookkeeping, delete_update
# ----------------------------------------------------------------------------------------------


def test_scaling_factor_assignment_rules(generator, device):
    first, second = linear_pair(generator, device)
    second.scaling_factor = 0.5
    assert [float(t) for t in (second.scaling_factor, second.optimal_delta_scaling,
                               second.input_extension_scaling, first.output_extension_scaling)] == [0.5, 0.25, 0.5, 0.5]
    tensor = torch.tensor([0.2], requires_grad=True)
    second.input_extension_scaling = tensor
    assert second.input_extension_scaling is tensor
    with pytest.raises(AssertionError, match="shape"):
        second.optimal_delta_scaling = torch.tensor(0.3)
    with pytest.raises(AssertionError, match="float"):
        second.optimal_delta_scaling = "0.3"
    with pytest.raises(AssertionError):
        second.optimal_delta_scaling = torch.tensor([0.1, 0.2])
    second.previous_module = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="previous module"):
        second.scaling_factor = 1.0
    merge = LinearMergeGrowingModule(in_features=4, previous_modules=[first], device=device)
    merge.update_scaling_factor(torch.tensor(0.7))
    assert float(first.output_extension_scaling) == pytest.approx(0.7)
    merge.next_modules = [nn.Linear(4, 4)]
    with pytest.raises(TypeError, match="GrowingModule"):
        merge.update_scaling_factor(1.0)


def test_growth_bookkeeping(generator, device):
    first = LinearGrowingModule(5, 2, device=device)
    second = LinearGrowingModule(2, 3, previous_module=first, target_in_features=9, device=device)
    first.next_module = second
    assert second.missing_neurons() == 7
    assert second.number_of_neurons_to_add(number_of_growth_steps=3) == 2
    with pytest.raises(ValueError, match="method"):
        second.number_of_neurons_to_add(method="exponential")
    with pytest.raises(ValueError, match="target"):
        first.missing_neurons()
    with pytest.raises(ValueError, match="target"):
        first.number_of_neurons_to_add()
    x = torch.randn(4, 5, generator=generator).to(device)
    second.complete_growth({"input_extension_init": "zeros"})
    assert (first.out_features, second.in_features, second.missing_neurons()) == (9, 9, 0)
    assert second.extended_input_layer is None and first.extended_output_layer is None
    assert float(second.scaling_factor) == 0.0
    second.complete_growth({})
    assert second.in_features == 9
    assert second(first(x)).shape == (4, 3)


def test_delete_update(generator, device):
    first, second, _ = _with_updates(generator, device)
    second.set_scaling_factor(0.5)
    with pytest.warns(UserWarning, match="output extension"):
        second.delete_update(include_previous=False)
    assert second.optimal_delta_layer is None and second.extended_input_layer is None
    assert second.eigenvalues_extension is None and second.parameter_update_decrease is None
    assert float(second.scaling_factor) == 0 and float(first.output_extension_scaling) == 0
    assert first.extended_output_layer is not None
    first.delete_update(delete_output=True)
    assert first.extended_output_layer is None
    lonely = LinearGrowingModule(2, 2, device=device)
    lonely.extended_input_layer = nn.Linear(1, 2, bias=False)
    with pytest.warns(UserWarning, match="without a previous module"):
        lonely.delete_update()
    merge = LinearMergeGrowingModule(in_features=2, device=device)
    after = LinearGrowingModule(2, 2, previous_module=merge, device=device)
    after.extended_input_layer = nn.Linear(1, 2, bias=False)
    after.optimal_delta_layer = nn.Linear(2, 2)
    with pytest.raises(NotImplementedError):
        after.delete_update()
    assert after.optimal_delta_layer is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        after.delete_update(include_previous=False)
    assert after.extended_input_layer is None
    after.previous_module = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="previous module"):
        after.delete_update()
