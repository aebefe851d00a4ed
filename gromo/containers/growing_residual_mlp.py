"""GroMo's ``gromo.containers.growing_residual_mlp``: an MLP of residual blocks whose hidden widths grow.

    x (n, *in) → flatten → Linear(in, F) → block 0 → … → block B−1 → Linear(F, out)
    block(x) = z + second(first(act(z))),  z = LayerNorm(x) (no affine),

where ``first`` (F → hidden, post ``act``) and ``second`` (hidden → F) are growing linears; growing
a block adds hidden neurons (rows of ``first``, columns of ``second``). A block of hidden width 0 is
the identity.

GroMo bugs corrected here (see the docstrings): the block tests its *current* hidden width (GroMo
tests the constructor's, so a block created empty stays the identity after growing), and the
verbose ``select_update`` prints ``eigenvalues_extension`` (GroMo reads a missing attribute).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gromo.containers.growing_container import (
    GrowingContainer,
    check_second_layer_output_not_extended,
    forward_through_blocks,
)
from gromo.containers.sequential_growing_container import SequentialGrowingModel
from gromo.modules.linear_growing_module import LinearGrowingModule

__all__ = ["GrowingResidualBlock", "GrowingResidualMLP"]


def _layer_update_information(layer: LinearGrowingModule) -> dict[str, Any]:
    return {
        "update_value": layer.first_order_improvement,
        "parameter_improvement": layer.parameter_update_decrease,
        "eigenvalues_extension": layer.eigenvalues_extension,
    }


class GrowingResidualBlock(GrowingContainer):
    """``x ↦ z + second(first(act(z)))`` with ``z = LayerNorm(x)``; the identity at hidden width 0.

    Args:
        num_features: F (input = output size).
        hidden_features: initial hidden width.
        activation: activation (Identity if None), before ``first`` and as its post function.
        name: name.
        kwargs_layer: keyword arguments of both layers (e.g. ``{"device": ...}``).
    """

    def __init__(self, num_features: int, hidden_features: int = 0, activation: nn.Module | None = None,
                 name: str = "block", kwargs_layer: dict | None = None) -> None:
        super().__init__(in_features=num_features, out_features=num_features, name=name)
        kwargs_layer = {} if kwargs_layer is None else kwargs_layer
        self.norm = nn.LayerNorm(num_features, elementwise_affine=False, device=kwargs_layer.get("device"))
        self.activation = nn.Identity() if activation is None else activation
        self.first_layer = LinearGrowingModule(num_features, hidden_features, post_layer_function=self.activation,
                                               name="first_layer", **kwargs_layer)
        self.second_layer = LinearGrowingModule(hidden_features, num_features, previous_module=self.first_layer,
                                                allow_growing=True, name="second_layer", **kwargs_layer)
        self.first_layer.next_module = self.second_layer
        self.hidden_features = hidden_features
        self.enable_extended_forward = False
        self.set_growing_layers()

    def set_growing_layers(self) -> None:
        """The second layer grows (its inputs are the hidden neurons)."""
        self._growing_layers = [self.second_layer]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, F) → (n, F). Tests the current hidden width (GroMo: the constructor's)."""
        if self.second_layer.in_features == 0:
            return x
        z = self.norm(x)
        return self.second_layer(self.first_layer(self.activation(z))) + z

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with the pending update at its current scaling: (n, F) → (n, F).

        Raises:
            AssertionError: the second layer returns an output extension.
        """
        if self.second_layer.in_features == 0:
            return x
        z = self.norm(x)
        hidden, hidden_extension = self.first_layer.extended_forward(self.activation(z))
        out, out_extension = self.second_layer.extended_forward(hidden, hidden_extension)
        check_second_layer_output_not_extended(self.second_layer, out_extension)
        return out + z

    def weights_statistics(self) -> dict[int | str, Any]:
        """{0: first layer's weight/bias statistics, 1: second's, "hidden_shape": initial width}."""
        return {0: self.first_layer.weights_statistics(), 1: self.second_layer.weights_statistics(),
                "hidden_shape": self.hidden_features}

    def update_information(self) -> dict[str, Any]:
        """The second layer's first-order improvement, delta decrease and eigenvalues (tensors)."""
        return _layer_update_information(self.second_layer)


class GrowingResidualMLP(SequentialGrowingModel):
    """Embedding, ``num_blocks`` growing residual blocks, projection.

    Args:
        in_features: input shape (flattened).
        out_features: outputs.
        num_features: F, the width of the residual stream.
        hidden_features: initial hidden width of every block.
        num_blocks: blocks.
        activation: the blocks' activation.
        device: device.
    """

    def __init__(self, in_features: torch.Size | tuple[int, ...], out_features: int, num_features: int,
                 hidden_features: int, num_blocks: int, activation: nn.Module = nn.ReLU(),
                 device: torch.device | str | None = None) -> None:
        in_features = int(math.prod(in_features))
        super().__init__(in_features=in_features, out_features=out_features, device=device)
        self.num_features = num_features
        self.hidden_features = hidden_features
        self.num_blocks = num_blocks
        self.embedding = nn.Sequential(nn.Flatten(start_dim=1), nn.Linear(in_features, num_features, device=self.device))
        self.blocks = nn.ModuleList([
            GrowingResidualBlock(num_features, hidden_features, activation=activation, name=f"block {i}",
                                 kwargs_layer={"device": self.device})
            for i in range(num_blocks)
        ])
        self.projection = nn.Linear(num_features, out_features, device=self.device)
        self._growable_layers = [block.second_layer for block in self.blocks]
        self.set_growing_layers("all")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, *in) → (n, out)."""
        return forward_through_blocks(x, self.embedding, self.blocks, self.projection)

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with every pending update at its current scaling: (n, *in) → (n, out)."""
        return forward_through_blocks(x, self.embedding, self.blocks, self.projection, extended=True)

    def select_update(self, layer_index: int, verbose: bool = False) -> int:
        """Keep the update of growing layer ``layer_index``, delete the others' (no range check).

        With ``verbose`` prints, per block, ``Block {i} improvement``, ``Block {i} parameter
        improvement``, ``Block {i} eigenvalues extension`` and ``Deleting block {i}`` (GroMo reads a
        missing ``eigenvalues`` attribute there; this prints ``eigenvalues_extension``).

        Returns:
            layer_index.
        """
        self._delete_other_updates(
            layer_index, verbose, label="Block", improvement_label="improvement",
            improvement_of=lambda layer: layer.first_order_improvement,
        )
        self.currently_updated_layer_index = layer_index
        return layer_index

    def weights_statistics(self) -> dict[int, dict[str, Any]]:
        """Per block: weight/bias statistics of both layers (suffix _0, _1) and its hidden width."""
        statistics = {}
        for index, block in enumerate(self.blocks):
            entry: dict[str, Any] = {}
            for suffix, layer in (("0", block.first_layer), ("1", block.second_layer)):
                for key, value in layer.weights_statistics().items():
                    entry[f"{key}_{suffix}"] = value
            entry["hidden_shape"] = block.hidden_features
            statistics[index] = entry
        return statistics

    def update_information(self) -> dict[int, dict[str, Any]]:
        """Per growing layer: first-order improvement, delta decrease and eigenvalues (tensors)."""
        return {index: _layer_update_information(layer) for index, layer in enumerate(self._growing_layers)}
