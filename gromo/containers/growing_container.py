"""GroMo's ``gromo.containers.growing_container``: a network made of growable layers.

A ``GrowingContainer`` keeps its growable layers (GrowingModules or GrowingBlocks) in
``_growing_layers`` (filled by ``set_growing_layers``) and drives them together: statistics
(init / update / reset), optimal updates, selection of the layer to grow, and application of its
change. Subclasses define ``forward``, ``extended_forward`` and ``set_growing_layers``. Entries of
``_growing_layers`` that are neither growing modules nor containers (a graph lists its merge
modules) take no part in the updates and scaling.

Deliberate differences from GroMo, kept because code relies on them:
* ``select_update`` checks ``layer_index`` (IndexError) and its verbose output also names the
  selected layer after GroMo's per-layer lines; ``select_best_update`` without growable layer raises
  ValueError (GroMo fails inside ``torch.stack``).
* ``weights_statistics`` of a plain container is keyed by the index in ``_growing_layers``; whole
  models (``SequentialGrowingModel``) key it by module name as GroMo does.
* ``update_size`` also reaches merge modules nested anywhere inside, not only the listed ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

import gromo_kernels as gk
from gromo.config.loader import load_config
from gromo.modules._growing.together import GrowthJob, OwnSolve, compute_updates_together, growth_entry
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule
from gromo.utils._assertions import ensure
from gromo.utils.utils import get_correct_device

__all__ = ["GrowingContainer", "GrowingModel"]


def check_second_layer_output_not_extended(second_layer: nn.Module, out_extension: torch.Tensor | None) -> None:
    """GroMo's rule for a two-layer block's extended forward: the block's output never grows.

    Raises:
        AssertionError: ``second_layer`` returned an output extension.
    """
    ensure(out_extension is None, f"The output of layer 2 {second_layer.name} should not be extended.")


def forward_through_blocks(x: torch.Tensor, stem: nn.Module, blocks: Iterable[nn.Module], head: nn.Module,
                           extended: bool = False) -> torch.Tensor:
    """``head(block_k(… block_1(stem(x))))``: a network whose growable blocks sit in one chain.

    With ``extended`` each block runs its ``extended_forward`` (its pending update at its current
    scaling); ``stem`` and ``head`` never grow.
    """
    x = stem(x)
    for block in blocks:
        x = block.extended_forward(x) if extended else block(x)
    return head(x)


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
        self._config_data = load_config()[0]
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

    @property
    def first_order_improvement(self) -> torch.Tensor:
        """First-order loss improvement of the container's update. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def _updatable_layers(self) -> list[nn.Module]:
        """The entries of ``_growing_layers`` that carry updates: growing modules and containers."""
        return [layer for layer in self._growing_layers if isinstance(layer, (GrowingModule, GrowingContainer))]

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

        The layers are solved together (request → solve → install, see
        ``gromo.modules._growing.together``): every optimal delta, then every new-neuron solve (one
        ``gromo_kernels`` call per group of layers with equal options), inside one
        ``gromo_kernels.factorization_cache()`` block, so a layer's growth covariance factored by the
        previous layer's delta is not factored again (nested containers join the outer block). Each
        layer ends as its own ``compute_optimal_updates(*args, **kwargs)`` leaves it; a layer that
        replaces a step of it runs that call in its place. All-or-nothing: when one layer fails,
        no layer is changed.
        """
        entries = self._growth_entries(args, kwargs)
        reuse = gk.factorization_cache() if len(entries) > 1 else contextlib.nullcontext()
        with reuse:
            compute_updates_together(entries, scope=[self])

    def _growth_entries(self, args: tuple, kwargs: dict) -> list[GrowthJob | OwnSolve]:
        """The joint-solve entries of every growable layer, nested plain containers flattened."""
        entries: list[GrowthJob | OwnSolve] = []
        for layer in self._updatable_layers():
            if (isinstance(layer, GrowingContainer) and "compute_optimal_updates" not in vars(layer)
                    and type(layer).compute_optimal_updates is GrowingContainer.compute_optimal_updates):
                entries += layer._growth_entries(args, kwargs)
            else:
                entries.append(growth_entry(layer, *args, **kwargs))
        return entries

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
        best = torch.argmax(improvements).item()
        ensure(isinstance(best, int), f"Currently updated layer index is not an integer but {type(best)}")
        return self.select_update(best)

    def select_update(self, layer_index: int, verbose: bool = False) -> int:
        """Keep the update of layer ``layer_index`` and delete the others.

        With ``verbose``, prints GroMo's lines per layer ``i`` (``Layer {i} update: …``, ``Layer {i}
        parameter improvement: …``, ``Layer {i} eigenvalues extension: …``, ``Deleting layer {i}``)
        and then which layer is selected.

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
        self.currently_updated_layer_index = layer_index
        # GroMo reads first_order_improvement, which fails once the update was deleted.
        self._delete_other_updates(
            layer_index, verbose, label="Layer", improvement_label="update",
            improvement_of=lambda layer: (
                layer.first_order_improvement if layer.parameter_update_decrease is not None else None
            ),
        )
        if verbose:
            chosen = self._growing_layers[layer_index]
            print(f"{self.name}: selected layer {layer_index} ({getattr(chosen, 'name', type(chosen).__name__)})")
        return layer_index

    def _delete_other_updates(self, layer_index: int, verbose: bool, label: str, improvement_label: str,
                              improvement_of: Callable[[nn.Module], Any]) -> None:
        """Delete the update of every growable layer but ``layer_index``.

        With ``verbose`` prints GroMo's lines per layer ``i``: ``{label} {i} {improvement_label}:
        {improvement_of(layer)}``, ``{label} {i} parameter improvement: …``, ``{label} {i}
        eigenvalues extension: …`` and, for the others, ``Deleting {label.lower()} {i}``.
        """
        for index, layer in enumerate(self._growing_layers):
            if verbose:
                print(f"{label} {index} {improvement_label}: {improvement_of(layer)}")
                print(f"{label} {index} parameter improvement: {layer.parameter_update_decrease}")
                print(f"{label} {index} eigenvalues extension: {layer.eigenvalues_extension}")
            if index != layer_index:
                if verbose:
                    print(f"Deleting {label.lower()} {index}")
                layer.delete_update()

    def dummy_select_update(self, **_: Any) -> int:
        """Select the first growable layer and keep every update (GroMo's testing helper).

        Returns:
            0.
        """
        self.currently_updated_layer_index = 0
        return 0

    @property
    def currently_updated_layer(self) -> nn.Module:
        """The selected layer.

        Raises:
            AssertionError: nothing selected.
        """
        ensure(self.currently_updated_layer_index is not None, f"No layer to update ({self.name}: no layer is selected.)")
        return self._growing_layers[self.currently_updated_layer_index]

    def apply_change(self, extension_size: int | None = None) -> None:
        """Apply the selected layer's update, delete it and clear the selection.

        Args:
            extension_size: number of new neurons to add (None: all of the pending ones).
        Raises:
            AssertionError: no layer is selected.
        """
        layer = self.currently_updated_layer
        layer.apply_change(extension_size=extension_size)
        layer.delete_update()
        self.currently_updated_layer_index = None

    def set_scaling_factor(self, factor: float) -> None:
        """``scaling_factor = factor`` on every growable layer, and its ``output_extension_scaling``."""
        for layer in self._growing_layers:
            if isinstance(layer, GrowingModule):
                layer.scaling_factor = factor
                layer.output_extension_scaling = factor
            elif isinstance(layer, GrowingContainer):
                layer.set_scaling_factor(factor)

    # ----- information -------------------------------------------------------------------

    def number_of_parameters(self) -> int:
        """Σ numel of ``parameters()``."""
        return sum(p.numel() for p in self.parameters())

    def weights_statistics(self) -> dict[int, dict[str, Any]]:
        """Per growable layer index: its ``weights_statistics()``."""
        return {index: layer.weights_statistics() for index, layer in enumerate(self._growing_layers)}

    def update_information(self) -> dict[int, dict[str, Any]]:
        """Per growable layer, as GroMo: ``update_value`` the first-order improvement,
        ``parameter_improvement`` the pending decrease of the delta, ``eigenvalues_extension``
        (improvement and decrease are None while no delta was computed)."""
        information = {}
        for index, layer in enumerate(self._growing_layers):
            decrease = layer.parameter_update_decrease
            information[index] = {
                "update_value": layer.first_order_improvement if decrease is not None else None,
                "parameter_improvement": decrease,
                "eigenvalues_extension": layer.eigenvalues_extension,
            }
        return information

    def update_size(self) -> None:
        """Let the listed merges and containers, then every merge module inside, follow their
        neighbours' sizes."""
        for layer in self._growing_layers:
            if isinstance(layer, (MergeGrowingModule, GrowingContainer)):
                layer.update_size()
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
