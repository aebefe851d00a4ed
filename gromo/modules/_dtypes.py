"""Half precision end to end: update and extension layers in the dtype of the layer they extend.

Statistics of float16 / bfloat16 layers are accumulated in float32 and the solves return float32
(or float64) results, so the optimal delta and the new neurons come out in a wider dtype than the
module. A layer built from them would not accept the module's half-precision input in
``extended_forward`` (the line search), so each pending layer is converted to the dtype of the
layer it updates: the optimal delta and the input extension to this module's weight dtype, the
output extension to the previous module's. Conversion is a no-op when the dtypes already agree (so
float32 modules keep the storage shared between ``delta_raw`` and the delta layer); for half
modules ``delta_raw`` stays in the solve's dtype (it feeds N = −M₋₂ + P δᵀ at full precision).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["match_pending_layer_dtypes"]


def _weight_dtype(module: Any) -> torch.dtype | None:
    weight = getattr(getattr(module, "layer", None), "weight", None)
    return weight.dtype if isinstance(weight, torch.Tensor) and weight.is_floating_point() else None


def _convert(owner: Any, attribute: str, dtype: torch.dtype | None) -> None:
    layer = getattr(owner, attribute, None)
    if dtype is None or not isinstance(layer, nn.Module):
        return
    if any(p.is_floating_point() and p.dtype != dtype for p in layer.parameters()):
        layer.to(dtype)


def match_pending_layer_dtypes(module: Any, include_previous: bool = True) -> None:
    """Convert ``module``'s optimal delta and input extension layers to its weight dtype and (with
    ``include_previous``) the previous module's output extension to that module's weight dtype."""
    dtype = _weight_dtype(module)
    _convert(module, "optimal_delta_layer", dtype)
    _convert(module, "extended_input_layer", dtype)
    previous = module.__dict__.get("previous_module")
    if include_previous and previous is not None and hasattr(previous, "extended_output_layer"):
        _convert(previous, "extended_output_layer", _weight_dtype(previous))
