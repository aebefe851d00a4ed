"""GrowingModule's surgery: the layer operations a layer type implements, applying a change
(delta step, new input columns, new output rows), sub-selecting new neurons, deleting an update.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from gromo.modules import _guards
from gromo.modules._growing.activations import grow_function
from gromo.modules._growing.markers import GrowingModuleBase, MergeGrowingModuleBase
from gromo.modules._transactions import atomic, module_and_neighbours
from gromo.utils._assertions import ensure

__all__ = ["SurgeryMixin"]


class SurgeryMixin:
    """GrowingModule's ``apply_change``, ``sub_select_optimal_added_parameters``, ``delete_update``
    and the abstract layer operations they use."""

    # ----- surgery (abstract parts) -----------------------------------------------------------

    def layer_of_tensor(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, force_bias: bool = True
    ) -> nn.Module:
        """A layer like ``self.layer`` holding ``weight`` / ``bias``. Raises NotImplementedError."""
        raise NotImplementedError

    def _check_bias_presence(self, bias: torch.Tensor | None) -> None:
        """GroMo's check that a layer built for this module has a bias iff ``use_bias``.

        Raises:
            AssertionError: it has not.
        """
        use_bias = self.use_bias
        ensure(use_bias is (bias is not None), (
            f"The new layer should have a bias ({bias is not None=}) if and only if the main layer "
            f"bias (use_bias ={use_bias!r}) is not None."
        ))

    def _check_extension_bias(self, weight: torch.Tensor, bias: torch.Tensor | None, missing_text: str) -> None:
        """GroMo's checks of the bias that comes with the output-extension ``weight`` (K, ...) of a
        layer with a bias: given (``missing_text``, the layer type's wording), of shape (K,).

        Raises:
            AssertionError: missing, or of another shape.
        """
        ensure(bias is not None, missing_text)
        ensure(bias.shape == (weight.shape[0],), lambda: (
            f"{bias.shape[0]=} should be equal to {weight.shape[0]=} (bias shape {tuple(bias.shape)})"
        ))

    def _fan_in_source(self, layer: nn.Module | None, num_neurons: int | None) -> nn.Module | int:
        """What ``get_fan_in_from_layer`` reads: ``layer`` (of this type's torch class) when given,
        else ``num_neurons``.

        Raises:
            AssertionError: ``layer`` of another class, or neither given.
        """
        if layer is not None:
            kind = self._layer_type
            ensure(isinstance(layer, kind), f"The layer should be a torch.nn.{kind.__name__} but got {type(layer)}.")
            return layer
        ensure(num_neurons is not None, "Either layer or num_neurons should be provided.")
        return num_neurons

    def add_parameters(self, **kwargs: Any) -> None:
        """Grow the layer with given parameters. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def layer_in_extension(self, weight: torch.Tensor) -> None:
        """Append input columns. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def layer_out_extension(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Append output rows. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def get_fan_in_from_layer(self, layer: nn.Module | None = None, num_neurons: int | None = None) -> int:
        """Fan-in of a layer or of ``num_neurons`` input neurons. Raises NotImplementedError."""
        raise NotImplementedError

    def create_layer_in_extension(self, extension_size: int) -> None:
        """Create ``extended_input_layer``. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def create_layer_out_extension(self, extension_size: int) -> None:
        """Create ``extended_output_layer``. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @torch.no_grad()
    def parameter_step(
        self, delta_weights: torch.Tensor, delta_biases: torch.Tensor | None = None
    ) -> None:
        """In place ``W += ΔW`` (and ``b += Δb``).

        Raises:
            ValueError: a step that does not broadcast to its parameter (checked before either
                parameter changes).
        """
        _guards.check_step_shapes(self, self.layer.weight, delta_weights, self.layer.bias, delta_biases)
        self.layer.weight.data += delta_weights
        if delta_biases is not None:
            self.layer.bias.data += delta_biases

    # ----- apply a change ----------------------------------------------------------------------

    @atomic(module_and_neighbours, copy_data=True)
    def apply_change(
        self,
        scaling_factor: float | torch.Tensor | None = None,
        apply_previous: bool = True,
        apply_delta: bool = True,
        apply_extension: bool = True,
        extension_size: int | None = None,
        optimal_delta_scaling: float | torch.Tensor | None = None,
        input_extension_scaling: float | torch.Tensor | None = None,
        output_extension_scaling: float | torch.Tensor | None = None,
    ) -> None:
        """Apply ``W −= s_δ δ``, append ``s_in Z`` as input columns and (previous) ``s_out V`` rows.

        Extension layers are not removed (call ``delete_update``).

        Raises:
            ValueError: ``extension_size > 0`` but the previous module has no output extension; a
                NaN / infinite scaling.
            NotImplementedError: previous module is a merge or not growing (with apply_previous).
            AssertionError: input extension with a non-zero bias, or unknown extension size.
        Warns:
            UserWarning: input extension applied with a zero input scaling (as GroMo, before the
                extension size is determined).
        A call that raises leaves this module and its neighbours unchanged.
        """
        previous = self.previous_module
        for key, value in (
            ("scaling_factor", scaling_factor), ("optimal_delta_scaling", optimal_delta_scaling),
            ("input_extension_scaling", input_extension_scaling),
            ("output_extension_scaling", output_extension_scaling),
        ):
            if value is not None:
                owner = previous if key == "output_extension_scaling" else self
                _guards.check_scaling(self, key, value, getattr(owner, "__dict__", {}).get(key))
        if apply_extension and self.extended_input_layer is not None:
            scale_in = input_extension_scaling if input_extension_scaling is not None else (
                scaling_factor if scaling_factor is not None else self.input_extension_scaling
            )
            if float(scale_in.detach().reshape(-1)[0] if isinstance(scale_in, torch.Tensor) else scale_in) == 0.0:
                warnings.warn(
                    "input_extension_scaling is null. The input extension will have no effect. "
                    f"({self.name}: zero input extension scaling)",
                    UserWarning,
                    stacklevel=2,
                )
        _guards.check_count(self, "extension_size", extension_size, allow_none=True)
        extend_previous = apply_extension and apply_previous and previous is not None
        if extend_previous:
            if isinstance(previous, GrowingModuleBase):
                if previous.extended_output_layer is not None:
                    if extension_size is None:
                        ensure(self.eigenvalues_extension is not None, (
                            "We need to determine the size of the extension but it was not given as "
                            "parameter nor could be automatically determined as eigenvalues_extension "
                            f"is None(Error occurred in {self.name}) (extension size unknown)"
                        ))
                        extension_size = int(self.eigenvalues_extension.shape[0])
                else:
                    if extension_size is None:
                        extension_size = 0
                    if extension_size > 0:
                        raise ValueError(
                            f"The layer {self.name} has no input extension but an extension of size "
                            f"{extension_size} was requested. (extension_size={extension_size} but the "
                            "previous module has no output extension.)"
                        )
            elif isinstance(previous, MergeGrowingModuleBase):
                raise NotImplementedError(
                    f"apply_change with a merge previous module is not implemented. (error in {self.name})"
                )
            else:
                raise NotImplementedError(
                    f"apply_change is not implemented yet for {type(previous)} as previous module."
                )
        if apply_extension and self.extended_input_layer is not None:
            extension_bias = self.extended_input_layer.bias
            ensure(extension_bias is None or bool(torch.all(extension_bias == 0)),
                   "The bias of the input extension must be null.")

        if scaling_factor is not None:
            self.scaling_factor = scaling_factor
        if optimal_delta_scaling is not None:
            self.optimal_delta_scaling = optimal_delta_scaling
        if input_extension_scaling is not None:
            self.input_extension_scaling = input_extension_scaling
        if output_extension_scaling is not None and isinstance(previous, GrowingModuleBase):
            previous.output_extension_scaling = output_extension_scaling

        with torch.no_grad():
            if apply_delta and self.optimal_delta_layer is not None:
                scale = self.optimal_delta_scaling
                delta_bias = self.optimal_delta_layer.bias
                self.parameter_step(
                    delta_weights=-scale * self.optimal_delta_layer.weight,
                    delta_biases=None if delta_bias is None else -scale * delta_bias,
                )
            if apply_extension:
                if self.extended_input_layer is not None:
                    self.layer_in_extension(
                        weight=self.input_extension_scaling * self.extended_input_layer.weight
                    )
                if extend_previous:
                    previous._apply_output_changes(extension_size=extension_size)
                if isinstance(previous, MergeGrowingModuleBase):
                    previous.update_size()
                if isinstance(self.next_module, MergeGrowingModuleBase):
                    self.next_module.update_size()
        self._clear_statistics_cache()

    @torch.no_grad()
    def _apply_output_changes(
        self, scaling_factor: float | torch.Tensor | None = None, extension_size: int = 0
    ) -> None:
        """Append ``s_out V`` as output rows and grow the post-layer function.

        The post-layer function (and a next merge's post-merge function) grows by the number of rows
        actually added, not by ``extension_size`` as in GroMo: when the two differ GroMo leaves the
        network inconsistent (its next forward fails); here the network stays consistent and a
        UserWarning reports the difference.

        Raises:
            AssertionError: ``extension_size > 0`` without output extension.
        Warns:
            UserWarning: an explicit scaling differs from ``output_extension_scaling``;
                ``extension_size`` differs from the number of rows added.
        """
        if scaling_factor is None:
            scale = self.output_extension_scaling
        else:
            scale = scaling_factor
            output_extension_scaling = self.output_extension_scaling
            if abs(float(scale) - float(output_extension_scaling[0])) >= 1e-4:
                warnings.warn(
                    f"Scaling factor {scaling_factor} is different from the one used during the "
                    f"extended_forward {output_extension_scaling}. (The scaling factor differs from "
                    "output_extension_scaling.)",
                    UserWarning,
                    stacklevel=2,
                )
        if extension_size > 0 or self.extended_output_layer is not None:
            ensure(self.extended_output_layer is not None, (
                f"The layer {self.name} has no output extension but an extension of size "
                f"{extension_size} was requested."
            ))
            extension = self.extended_output_layer
            added = int(extension.weight.shape[0])
            if extension_size > 0 and extension_size != added:
                warnings.warn(
                    f"extension_size={extension_size} differs from the {added} rows of the output "
                    f"extension of {self.name}: the post-layer function grows by {added}.",
                    UserWarning,
                    stacklevel=2,
                )
            self.layer_out_extension(
                scale * extension.weight,
                bias=scale * extension.bias if extension.bias is not None else None,
            )
            grow_function(self.post_layer_function, added)
            if isinstance(self.next_module, MergeGrowingModuleBase):
                self.next_module.update_size()
                grow_function(self.next_module.post_merge_function, added)
        self._clear_statistics_cache()

    # ----- sub-selection, scaling, normalisation -----------------------------------------------

    @atomic(module_and_neighbours, copy_data=True)
    def sub_select_optimal_added_parameters(
        self,
        keep_neurons: int | None = None,
        threshold: float | None = None,
        sub_select_previous: bool = True,
        zeros_if_not_enough: bool = False,
        zeros_fan_in: bool = True,
        zeros_fan_out: bool = False,
    ) -> None:
        """Keep the first ``keep_neurons`` new neurons (or those with ``λ ≥ threshold``).

        Unlike GroMo, which trims the input extension and the eigenvalues before it raises for an
        unsupported previous module (leaving a half-applied selection), every check runs first: a
        failing call leaves the module unchanged. The texts are GroMo's.

        Raises:
            AssertionError: no eigenvalues; zeroing mode with neither zeros_fan_in nor zeros_fan_out.
            ValueError: ``sub_select_previous`` without previous module.
            NotImplementedError: previous module of another class, a merge, or not growing.
            TypeError, ValueError: ``keep_neurons`` not None or an int ≥ 0, ``threshold`` NaN / Inf.
        A call that raises leaves this module and the previous one unchanged.
        """
        _guards.check_count(self, "keep_neurons", keep_neurons, allow_none=True)
        if threshold is not None:
            _guards.check_finite(self, "threshold", threshold)
        ensure(self.eigenvalues_extension is not None, (
            "The eigenvalues of the extension should be computed before sub-selecting the optimal "
            f"added parameters for {self.name}."
        ))
        if keep_neurons is None:
            ensure(threshold is not None, "Give keep_neurons or threshold.")
            keep_neurons = int(torch.sum(self.eigenvalues_extension >= threshold).item())
        zeros_fan_in = zeros_fan_in and zeros_if_not_enough
        if zeros_if_not_enough:
            ensure(zeros_fan_in or zeros_fan_out, (
                "At least one of zeros_fan_in or zeros_fan_out must be True if zeros_if_not_enough is "
                "True."
            ))
        previous = self.previous_module
        if sub_select_previous:
            if previous is None:
                raise ValueError(
                    f"No previous module for {self.name}. Therefore new neurons cannot be sub-selected."
                )
            if isinstance(previous, GrowingModuleBase):
                if not isinstance(previous, type(self)):
                    raise NotImplementedError(
                        "The sub-selection of the optimal added parameters is not implemented yet for "
                        f"a connection from {type(previous)} to {type(self)}."
                    )
            else:  # a merge, or a module that cannot grow
                raise NotImplementedError(
                    "The sub-selection of the optimal added parameters is not implemented yet for "
                    f"{type(previous)} as previous module."
                )

        with torch.no_grad():
            if self.extended_input_layer is not None:
                if not zeros_if_not_enough:
                    if keep_neurons == 0:
                        self.extended_input_layer = None
                        self.eigenvalues_extension = None
                    else:
                        self.eigenvalues_extension = self.eigenvalues_extension[:keep_neurons]
                        extension = self.extended_input_layer
                        self.extended_input_layer = self.layer_of_tensor(
                            extension.weight[:, :keep_neurons], bias=extension.bias, force_bias=False
                        )
                else:
                    self.eigenvalues_extension[keep_neurons:] = 0
                    if zeros_fan_out:
                        self.extended_input_layer.weight[:, keep_neurons:] = 0
            if sub_select_previous and not (zeros_if_not_enough and not zeros_fan_in):
                previous._sub_select_added_output_dimension(
                    keep_neurons, zeros_if_not_enough=zeros_fan_in
                )

    @torch.no_grad()
    def _sub_select_added_output_dimension(
        self, keep_neurons: int, zeros_if_not_enough: bool = False
    ) -> None:
        """Keep the first ``keep_neurons`` rows of the output extension (or zero the others)."""
        ensure(self.extended_output_layer is not None, (
            f"The layer {self.name} should have an extended output layer to sub-select the output "
            "dimension."
        ))
        extension = self.extended_output_layer
        if zeros_if_not_enough:
            extension.weight[keep_neurons:] = 0
            if extension.bias is not None:
                extension.bias[keep_neurons:] = 0
        elif keep_neurons == 0:
            self.extended_output_layer = None
        else:
            self.extended_output_layer = self.layer_of_tensor(
                extension.weight[:keep_neurons],
                bias=extension.bias[:keep_neurons] if extension.bias is not None else None,
                force_bias=False,
            )

    # ----- cleanup, misc ----------------------------------------------------------------

    def delete_update(
        self,
        include_previous: bool = True,
        delete_delta: bool = True,
        delete_input: bool = True,
        delete_output: bool = False,
    ) -> None:
        """Forget the update: delta, scaling (0), decrease, eigenvalues, stored tensors, input
        extension (and the previous output extension with ``include_previous``).

        Raises:
            NotImplementedError: ``include_previous`` with a merge previous module (and an input
                extension to delete).
            TypeError: previous module of an unsupported type.
        """
        previous = self.previous_module
        if previous is not None and not isinstance(previous, (GrowingModuleBase, MergeGrowingModuleBase)):
            previous_module = previous
            raise TypeError(
                f"Unexpected type for previous_module of {self.name}got {type(previous_module)} instead "
                "of GrowingModule or MergeGrowingModule. (The previous module must be a GrowingModule or "
                "a MergeGrowingModule.)"
            )
        deletes_input = self.extended_input_layer is not None and delete_input
        if deletes_input and include_previous and isinstance(previous, MergeGrowingModuleBase):
            raise NotImplementedError(
                "delete_update(include_previous=True) with a merge previous module is not implemented."
            )
        if delete_delta:
            self.optimal_delta_layer = None
        self.scaling_factor = 0.0
        self.parameter_update_decrease = None
        self.eigenvalues_extension = None
        self._first_order_uses_squared_singular_values = True
        self._pre_activity = None
        self._input = None
        self._clear_statistics_cache()
        if delete_output:
            self.extended_output_layer = None
        if not deletes_input:
            return
        self.extended_input_layer = None
        if isinstance(previous, GrowingModuleBase):
            if include_previous:
                previous.extended_output_layer = None
            elif previous.extended_output_layer is not None:
                warnings.warn(
                    f"The extended_input_layer of {self.name} has been deleted. However, the "
                    "extended_output_layer associated stored in the previous module named "
                    f"{previous.name} has not been deleted.This may lead to errors when using "
                    "extended_forward. (The previous module keeps its output extension.)",
                    UserWarning,
                    stacklevel=2,
                )
        elif previous is None:
            warnings.warn(
                f"The extended_input_layer of {self.name} has been deleted.However, no previous module "
                "is associated with this layer.Therefore, no extended_output_layer has been deleted.This "
                "is not supposed to happen as to grow a layer a previous module is needed. (An input "
                "extension existed without a previous module.)",
                UserWarning,
                stacklevel=2,
            )

