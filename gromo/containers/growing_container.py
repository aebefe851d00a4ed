"""GroMo's ``gromo.containers.growing_container``: a network made of growable layers.

A ``GrowingContainer`` keeps its growable layers (GrowingModules or GrowingBlocks) in
``_growing_layers`` (filled by ``set_growing_layers``) and drives them together: statistics
(init / update / reset), optimal updates, selection of the layer to grow, and application of its
change. Subclasses define ``forward``, ``extended_forward`` and ``set_growing_layers``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule
from gromo.utils.utils import get_correct_device, load_config

__all__ = ["GrowingContainer", "GrowingModel"]


class GrowingContainer(nn.Module):
    """Base class of growing networks.

    Args:
        in_features: input size of the network.
        out_features: output size of the network.
        device: device (argument > configuration ``device`` > global device).
        name: name.
    """

    def __init__(self, in_features: Any, out_features: Any, device: torch.device | str | None = None,
                 name: str = "GrowingContainer") -> None:
        super().__init__()
        self._config_data = load_config()
        self.device = get_correct_device(self, device)
        self.in_features = in_features
        self.out_features = out_features
        self.name = name
        self._growing_layers: list[nn.Module] = []
        self.currently_updated_layer_index: int | None = None

    # ----- structure ---------------------------------------------------------------------

    def set_growing_layers(self) -> None:
        """Fill ``_growing_layers``. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward pass with the pending updates. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    # ----- statistics ------------------------------------------------------------------------

    def init_computation(self) -> None:
        """Start collecting the statistics of every growable layer."""
        for layer in self._growing_layers:
            layer.init_computation()

    def update_computation(self) -> None:
        """Accumulate the statistics of the last forward/backward in every growable layer."""
        for layer in self._growing_layers:
            layer.update_computation()

    def reset_computation(self) -> None:
        """Stop collecting and forget the statistics of every growable layer."""
        for layer in self._growing_layers:
            layer.reset_computation()

    # ----- updates ---------------------------------------------------------------------------

    def compute_optimal_delta(self, update: bool = True, force_pseudo_inverse: bool = False) -> None:
        """Natural-gradient step of every growable layer (a no-op for a block: its list is empty)."""
        for layer in self._growing_layers:
            layer.compute_optimal_delta(update=update, force_pseudo_inverse=force_pseudo_inverse)

    def compute_optimal_updates(self, *args: Any, **kwargs: Any) -> None:
        """Optimal delta and new neurons of every growable layer (arguments forwarded).

        The layers are solved inside one ``gromo_kernels.factorization_cache()`` block: a layer's
        new-neuron solve reuses the factorisation of its growth covariance when the previous layer's
        delta solve already factored that matrix.
        """
        reuse = gk.factorization_cache() if len(self._growing_layers) > 1 else contextlib.nullcontext()
        with reuse:
            for layer in self._growing_layers:
                layer.compute_optimal_updates(*args, **kwargs)

    def delete_update(self) -> None:
        """Forget the pending update of every growable layer."""
        for layer in self._growing_layers:
            layer.delete_update()

    def select_best_update(self) -> int:
        """Keep the update with the largest first-order improvement, delete the others.

        Returns:
            index of the selected layer in ``_growing_layers``.
        Raises:
            ValueError: no growable layer.
        """
        if not self._growing_layers:
            raise ValueError(f"{self.name}: there is no growable layer to select from.")
        improvements = torch.stack([
            torch.as_tensor(layer.first_order_improvement, dtype=torch.float64).detach().cpu().reshape(())
            for layer in self._growing_layers
        ])
        best = int(torch.argmax(improvements).item())
        return self.select_update(best)

    def select_update(self, layer_index: int, verbose: bool = False) -> int:
        """Keep the update of layer ``layer_index`` and delete the others.

        Args:
            layer_index: index in ``_growing_layers``.
            verbose: print the selection.
        Returns:
            layer_index.
        Raises:
            IndexError: no such layer.
        """
        if not 0 <= layer_index < len(self._growing_layers):
            raise IndexError(
                f"layer_index {layer_index} is out of range for {len(self._growing_layers)} growable layers"
            )
        for index, layer in enumerate(self._growing_layers):
            if index != layer_index:
                layer.delete_update()
            elif verbose:
                print(f"{self.name}: selected layer {index} ({getattr(layer, 'name', type(layer).__name__)})")
        self.currently_updated_layer_index = layer_index
        return layer_index

    def dummy_select_update(self, **kwargs: Any) -> int:
        """Select the first growable layer (testing helper)."""
        return self.select_update(0, **kwargs)

    @property
    def currently_updated_layer(self) -> nn.Module:
        """The selected layer.

        Raises:
            AssertionError: nothing selected.
        """
        assert self.currently_updated_layer_index is not None, f"{self.name}: no layer is selected."
        return self._growing_layers[self.currently_updated_layer_index]

    def apply_change(self) -> None:
        """Apply the selected layer's update, delete it and clear the selection."""
        layer = self.currently_updated_layer
        layer.apply_change()
        layer.delete_update()
        self.currently_updated_layer_index = None

    def set_scaling_factor(self, factor: float) -> None:
        """``scaling_factor = factor`` on every growable layer, and its ``output_extension_scaling``."""
        for layer in self._growing_layers:
            if isinstance(layer, GrowingModule):
                layer.scaling_factor = factor
                layer.output_extension_scaling = factor
            else:
                layer.set_scaling_factor(factor)

    # ----- information -------------------------------------------------------------------

    def number_of_parameters(self) -> int:
        """Σ numel of ``parameters()``."""
        return sum(p.numel() for p in self.parameters())

    def weights_statistics(self) -> dict[int, dict[str, Any]]:
        """Per growable layer index: its ``weights_statistics()``."""
        return {index: layer.weights_statistics() for index, layer in enumerate(self._growing_layers)}

    def update_information(self) -> dict[int, dict[str, Any]]:
        """Per growable layer: pending decrease, first-order improvement, eigenvalues."""
        information = {}
        for index, layer in enumerate(self._growing_layers):
            decrease = layer.parameter_update_decrease
            information[index] = {
                "update_value": decrease,
                "parameter_improvement": layer.first_order_improvement if decrease is not None else None,
                "eigenvalues_extension": layer.eigenvalues_extension,
            }
        return information

    def update_size(self) -> None:
        """Let every merge module inside follow its neighbours' sizes."""
        for module in self.modules():
            if isinstance(module, MergeGrowingModule):
                module.update_size()


class GrowingModel(GrowingContainer):
    """A whole growing network: its output size never grows.

    ``extended_forward(x, mask=None)`` therefore returns only the main output tensor (a container
    that is a part of a network returns the pair ``(out, out_ext)``). Base of
    ``SequentialGrowingModel`` and of every network built on it.

    Args:
        in_features: input size of the network.
        out_features: output size of the network.
        device: device (argument > configuration ``device`` > global device).
        name: name.
    """

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward pass with the pending updates: (n, *in) → (n, *out). Abstract here.

        Raises:
            NotImplementedError: always (subclasses define it).
        """
        raise NotImplementedError
