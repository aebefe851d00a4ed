"""Growing multi-layer perceptrons (GroMo's ``gromo.containers.growing_mlp``).

    GrowingMLP:  x (n, *in) → flatten → [Linear → activation] × L → Linear → logits (n, out)

(with ``flatten=False`` the layers act on the last dimension: x (n, …, in) → (n, …, out))

built from chained :class:`~gromo.modules.linear_growing_module.LinearGrowingModule` (each layer's
``previous_module`` is the one before it). The growable layers are every layer but the first: growing
layer ``i`` adds hidden neurons between layer ``i−1`` and layer ``i`` (new rows of ``i−1``, new
columns of ``i``). The schedule (``set_growing_layers(scheduling_method, index)``) comes from
:class:`~gromo.containers.sequential_growing_container.SequentialGrowingModel`; selection, scaling
and parameter counting from :class:`~gromo.containers.growing_container.GrowingContainer`.

Deliberate differences from GroMo: the sizes are checked (ValueError), each layer's
``next_module`` is linked, and ``reset_computation`` stops the first layer storing its input.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gromo.containers.sequential_growing_container import SequentialGrowingModel
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo.utils._assertions import gromo_assert

__all__ = ["GrowingMLP", "Perceptron"]


def _num_features(in_features: int | list[int] | tuple[int, ...], flatten: bool) -> int:
    """Input width of the first layer: the product of a shape when flattened, else its last entry."""
    if isinstance(in_features, int):
        return in_features
    if isinstance(in_features, (list, tuple)):
        return int(math.prod(in_features)) if flatten else int(in_features[-1])
    raise TypeError(f"Expected in_features to be int, list, or tuple, got {type(in_features)}")


class GrowingMLP(SequentialGrowingModel):
    """MLP ``in → hidden × number_hidden_layers → out`` whose hidden widths can grow.

    Args:
        in_features: input features, or an input shape (flattened: (1, 8, 8) → 64; not flattened:
            its last entry).
        out_features: outputs (logits).
        hidden_size: initial width of every hidden layer (>= 0).
        number_hidden_layers: hidden layers (>= 1).
        activation: applied after every hidden layer (default SELU, as GroMo).
        use_bias: biases in every layer.
        flatten: flatten the input from dim 1 first.
        device: where the layers live (GroMo's device resolution when None).

    Raises:
        TypeError: ``in_features`` is not an int, list or tuple.
        ValueError: ``number_hidden_layers < 1`` or a negative size.
    """

    def __init__(
        self,
        in_features: int | list[int] | tuple[int, ...],
        out_features: int,
        hidden_size: int,
        number_hidden_layers: int,
        activation: nn.Module = nn.SELU(),
        use_bias: bool = True,
        flatten: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        num_features = _num_features(in_features, flatten)
        if number_hidden_layers < 1:
            raise ValueError(f"number_hidden_layers must be >= 1, got {number_hidden_layers}")
        for name, value in (("in_features", num_features), ("out_features", out_features), ("hidden_size", hidden_size)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        super().__init__(in_features=num_features, out_features=out_features, device=device)
        self.flatten = nn.Flatten(start_dim=1) if flatten else nn.Identity()
        self.num_features = num_features
        self.hidden_size = hidden_size
        self.number_hidden_layers = number_hidden_layers
        self.layers = nn.ModuleList()
        self.layers.append(
            LinearGrowingModule(
                num_features, hidden_size, post_layer_function=activation, use_bias=use_bias,
                name="Layer 0", device=self.device,
            )
        )
        for index in range(1, number_hidden_layers):
            self.layers.append(
                LinearGrowingModule(
                    hidden_size, hidden_size, post_layer_function=activation, previous_module=self.layers[-1],
                    use_bias=use_bias, name=f"Layer {index}", device=self.device,
                )
            )
        self.layers.append(
            LinearGrowingModule(
                hidden_size, out_features, previous_module=self.layers[-1], use_bias=use_bias,
                name=f"Layer {number_hidden_layers}", device=self.device,
            )
        )
        for previous, following in zip(self.layers[:-1], self.layers[1:]):
            previous.next_module = following
        # Every layer but the first can grow (its input width = the previous layer's output).
        self._growable_layers = list(self.layers[1:])
        self.set_growing_layers("all")

    def reset_computation(self) -> None:
        """Reset every growable layer's statistics and stop every layer from storing its input.

        Unlike GroMo, the first layer (not growable, but whose input the second layer's statistics
        read) does not keep storing its input after the reset.
        """
        super().reset_computation()
        for layer in self.layers:
            layer.store_input = False
            layer.store_pre_activity = False
            layer._input = None
            layer._pre_activity = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """logits = layers(flatten(x)): (n, *in) → (n, out)."""
        x = self.flatten(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with every pending update (δ, new neurons) applied at its current scaling factor.

        ``mask`` is accepted for GroMo compatibility and ignored.

        Returns:
            the output (n, out) only (the network's output never grows).
        """
        x = self.flatten(x)
        x_ext = None
        for layer in self.layers:
            x, x_ext = layer.extended_forward(x, x_ext)
        return x

    @property
    def hidden_widths(self) -> list[int]:
        """Current width of every hidden layer."""
        return [layer.in_features for layer in self.layers[1:]]

    def update_information(self) -> dict[int, dict[str, Any]]:
        """Per growing layer index: first-order improvement, delta decrease and eigenvalues (tensors).

        Raises:
            AssertionError: a layer whose delta was not computed.
        """
        return {
            index: {
                "update_value": layer.first_order_improvement,
                "parameter_improvement": layer.parameter_update_decrease,
                "eigenvalues_extension": layer.eigenvalues_extension,
            }
            for index, layer in enumerate(self._growing_layers)
        }

    @staticmethod
    def normalisation_factor(values: torch.Tensor) -> torch.Tensor:
        """``c = geometric_mean(values) / values``, so that ``values·c`` is constant.

        Args:
            values: positive tensor (any shape), e.g. [1, 4, 2].
        Returns:
            tensor of ``values``' shape, e.g. [2, 0.5, 1].
        """
        geometric_mean = values.prod() ** (1 / values.numel())
        return geometric_mean.repeat(values.shape) / values

    def normalise(self, verbose: bool = False) -> None:
        """Rescale the layers so that every ``max|W_i|`` equals their geometric mean.

        ``W_i ← c_i W_i`` and ``b_i ← (∏_{j≤i} c_j) b_i``: the network function is unchanged for a
        positively homogeneous activation (ReLU), since the product of the c_i is 1.

        Args:
            verbose: print the factors.
        """
        with torch.no_grad():
            maxima = torch.stack([layer.weight.abs().max() for layer in self.layers])
            factors = self.normalisation_factor(maxima)
            if verbose:
                print(f"Normalisation: {list(enumerate(factors))}")
            running = torch.ones((), dtype=factors.dtype, device=factors.device)
            for layer, factor in zip(self.layers, factors):
                layer.weight.mul_(factor)
                running = running * factor
                if layer.bias is not None:
                    layer.bias.mul_(running)

    def __str__(self) -> str:
        return "\n".join(str(layer) for layer in self.layers)

    def __repr__(self) -> str:
        return self.__str__()

    def __getitem__(self, item: int) -> LinearGrowingModule:
        """Layer ``item`` (0 = input layer).

        Raises:
            AssertionError: ``item`` outside ``[0, len(layers))`` (negative indices too).
        """
        gromo_assert(0 <= item < len(self.layers), f"{item=} should be in [0, {len(self.layers)})")
        return self.layers[item]


class Perceptron(GrowingMLP):
    """One-hidden-layer GrowingMLP ``in → hidden_feature → out`` (sigmoid by default, as GroMo).

    Args:
        in_features: input features (or shape, flattened).
        hidden_feature: initial hidden width.
        out_features: outputs.
        activation: hidden activation (default Sigmoid).
        use_bias: biases in both layers.
        flatten: flatten the input from dim 1 first.
        device: where the layers live.
    """

    def __init__(
        self,
        in_features: int | list[int] | tuple[int, ...],
        hidden_feature: int,
        out_features: int,
        activation: nn.Module = nn.Sigmoid(),
        use_bias: bool = True,
        flatten: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            in_features=in_features, out_features=out_features, hidden_size=hidden_feature,
            number_hidden_layers=1, activation=activation, use_bias=use_bias, flatten=flatten, device=device,
        )
