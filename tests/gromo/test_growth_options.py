"""GrowthOptions and the GroMo signature built from it: every option named once, calls bound to one value."""

import dataclasses
import inspect
import typing

import pytest
import torch

from gromo.modules._growth_options import GrowthOptions, takes_growth_options


class _Recorder:
    @takes_growth_options(without=("update_previous",))
    def solve(self, options: GrowthOptions) -> GrowthOptions:
        return options


def test_signature_lists_the_options_in_field_order_with_their_defaults():
    parameters = list(inspect.signature(_Recorder.solve).parameters.values())
    names = [f.name for f in dataclasses.fields(GrowthOptions) if f.name != "update_previous"]
    assert [p.name for p in parameters] == ["self", *names]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
    defaults = {f.name: f.default for f in dataclasses.fields(GrowthOptions)}
    assert all(p.default == defaults[p.name] for p in parameters[1:])
    hints = typing.get_type_hints(_Recorder.solve)
    assert hints["dtype"] is torch.dtype and hints["return"] is GrowthOptions


def test_positional_and_keyword_arguments_bind_to_one_value_and_omitted_options_keep_defaults():
    options = _Recorder().solve(0.5, 0.25, 3, torch.float64, use_fisher=True)
    assert options == GrowthOptions(
        numerical_threshold=0.5, statistical_threshold=0.25, maximum_added_neurons=3,
        dtype=torch.float64, use_fisher=True,
    )
    assert options.update_previous is True


class _Plain:
    """The same signature written as a plain def: the TypeErrors to match."""

    def solve(self, numerical_threshold=1e-6, statistical_threshold=1e-3, maximum_added_neurons=None,
              dtype=torch.float32, compute_delta=True, use_covariance=True, alpha_zero=False, omega_zero=False,
              use_projection=True, ignore_singular_values=False, use_fisher=False):
        return None


@pytest.mark.parametrize("args, kwargs", [
    ((), {"update_previous": False}),
    ((1e-6,), {"numerical_threshold": 1e-5}),
    (tuple(range(12)), {}),
    (tuple(range(12)), {"bogus": 1}),
    ((1, 2), {"statistical_threshold": 3, "bogus": 1}),
])
def test_a_bad_call_raises_a_plain_defs_type_error(args, kwargs):
    with pytest.raises(TypeError) as plain:
        _Plain().solve(*args, **kwargs)
    with pytest.raises(TypeError) as ours:
        _Recorder().solve(*args, **kwargs)
    assert str(ours.value) == str(plain.value).replace("_Plain.", "_Recorder.")


def test_an_unknown_option_in_without_is_refused_at_decoration():
    with pytest.raises(ValueError, match="without: \\['updat_previous'\\] are not growth options"):
        takes_growth_options(without=("updat_previous",))
