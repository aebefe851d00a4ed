"""A container's ``compute_optimal_updates`` solves its layers together (request → solve → install):
each layer ends bit for bit as its own ``compute_optimal_updates`` leaves it, equal-shape layers share
one gromo_kernels call, GroMo's override points are honoured, and a failure changes no layer."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gromo_kernels as gk
from gromo.containers.growing_mlp import GrowingMLP
from gromo.containers.resnet import ResNetBasicBlock
from gromo.growth.candidates import CandidateError, _compute_updates
from gromo.growth.loop import GrowthConfig
from gromo.modules import growing_module
from gromo.modules._growing import together
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo.utils._nonfinite import NonFiniteError
from gromo.utils.training_utils import compute_statistics

PENDING = ("optimal_delta_layer", "extended_input_layer", "extended_output_layer")
VALUES = ("delta_raw", "eigenvalues_extension", "parameter_update_decrease")


def _state(layer: nn.Module) -> dict:
    """Every pending-update value of a growing module, as tensors."""
    out = {}
    for name in PENDING:
        sub = getattr(layer, name)
        out[name] = None if sub is None else [p.detach().clone() for p in sub.parameters()]
    for name in VALUES:
        value = getattr(layer, name)
        out[name] = value.detach().clone() if isinstance(value, torch.Tensor) else value
    out["squared"] = getattr(layer, "_first_order_uses_squared_singular_values", None)
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, list):
            assert isinstance(y, list) and len(x) == len(y), key
            assert all(torch.equal(p, q) for p, q in zip(x, y)), key
        elif isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and torch.equal(x, y), key
        else:
            assert x == y, key


def _modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, growing_module.GrowingModule)]


def _with_statistics(model: nn.Module, in_shape: tuple, out_features: int, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(96, *in_shape, generator=generator)
    y = torch.randn(96, out_features, generator=generator)
    compute_statistics(model, DataLoader(TensorDataset(x, y), batch_size=32), nn.MSELoss(reduction="sum"),
                       device="cpu")
    return model


def _seed(generator) -> int:
    return int(torch.randint(0, 2**31, (1,), generator=generator))


def _mlp(seed: int) -> GrowingMLP:
    """A 12→16→16→16→16→5 GrowingMLP with the statistics of one pass (the same for the same seed)."""
    torch.manual_seed(seed)
    return _with_statistics(GrowingMLP(12, 5, 16, 4, device="cpu"), (12,), 5, seed)


def _resnet(seed: int) -> ResNetBasicBlock:
    """A four-stage ResNet whose blocks have hidden widths 0 and 2, with statistics."""
    torch.manual_seed(seed)
    model = ResNetBasicBlock(in_features=3, out_features=4, hidden_channels=(0, 2, 0, 2), inplanes=4,
                             small_inputs=True, normalization=None, device="cpu")
    model.eval()
    return _with_statistics(model, (3, 8, 8), 4, seed)


def _one_by_one(model: nn.Module, **kwargs) -> None:
    """The reference: each growable layer's own ``compute_optimal_updates``, in order."""
    with gk.factorization_cache():
        for layer in model._updatable_layers():
            if hasattr(layer, "_growing_layers") and not hasattr(layer, "second_layer"):
                for inner in layer._updatable_layers():
                    inner.compute_optimal_updates(**kwargs)
            else:
                layer.compute_optimal_updates(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {},
    {"maximum_added_neurons": 3, "statistical_threshold": 0.0},
    {"compute_delta": False},
    {"compute_delta": False, "use_projection": False, "use_covariance": False},
    {"use_fisher": True},
])
def test_mlp_layers_end_as_their_own_calls_leave_them(kwargs, generator):
    seed = _seed(generator)
    joint, alone = _mlp(seed), _mlp(seed)
    joint.compute_optimal_updates(**kwargs)
    _one_by_one(alone, **kwargs)
    for a, b in zip(_modules(joint), _modules(alone), strict=True):
        _assert_same(_state(a), _state(b))
        if a.parameter_update_decrease is not None:
            assert float(a.first_order_improvement) == float(b.first_order_improvement)


def test_resnet_blocks_end_as_their_own_calls_leave_them(generator):
    seed = _seed(generator)
    joint, alone = _resnet(seed), _resnet(seed)
    joint.compute_optimal_updates(maximum_added_neurons=2)
    _one_by_one(alone, maximum_added_neurons=2)
    blocks = [b for b in joint.modules() if hasattr(b, "second_layer")]
    assert {b.hidden_neurons for b in blocks} == {0, 2}  # both block paths are exercised
    for a, b in zip(_modules(joint), _modules(alone), strict=True):
        _assert_same(_state(a), _state(b))
    for a, b in zip(blocks, [b for b in alone.modules() if hasattr(b, "second_layer")], strict=True):
        assert a.parameter_update_decrease == b.parameter_update_decrease
        assert torch.equal(a.eigenvalues_extension, b.eigenvalues_extension)


def test_equal_shape_layers_share_one_kernel_call(monkeypatch, generator):
    calls = {"delta": [], "added": []}
    delta, added = gk.optimal_delta, gk.optimal_added_neurons

    def counted(kind, solve):
        def call(S, *args, **kwargs):
            calls[kind].append(len(S) if isinstance(S, list) else 1)
            return solve(S, *args, **kwargs)
        return call

    monkeypatch.setattr(together.gk, "optimal_delta", counted("delta", delta))
    monkeypatch.setattr(together.gk, "optimal_added_neurons", counted("added", added))
    model = _mlp(_seed(generator))
    model.compute_optimal_updates()
    # GroMo's MLP grows layers 1-4: their deltas one by one (bit-identical decreases), their
    # new-neuron solves in one call (gromo_kernels groups by shape inside)
    assert calls == {"delta": [1, 1, 1, 1], "added": [4]}


def test_groups_are_cut_by_size_with_the_same_results(monkeypatch, generator):
    calls = []
    added = gk.optimal_added_neurons

    def counted(S, N, **kwargs):
        calls.append(len(N) if isinstance(N, list) else 1)
        return added(S, N, **kwargs)

    seed = _seed(generator)
    joint, alone = _mlp(seed), _mlp(seed)
    # requests of 1.5, 2.2, 2.2 and 1.5 KB (S₋₂ and N in float32, layers 1-4): 5000 bytes a group
    monkeypatch.setattr(together, "GROUP_BYTES", 5000)
    monkeypatch.setattr(together.gk, "optimal_added_neurons", counted)
    joint.compute_optimal_updates()
    assert calls == [2, 2]  # layers 1-2, then 3-4 (instead of one call of 4)
    _one_by_one(alone)
    for a, b in zip(_modules(joint), _modules(alone), strict=True):
        _assert_same(_state(a), _state(b))


def test_replaced_public_solver_is_called_for_every_layer(monkeypatch, generator):
    seen = []
    original = growing_module.compute_optimal_added_parameters

    def replaced(*args, **kwargs):
        seen.append(kwargs["matrix_n"].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(growing_module, "compute_optimal_added_parameters", replaced)
    seed = _seed(generator)
    joint, alone = _mlp(seed), _mlp(seed)
    joint.compute_optimal_updates()
    assert len(seen) == 4
    monkeypatch.setattr(growing_module, "compute_optimal_added_parameters", original)
    _one_by_one(alone)
    for a, b in zip(_modules(joint), _modules(alone), strict=True):
        _assert_same(_state(a), _state(b))


def test_overridden_step_runs_in_place_and_others_still_join(monkeypatch, generator):
    model = _mlp(_seed(generator))
    hooked = model.layers[2]
    calls = []

    def own(options):
        calls.append(options.maximum_added_neurons)
        return LinearGrowingModule._compute_optimal_added_parameters(hooked, **options.as_kwargs(
            drop=("compute_delta",)))

    hooked._compute_optimal_added_parameters = lambda **kw: own(together.GrowthOptions(**kw))
    assert not together.solves_jointly(hooked) and together.solves_jointly(model.layers[1])
    model.compute_optimal_updates(maximum_added_neurons=2)
    assert calls == [2]
    assert all(layer.eigenvalues_extension.numel() <= 2 for layer in model.layers[1:])


def test_failing_layer_changes_no_layer(generator):
    model = _mlp(_seed(generator))
    model.layers[1].compute_optimal_updates()  # a pending update that must survive the failure
    before = [_state(layer) for layer in model.layers]
    model.layers[3].tensor_m_prev._tensor[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=re.escape(f"{model.layers[3].name}: the statistic M_prev")):
        model.compute_optimal_updates()
    for layer, state in zip(model.layers, before, strict=True):
        _assert_same(_state(layer), state)


def test_bad_argument_has_a_plain_def_text(generator):
    model = _mlp(_seed(generator))
    with pytest.raises(TypeError, match=r"compute_optimal_updates\(\) got an unexpected keyword argument 'bogus'"):
        model.compute_optimal_updates(bogus=1)
    assert all(layer.eigenvalues_extension is None for layer in model.layers)


def test_failed_group_is_solved_layer_by_layer(monkeypatch, generator):
    added = gk.optimal_added_neurons

    def no_lists(S, N, **kwargs):
        if isinstance(N, list):
            raise torch.linalg.LinAlgError("grouped solve failed")
        return added(S, N, **kwargs)

    seed = _seed(generator)
    joint, alone = _mlp(seed), _mlp(seed)
    monkeypatch.setattr(together.gk, "optimal_added_neurons", no_lists)
    joint.compute_optimal_updates()
    _one_by_one(alone)
    for a, b in zip(_modules(joint), _modules(alone), strict=True):
        _assert_same(_state(a), _state(b))


def test_growth_loop_names_the_failing_candidate_and_changes_nothing(monkeypatch, generator):
    model = _mlp(_seed(generator))
    added = gk.optimal_added_neurons
    target = model.layers[2].tensor_m_prev().shape

    def fails_on_layer_2(S, N, **kwargs):
        if isinstance(N, list):
            raise torch.linalg.LinAlgError("grouped")
        if N.shape == target and S is not None and S.shape[0] == target[0]:
            raise torch.linalg.LinAlgError("the SVD did not converge")
        return added(S, N, **kwargs)

    monkeypatch.setattr(together.gk, "optimal_added_neurons", fails_on_layer_2)
    monkeypatch.setattr(together.tools.gk, "optimal_added_neurons", fails_on_layer_2)
    with pytest.raises(CandidateError, match=re.escape(f"candidate '{model.layers[2].name}': ")
                       + "_?LinAlgError: the SVD did not converge"):
        _compute_updates(model, GrowthConfig())
    assert all(layer.eigenvalues_extension is None and layer.optimal_delta_layer is None for layer in model.layers)


def test_growth_loop_blames_a_non_finite_statistic_on_its_own_layer(generator):
    # layer 2's S is also layer 3's growth covariance, which the loop reads first (for its threshold)
    model = _mlp(_seed(generator))
    model.layers[2].tensor_s._tensor[0, 0] = float("nan")
    with pytest.raises(CandidateError, match=re.escape(f"candidate '{model.layers[2].name}': NonFiniteError")):
        _compute_updates(model, GrowthConfig())
    assert all(layer.eigenvalues_extension is None for layer in model.layers)
