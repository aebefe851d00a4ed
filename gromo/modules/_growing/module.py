"""``GrowingModule``: a layer of dynamic size, composed of one mixin per job (stored tensors and
forward, statistics, growth solves, surgery, scaling, extensions) over the marker base; this file
holds what binds them: construction, attribute routing (store flags, scalings), sizes and the
description.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Iterator

import torch
from torch import nn

from gromo.modules import _guards
from gromo.modules._growing.abstract import abstract_property
from gromo.modules._growing.activations import derivative_at_zero_plus
from gromo.modules._growing.description import describe
from gromo.modules._growing.extensions import (
    _KNOWN_NEURON_PAIRINGS_TYPE,
    _KNOWN_RESCALING_STRATEGIES_TYPE,
    ExtensionsMixin,
)
from gromo.modules._growing.forward import ForwardMixin
from gromo.modules._growing.markers import GrowingModuleBase, MergeGrowingModuleBase
from gromo.modules._growing.scaling import ScalingMixin
from gromo.modules._growing.statistics import LayerStatistics, StatisticsMixin, new_statistic
from gromo.modules._growing.surgery import SurgeryMixin
from gromo.modules._growing.updates import UpdatesMixin
from gromo.modules._unlink import unlink as _unlink
from gromo.utils._assertions import ensure
from gromo.utils.utils import compute_tensor_stats, get_correct_device

__all__ = ["GrowingModule"]

_SCALING_ATTRIBUTES = (
    "optimal_delta_scaling",
    "input_extension_scaling",
    "output_extension_scaling",
    "scaling_factor",
)

#: the constructor arguments every layer type takes under GrowingModule's names and passes on as is
_FORWARDED_ARGUMENTS = (
    "post_layer_function",
    "extended_post_layer_function",
    "allow_growing",
    "previous_module",
    "next_module",
    "device",
    "name",
)


class GrowingModule(
    ForwardMixin, StatisticsMixin, UpdatesMixin, SurgeryMixin, ScalingMixin, ExtensionsMixin,
    GrowingModuleBase,
):
    """A layer of dynamic size and everything needed to grow it (TINY, TMLR 2024).

    Args:
        layer: the wrapped layer.
        tensor_s_shape: declared shape of S (D, D) (a UserWarning when missing).
        tensor_m_shape: declared shape of M (D, out).
        post_layer_function: activation after the layer.
        extended_post_layer_function: deprecated separate function for the extension.
        allow_growing: the module can grow (requires a growing/merge previous module).
        previous_module, next_module: neighbours.
        device: device (argument > configuration > global device).
        name: name.
        target_in_neurons: target fan-in (growth bookkeeping).
        initial_in_neurons: fan-in at construction (growth bookkeeping).
    Raises:
        AssertionError: non-square S shape, S/M shapes incompatible, or ``allow_growing`` without
            a growing / merge previous module.
    """

    _KNOWN_RESCALING_STRATEGIES_TYPE = _KNOWN_RESCALING_STRATEGIES_TYPE
    _KNOWN_NEURON_PAIRINGS_TYPE = _KNOWN_NEURON_PAIRINGS_TYPE

    def __init__(
        self,
        layer: nn.Module,
        tensor_s_shape: tuple[int, int] | None = None,
        tensor_m_shape: tuple[int, int] | None = None,
        post_layer_function: nn.Module = nn.Identity(),
        extended_post_layer_function: nn.Module | None = None,
        allow_growing: bool = True,
        previous_module: nn.Module | None = None,
        next_module: nn.Module | None = None,
        device: torch.device | None = None,
        name: str | None = None,
        target_in_neurons: int | None = None,
        initial_in_neurons: int | None = None,
    ) -> None:
        if tensor_s_shape is None:
            warnings.warn(
                "The tensor S shape is not provided.It will automatically be determined but we "
                "encourage to provide it.",
                UserWarning,
                stacklevel=2,
            )
        else:
            ensure(len(tensor_s_shape) == 2, "The shape of the tensor S must be 2D.")
            ensure(tensor_s_shape[0] == tensor_s_shape[1],
                   f"The tensor S must be square. (got {tensor_s_shape=})")
            if tensor_m_shape is not None:
                ensure(tensor_s_shape[0] == tensor_m_shape[0], (
                    "The input matrices S and M must have compatible shapes."
                    f"(got {tensor_s_shape=} and {tensor_m_shape=})"
                ))
        if allow_growing:
            ensure(isinstance(previous_module, (GrowingModuleBase, MergeGrowingModuleBase)), (
                "to grow previous_module must be an instance of GrowingModuleor MergeGrowingModule, "
                f"but got {type(previous_module)} (allow_growing=True)"
            ))
        super().__init__()
        # GroMo's naming: the argument in ``_name``, the composite ``ClassName(name)`` in ``name``.
        self._name = name
        self.name = self.__class__.__name__ if name is None else f"{self.__class__.__name__}({name})"
        self.device = get_correct_device(self, device)
        self._allow_growing = allow_growing

        self.layer = layer.to(self.device)
        self._patch_layer_forward(self.layer)
        self.post_layer_function = post_layer_function.to(self.device)
        if extended_post_layer_function is not None:
            warnings.warn(
                "The `extended_post_layer_function` parameter is deprecated and will be removed in a "
                "future version. Implement `extended_forward` on the modules used in "
                "`post_layer_function` instead (see `SupportsExtendedForward`).",
                DeprecationWarning,
                stacklevel=2,
            )
            extended_post_layer_function = extended_post_layer_function.to(self.device)
        self.extended_post_layer_function = extended_post_layer_function

        # Plain references (never registered as sub-modules): see gromo.modules.growing_module.
        self.previous_module = previous_module
        self.next_module = next_module

        self.__dict__["store_input"] = False
        self.__dict__["store_pre_activity"] = False
        self._internal_store_input = False
        self._internal_store_pre_activity = False
        self._input: torch.Tensor | None = None
        self._pre_activity: torch.Tensor | None = None
        self._input_size: tuple[int, ...] | None = None
        self._statistics = LayerStatistics(self._statistics_kind, self._fused_statistics, type(self).__name__)

        self._tensor_s = new_statistic(self, tensor_s_shape, self.compute_s_update, "S")
        self.tensor_m = new_statistic(self, tensor_m_shape, self.compute_m_update, "M")
        self.tensor_m_prev = new_statistic(self, None, self.compute_m_prev_update, "M_prev")
        self.cross_covariance = new_statistic(self, None, self.compute_cross_covariance_update, "C")
        self.covariance_loss_gradient = new_statistic(self, None, self.compute_covariance_loss_gradient_update, "E")

        self.optimal_delta_layer: nn.Module | None = None
        self.extended_input_layer: nn.Module | None = None
        self.extended_output_layer: nn.Module | None = None
        self.delta_raw: torch.Tensor | None = None
        self.parameter_update_decrease: torch.Tensor | None = None
        self.eigenvalues_extension: torch.Tensor | None = None
        self._first_order_uses_squared_singular_values = True
        self._activation_gradient_previous_module: torch.Tensor | None = None

        for key in _SCALING_ATTRIBUTES:
            self.__dict__[key] = torch.zeros(1, device=self.device, requires_grad=True)
        # GroMo: building a module resets its growing predecessor's output extension scaling.
        if isinstance(previous_module, GrowingModuleBase):
            previous_module._write_scaling("output_extension_scaling", 0.0)

        self.target_in_neurons = target_in_neurons
        self._initial_in_neurons = initial_in_neurons

    @staticmethod
    def _forwarded_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``GrowingModule.__init__`` that a layer type's constructor,
        whose ``locals()`` are ``arguments``, passes on unchanged."""
        return {key: arguments[key] for key in _FORWARDED_ARGUMENTS}

    # ----- attribute routing ----------------------------------------------------------------

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "store_input":
            self._set_store_flag("store_input", bool(value))
        elif key == "store_pre_activity":
            self._set_store_flag("store_pre_activity", bool(value))
        elif key in _SCALING_ATTRIBUTES:
            self._set_scaling(key, value)
        elif key in ("previous_module", "next_module"):
            object.__setattr__(self, key, value)
        elif key in ("weight", "bias") and "layer" in self.__dict__.get("_modules", {}):
            setattr(self.layer, key, value)
        else:
            super().__setattr__(key, value)

    def _set_store_flag(self, key: str, value: bool) -> None:
        old = self.__dict__.get(key, False)
        self.__dict__[key] = value
        if value == old:
            return
        if key == "store_input":
            neighbour = self.__dict__.get("previous_module")
            if isinstance(neighbour, MergeGrowingModuleBase):
                neighbour.store_activity = max(0, neighbour.store_activity + (1 if value else -1))
            else:
                self.__dict__["_internal_store_input"] = value
        else:
            neighbour = self.__dict__.get("next_module")
            if isinstance(neighbour, MergeGrowingModuleBase):
                neighbour.store_input = max(0, neighbour.store_input + (1 if value else -1))
            else:
                self.__dict__["_internal_store_pre_activity"] = value

    def _write_scaling(self, key: str, value: torch.Tensor | float) -> None:
        if isinstance(value, torch.Tensor):
            ensure(value.shape == (1,), f"{key} must be a scalar tensor. (got shape {tuple(value.shape)})")
            self.__dict__[key] = value
        else:
            ensure(isinstance(value, (int, float)), (
                f"{key} must be a scalar. (got {type(value).__name__}: an int, a float or a tensor of "
                "shape (1,) is expected)"
            ))
            self.__dict__[key].data[0] = value

    def _set_scaling(self, key: str, value: torch.Tensor | float) -> None:
        _guards.check_scaling(self, key, value, self.__dict__.get(key))
        if key != "scaling_factor":
            self._write_scaling(key, value)
            return
        previous = self.__dict__.get("previous_module")
        if previous is not None and not isinstance(previous, (GrowingModuleBase, MergeGrowingModuleBase)):
            previous_module = previous
            raise TypeError(
                f"Previous module must be a GrowingModule or MergeGrowingModule, got {type(previous_module)} "
                f"(the previous module of {self.name})"
            )
        self._write_scaling("scaling_factor", value)
        # GroMo: an assigned tensor becomes ``scaling_factor`` itself, but only its value is written
        # into the three other (independent, leaf) scaling tensors, so gradients of an extended
        # forward still reach each sub-factor.
        number = value.item() if isinstance(value, torch.Tensor) else value
        self._write_scaling("optimal_delta_scaling", number**2)
        self._write_scaling("input_extension_scaling", number)
        if isinstance(previous, GrowingModuleBase):
            previous._write_scaling("output_extension_scaling", number)

    def _apply(self, fn, recurse: bool = True):
        # Scaling tensors are plain attributes: follow .to() / .double() like the parameters do,
        # and keep ``device`` (used to build extension layers) on the layer's device.
        super()._apply(fn, recurse)
        with torch.no_grad():
            for key in _SCALING_ATTRIBUTES:
                tensor = self.__dict__[key]
                moved = fn(tensor)
                if moved is not tensor:
                    self.__dict__[key] = moved.detach().requires_grad_(
                        tensor.requires_grad and moved.is_floating_point()
                    )
        weight = getattr(self.layer, "weight", None)
        if isinstance(weight, torch.Tensor):
            self.device = weight.device
        return self

    def set_scaling_factor(self, factor: float) -> None:
        """``scaling_factor = factor`` (γ² on the delta, γ on both extensions)."""
        self.scaling_factor = factor

    # ----- sizes (abstract) ----------------------------------------------------------------

    in_neurons = abstract_property("Number of input neurons.")
    in_features = abstract_property("Fan-in size.")
    out_features = abstract_property("Fan-out size.")
    input_volume = abstract_property("Expected input volume.")
    output_volume = abstract_property("Expected output volume.")

    @property
    def weight(self) -> torch.Tensor:
        """The layer's weight."""
        return self.layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The layer's bias."""
        return self.layer.bias

    @property
    def input_size(self) -> tuple[int, ...]:
        """Expected input shape without batch and channels.

        Raises:
            ValueError: unknown.
        """
        if self._input_size is None:
            raise ValueError(f"The input size of the layer {self.name} is not defined.")
        return self._input_size

    @input_size.setter
    def input_size(self, value: tuple[int, ...] | None) -> None:
        self._input_size = None if value is None else tuple(value)

    def update_input_size(
        self,
        input_size: tuple[int, ...] | None = None,
        compute_from_previous: bool = False,
        force_update: bool = True,
    ) -> tuple[int, ...] | None:
        """Update the expected input size. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @property
    def activation_gradient(self) -> torch.Tensor:
        """σ'(0⁺) of the activation between the previous module and this one (cached).

        Clear ``_activation_gradient_previous_module`` if the previous activation changes.

        Raises:
            NotImplementedError: previous module neither growing nor merge.
        """
        if self._activation_gradient_previous_module is None:
            previous = self.previous_module
            if isinstance(previous, GrowingModuleBase):
                function = previous.post_layer_function
            elif isinstance(previous, MergeGrowingModuleBase):
                function = previous.post_merge_function
            else:
                previous_module = previous
                raise NotImplementedError(
                    "The computation of the activation gradient is not implemented yet for "
                    f"{type(previous_module)} as previous module."
                )
            self._activation_gradient_previous_module = torch.tensor(
                derivative_at_zero_plus(function), device=self.device
            )
        return self._activation_gradient_previous_module

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """Only the wrapped layer's parameters (extensions, delta and post function excluded)."""
        return self.layer.parameters(recurse=recurse)

    def number_of_parameters(self) -> int:
        """Number of parameters of the wrapped layer."""
        return sum(p.numel() for p in self.parameters())

    def weights_statistics(self) -> dict[str, dict[str, float]]:
        """``{"weight": {min,max,mean,std}, "bias": {...}}`` (bias only when present)."""
        statistics = {"weight": compute_tensor_stats(self.weight)}
        if self.bias is not None:
            statistics["bias"] = compute_tensor_stats(self.bias)
        return statistics

    def __str__(self, verbose: int = 0) -> str:
        """GroMo's description: 0 the name, 1 one line, ≥2 one line per attribute.

        Raises:
            ValueError: ``verbose < 0``.
        """
        return describe(
            verbose,
            brief=lambda: self.name,
            one_line=lambda: (
                f"{self.name} module with {self.number_of_parameters()} parameters "
                f"({self._allow_growing=}, {self.store_input=}, {self.store_pre_activity=})."
            ),
            header=lambda: f"{self.name} module with {self.number_of_parameters()} parameters.",
            fields=lambda: [
                ("Layer", self.layer),
                ("Post layer function", self.post_layer_function),
                ("Allow growing", self._allow_growing),
                ("Store input", self.store_input),
                ("", f"{self._internal_store_input=}"),
                ("Store pre-activity", self.store_pre_activity),
                ("", f"{self._internal_store_pre_activity=}"),
                ("Tensor S (internal)", self._tensor_s),
                ("Tensor S", self.tensor_s),
                ("Tensor M", self.tensor_m),
                ("Optimal delta layer", self.optimal_delta_layer),
                ("Extended input layer", self.extended_input_layer),
                ("Extended output layer", self.extended_output_layer),
            ],
        )

    def _one_line_description(self, kind: str, **sizes: int) -> str:
        """A layer type's ``__str__()`` at verbose 0: GroMo's ``kind(name)(size=…, use_bias=…)``
        (``kind`` the word GroMo prints, ``name`` the constructor's argument)."""
        fields = "".join(f"{key}={value}, " for key, value in sizes.items())
        return f"{kind}({self._name})({fields}use_bias={self.use_bias})"

    def __repr__(self) -> str:
        """GroMo's one-line ``__str__`` (not torch's module tree)."""
        return self.__str__()

    def __del__(self) -> None:
        """Unlink this module from its neighbours, then forget them (GroMo's ``__del__``).

        A growing neighbour that points back here loses that link; a merge neighbour drops this
        module from its list and resizes (``update_size``). Callable explicitly; never raises (it
        also runs at garbage collection and interpreter shutdown). Unlike GroMo, a growing
        neighbour whose link points to another module keeps it: a discarded module that merely
        referenced a live layer must not cut the live network when it is collected.
        """
        _unlink(self, "previous_module", "next_module", "next_modules")
        _unlink(self, "next_module", "previous_module", "previous_modules")

