"""Argument and data checks that the growing modules run before they change any state.

Kinds of fault and their one exception type each:

* an argument of the wrong type (a float where a count is expected, a string for a number):
  ``TypeError``;
* an argument value out of range (negative, NaN or infinite thresholds, sizes, scaling factors,
  noise ratios): ``ValueError``;
* data that must be finite and is not (a statistic accumulated to NaN / Inf):
  :class:`~gromo.utils._nonfinite.NonFiniteError` (a ValueError and an AssertionError).

Every message names the argument (or the statistic) and the module (its ``name``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from gromo.utils._nonfinite import NonFiniteError, first_non_finite

if TYPE_CHECKING:
    from gromo.modules.growing_module import GrowingModule
    from gromo.utils.tensor_statistic import TensorStatistic

__all__ = [
    "check_count",
    "check_extension_arguments",
    "check_finite",
    "check_non_negative",
    "check_optimal_updates_arguments",
    "check_scaling",
    "check_statistics_finite",
    "check_step_shapes",
    "describe_non_finite_sources",
]


def _owner(module: Any) -> str:
    return str(getattr(module, "name", type(module).__name__))


def _real(module: Any, label: str, value: Any) -> float:
    """``value`` as a float: a real number (bools refused) or a one-element floating tensor."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
            raise TypeError(
                f"{_owner(module)}: {label} must be a real number or a one-element tensor, got a "
                f"{value.dtype} tensor of shape {tuple(value.shape)}"
            )
        return float(value.detach().reshape(()).item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_owner(module)}: {label} must be a real number, got {type(value).__name__}")
    return float(value)


def check_finite(module: Any, label: str, value: Any) -> float:
    """``value`` as a finite float. Raises TypeError (not a number) or ValueError (NaN / Inf)."""
    number = _real(module, label, value)
    if not math.isfinite(number):
        raise ValueError(f"{_owner(module)}: {label} must be finite, got {number!r}")
    return number


def check_non_negative(module: Any, label: str, value: Any) -> float:
    """``value`` as a finite float ≥ 0. Raises TypeError or ValueError."""
    number = check_finite(module, label, value)
    if number < 0:
        raise ValueError(f"{_owner(module)}: {label} must be non-negative, got {number!r}")
    return number


def check_count(module: Any, label: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` as an int ≥ 0 (or None when allowed). Raises TypeError or ValueError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{_owner(module)}: {label} must be a non-negative integer"
            f"{' or None' if allow_none else ''}, got {value!r} ({type(value).__name__})"
        )
    if value < 0:
        raise ValueError(f"{_owner(module)}: {label} must be a non-negative integer, got {value!r}")
    return int(value)


def check_scaling(module: Any, key: str, value: Any, like: torch.Tensor | None) -> None:
    """A scaling value (number or (1,)-tensor) must be finite, and so must γ² when ``key`` is
    ``scaling_factor`` (it becomes ``optimal_delta_scaling``), both in ``like``'s dtype (the
    scaling tensor it is written to).

    Raises:
        ValueError: NaN, Inf, or a value that overflows the scaling tensor's dtype.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return  # the shape rule (and its message) belongs to the attribute setter
        number = float(value.detach().reshape(()).item())
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    else:
        return  # the type rule belongs to the attribute setter
    values = [number, number * number] if key == "scaling_factor" else [number]
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.float32
    limit = torch.finfo(dtype).max
    for candidate in values:
        if not math.isfinite(candidate) or abs(candidate) > limit:
            raise ValueError(
                f"{_owner(module)}: {key} must be finite in {dtype}"
                f"{' (and so must its square, the delta scaling)' if key == 'scaling_factor' else ''}, "
                f"got {number!r}"
            )


def check_step_shapes(
    module: Any, weight: torch.Tensor, delta_weight: torch.Tensor,
    bias: torch.Tensor | None, delta_bias: torch.Tensor | None,
) -> None:
    """``W += ΔW`` and ``b += Δb`` can both run in place (checked before either runs)."""
    pairs = [("delta_weights", weight, delta_weight)]
    if delta_bias is not None:
        if bias is None:
            raise ValueError(f"{_owner(module)}: delta_biases is given but the layer has no bias")
        pairs.append(("delta_biases", bias, delta_bias))
    for label, parameter, step in pairs:
        try:
            shape = torch.broadcast_shapes(parameter.shape, step.shape)
        except RuntimeError:
            shape = None
        if shape != parameter.shape:
            raise ValueError(
                f"{_owner(module)}: {label} of shape {tuple(step.shape)} does not broadcast to the "
                f"parameter's shape {tuple(parameter.shape)}"
            )


def check_optimal_updates_arguments(
    module: Any, numerical_threshold: Any, statistical_threshold: Any, maximum_added_neurons: Any
) -> None:
    """Thresholds finite and ≥ 0, ``maximum_added_neurons`` None or an int ≥ 0."""
    check_non_negative(module, "numerical_threshold", numerical_threshold)
    check_non_negative(module, "statistical_threshold", statistical_threshold)
    check_count(module, "maximum_added_neurons", maximum_added_neurons, allow_none=True)


def check_extension_arguments(
    module: Any, sizes: dict[str, Any], noise_ratio: Any
) -> None:
    """Extension sizes ints ≥ 0 and ``noise_ratio`` finite and ≥ 0."""
    for label, size in sizes.items():
        check_count(module, label, size, allow_none=label != "extension_size")
    check_non_negative(module, "noise_ratio", noise_ratio)


def check_statistics_finite(module: Any, statistics: Iterable[TensorStatistic | None]) -> None:
    """The accumulated statistics a solve is about to read hold no NaN / Inf (one host sync).

    Statistics without samples are skipped (reading them raises their own error).

    Raises:
        NonFiniteError: naming the module and the statistic.
    """
    present = [s for s in statistics if s is not None and s.samples > 0 and s._tensor is not None]
    bad = first_non_finite([s._tensor for s in present])
    if bad is not None:
        raise NonFiniteError(
            f"{_owner(module)}: the statistic {present[bad].name} contains NaN or Inf (accumulated "
            "from finite batches, it overflowed); reset the computation and use smaller inputs."
        )


def describe_non_finite_sources(module: GrowingModule) -> str:
    """Which stored tensors of ``module`` hold NaN / Inf, as text for a NonFiniteError message."""
    sources = module._statistic_sources()
    labels = {"x": "input", "grad": "pre-activation gradient", "x_prev": "previous module's input"}
    names = list(sources)
    bad = [labels.get(name, name) for name in names if first_non_finite([sources[name]]) is not None]
    if not bad:
        return f" (in {_owner(module)})"
    return f" (in {_owner(module)}: non-finite {', '.join(bad)})"
