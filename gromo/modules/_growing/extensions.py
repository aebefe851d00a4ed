"""GrowingModule's new-neuron extensions built without a solve: creation and initialisation,
variance-transfer rescaling, neuron pairing, and the growth bookkeeping (target sizes).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch
from torch import nn

from gromo.modules import _guards
from gromo.modules._growing.activations import rescale_batch_norms
from gromo.modules._growing.markers import GrowingModuleBase
from gromo.modules._transactions import atomic, module_and_neighbours
from gromo.utils._assertions import ensure

__all__ = ["ExtensionsMixin"]

_KNOWN_RESCALINGS = ("default_vt", "vt_constraint_old_shape", "vt_constraint_new_shape")
_KNOWN_PAIRINGS = ("vv_z_negz",)
# Module-level twins of GrowingModule's class constants, so that the method annotations naming them
# resolve with typing.get_type_hints (class attributes are not in the annotations' scope).
_KNOWN_RESCALING_STRATEGIES_TYPE = Literal["default_vt", "vt_constraint_old_shape", "vt_constraint_new_shape"]
_KNOWN_NEURON_PAIRINGS_TYPE = Literal["vv_z_negz"]


def _check_distribution(distribution: str) -> None:
    """Raises ValueError unless ``distribution`` is 'uniform' or 'normal'."""
    if distribution not in ("uniform", "normal"):
        raise ValueError(f"Unknown distribution {distribution!r}, expected 'uniform' or 'normal'.")


def _requested(value: str | None, known: tuple[str, ...], what: str, argument: str) -> bool:
    """True when ``value`` names one of ``known``; False for None / "none".

    Raises:
        ValueError: an unknown name.
    """
    if value is None or value == "none":
        return False
    if value not in known:
        raise ValueError(f"Unknown {what} '{value}'. Available: {known}. ({argument} may also be None)")
    return True


class ExtensionsMixin:
    """GrowingModule's ``create_layer_extensions``, initialisations, rescaling, pairing and
    ``complete_growth``."""

    # ----- extensions: creation, initialisation, VT, pairing --------------------------------

    @torch.no_grad()
    def kaiming_initialization(
        self, tensor: torch.Tensor, reference_tensor: torch.Tensor | None, fan_in: int,
        distribution: str = "uniform",
    ) -> None:
        """In place ``U(±√(6/fan_in))`` ("uniform") or ``N(0, 2/fan_in)`` ("normal").

        Raises:
            ValueError: unknown distribution.
        """
        if distribution == "uniform":
            bound = (6.0 / fan_in) ** 0.5
            tensor.uniform_(-bound, bound)
        elif distribution == "normal":
            tensor.normal_(0.0, (2.0 / fan_in) ** 0.5)
        else:
            _check_distribution(distribution)

    @torch.no_grad()
    def copy_initialization_variance(
        self, tensor: torch.Tensor, reference_tensor: torch.Tensor | None, fan_in: int,
        distribution: str = "uniform",
    ) -> None:
        """In place, same std as ``reference_tensor`` (uniform ``U(±√3 std)`` or ``N(0, std²)``);
        Kaiming when the reference is missing, has < 2 elements or zero std.

        Raises:
            ValueError: unknown distribution.
        """
        _check_distribution(distribution)
        # The fallback dispatches through self, so an override (or an instance attribute) is used.
        if reference_tensor is None or reference_tensor.numel() < 2:
            self.kaiming_initialization(tensor, reference_tensor, fan_in, distribution)
            return
        std = float(reference_tensor.std())
        if std == 0:
            self.kaiming_initialization(tensor, reference_tensor, fan_in, distribution)
        elif distribution == "normal":
            tensor.normal_(0.0, std)
        else:
            bound = 3**0.5 * std
            tensor.uniform_(-bound, bound)

    def copy_uniform_initialization(
        self, tensor: torch.Tensor, reference_tensor: torch.Tensor | None, fan_in: int
    ) -> None:
        """``copy_initialization_variance(..., distribution="uniform")`` (older GroMo name)."""
        self.copy_initialization_variance(tensor, reference_tensor, fan_in, "uniform")

    def _known_inits(self) -> dict[str, Callable[[torch.Tensor, torch.Tensor | None, int], None]]:
        def zeros(tensor: torch.Tensor, reference: torch.Tensor | None, fan_in: int) -> None:
            with torch.no_grad():
                tensor.zero_()

        return {
            "copy_uniform": lambda t, r, f: self.copy_initialization_variance(t, r, f, "uniform"),
            "copy_normal": lambda t, r, f: self.copy_initialization_variance(t, r, f, "normal"),
            "kaiming": lambda t, r, f: self.kaiming_initialization(t, r, f, "uniform"),
            "kaiming_normal": lambda t, r, f: self.kaiming_initialization(t, r, f, "normal"),
            "zeros": zeros,
        }

    @staticmethod
    def _check_pairing(neuron_pairing: str | None) -> bool:
        """True when a pairing is requested; ValueError for unknown names."""
        return _requested(neuron_pairing, _KNOWN_PAIRINGS, "neuron pairing", "neuron_pairing")

    @staticmethod
    def _check_rescaling(rescaling: str | None) -> bool:
        return _requested(rescaling, _KNOWN_RESCALINGS, "rescaling strategy", "rescaling")

    @atomic(module_and_neighbours, copy_data=True)
    def create_layer_extensions(
        self,
        extension_size: int,
        output_extension_size: int | None = None,
        input_extension_size: int | None = None,
        output_extension_init: str = "copy_uniform",
        input_extension_init: str = "copy_uniform",
        neuron_pairing: _KNOWN_NEURON_PAIRINGS_TYPE | None = None,
        rescaling: _KNOWN_RESCALING_STRATEGIES_TYPE | None = None,
        noise_ratio: float = 0.001,
    ) -> None:
        """Create and initialise the previous output extension V and this input extension Z.

        Order: rescaling → creation → initialisation (first half only with pairing) → pairing.
        Inits: "copy_uniform", "copy_normal", "kaiming", "kaiming_normal", "zeros".
        All arguments are validated before anything changes (GroMo validates init names last).

        Raises:
            AssertionError: previous module not growing.
            ValueError: unknown init / rescaling / pairing, odd sizes with pairing, a negative
                size, a NaN / infinite / negative ``noise_ratio``.
            TypeError: a size that is not an int.
        A call that raises leaves this module and the previous one unchanged.
        """
        _guards.check_extension_arguments(
            self,
            {"extension_size": extension_size, "output_extension_size": output_extension_size,
             "input_extension_size": input_extension_size},
            noise_ratio,
        )
        ensure(isinstance(self.previous_module, GrowingModuleBase), lambda: (
            f"The layer {self.name} has no previous module.Therefore, neuron addition is not possible. "
            f"(extensions need a GrowingModule previous module, got {type(self.previous_module).__name__})"
        ))
        previous = self.previous_module
        if output_extension_size is None:
            output_extension_size = extension_size
        if input_extension_size is None:
            input_extension_size = extension_size
        pairing = self._check_pairing(neuron_pairing)
        if pairing:
            for label, size in (
                ("extension_size", extension_size),
                ("output_extension_size", output_extension_size),
                ("input_extension_size", input_extension_size),
            ):
                if size % 2 != 0:
                    param_name, value = label, size
                    raise ValueError(
                        f"{neuron_pairing=} requires an even {param_name}, got {value}. "
                        "(It is the final size, pairing included.)"
                    )
        self._check_rescaling(rescaling)
        known_inits = self._known_inits()
        for label, init in (
            ("output_extension_init", output_extension_init),
            ("input_extension_init", input_extension_init),
        ):
            if init not in known_inits:
                raise ValueError(
                    f"Unknown initialization method '{init}'. Available methods are: "
                    f"{list(known_inits.keys())}. ({label})"
                )

        self.apply_rescaling(rescaling, neuron_pairing, extension_size=input_extension_size)
        previous.create_layer_out_extension(output_extension_size)
        self.create_layer_in_extension(input_extension_size)

        input_weight = self.extended_input_layer.weight
        input_view = input_weight[:, : input_extension_size // 2] if pairing else input_weight
        known_inits[input_extension_init](
            input_view,
            self.weight,
            self.get_fan_in_from_layer(self.extended_input_layer) + self.get_fan_in_from_layer(self.layer),
        )
        output_layer = previous.extended_output_layer
        previous_fan_in = previous.get_fan_in_from_layer(previous.layer)
        output_view = (
            output_layer.weight[: output_extension_size // 2] if pairing else output_layer.weight
        )
        known_inits[output_extension_init](output_view, previous.weight, previous_fan_in)
        if output_layer.bias is not None:
            bias_view = output_layer.bias[: output_extension_size // 2] if pairing else output_layer.bias
            known_inits[output_extension_init](bias_view, previous.bias, previous_fan_in)
        self.apply_neuron_pairing(neuron_pairing, noise_ratio=noise_ratio)

    @atomic(module_and_neighbours, copy_data=True)
    @torch.no_grad()
    def apply_rescaling(
        self,
        rescaling: _KNOWN_RESCALING_STRATEGIES_TYPE | None = None,
        neuron_pairing: _KNOWN_NEURON_PAIRINGS_TYPE | None = None,
        extension_size: int | None = None,
    ) -> None:
        """Variance-transfer rescaling of the existing weights, in place.

        ``default_vt``: α = 1, β = √(f_old/f_new); ``vt_constraint_old_shape``:
        α = (f_prev Var W_prev)^{-1/2}, β = (f_old Var W)^{-1/2}; ``vt_constraint_new_shape``: same α,
        β = (f_new Var W)^{-1/2}. The previous layer (and its BatchNorm running stats) is scaled by
        α, this layer (and its post-layer BatchNorms) by β.

        Raises:
            ValueError: unknown strategy or pairing.
            AssertionError: previous module not growing.
        """
        if not self._check_rescaling(rescaling):
            return
        self._check_pairing(neuron_pairing)
        if self.in_neurons == 0:
            return
        if extension_size is None:
            extension_size = (
                int(self.extended_input_layer.weight.shape[1])
                if self.extended_input_layer is not None
                else 0
            )
        fan_in_old = self.get_fan_in_from_layer(self.layer)
        fan_in_new = fan_in_old + self.get_fan_in_from_layer(num_neurons=extension_size)
        ensure(isinstance(self.previous_module, GrowingModuleBase), lambda: (
            f"apply_rescaling requires a GrowingModule as previous_module, got "
            f"{type(self.previous_module)}. ({self.name}: rescaling needs a GrowingModule previous module.)"
        ))
        previous = self.previous_module
        fan_in_previous = previous.get_fan_in_from_layer(previous.layer)

        def inverse_std_factor(weight: torch.Tensor, fan_in: int) -> float:
            variance = float(weight.var()) if weight.numel() > 1 else float("nan")
            if not variance > 0:
                return 1.0
            return (1.0 / (fan_in * variance)) ** 0.5

        if rescaling == "default_vt":
            alpha = 1.0
            beta = (fan_in_old / fan_in_new) ** 0.5
        else:
            alpha = inverse_std_factor(previous.weight, fan_in_previous)
            fan_in = fan_in_old if rescaling == "vt_constraint_old_shape" else fan_in_new
            beta = inverse_std_factor(self.weight, fan_in)
        if alpha != 1.0:
            self.scale_layer(previous.layer, alpha)
            rescale_batch_norms(previous.post_layer_function, alpha)
        if beta != 1.0:
            self.scale_layer(self.layer, beta)
            rescale_batch_norms(self.post_layer_function, beta)

    @torch.no_grad()
    def apply_neuron_pairing(
        self, neuron_pairing: _KNOWN_NEURON_PAIRINGS_TYPE | None = None, noise_ratio: float = 0.001
    ) -> None:
        """Fill the second halves: V → (V, V) rows, Z → (Z, −Z) columns; then
        ``Z += noise_ratio·std(Z)·ε`` (``noise_ratio=0`` preserves the function exactly).

        Raises:
            ValueError: unknown pairing, or an extension of odd size.
            RuntimeError: an extension is missing.
            AssertionError: previous module not growing.
        """
        _guards.check_non_negative(self, "noise_ratio", noise_ratio)
        if not self._check_pairing(neuron_pairing):
            return
        ensure(isinstance(self.previous_module, GrowingModuleBase), lambda: (
            f"apply_neuron_pairing requires a GrowingModule as previous_module, got "
            f"{type(self.previous_module)}. ({self.name}: pairing needs a GrowingModule previous module.)"
        ))
        output_layer = self._pairable_extension(
            self.previous_module.extended_output_layer, 0, "previous module has no extended_output_layer",
            "the previous module has no output extension to pair", "output", "dh",
        )
        input_layer = self._pairable_extension(
            self.extended_input_layer, 1, "current module has no extended_input_layer",
            "there is no input extension to pair", "input", "dh_in",
        )
        output_size = int(output_layer.weight.shape[0])
        input_size = int(input_layer.weight.shape[1])
        half = output_size // 2
        output_layer.weight[half:] = output_layer.weight[:half]
        if output_layer.bias is not None:
            output_layer.bias[half:] = output_layer.bias[:half]
        half_in = input_size // 2
        input_layer.weight[:, half_in:] = -input_layer.weight[:, :half_in]
        if noise_ratio > 0:
            weight = input_layer.weight
            std = weight.std() if weight.numel() > 1 else torch.zeros((), dtype=weight.dtype)
            weight += torch.randn_like(weight) * noise_ratio * std

    def _pairable_extension(
        self, layer: nn.Module | None, axis: int, missing: str, missing_detail: str, side: str, size_name: str
    ) -> nn.Module:
        """``layer`` when it exists and its new neurons (weight dimension ``axis``) are even in number.

        Raises:
            RuntimeError: no layer.
            ValueError: an odd number of new neurons.
        """
        if layer is None:
            raise RuntimeError(f"Cannot apply neuron pairing: {missing}. ({self.name}: {missing_detail}.)")
        size = int(layer.weight.shape[axis])
        if size % 2 != 0:
            raise ValueError(
                f"apply_neuron_pairing requires an even-sized {side} extension, got {size_name}={size}. "
                f"(The {side} extension has an odd size: cannot pair.)"
            )
        return layer

    # ----- growth bookkeeping ---------------------------------------------------------------

    def missing_neurons(self) -> int:
        """``target_in_neurons − in_neurons`` (may be negative).

        Raises:
            ValueError: no target.
        """
        if self.target_in_neurons is None:
            raise ValueError(
                f"Target in neurons is not set, cannot compute missing neurons. ({self.name}: "
                "target_in_neurons is not set.)"
            )
        return self.target_in_neurons - self.in_neurons

    def number_of_neurons_to_add(
        self, method: str = "fixed_proportional", number_of_growth_steps: int = 1
    ) -> int:
        """``(target − initial) // number_of_growth_steps`` ("fixed_proportional").

        Raises:
            ValueError: target or initial size unset, or unknown method.
        """
        if self.target_in_neurons is None:
            raise ValueError(
                f"Target in neurons is not set, cannot compute neurons to add. ({self.name}: "
                "target_in_neurons is not set.)"
            )
        if self._initial_in_neurons is None:
            raise ValueError(
                f"Initial in neurons is not set, cannot compute neurons to add. ({self.name}: "
                "initial in-neurons must be set.)"
            )
        if method != "fixed_proportional":
            raise ValueError(f"Unknown method: {method}. (method must be 'fixed_proportional')")
        return (self.target_in_neurons - self._initial_in_neurons) // number_of_growth_steps

    @atomic(module_and_neighbours, copy_data=True)
    def complete_growth(self, extension_kwargs: dict[str, Any]) -> None:
        """Add the missing neurons at once: extensions, ``apply_change(scaling_factor=1)``, cleanup."""
        missing = self.missing_neurons()
        if missing > 0:
            self.create_layer_extensions(extension_size=missing, **extension_kwargs)
            self.apply_change(extension_size=missing, scaling_factor=1.0)
            self.delete_update(include_previous=True)

