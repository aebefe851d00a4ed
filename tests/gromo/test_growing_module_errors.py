"""The remaining errors and warnings of TINY, TMLR 2024 for the growing / merge base classes, and
the rare paths of the solve wrappers (negative decrease retry, eigh regularisation)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gromo.modules.growing_module import GrowingModule
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from gromo.utils import tools
from gromo_kernels.results import DeltaResult


class _ExtendedIdentity(nn.Module):
    """A post-layer function with its own extended_forward (like the growing norms)."""

    def forward(self, x):
        return 2 * x

    def extended_forward(self, x, x_ext):
        return 2 * x, x_ext


def _pair(generator, device, activation=None):
    first = LinearGrowingModule(4, 3, post_layer_function=activation or nn.Identity(), device=device)
    second = LinearGrowingModule(3, 2, previous_module=first, device=device)
    first.next_module = second
    with torch.no_grad():
        for layer in (first, second):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
    return first, second


def test_base_input_extended_and_input_size(device):
    module = GrowingModule(nn.Linear(2, 2), tensor_s_shape=(3, 3), allow_growing=False, device=device)
    module.store_input = True
    module(torch.ones(1, 2, device=device))
    assert module.input_extended is module.input
    module.use_bias = True
    with pytest.raises(NotImplementedError):
        module.input_extended
    with pytest.raises(ValueError, match="input size"):
        module.input_size
    module.input_size = [4, 5]
    assert module.input_size == (4, 5)


def test_added_parameters_need_a_linear_previous_module(device):
    lonely = LinearGrowingModule(3, 2, device=device)
    with pytest.raises(ValueError, match="previous module"):
        lonely._compute_optimal_added_parameters()
    merge = LinearMergeGrowingModule(in_features=3, device=device)
    after = LinearGrowingModule(3, 2, previous_module=merge, device=device)
    with pytest.raises(NotImplementedError):
        after._compute_optimal_added_parameters()
    assert after.extended_input_layer is None and after.eigenvalues_extension is None


def test_tensor_n_needs_the_delta(generator, device):
    _, second = _pair(generator, device)
    with pytest.raises(AssertionError, match="delta"):
        second.tensor_n


def test_merge_delta_needs_previous_statistics(device):
    merge = LinearMergeGrowingModule(in_features=3, device=device)
    with pytest.raises(AssertionError, match="previous S"):
        merge.compute_optimal_delta()


def test_apply_change_needs_a_known_extension_size(generator, device):
    first, second = _pair(generator, device)
    second.create_layer_extensions(2)
    with pytest.raises(AssertionError, match="extension size"):
        second.apply_change(scaling_factor=1.0)
    assert second.in_features == 3 and first.out_features == 3


def test_output_scaling_mismatch_warns(generator, device):
    first, second = _pair(generator, device)
    second.create_layer_extensions(2)
    first.output_extension_scaling = 0.5
    with pytest.warns(UserWarning, match="differs"):
        first._apply_output_changes(scaling_factor=0.25, extension_size=2)
    assert first.out_features == 5


def test_merge_with_several_successors_warns_for_m_prev(generator, device):
    merge = LinearMergeGrowingModule(in_features=3, device=device)
    before = LinearGrowingModule(2, 3, next_module=merge, device=device)
    a = LinearGrowingModule(3, 2, previous_module=merge, device=device)
    b = LinearGrowingModule(3, 1, previous_module=merge, device=device)
    merge.set_previous_modules([before])
    merge.set_next_modules([a, b])
    for module in (a, b):
        module.init_computation()
    hidden = merge(before(torch.randn(5, 2, generator=generator).to(device)))
    (a(hidden).sum() + b(hidden).sum()).backward()
    with pytest.warns(UserWarning, match="successors"):
        m_prev, count = a.compute_m_prev_update()
    assert m_prev.shape == (3, 2) and count == 5
    cross, _ = a.compute_cross_covariance_update()
    assert cross.shape == (3, 4)  # the bias column of `a` is included (GroMo omits it)
    with pytest.warns(UserWarning, match="non-empty"):
        merge.tensor_s.samples = 1
        merge.set_next_modules([a])


def test_extended_post_layer_functions(generator, device):
    for function, expected in ((_ExtendedIdentity(), "bypass"), (nn.Sequential(_ExtendedIdentity(), nn.Tanh()), "seq")):
        first, second = _pair(generator, device, activation=function)
        second.create_layer_extensions(2)
        first.output_extension_scaling = 1.0
        x = torch.randn(3, 4, generator=generator).to(device)
        with torch.no_grad():
            out, out_ext = first.extended_forward(x)
            ext = first.extended_output_layer(x)
            if expected == "bypass":
                torch.testing.assert_close(out_ext, ext)  # the extension bypasses the function
                torch.testing.assert_close(out, 2 * first.layer(x))
            else:
                torch.testing.assert_close(out_ext, torch.tanh(ext))
                torch.testing.assert_close(out, torch.tanh(2 * first.layer(x)))


def test_deprecated_extended_post_layer_function(generator, device):
    with pytest.warns(DeprecationWarning):
        first = LinearGrowingModule(4, 3, post_layer_function=nn.ReLU(),
                                    extended_post_layer_function=nn.Tanh(), device=device)
    second = LinearGrowingModule(3, 2, previous_module=first, device=device)
    second.create_layer_extensions(2)
    first.output_extension_scaling = 1.0
    x = torch.randn(3, 4, generator=generator).to(device)
    with torch.no_grad():
        out, out_ext = first.extended_forward(x)
        torch.testing.assert_close(out_ext, torch.tanh(first.extended_output_layer(x)))
        torch.testing.assert_close(out, torch.relu(first.layer(x)))


# ----------------------------------------------------------------------------------------------
# solve wrappers: GroMo's rare paths, triggered through a stand-in kernel
# ----------------------------------------------------------------------------------------------


def test_negative_decrease_retries_in_float64_then_zeroes(generator, monkeypatch):
    calls = []

    def fake(s, m, *, E=None, force_pinv=False):
        calls.append((s.dtype, force_pinv))
        delta = torch.ones(m.shape[1], s.shape[0], dtype=s.dtype)
        decrease = torch.tensor(-1.0 if not force_pinv or len(calls) > 2 else 2.0, dtype=s.dtype)
        return DeltaResult(delta, decrease, torch.tensor(False))

    monkeypatch.setattr(tools.gk, "optimal_delta", fake)
    s, m = torch.eye(3), torch.randn(3, 2, generator=generator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        delta, decrease = tools.optimal_delta(s, m)
    assert [str(w.message)[:24] for w in caught] == ["The parameter update dec", "Trying to use the pseudo"]
    assert calls == [(torch.float32, False), (torch.float64, True)]
    assert delta.dtype == torch.float32 and float(decrease) == 2.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        delta, decrease = tools.optimal_delta(s, m)
    assert [str(w.message)[:24] for w in caught] == [
        "The parameter update dec", "Trying to use the pseudo", "The parameter update dec", "Failed to compute the op"]
    assert not delta.any() and float(decrease) == 0.0


def test_eigh_failure_regularises_in_place_and_retries(monkeypatch):
    original = tools.gk.psd_inv_sqrt
    calls = []

    def flaky(matrix, **kwargs):
        calls.append(matrix.clone())
        if len(calls) == 1:
            raise torch.linalg.LinAlgError("no convergence")
        return original(matrix, **kwargs)

    monkeypatch.setattr(tools.gk, "psd_inv_sqrt", flaky)
    matrix = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    with pytest.warns(RuntimeWarning, match="regularis"):
        r = tools.sqrt_inverse_matrix_semi_positive(matrix, threshold=1e-8)
    resolution = torch.finfo(torch.float64).resolution
    torch.testing.assert_close(matrix, torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64)) + resolution * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(r, torch.diag((torch.tensor([4.0, 1.0], dtype=torch.float64) + resolution) ** -0.5))


def test_no_spurious_warnings_in_a_clean_growth_step(generator, device):
    first, second = _pair(generator, device, activation=nn.ReLU())
    x = torch.randn(32, 4, generator=generator).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second.init_computation()
        (second(first(x)) ** 2).sum().backward()
        second.update_computation()
        second.compute_optimal_updates()
        second.reset_computation()
        second.set_scaling_factor(0.1)
        second.apply_change()
        second.delete_update()
