"""GrowingModule's rescaling of a pending update: scaling the delta and the extensions, and the
normalisations that choose those scales.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from gromo.modules import _guards
from gromo.modules._growing.markers import GrowingModuleBase
from gromo.modules._transactions import atomic, module_and_neighbours
from gromo.utils._assertions import ensure

__all__ = ["ScalingMixin"]

_NORMALIZATION_TYPES = (
    "equalize_second_layer",
    "equalize_extensions",
    "match_extending_layer",
    "weird_normalization",
    "legacy_normalization",
    "gradmax_normalization",
)


class ScalingMixin:
    """GrowingModule's ``scale_*`` methods and ``normalize_optimal_updates``."""

    @staticmethod
    @torch.no_grad()
    def scale_layer(layer: nn.Module, scale: float) -> nn.Module:
        """In place ``weight *= scale``, ``bias *= scale`` where they exist; returns the layer.

        A module without weight (e.g. ``nn.ReLU()``) is returned unchanged, as in GroMo.
        """
        if getattr(layer, "weight", None) is not None:
            layer.weight.data *= scale
        if getattr(layer, "bias", None) is not None:
            layer.bias.data *= scale
        return layer

    def scale_parameter_update(self, scale: float) -> None:
        """Scale the optimal delta layer and ``parameter_update_decrease`` by ``scale``.

        Raises:
            ValueError: ``scale`` NaN or infinite.
        """
        _guards.check_finite(self, "scale", scale)
        if self.optimal_delta_layer is not None:
            self.scale_layer(self.optimal_delta_layer, scale)
            if self.parameter_update_decrease is not None:
                self.parameter_update_decrease = self.parameter_update_decrease * scale

    def scale_layer_extension(
        self, scale: float | None, scale_output: float | None, scale_input: float | None
    ) -> None:
        """``Z *= scale_input``, ``V *= scale_output``, ``λ *= (s_out s_in)^e`` (e = ½, or 1 when the
        singular values were ignored) so the first-order improvement scales by ``s_out s_in``.

        Raises:
            AssertionError: a missing scale without ``scale``, or scales that are not floats.
            ValueError: input extension, previous module or its output extension missing.
        """
        if scale_output is None or scale_input is None:
            ensure(scale is not None, "scale can't be None if scale_input or scale_output is None.")
        scale_output = scale if scale_output is None else scale_output
        scale_input = scale if scale_input is None else scale_input
        ensure(isinstance(scale_output, float) and isinstance(scale_input, float), lambda: (
            f"The scales must be floats, got {type(scale_output).__name__} and "
            f"{type(scale_input).__name__}"
        ))
        _guards.check_finite(self, "scale_output", scale_output)
        _guards.check_finite(self, "scale_input", scale_input)
        previous = self.previous_module
        missing = "Cannot scale layer extension as one of the extensions is None."
        if self.extended_input_layer is None:
            raise ValueError(f"{missing} ({self.name}: no input extension.)")
        if previous is None:
            raise ValueError(f"{missing} ({self.name}: no previous module.)")
        if getattr(previous, "extended_output_layer", None) is None:
            raise ValueError(f"{missing} ({self.name}: no previous output extension.)")
        self.scale_layer(self.extended_input_layer, scale_input)
        self.scale_layer(previous.extended_output_layer, scale_output)
        if self.eigenvalues_extension is not None:
            exponent = 0.5 if self._first_order_uses_squared_singular_values else 1.0
            self.eigenvalues_extension = self.eigenvalues_extension * (scale_output * scale_input) ** exponent

    def _fan_in_of(self, layer: nn.Module, owner: GrowingModuleBase | None = None) -> int:
        return (owner or self).get_fan_in_from_layer(layer)

    def _std_of(self, layer: nn.Module | None, owner: GrowingModuleBase | None = None) -> float | None:
        """std of a layer's weight (>0), else fan_in^{-1/2}; None when there is no weight."""
        weight = getattr(layer, "weight", None) if layer is not None else None
        if weight is None or weight.numel() == 0:
            return None
        # GroMo takes the std of any non-empty weight: one element gives NaN with torch's warning.
        std = float(weight.detach().std())
        if std > 0:
            return std
        return float(self._fan_in_of(layer, owner) ** -0.5)

    @atomic(module_and_neighbours, copy_data=True)
    def normalize_optimal_updates(
        self,
        std_target: float | None = None,
        normalization_type: str = "legacy_normalization",
        gradmax_scale: float = 1.0,
    ) -> None:
        """Rescale the delta and the extensions: ``equalize_second_layer``,
        ``equalize_extensions``, ``match_extending_layer``, ``legacy_normalization`` (≡
        ``weird_normalization``), ``gradmax_normalization``.

        Raises:
            ValueError: unknown type, ``gradmax_scale ≤ 0``, gradmax without extension/weights,
                ``match_extending_layer`` without growing previous module, ``equalize_extensions``
                without previous module.
            AssertionError: target std not a positive float or undeterminable.
            ValueError: ``std_target`` or ``gradmax_scale`` NaN or infinite.
        A call that raises leaves this module and its neighbours unchanged.
        """
        if std_target is not None and isinstance(std_target, float):
            _guards.check_finite(self, "std_target", std_target)
        _guards.check_finite(self, "gradmax_scale", gradmax_scale)
        if normalization_type == "gradmax_normalization":
            self._gradmax_normalization(gradmax_scale)
            return

        if std_target is None:
            weight = self.layer.weight
            std = float(weight.detach().std()) if weight.numel() > 0 else float("nan")
            if weight.numel() > 0 and std > 0:
                std_target = std
            else:
                ensure(self.extended_input_layer is not None, (
                    "Cannot determine std_target automatically as the layer has no weights and there "
                    "is no extended_input_layer to get the number of input features from. "
                    f"(error in {self.name})"
                ))
                std_target = float(self.get_fan_in_from_layer(self.extended_input_layer) ** -0.5)
        ensure(isinstance(std_target, float) and std_target > 0,
               lambda: f"std_target must be a positive float. (got {std_target!r})")
        previous = self.previous_module
        extension_out = getattr(previous, "extended_output_layer", None)

        def scale_to(layer: nn.Module | None, target: float, owner: GrowingModuleBase | None = None) -> float:
            std = self._std_of(layer, owner)
            return 1.0 if std is None else target / std

        if normalization_type == "equalize_second_layer":
            scale_delta = scale_to(self.optimal_delta_layer, std_target)
            scale_input = scale_to(self.extended_input_layer, std_target)
            scale_output = scale_delta / scale_input
        elif normalization_type == "equalize_extensions":
            if previous is None:
                raise ValueError(
                    "Cannot use equalize_extensions normalization as there is no previous module. "
                    f"({self.name}: equalize_extensions needs a previous module.)"
                )
            scale_input = scale_to(self.extended_input_layer, std_target)
            scale_output = scale_to(extension_out, std_target, previous)
            scale_delta = scale_input * scale_output
        elif normalization_type == "match_extending_layer":
            if not isinstance(previous, GrowingModuleBase):
                raise ValueError(
                    "match_extending_layer requires a previous GrowingModule with a .layer attribute. "
                    f"({self.name}: match_extending_layer needs a GrowingModule previous module.)"
                )
            std_self = self._std_of(self.layer)
            if std_self is None and self.extended_input_layer is not None:
                std_self = float(self.get_fan_in_from_layer(self.extended_input_layer) ** -0.5)
            std_previous = self._std_of(previous.layer, previous)
            if std_previous is None and extension_out is not None:
                std_previous = float(previous.get_fan_in_from_layer(extension_out) ** -0.5)
            self_std, prev_std = std_self, std_previous
            ensure(isinstance(self_std, float),
                   f"{type(self_std)} is not float ({self.name}: cannot determine the layer std.)")
            ensure(isinstance(prev_std, float),
                   f"{type(prev_std)} is not float ({self.name}: cannot determine the previous std.)")
            scale_delta = scale_to(self.optimal_delta_layer, std_self)
            scale_input = scale_to(self.extended_input_layer, std_self)
            scale_output = scale_to(extension_out, std_previous, previous)
        elif normalization_type in ("legacy_normalization", "weird_normalization"):
            scale_delta = scale_to(self.optimal_delta_layer, std_target)
            scale_input = 1.0
            # GroMo's legacy rule: the output extension is scaled with the INPUT extension's std.
            scale_output = scale_to(self.extended_input_layer, std_target)
        else:
            existing_normalizations = list(_NORMALIZATION_TYPES)
            raise ValueError(
                f"normalization_type must be one of {existing_normalizations}, got {normalization_type} "
                "instead."
            )

        if self.optimal_delta_layer is not None and scale_delta != 1.0:
            self.scale_parameter_update(scale_delta)
        if self.extended_input_layer is not None and previous is not None and extension_out is not None:
            self.scale_layer_extension(None, float(scale_output), float(scale_input))

    @torch.no_grad()
    def _gradmax_normalization(self, gradmax_scale: float) -> None:
        if gradmax_scale <= 0:
            raise ValueError(f"gradmax_scale must be positive, got {gradmax_scale}.")
        weight = getattr(self.layer, "weight", None)
        extension = getattr(self.extended_input_layer, "weight", None)
        if self.extended_input_layer is None or weight is None or extension is None:
            raise ValueError(
                "gradmax_normalization requires extended_input_layer and layer with weights. "
                f"({self.name}: it needs an input extension and layer weights.)"
            )
        # GroMo's guards, in its order; each warns and leaves everything unchanged.
        if extension.ndim < 2:
            warnings.warn(
                "gradmax_normalization: extension weight has no reducible dimensions, skipping.",
                UserWarning, stacklevel=3,
            )
            return
        if weight.ndim < 2:
            warnings.warn(
                "gradmax_normalization: layer weight has no reducible dimensions, skipping.",
                UserWarning, stacklevel=3,
            )
            return
        if weight.shape[1] == 0:
            warnings.warn(
                "gradmax_normalization: no existing neurons to compute reference norm, skipping.",
                UserWarning, stacklevel=3,
            )
            return
        column_norms = weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)
        target = gradmax_scale * float(column_norms.mean())
        if not target > 0:
            warnings.warn(
                "gradmax_normalization: target norm is zero (all existing weights are zero), skipping.",
                UserWarning, stacklevel=3,
            )
            return
        extension_norms = extension.transpose(0, 1).reshape(extension.shape[1], -1).norm(dim=1)
        ratios = torch.where(
            extension_norms > 0, target / extension_norms.clamp_min(torch.finfo(extension.dtype).tiny),
            torch.ones_like(extension_norms),
        )
        shape = [1] * extension.ndim
        shape[1] = -1
        extension.mul_(ratios.reshape(shape))
        eigenvalues = self.eigenvalues_extension
        if eigenvalues is not None and eigenvalues.shape[0] == extension.shape[1]:
            eigenvalues.mul_(ratios.sqrt().to(eigenvalues.dtype))  # in place, as GroMo

