"""Everything a failing growth call must leave unchanged, captured from modules and compared.

``capture(module)`` records the full ``state_dict`` (layer, post-layer function, registered
extension / delta layers), the pending-update attributes (delta, extensions, eigenvalues, decrease,
scalings), the stored batch tensors and every statistic's accumulated tensor, samples and flag.
``assert_unchanged(before, modules)`` compares a capture with the modules' current state.
"""

from __future__ import annotations

import torch
from torch import nn

from gromo.utils.tensor_statistic import TensorStatistic

PENDING = (
    "optimal_delta_layer",
    "extended_input_layer",
    "extended_output_layer",
    "delta_raw",
    "parameter_update_decrease",
    "eigenvalues_extension",
    "optimal_delta_scaling",
    "input_extension_scaling",
    "output_extension_scaling",
    "scaling_factor",
    "_input",
    "_pre_activity",
    "input",
    "activity",
)


def _value(value):
    if value is None:
        return None
    if isinstance(value, nn.Module):
        return ("module", type(value).__name__, {k: v.detach().clone() for k, v in value.state_dict().items()})
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().clone())
    return ("other", value)


def capture(module: nn.Module) -> dict:
    """The module's full state (see the module docstring)."""
    state = {
        "state_dict": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "pending": {name: _value(module.__dict__.get(name, getattr(module, "_modules", {}).get(name)))
                    for name in PENDING if name in module.__dict__ or name in module._modules},
        "statistics": {},
    }
    for key, value in module.__dict__.items():
        if isinstance(value, TensorStatistic):
            state["statistics"][key] = (
                value.samples, value.updated, None if value._tensor is None else value._tensor.clone(),
                value._shape,
            )
    return state


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
                and torch.equal(a.isnan(), b.isnan()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def assert_unchanged(before: dict[str, dict], modules: dict[str, nn.Module]) -> None:
    """Each named module's state equals its capture; the message names what differs."""
    for label, module in modules.items():
        now = capture(module)
        for part in ("state_dict", "pending", "statistics"):
            was, is_ = before[label][part], now[part]
            assert was.keys() == is_.keys(), f"{label}.{part}: keys {sorted(was)} became {sorted(is_)}"
            for key in was:
                assert _equal(was[key], is_[key]), f"{label}.{part}[{key!r}] changed"


def capture_all(modules: dict[str, nn.Module]) -> dict[str, dict]:
    """``{label: capture(module)}``."""
    return {label: capture(module) for label, module in modules.items()}
