"""Growing multi-layer perceptrons (GroMo's ``gromo.containers.growing_mlp``).

    GrowingMLP:  x (n, *in) → flatten → [Linear → activation] × L → Linear → logits (n, out)

built from chained :class:`~gromo.modules.linear_growing_module.LinearGrowingModule` (each layer's
``previous_module`` is the one before it). The growable layers are every layer but the first: growing
layer ``i`` adds hidden neurons between layer ``i−1`` and layer ``i`` (new rows of ``i−1``, new
columns of ``i``). Selection, scaling and parameter counting come from
:class:`~gromo.containers.growing_container.GrowingContainer` (``select_best_update``,
``select_update``, ``currently_updated_layer``, ``number_of_parameters``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gromo.containers.growing_container import GrowingContainer
from gromo.modules.linear_growing_module import LinearGrowingModule

__all__ = ["GrowingMLP", "Perceptron"]


def _num_features(in_features: int | tuple[int, ...] | torch.Size) -> int:
    if isinstance(in_features, (tuple, list, torch.Size)):
        return int(math.prod(int(s) for s in in_features))
    return int(in_features)


class GrowingMLP(GrowingContainer):
    """MLP ``in → hidden × number_hidden_layers → out`` whose hidden widths can grow.

    Args:
        in_features: input features, or an input shape that is flattened (e.g. (1, 8, 8) → 64).
        out_features: outputs (logits).
        hidden_size: initial width of every hidden layer (>= 0).
        number_hidden_layers: hidden layers (>= 1).
        activation: applied after every hidden layer (default SELU, as GroMo).
        use_bias: biases in every layer.
        device: where the layers live (GroMo's device resolution when None).

    Raises:
        ValueError: ``number_hidden_layers < 1`` or a negative size.
    """

    def __init__(
        self,
        in_features: int | tuple[int, ...],
        out_features: int,
        hidden_size: int,
        number_hidden_layers: int,
        activation: nn.Module = nn.SELU(),
        use_bias: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        num_features = _num_features(in_features)
        if number_hidden_layers < 1:
            raise ValueError(f"number_hidden_layers must be >= 1, got {number_hidden_layers}")
        for name, value in (("in_features", num_features), ("out_features", out_features), ("hidden_size", hidden_size)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        super().__init__(in_features=num_features, out_features=out_features, device=device)
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
        self.set_growing_layers()

    def set_growing_layers(self) -> None:
        """Every layer but the first can grow (its input width = the previous layer's output)."""
        self._growing_layers = list(self.layers[1:])

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
        x = torch.flatten(x, 1)
        for layer in self.layers:
            x = layer(x)
        return x

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with every pending update (δ, new neurons) applied at its current scaling factor.

        ``mask`` is accepted for GroMo compatibility and ignored.
        """
        x = torch.flatten(x, 1)
        x_ext = None
        for layer in self.layers:
            x, x_ext = layer.extended_forward(x, x_ext)
        return x

    @property
    def hidden_widths(self) -> list[int]:
        """Current width of every hidden layer."""
        return [layer.in_features for layer in self.layers[1:]]

    @staticmethod
    def tensor_statistics(tensor: torch.Tensor) -> dict[str, float]:
        """min / max / mean / std of a tensor (std 0 for a single element, NaNs when empty)."""
        if tensor.numel() == 0:
            nan = float("nan")
            return {"min": nan, "max": nan, "mean": nan, "std": nan}
        return {
            "min": float(tensor.min()), "max": float(tensor.max()), "mean": float(tensor.mean()),
            "std": float(tensor.std()) if tensor.numel() > 1 else 0.0,
        }

    def weights_statistics(self) -> dict[int, dict[str, dict[str, float]]]:
        """Per layer index: statistics of its weight and (when present) bias."""
        statistics = {}
        for index, layer in enumerate(self.layers):
            entry = {"weight": self.tensor_statistics(layer.weight.detach())}
            if layer.bias is not None:
                entry["bias"] = self.tensor_statistics(layer.bias.detach())
            statistics[index] = entry
        return statistics


class Perceptron(GrowingMLP):
    """One-hidden-layer GrowingMLP ``in → hidden_feature → out`` (sigmoid by default, as GroMo).

    Args:
        in_features: input features (or shape, flattened).
        hidden_feature: initial hidden width.
        out_features: outputs.
        activation: hidden activation (default Sigmoid).
        use_bias: biases in both layers.
        device: where the layers live.
    """

    def __init__(
        self,
        in_features: int | tuple[int, ...],
        hidden_feature: int,
        out_features: int,
        activation: nn.Module = nn.Sigmoid(),
        use_bias: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            in_features=in_features, out_features=out_features, hidden_size=hidden_feature,
            number_hidden_layers=1, activation=activation, use_bias=use_bias, device=device,
        )
