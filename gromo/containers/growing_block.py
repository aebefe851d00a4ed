"""GroMo's ``gromo.containers.growing_block``: residual blocks whose hidden width grows (TINY, TMLR 2024).

A block computes ``out = downsample(x) + second(first(pre_activation(x)))`` where
``first.post_layer_function = mid_activation`` and ``second.post_layer_function =
pre_addition_function``; ``second.previous_module = first``. Growing the block adds hidden neurons
(first's outputs = second's inputs). The hidden width may be 0: the branch is then the zero map and
its growth statistics come from the gradient at the branch output (M₋₂ = Σ x̃₋₂ dAᵀ, S₋₂ = first's
input S), i.e. ``N = −M₋₂`` (no delta, no projection).

Deliberate differences from GroMo:
* ``extended_forward`` at hidden width 0 scales the two extensions with the previous layer's
  ``output_extension_scaling`` and the second layer's ``input_extension_scaling`` (what
  ``apply_change`` uses), not both with the legacy ``scaling_factor`` (identical after
  ``set_scaling_factor``), and passes the extension through the mid activation's
  ``extended_forward`` when it has one (a growing norm is bypassed, exactly as at width > 0).
* ``reset_computation`` also drops the stored tensors of both layers.
* ``parameter_update_decrease`` also accepts None.
* ``weights_statistics`` reports both layers ({0: first, 1: second}); GroMo's block inherits the
  container's version over its (always empty) ``_growing_layers`` and returns {}.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from gromo.containers.growing_container import GrowingContainer, check_second_layer_output_not_extended
from gromo.modules._growing.together import GrowthJob, solves_jointly
from gromo.modules._growth_options import GrowthOptions, takes_growth_options
from gromo.modules.conv2d_growing_module import RestrictedConv2dGrowingModule
from gromo.modules.growing_module import GrowingModule
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo.utils._assertions import ensure

__all__ = ["GrowingBlock", "LinearGrowingBlock", "Conv2dGrowingBlock", "RestrictedConv2dGrowingBlock"]

# The constructor arguments that ``GrowingBlock.set_default_values`` completes.
_DEFAULTED_ARGUMENTS = (
    "activation", "pre_activation", "mid_activation", "kwargs_layer", "kwargs_first_layer", "kwargs_second_layer",
)


class GrowingBlock(GrowingContainer):
    """``out = downsample(x) + second(first(pre_activation(x)))`` with a growable hidden width.

    Args:
        first_layer: GrowingModule in → hidden (its post-layer function is the mid activation).
        second_layer: GrowingModule hidden → out, ``previous_module = first_layer``.
        in_features, out_features: sizes of the block.
        pre_activation: applied to x before the first layer (not to the identity path).
        name: name.
        downsample: identity path (must change the size when in ≠ out).
        device: device.
    Raises:
        AssertionError: in_features ≠ out_features with an identity downsample.
    """

    def __init__(self, first_layer: GrowingModule, second_layer: GrowingModule, in_features: Any,
                 out_features: Any, pre_activation: nn.Module = nn.Identity(), name: str = "block",
                 downsample: nn.Module = nn.Identity(), device: torch.device | str | None = None) -> None:
        ensure(in_features == out_features or not isinstance(downsample, nn.Identity), (
            f"Incompatible dimensions: in_features ({in_features}) must match out_features "
            f"({out_features}) or downsample ({downsample}) must be a non-identity module."
        ))
        super().__init__(in_features=in_features, out_features=out_features, device=device, name=name)
        self.pre_activation = pre_activation.to(self.device) if pre_activation is not None else nn.Identity()
        self.first_layer = first_layer
        self.second_layer = second_layer
        if second_layer.previous_module is not first_layer:
            second_layer.previous_module = first_layer
        self.downsample = downsample.to(self.device)
        self.activation_derivative = 1.0

    def _init_layers(self, layer_type: type, sizes: tuple[Any, Any, Any], target: dict[str, Any],
                     arguments: Mapping[str, Any],
                     complete_layer_kwargs: Callable[[dict, dict], tuple[dict, dict]] | None = None) -> None:
        """Build the two layers of a subclass and initialise the block (the subclasses' constructor).

        The first layer maps in → hidden (post ``mid_activation``), the second hidden → out (post
        ``pre_addition_function``, growing after the first); ``target`` names the second layer's
        target hidden width in its layer type's words.

        Args:
            layer_type: the growing module class of both layers.
            sizes: (in, hidden, out).
            target: the second layer's target keyword and value.
            arguments: the subclass constructor's ``locals()``: GroMo's block arguments
                ``activation``, ``pre_activation``, ``mid_activation``, ``pre_addition_function``,
                ``name``, ``kwargs_layer``, ``kwargs_first_layer``, ``kwargs_second_layer``,
                ``downsample`` and ``device``.
            complete_layer_kwargs: turns the defaulted (first, second) layer kwargs into the ones used.
        """
        pre_activation, mid_activation, kwargs_first_layer, kwargs_second_layer = self.set_default_values(
            **{key: arguments[key] for key in _DEFAULTED_ARGUMENTS}
        )
        if complete_layer_kwargs is not None:
            kwargs_first_layer, kwargs_second_layer = complete_layer_kwargs(kwargs_first_layer, kwargs_second_layer)
        in_size, hidden_size, out_size = sizes
        name, device = arguments["name"], arguments["device"]
        first_layer = layer_type(
            in_size, hidden_size, post_layer_function=mid_activation,
            name=f"{name}(first_layer)", device=device, **kwargs_first_layer,
        )
        second_layer = layer_type(
            hidden_size, out_size, post_layer_function=arguments["pre_addition_function"],
            previous_module=first_layer, allow_growing=True, name=f"{name}(second_layer)", device=device,
            **target, **kwargs_second_layer,
        )
        GrowingBlock.__init__(
            self, first_layer, second_layer, in_features=in_size, out_features=out_size,
            pre_activation=pre_activation, name=name, downsample=arguments["downsample"], device=device,
        )

    def __setattr__(self, key: str, value: Any) -> None:
        # The pending update lives in the second layer (GroMo redirects this attribute).
        if key == "optimal_delta_layer" and "second_layer" in self.__dict__.get("_modules", {}):
            self.second_layer.optimal_delta_layer = value
        else:
            super().__setattr__(key, value)

    @staticmethod
    def set_default_values(activation: nn.Module | None = None, pre_activation: nn.Module | None = None,
                           mid_activation: nn.Module | None = None, kwargs_layer: dict | None = None,
                           kwargs_first_layer: dict | None = None, kwargs_second_layer: dict | None = None,
                           ) -> tuple[nn.Module, nn.Module, dict, dict]:
        """Fill the defaults: pre/mid activation ← activation (Identity if None), per-layer kwargs ←
        a copy of ``kwargs_layer`` ({} if None).

        Returns:
            (pre_activation, mid_activation, kwargs_first_layer, kwargs_second_layer).
        """
        if activation is None:
            activation = nn.Identity()
        if pre_activation is None:
            pre_activation = activation
        if mid_activation is None:
            mid_activation = activation
        if kwargs_layer is None:
            kwargs_layer = {}
        if kwargs_first_layer is None:
            kwargs_first_layer = copy.copy(kwargs_layer)
        if kwargs_second_layer is None:
            kwargs_second_layer = copy.copy(kwargs_layer)
        return pre_activation, mid_activation, kwargs_first_layer, kwargs_second_layer

    # ----- proxies to the second layer ------------------------------------------------------

    @property
    def hidden_neurons(self) -> int:
        """Hidden width = the second layer's input neurons."""
        return self.second_layer.in_neurons

    @property
    def hidden_features(self) -> int:
        """Deprecated alias of ``hidden_neurons``.

        Warns:
            DeprecationWarning: always.
        """
        warnings.warn("hidden_features is deprecated, use hidden_neurons instead.", DeprecationWarning, stacklevel=2)
        return self.hidden_neurons

    @property
    def optimal_delta_layer(self) -> nn.Module | None:
        """The second layer's optimal delta layer."""
        return self.second_layer.optimal_delta_layer

    @property
    def eigenvalues_extension(self) -> torch.Tensor | None:
        """The second layer's eigenvalues (singular values) of the new neurons."""
        return self.second_layer.eigenvalues_extension

    @property
    def parameter_update_decrease(self) -> torch.Tensor | None:
        """The second layer's first-order decrease of the delta."""
        return self.second_layer.parameter_update_decrease

    @parameter_update_decrease.setter
    def parameter_update_decrease(self, value: torch.Tensor | float | None) -> None:
        if isinstance(value, (float, int)) and not isinstance(value, bool):
            weight = self.second_layer.weight
            value = torch.tensor(float(value), dtype=weight.dtype, device=weight.device)
        elif value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(
                f"parameter_update_decrease must be a float or a torch.Tensor. (got {type(value).__name__})"
            )
        self.second_layer.parameter_update_decrease = value

    @property
    def scaling_factor(self) -> torch.Tensor:
        """The second layer's legacy scaling factor γ."""
        return self.second_layer.scaling_factor

    @scaling_factor.setter
    def scaling_factor(self, value: torch.Tensor | float) -> None:
        self.second_layer.scaling_factor = value

    @property
    def first_order_improvement(self) -> torch.Tensor:
        """The second layer's first-order improvement (delta + new neurons)."""
        return self.second_layer.first_order_improvement

    def set_scaling_factor(self, factor: float) -> None:
        """``second_layer.scaling_factor = factor`` (γ² on the delta, γ on both extensions)."""
        self.second_layer.set_scaling_factor(factor)

    # ----- forward --------------------------------------------------------------------------

    def _mark_growth_statistics_pending(self) -> None:
        second = self.second_layer
        for statistic in (second.tensor_s_growth, second.tensor_m_prev, second.cross_covariance,
                          second.covariance_loss_gradient):
            statistic.updated = False
        self.first_layer._clear_statistics_cache()
        second._clear_statistics_cache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``downsample(x) + second(first(pre_activation(x)))``; at hidden width 0 the branch is 0.

        At hidden width 0 the first layer's input is stored (if asked) and the zero branch output
        is stored as the second layer's pre-activation, so that its gradient (the gradient at the
        block output) feeds M₋₂.
        """
        identity = self.downsample(x)
        if self.hidden_neurons > 0:
            return self.second_layer(self.first_layer(self.pre_activation(x))) + identity
        first, second = self.first_layer, self.second_layer
        if first.store_input:
            first._input = self.pre_activation(x).detach()
        branch = torch.zeros_like(identity)
        if second.store_pre_activity:
            branch.requires_grad_(True)
            second._pre_activity = branch
        self._mark_growth_statistics_pending()
        return branch + identity

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with the pending update (delta and new neurons) at the current scalings.

        ``mask`` is accepted for GroMo compatibility and ignored.
        """
        identity = self.downsample(x)
        first, second = self.first_layer, self.second_layer
        if self.hidden_neurons > 0:
            hidden, hidden_extension = first.extended_forward(self.pre_activation(x))
            out, out_extension = second.extended_forward(hidden, hidden_extension)
            check_second_layer_output_not_extended(second, out_extension)
            return out + identity
        if first.extended_output_layer is not None:
            ensure(second.extended_input_layer is not None,
                   f"Second layer {second.name} should have an extended input layer.")
            extension = first.output_extension_scaling * first.extended_output_layer(self.pre_activation(x))
            if first.extended_post_layer_function is not None:
                extension = first.extended_post_layer_function(extension)
            else:
                _, extension = first._apply_extended_post_layer_function(None, extension)
            branch = second.post_layer_function(
                second.input_extension_scaling * second.extended_input_layer(extension)
            )
            return branch + identity
        return identity

    # ----- statistics -----------------------------------------------------------------------

    def init_computation(self) -> None:
        """Store what the growth needs and start M₋₂, S₋₂, E (and P, M, S at hidden width > 0)."""
        first, second = self.first_layer, self.second_layer
        first.store_input = True
        second.store_pre_activity = True
        second.tensor_m_prev.init()
        second.tensor_s_growth.init()
        second.covariance_loss_gradient.init()
        if self.hidden_neurons > 0:
            second.cross_covariance.init()
            second.store_input = True
            second.tensor_s.init()
            second.tensor_m.init()

    def update_computation(self) -> None:
        """Accumulate M₋₂, S₋₂, E (and P, M, S at hidden width > 0) for the last batch."""
        second = self.second_layer
        second.tensor_m_prev.update()
        second.tensor_s_growth.update()
        second.covariance_loss_gradient.update()
        if self.hidden_neurons > 0:
            second.cross_covariance.update()
            second.tensor_s.update()
            second.tensor_m.update()

    def reset_computation(self) -> None:
        """Stop storing, forget the six statistics and the stored tensors."""
        first, second = self.first_layer, self.second_layer
        first.store_input = False
        second.store_input = False
        second.store_pre_activity = False
        for statistic in (second.tensor_m_prev, second.tensor_s_growth, second.covariance_loss_gradient,
                          second.cross_covariance, second.tensor_s, second.tensor_m):
            statistic.reset()
        first._input = None
        second._input = None
        second._pre_activity = None
        first._clear_statistics_cache()
        second._clear_statistics_cache()

    # ----- updates ------------------------------------------------------------------------

    # No update_previous argument here: a block always extends its first layer (the default).
    @takes_growth_options(without=("update_previous",))
    def compute_optimal_updates(self, options: GrowthOptions) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Optimal delta of the second layer and optimal new hidden neurons.

        At hidden width 0: no delta (decrease 0) and ``N = −M₋₂`` (no projection).

        Returns:
            (α weight, α bias) of the new neurons.
        """
        second = self.second_layer
        if self.hidden_neurons == 0:
            self._forget_delta()
            alpha_weight, alpha_bias, _, _ = second._compute_optimal_added_parameters(
                **options.replace(use_projection=False).as_kwargs(drop=("compute_delta",))
            )
            return alpha_weight, alpha_bias
        return second.compute_optimal_updates(**options.as_kwargs())

    def _forget_delta(self) -> None:
        """At hidden width 0 there is no delta: none pending, decrease 0."""
        self.second_layer.optimal_delta_layer = None
        self.second_layer.delta_raw = None
        self.parameter_update_decrease = 0.0

    def _growth_job(self, *args: Any, **kwargs: Any) -> GrowthJob | None:
        """This block's ``compute_optimal_updates(*args, **kwargs)`` as a job of a joint solve (its
        second layer's), or None where the block or its second layer replaces a step of it."""
        method = GrowingBlock.compute_optimal_updates
        if type(self).compute_optimal_updates is not method or "compute_optimal_updates" in vars(self):
            return None
        if not solves_jointly(self.second_layer):
            return None
        options = method.bind_options(*args, **kwargs)
        if self.hidden_neurons == 0:
            return GrowthJob(self.second_layer, options.replace(use_projection=False), whole=False,
                             before=self._forget_delta)
        return GrowthJob(self.second_layer, options)

    def apply_change(self, extension_size: int | None = None, scaling_factor: float | torch.Tensor | None = None,
                     apply_delta: bool = True, apply_extension: bool = True) -> None:
        """Apply the second layer's delta and both extensions (see ``GrowingModule.apply_change``)."""
        self.second_layer.apply_change(
            scaling_factor=scaling_factor, apply_previous=True, apply_delta=apply_delta,
            apply_extension=apply_extension, extension_size=extension_size,
        )

    def sub_select_optimal_added_parameters(self, keep_neurons: int | None = None, threshold: float | None = None,
                                            sub_select_previous: bool = True, zeros_if_not_enough: bool = False,
                                            zeros_fan_in: bool = True, zeros_fan_out: bool = False) -> None:
        """Keep the first new neurons (see ``GrowingModule.sub_select_optimal_added_parameters``).

        Raises:
            AssertionError: no eigenvalues.
        """
        ensure(self.eigenvalues_extension is not None, (
            f"No optimal added parameters computed. ({self.name}: no eigenvalues, compute the optimal "
            "updates first.)"
        ))
        self.second_layer.sub_select_optimal_added_parameters(
            keep_neurons=keep_neurons, threshold=threshold, sub_select_previous=sub_select_previous,
            zeros_if_not_enough=zeros_if_not_enough, zeros_fan_in=zeros_fan_in, zeros_fan_out=zeros_fan_out,
        )

    def create_layer_extensions(self, extension_size: int, output_extension_size: int | None = None,
                                input_extension_size: int | None = None,
                                output_extension_init: str = "copy_uniform",
                                input_extension_init: str = "copy_uniform",
                                neuron_pairing: str | None = None, rescaling: str | None = None,
                                noise_ratio: float = 0.001) -> None:
        """Create the hidden extensions (see ``GrowingModule.create_layer_extensions``)."""
        self.second_layer.create_layer_extensions(
            extension_size=extension_size, output_extension_size=output_extension_size,
            input_extension_size=input_extension_size, output_extension_init=output_extension_init,
            input_extension_init=input_extension_init, neuron_pairing=neuron_pairing, rescaling=rescaling,
            noise_ratio=noise_ratio,
        )

    def apply_rescaling(self, rescaling: str | None = None, neuron_pairing: str | None = None,
                        extension_size: int | None = None) -> None:
        """Variance-transfer rescaling of both layers (see ``GrowingModule.apply_rescaling``)."""
        self.second_layer.apply_rescaling(
            rescaling=rescaling, neuron_pairing=neuron_pairing, extension_size=extension_size
        )

    def apply_neuron_pairing(self, neuron_pairing: str | None = None, noise_ratio: float = 0.001) -> None:
        """(V, V) / (Z, −Z) pairing of the extensions (see ``GrowingModule.apply_neuron_pairing``)."""
        self.second_layer.apply_neuron_pairing(neuron_pairing=neuron_pairing, noise_ratio=noise_ratio)

    def normalize_optimal_updates(self, **kwargs: Any) -> None:
        """``second_layer.normalize_optimal_updates(**kwargs)``."""
        self.second_layer.normalize_optimal_updates(**kwargs)

    def missing_neurons(self) -> int:
        """Hidden neurons missing to reach the target (``second_layer.missing_neurons()``)."""
        return self.second_layer.missing_neurons()

    def number_of_neurons_to_add(self, **kwargs: Any) -> int:
        """``second_layer.number_of_neurons_to_add(**kwargs)``."""
        return self.second_layer.number_of_neurons_to_add(**kwargs)

    def complete_growth(self, **extension_kwargs: Any) -> None:
        """Grow to the target width at once; accepts ``complete_growth(extension_kwargs={...})`` too."""
        if set(extension_kwargs) == {"extension_kwargs"}:
            extension_kwargs = dict(extension_kwargs["extension_kwargs"] or {})
        self.second_layer.complete_growth(extension_kwargs)

    def delete_update(self, **kwargs: Any) -> None:
        """``second_layer.delete_update(**kwargs)`` (by default also the first layer's output extension)."""
        self.second_layer.delete_update(**kwargs)

    def weights_statistics(self) -> dict[int, dict[str, Any]]:
        """Per layer (0: first, 1: second): its weight statistics."""
        return {0: self.first_layer.weights_statistics(), 1: self.second_layer.weights_statistics()}

    def __str__(self, verbose: int = 0) -> str:
        """GroMo's description: 0 one line, 1 the layers' one-line forms, ≥2 everything.

        Raises:
            ValueError: ``verbose < 0``.
        """
        first, second = self.first_layer, self.second_layer
        if verbose < 0:
            raise ValueError("verbose must be a non-negative integer.")
        if verbose == 0:
            return f"{self.name} ({first.__str__()} -> {second.__str__()})"
        if verbose == 1:
            return f"{self.name}:\n{first.__str__(verbose=1)}\n->\n{second.__str__(verbose=1)}"
        return (
            f"{self.name}:\nPre-activation: {self.pre_activation}\nDownsample: {self.downsample}\n"
            f"{first.__str__(verbose=2)}\n->\n{second.__str__(verbose=2)}"
        )


class LinearGrowingBlock(GrowingBlock):
    """Residual block of two ``LinearGrowingModule`` s: in → hidden → out.

    Args:
        in_features, out_features: sizes.
        hidden_features: initial hidden width (may be 0).
        target_hidden_features: target hidden width (second layer's ``target_in_features``).
        activation: default for pre_activation and mid_activation.
        pre_activation, mid_activation: before the first layer / after the first layer.
        pre_addition_function: after the second layer.
        name: name.
        kwargs_layer: keyword arguments of both layers; kwargs_first_layer / kwargs_second_layer
            override them per layer.
        downsample: identity path.
        device: device.
    """

    def __init__(self, in_features: int, out_features: int, hidden_features: int = 0,
                 target_hidden_features: int | None = None, activation: nn.Module = nn.Identity(),
                 pre_activation: nn.Module | None = None, mid_activation: nn.Module | None = None,
                 pre_addition_function: nn.Module = nn.Identity(), name: str = "block",
                 kwargs_layer: dict | None = None, kwargs_first_layer: dict | None = None,
                 kwargs_second_layer: dict | None = None, downsample: nn.Module = nn.Identity(),
                 device: torch.device | str | None = None) -> None:
        self._init_layers(
            LinearGrowingModule, (in_features, hidden_features, out_features),
            {"target_in_features": target_hidden_features}, locals(),
        )


class Conv2dGrowingBlock(GrowingBlock):
    """Residual block of two growing convolutions: C_in → hidden → C_out.

    Args:
        in_channels, out_channels: channels.
        kernel_size: kernel of both convolutions (or give it in the layer kwargs).
        hidden_channels: initial hidden channels (may be 0).
        target_hidden_channels: target hidden channels (second layer's ``target_in_channels``).
        activation, pre_activation, mid_activation, pre_addition_function, name, kwargs_layer,
        kwargs_first_layer, kwargs_second_layer, downsample, device: as :class:`LinearGrowingBlock`.
        growing_conv_type: ``RestrictedConv2dGrowingModule`` (default) or ``FullConv2dGrowingModule``.
    Raises:
        ValueError: no kernel size anywhere.
    Warns:
        UserWarning: a kernel size both as argument and in the layer kwargs (the kwargs win).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] | None = None,
                 hidden_channels: int = 0, target_hidden_channels: int | None = None,
                 activation: nn.Module | None = None, pre_activation: nn.Module | None = None,
                 mid_activation: nn.Module | None = None, pre_addition_function: nn.Module = nn.Identity(),
                 name: str = "conv_block", kwargs_layer: dict | None = None,
                 kwargs_first_layer: dict | None = None, kwargs_second_layer: dict | None = None,
                 downsample: nn.Module = nn.Identity(),
                 growing_conv_type: type = RestrictedConv2dGrowingModule,
                 device: torch.device | str | None = None) -> None:
        def complete_layer_kwargs(kwargs_first_layer: dict, kwargs_second_layer: dict) -> tuple[dict, dict]:
            kwargs_first_layer = dict(kwargs_first_layer)
            kwargs_second_layer = dict(kwargs_second_layer)
            for label, kwargs in (("kwargs_first_layer", kwargs_first_layer),
                                  ("kwargs_second_layer", kwargs_second_layer)):
                if "kernel_size" in kwargs:
                    if kernel_size is not None:
                        warnings.warn(
                            f"kernel_size specified in both arguments and kwargs for {name}, using value from "
                            f"kwargs. ({label})",
                            UserWarning,
                            stacklevel=4,  # the caller of this constructor (through _init_layers)
                        )
                elif kernel_size is not None:
                    kwargs["kernel_size"] = kernel_size
                else:
                    raise ValueError(
                        f"kernel_size must be specified for {name}. (As an argument or in {label} / "
                        "kwargs_layer.)"
                    )
            return kwargs_first_layer, kwargs_second_layer

        self._init_layers(
            growing_conv_type, (in_channels, hidden_channels, out_channels),
            {"target_in_channels": target_hidden_channels}, locals(), complete_layer_kwargs,
        )


class RestrictedConv2dGrowingBlock(Conv2dGrowingBlock):
    """Deprecated alias of ``Conv2dGrowingBlock`` with ``growing_conv_type=RestrictedConv2dGrowingModule``.

    Warns:
        DeprecationWarning: always.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            "RestrictedConv2dGrowingBlock is deprecated: use Conv2dGrowingBlock "
            "(growing_conv_type=RestrictedConv2dGrowingModule).",
            DeprecationWarning,
            stacklevel=2,
        )
        kwargs.setdefault("growing_conv_type", RestrictedConv2dGrowingModule)
        super().__init__(*args, **kwargs)
