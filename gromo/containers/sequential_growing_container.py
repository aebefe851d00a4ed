"""GroMo's ``gromo.containers.sequential_growing_container``: a whole network grown layer by layer.

``SequentialGrowingModel`` keeps every layer that *can* grow in ``_growable_layers`` (filled by
subclasses) and chooses which of them grow at the next step with ``set_growing_layers``:

* ``"all"``: every growable layer (``_growing_layers`` is the ``_growable_layers`` list itself);
* ``"sequential"``: one layer, cycling through them step after step;
* an ``index``: that one layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gromo.containers.growing_container import GrowingContainer, GrowingModel
from gromo.modules.growing_module import GrowingModule
from gromo.utils._assertions import gromo_assert

__all__ = ["SequentialGrowingModel"]


class SequentialGrowingModel(GrowingModel):
    """Base of the growing networks whose growable layers are chosen by a schedule.

    Args:
        in_features: input size of the network.
        out_features: output size of the network.
        device: device (argument > configuration ``device`` > global device).
    """

    def __init__(self, in_features: Any, out_features: Any, device: torch.device | str | None = None) -> None:
        super().__init__(in_features=in_features, out_features=out_features, device=device)
        gromo_assert(
            all(isinstance(layer, (GrowingModule, GrowingContainer)) for layer in self._growing_layers),
            "All layers in _growing_layers must be of type GrowingModule",
        )
        self._growable_layers: list[nn.Module] = []
        self.layer_to_grow_index = -1

    def set_growing_layers(self, scheduling_method: str = "all", index: int | None = None) -> None:
        """Choose the layers that grow at the next step.

        Args:
            scheduling_method: "all" (every growable layer) or "sequential" (the next one, cycling).
            index: grow only ``_growable_layers[index]`` (wins over ``scheduling_method``).
        Raises:
            IndexError: ``index`` outside ``[0, len(_growable_layers))``.
            ValueError: unknown ``scheduling_method``.
        """
        count = len(self._growable_layers)
        if isinstance(index, int) and not isinstance(index, bool):
            if not 0 <= index < count:
                raise IndexError(f"Index {index} is out of bounds for _growable_layers with length {count}.")
            self.layer_to_grow_index = index
            self._growing_layers = [self._growable_layers[index]]
        elif scheduling_method == "sequential":
            self.layer_to_grow_index = (self.layer_to_grow_index + 1) % count
            self._growing_layers = [self._growable_layers[self.layer_to_grow_index]]
        elif scheduling_method == "all":
            self.layer_to_grow_index = -1
            self._growing_layers = self._growable_layers
        else:
            raise ValueError(
                f"Invalid scheduling method: {scheduling_method}. Supported methods are 'sequential' and 'all'."
            )

    def number_of_neurons_to_add(self, **kwargs: Any) -> int:
        """Neurons the single growing layer should add (see its ``number_of_neurons_to_add``).

        Raises:
            RuntimeError: several layers grow at once (``layer_to_grow_index < 0``).
        """
        if self.layer_to_grow_index < 0:
            raise RuntimeError(
                "number_of_neurons_to_add is only supported when a single layer is being grown "
                "(e.g. with scheduling_method='sequential'). A negative layer_to_grow_index usually "
                "indicates that multiple layers are being grown at once, which is not supported by this method."
            )
        return self._growable_layers[self.layer_to_grow_index].number_of_neurons_to_add(**kwargs)

    def update_information(self) -> dict[int, dict[str, Any]]:
        """Per growing layer index: first-order improvement, delta decrease (floats), eigenvalues.

        Raises:
            AssertionError: a layer whose ``parameter_update_decrease`` is not a tensor.
        """
        information = {}
        for index, layer in enumerate(self._growing_layers):
            decrease = layer.parameter_update_decrease
            gromo_assert(isinstance(decrease, torch.Tensor), "parameter_update_decrease should be a tensor")
            information[index] = {
                "update_value": layer.first_order_improvement.item(),
                "parameter_improvement": decrease.item(),
                "eigenvalues_extension": layer.eigenvalues_extension,
            }
        return information

    def missing_neurons(self) -> int:
        """Neurons the selected layer still lacks to reach its target width."""
        return self.currently_updated_layer.missing_neurons()

    def complete_growth(self, extension_kwargs: dict) -> None:
        """Grow every growable layer to its target width (new neurons from ``extension_kwargs``)."""
        for layer in self._growable_layers:
            layer.complete_growth(extension_kwargs=extension_kwargs)

    def weights_statistics(self) -> dict[str, dict[str, Any]]:
        """Per growing module inside, keyed by its ``name``: its ``weights_statistics()``."""
        return {
            module.name: module.weights_statistics()
            for module in self.modules()
            if isinstance(module, GrowingModule)
        }
