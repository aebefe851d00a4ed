"""GroMo's ``gromo.modules.growing_dropout``: dropout that leaves the new neurons' extension alone.

Inside a growing layer's post-layer function, ``extended_forward(x, x_ext)`` drops entries of the
main tensor only: the extension (the candidate neurons' activations) passes unchanged, so the
first-order estimate of a growth is not perturbed by the dropout mask.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

__all__ = ["GrowingDropout", "GrowingDropout1d", "GrowingDropout2d"]


class GrowingDropout(_DropoutNd):
    """Dropout of rate ``dropout_rate`` with an ``extended_forward`` (no forward of its own: see
    ``GrowingDropout1d`` / ``GrowingDropout2d``).

    Args:
        dropout_rate: probability of an element (channel) to be zeroed.
        name: name.
    Raises:
        ValueError: ``dropout_rate`` outside [0, 1] (torch's).
    """

    def __init__(self, dropout_rate: float = 0.0, name: str = "growing_dropout") -> None:
        super().__init__(p=dropout_rate, inplace=False)
        self.name = name

    def extended_forward(self, x: torch.Tensor | None,
                         x_ext: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(dropout(x), x_ext)``: the extension is never dropped. Shapes unchanged."""
        return (self(x) if x is not None else None), x_ext

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, name={self.name}"


class GrowingDropout2d(GrowingDropout, nn.Dropout2d):
    """Channel dropout of (n, C, H, W) tensors with an extension-preserving ``extended_forward``."""


class GrowingDropout1d(GrowingDropout, nn.Dropout1d):
    """Channel dropout of (n, C, L) tensors with an extension-preserving ``extended_forward``."""


def _register_derivatives() -> None:
    # Dropout is the identity in expectation (inverted scaling): σ'(0⁺) = 1. Registering it keeps the
    # module layer from estimating it numerically (with a warning) inside a post-layer Sequential.
    from gromo.utils.utils import known_activations_zero_plus_gradient

    for cls in (GrowingDropout, GrowingDropout1d, GrowingDropout2d):
        known_activations_zero_plus_gradient.setdefault(cls, 1.0)


_register_derivatives()
