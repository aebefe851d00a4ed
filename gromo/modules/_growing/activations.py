"""Post-layer functions as growth sees them: σ'(0⁺), growing them with the layer, rescaling their
BatchNorms, and the protocol of functions that propagate an extension themselves.
"""

from __future__ import annotations

import warnings
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gromo.utils.utils import ReLUDerivativeOneAtZero

__all__ = [
    "GRADIENT_COMPUTATION_EPSILON",
    "SupportsExtendedForward",
    "derivative_at_zero_plus",
    "grow_function",
    "rescale_batch_norms",
]

#: point (0⁺) where unknown activation derivatives are evaluated numerically
GRADIENT_COMPUTATION_EPSILON = 1e-5


# σ'(0⁺) of the activations GroMo knows (exact type match).
_DERIVATIVE_AT_ZERO: dict[type, float] = {
    nn.ReLU: 1.0,
    ReLUDerivativeOneAtZero: 1.0,
    nn.GELU: 0.5,
    nn.SELU: 1.0507,
    nn.SiLU: 0.5,
    nn.Tanh: 1.0,
    nn.Sigmoid: 0.25,
    nn.Identity: 1.0,
}


@runtime_checkable
class SupportsExtendedForward(Protocol):
    """A post-layer function that can propagate the extension tensor itself."""

    def extended_forward(
        self, x: torch.Tensor, x_ext: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(f(x), f_ext(x_ext))``."""
        ...


def _numerical_derivative(function: Callable[[torch.Tensor], torch.Tensor]) -> float:
    x = torch.tensor(GRADIENT_COMPUTATION_EPSILON)
    return float(torch.func.grad(function)(x))


def derivative_at_zero_plus(function: nn.Module | Callable) -> float:
    """σ'(0⁺) from GroMo's table; product over an nn.Sequential; numerical (with a warning) otherwise."""
    known = _DERIVATIVE_AT_ZERO.get(type(function))
    if known is not None:
        return known
    if isinstance(function, nn.Sequential):
        value = 1.0
        for member in function:
            member_value = _DERIVATIVE_AT_ZERO.get(type(member))
            if member_value is None:
                if isinstance(member, _BatchNorm):
                    member_value = 1.0
                else:
                    module = member
                    warnings.warn(
                        f"The computation of the activation gradient does not work necessarily with "
                        f"{type(module)} in a Sequential. We will try to compute it numerically.",
                        UserWarning,
                        stacklevel=3,
                    )
                    member_value = _numerical_derivative(member)
            value *= member_value
        return value
    inspected_function = function
    warnings.warn(
        "The computation of the activation gradient does not work necessarily with "
        f"{type(inspected_function)}. We will try to compute it numerically.",
        UserWarning,
        stacklevel=3,
    )
    return _numerical_derivative(function)


def grow_function(function: nn.Module | None, size: int) -> None:
    """Call ``.grow(size)`` on a post function (or on each member of an nn.Sequential) that has one."""
    if function is None or size <= 0:
        return
    if hasattr(function, "grow") and callable(function.grow):
        function.grow(size)
    elif isinstance(function, nn.Sequential):
        for member in function:
            if hasattr(member, "grow") and callable(member.grow):
                member.grow(size)


def rescale_batch_norms(function: nn.Module | None, factor: float) -> None:
    """Running statistics of every BatchNorm1d/2d inside ``function`` follow a rescaled input."""
    if function is None:
        return
    for module in function.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if module.running_mean is not None:
                module.running_mean.mul_(factor)
            if module.running_var is not None:
                module.running_var.mul_(factor**2)

