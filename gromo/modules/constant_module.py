"""GroMo's ``gromo.modules.constant_module``: a growing linear layer that stands for "no connection".

``ConstantModule`` outputs zeros whatever its input (a leaf tensor, so that a gradient reaches the
merge it feeds) and its optimal update is always the zero layer: it never moves. A graph uses it as
a placeholder edge while it measures what a real connection would gain.
"""

from __future__ import annotations

import torch
from torch import nn

from gromo.modules.linear_growing_module import LinearGrowingModule

__all__ = ["ConstantModule"]


class ConstantModule(LinearGrowingModule):
    """``x (n, in) ↦ zeros (n, out)`` (bias-free linear growing module of zero effect).

    Args:
        in_features: input features.
        out_features: output features.
        device: device.
    """

    def __init__(self, in_features: int, out_features: int, device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, use_bias=False, device=device)

    def __setattr__(self, key: str, value: object) -> None:
        # An assigned delta layer is kept aside (not registered): reading returns its zero version.
        if key == "optimal_delta_layer":
            self.__dict__["_hidden_optimal_delta_layer"] = value
        else:
            super().__setattr__(key, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """zeros (len(x), out) with ``requires_grad`` (re-registered as buffer ``constant``)."""
        constant = torch.zeros(len(x), self.out_features, device=self.device, requires_grad=True)
        self.register_buffer("constant", constant)
        return self.constant

    @property
    def optimal_delta_layer(self) -> nn.Module:
        """A zero, bias-free layer shaped like the last assigned delta layer (the module never moves).

        Raises:
            AttributeError: read before any assignment.
        """
        hidden = self.__dict__.get("_hidden_optimal_delta_layer")
        return self.layer_of_tensor(torch.zeros_like(hidden.weight), force_bias=False)

