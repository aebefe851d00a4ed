"""``LinearGrowingModule``: a growing ``nn.Linear`` (``a = W x + b``): its sizes, its statistics
(one ``gromo_kernels.layer_statistics(kind="linear", ...)`` call per batch), its new neurons and
its surgery.

Inputs may carry extra token dimensions ``(n, …, d)``: sums run over every token, the sample count
is the batch size ``n`` only (GroMo's convention).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules._attribute_property import attribute_property
from gromo.modules._growing.statistics import LAYER_STATISTICS, new_statistic
from gromo.modules._growing.updates import added_parameters_not_implemented
from gromo.modules._growth_options import GrowthOptions
from gromo.modules._linear.markers import LinearMergeGrowingModuleBase
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule
from gromo.utils._assertions import ensure
from gromo.utils.utils import get_correct_device

__all__ = ["LinearGrowingModule"]


def _zero_input_linear_hook(layer: nn.Linear, args: tuple[Any, ...], output: torch.Tensor):
    """GroMo's safe forward: a Linear without inputs outputs zeros (bias ignored)."""
    if layer.in_features == 0:
        x = args[0]
        return torch.zeros(
            *x.shape[:-1], layer.out_features, device=x.device, dtype=output.dtype, requires_grad=True
        )
    return None



class LinearGrowingModule(GrowingModule):
    """A growing ``nn.Linear`` (``a = W x + b``, ``W (out, in)``).

    Args:
        in_features, out_features: sizes.
        use_bias: the layer has a bias.
        post_layer_function: activation after the layer.
        extended_post_layer_function: deprecated.
        previous_module, next_module: neighbours.
        allow_growing: the module can grow (needs a growing previous module).
        device: device.
        name: name.
        target_in_features: target fan-in for ``missing_neurons`` / ``complete_growth``.
    """

    _layer_type = nn.Linear
    _statistics_kind = "linear"
    _fused_statistics = {
        **LAYER_STATISTICS,
        "tensor_m_prev": ("m_prev", frozenset({"x_prev", "grad"})),
        "cross_covariance": ("cross_cov", frozenset({"x_prev", "x"})),
    }

    def __init__(
        self,
        in_features: int,
        out_features: int,
        use_bias: bool = True,
        post_layer_function: nn.Module = nn.Identity(),
        extended_post_layer_function: nn.Module | None = None,
        previous_module: GrowingModule | MergeGrowingModule | None = None,
        next_module: GrowingModule | MergeGrowingModule | None = None,
        allow_growing: bool = False,
        device: torch.device | None = None,
        name: str | None = None,
        target_in_features: int | None = None,
    ) -> None:
        device = get_correct_device(self, device)
        super().__init__(
            layer=nn.Linear(in_features, out_features, bias=use_bias, device=device),
            tensor_s_shape=(in_features + use_bias, in_features + use_bias),
            tensor_m_shape=(in_features + use_bias, out_features),
            target_in_neurons=target_in_features,
            initial_in_neurons=in_features,
            **self._forwarded_arguments(locals()),
        )
        self.use_bias = use_bias

    # ----- sizes --------------------------------------------------------------------------

    in_features = attribute_property("layer.in_features", "Fan-in.")
    in_neurons = attribute_property("layer.in_features", "= in_features.")
    out_features = attribute_property("layer.out_features", "Fan-out.")
    input_volume = attribute_property("in_features", "= in_features.")
    output_volume = attribute_property("out_features", "= out_features.")

    @property
    def input_extended(self) -> torch.Tensor:
        """``[x, 1]`` (…, in+1) when the layer has a bias, else ``x``."""
        x = self.input
        if not self.use_bias:
            return x
        ones = torch.ones(*x.shape[:-1], 1, device=x.device)
        return torch.cat((x, ones), dim=-1)

    def number_of_parameters(self) -> int:
        """``in·out + out·use_bias``."""
        return self.in_features * self.out_features + self.out_features * self.use_bias

    def __str__(self, verbose: int = 0) -> str:
        # GroMo's one-line form shows the constructor's name argument.
        if verbose == 0:
            return self._one_line_description(
                "LinearGrowingModule", in_features=self.in_features, out_features=self.out_features
            )
        return super().__str__(verbose=verbose)

    # ----- statistics hooks -----------------------------------------------------------------

    def _patch_layer_forward(self, layer: nn.Module) -> None:
        layer.register_forward_hook(_zero_input_linear_hook)

    def _statistics_accept_previous(self, previous: GrowingModule) -> bool:
        return isinstance(previous, LinearGrowingModule)

    # ----- statistics updates ---------------------------------------------------------------

    def compute_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ x̃x̃ᵀ, n): (in+b, in+b) summed over every leading dimension, n = batch size."""
        self.input  # GroMo's ValueError when the input is not stored
        return self._layer_statistic("s")

    def _gradient(self, desired_activation: torch.Tensor | None) -> torch.Tensor:
        if desired_activation is not None:
            return desired_activation
        gradient = self.pre_activity.grad
        ensure(gradient is not None, (
            "The gradient of the pre-activity must be available to compute the update of the gradient "
            f"covariance. (error in {self.name}: run the backward)"
        ))
        return gradient

    def compute_m_update(self, desired_activation: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(Σ x̃ dAᵀ, n): (in+b, out); dA = ``desired_activation`` or the pre-activity gradient."""
        x = self.input
        gradient = self._gradient(desired_activation)
        if desired_activation is not None:
            with torch.no_grad():
                return gk.linear_input_grad(x, gradient, bias=self.use_bias), int(x.shape[0])
        return self._layer_statistic("m")

    def compute_m_prev_update(
        self, desired_activation: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        """(Σ x̃₋₂ dAᵀ, n): (in_p+b_p, out) (merge predecessor: full activity, no extra ones column).

        Raises:
            ValueError: no previous module.
            NotImplementedError: previous module neither linear nor a linear merge.
        """
        previous = self._growth_predecessor("M_{-2}")
        if isinstance(previous, LinearGrowingModule):
            gradient = self._gradient(desired_activation)
            if desired_activation is not None:
                with torch.no_grad():
                    return (
                        gk.linear_input_grad(previous.input, gradient, bias=previous.use_bias),
                        int(gradient.shape[0]),
                    )
            return self._layer_statistic("m_prev")
        if isinstance(previous, LinearMergeGrowingModuleBase):
            if previous.number_of_successors > 1:
                warnings.warn(
                    f"The previous module has multiple successors. ({previous.number_of_successors} "
                    f"successors: M_{{-2}} of {self.name} only uses this module's gradient.)",
                    UserWarning,
                    stacklevel=2,
                )
        gradient = self._gradient(desired_activation)
        with torch.no_grad():
            full = previous.construct_full_activity()
            return gk.linear_input_grad(full, gradient, bias=False), int(gradient.shape[0])

    def compute_cross_covariance_update(self) -> tuple[torch.Tensor, int]:
        """(Σ x̃₋₂ x̃ᵀ, n): (in_p+b_p, in+b).

        With a ``LinearMergeGrowingModule`` predecessor the result keeps this layer's bias column
        (``(total, in+1)`` when ``use_bias``); GroMo drops it, which makes ``tensor_n`` fail its shape
        check for a layer with a bias.

        Raises:
            ValueError: no previous module.
            NotImplementedError: previous module neither linear nor a linear merge.
        """
        previous = self._growth_predecessor("P")
        if isinstance(previous, LinearGrowingModule):
            self.input
            return self._layer_statistic("cross_cov")
        x = self.input
        with torch.no_grad():
            full = previous.construct_full_activity()
            return gk.linear_cross_cov(full, x, bias_prev=False, bias=self.use_bias), int(x.shape[0])

    def _growth_predecessor(self, symbol: str) -> GrowingModule | MergeGrowingModule:
        """The previous module, linear or a linear merge, for the growth statistic ``symbol``.

        Raises:
            ValueError: no previous module.
            NotImplementedError: previous module neither linear nor a linear merge.
        """
        previous = self._previous_module_for(f"{symbol} is not defined")
        if not isinstance(previous, (LinearGrowingModule, LinearMergeGrowingModuleBase)):
            raise NotImplementedError(
                f"The computation of {symbol} is not implemented yet for {type(previous)} as previous module."
            )
        return previous

    def compute_covariance_loss_gradient_update(self) -> tuple[torch.Tensor, int]:
        """(Σ dA dAᵀ, n): (out, out).

        Raises:
            AssertionError: pre-activity not stored or no gradient.
        """
        return self._gradient_covariance_sums()

    def _check_pre_activity_gradient(self) -> None:
        self._gradient(None)

    def compute_n_update(self) -> tuple[torch.Tensor, int]:
        """Legacy: (Σ x vᵀ, prod(input.shape[:-1])) with v the next module's projected goal.

        Raises:
            TypeError: next module not a LinearGrowingModule.
        """
        following = self.next_module
        if not isinstance(following, LinearGrowingModule):
            raise TypeError(
                f"The next module must be a LinearGrowingModule. (got {type(following).__name__})"
            )
        x = self.input
        v_goal = following.projected_v_goal(following.input)
        with torch.no_grad():
            return gk.linear_input_grad(x, v_goal, bias=False), math.prod(x.shape[:-1])

    @property
    def tensor_n(self) -> torch.Tensor:
        """``N = −M₋₂ + P δᵀ`` (in_p+b_p, out).

        Raises:
            AssertionError: no ``delta_raw`` or incompatible shapes.
        """
        ensure(self.delta_raw is not None, (
            f"The optimal delta should be computed before computing N for {self.name}."
        ))
        tensor_m_prev = self.tensor_m_prev()
        cross_covariance = self.cross_covariance()
        ensure(tensor_m_prev.ndim == 2, lambda: (
            f"The shape of M_-2 should be (out_features, in_features) but got {tensor_m_prev.shape}."
        ))
        ensure(cross_covariance.ndim == 2, lambda: (
            f"The shape of C should be (in_features, in_features) but got {cross_covariance.shape}."
        ))
        ensure(tensor_m_prev.shape[1] == self.out_features, lambda: (
            "The number of output features of M_-2 should be equal to the number ofoutput features of "
            f"the layer but got {tensor_m_prev.shape[1]} and {self.out_features}."
        ))
        ensure(cross_covariance.shape[1] == self.in_features + self.use_bias, lambda: (
            "The number of input features of P should be equal to the number of input features of the "
            f"layer but got {cross_covariance.shape[1]} and {self.in_features + self.use_bias}."
            f"name={self.name!r}, cross_covariance().shape={cross_covariance.shape!r}"
        ))
        return -tensor_m_prev + cross_covariance @ self.delta_raw.T.to(cross_covariance.dtype)

    # ----- surgery ------------------------------------------------------------------------

    def layer_of_tensor(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, force_bias: bool = True
    ) -> nn.Linear:
        """``nn.Linear(weight.shape[1], weight.shape[0])`` holding ``weight`` / ``bias`` (shared storage).

        Raises:
            AssertionError: ``force_bias`` and bias presence differs from ``use_bias``.
        """
        if force_bias:
            self._check_bias_presence(bias)
        layer = nn.Linear(
            weight.shape[1], weight.shape[0], bias=bias is not None, device=self.device, dtype=weight.dtype
        )
        layer.weight = nn.Parameter(weight)
        if bias is not None:
            layer.bias = nn.Parameter(bias)
        return layer

    @torch.no_grad()
    def layer_in_extension(self, weight: torch.Tensor) -> None:
        """``W ← [W | w]`` for ``w (out, K)``; S and M are recreated empty.

        Raises:
            AssertionError: wrong shape.
        """
        out_features = self.out_features
        ensure(weight.ndim == 2 and weight.shape[0] == out_features, lambda: (
            f"{weight.shape[0]=} should be equal to {out_features=} (the extension weight must have "
            f"shape ({out_features}, K), got {tuple(weight.shape)})"
        ))
        self.layer = self.layer_of_tensor(
            torch.cat((self.weight, weight.to(self.weight.dtype)), dim=1), self.bias
        )
        self._recreate_statistics(tensor_s=True)

    @torch.no_grad()
    def layer_out_extension(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """``W ← [W; w]``, ``b ← [b; b_ext]`` for ``w (K, in)``; M is recreated empty.

        Raises:
            AssertionError: wrong shape, or missing bias while ``use_bias``.
        """
        in_features = self.in_features
        ensure(weight.ndim == 2 and weight.shape[1] == in_features, lambda: (
            f"{weight.shape[1]=} should be equal to {in_features=} (the extension weight must have "
            f"shape (K, {in_features}), got {tuple(weight.shape)})"
        ))
        if self.use_bias:
            self._check_extension_bias(weight, bias, (
                f"The bias of the extension should be provided because the layer {self.name} has a bias"
            ))
            new_bias = torch.cat((self.bias, bias.to(self.bias.dtype)), dim=0)
        else:
            new_bias = None
        self.layer = self.layer_of_tensor(
            torch.cat((self.weight, weight.to(self.weight.dtype)), dim=0), new_bias
        )
        self._recreate_statistics(tensor_s=False)

    def _recreate_statistics(self, tensor_s: bool) -> None:
        width = self.in_features + self.use_bias
        if tensor_s:
            self._tensor_s = new_statistic(self, (width, width), self.compute_s_update, "S")
        self.tensor_m = new_statistic(self, (width, self.out_features), self.compute_m_update, "M")
        self._clear_statistics_cache()

    def add_parameters(
        self,
        matrix_extension: torch.Tensor | None,
        bias_extension: torch.Tensor | None,
        added_in_features: int = 0,
        added_out_features: int = 0,
    ) -> None:
        """Add input columns or output rows (zeros when an extension is None).

        Raises:
            AssertionError: both in and out features added, or wrong shapes.
        Warns:
            UserWarning: the neighbours must be updated by the user.
        """
        ensure(not (added_in_features > 0 and added_out_features > 0),
               "Cannot add input and output features at the same time")

        def extension_of_shape(expected: tuple[int, int]) -> torch.Tensor:
            if matrix_extension is None:
                return torch.zeros(*expected, device=self.device, dtype=self.weight.dtype)
            ensure(matrix_extension.shape == expected, lambda: (
                f"matrix_extension should have shape {expected}, but got {matrix_extension.shape}"
            ))
            return matrix_extension

        if added_in_features > 0:
            self.layer_in_extension(extension_of_shape((self.out_features, added_in_features)))
        if added_out_features > 0:
            matrix_extension = extension_of_shape((added_out_features, self.in_features))
            if self.use_bias:
                if bias_extension is None:
                    bias_extension = torch.zeros(
                        added_out_features, device=self.device, dtype=self.weight.dtype
                    )
                else:
                    ensure(bias_extension.shape == (added_out_features,), lambda: (
                        f"bias_extension should have shape {(added_out_features,)}, but got "
                        f"{bias_extension.shape}"
                    ))
            self.layer_out_extension(matrix_extension, bias_extension if self.use_bias else None)
        warnings.warn(
            f"The size of {self.name} has been changed to ({self.in_features}, {self.out_features}) but it "
            "is up to the user to change the connected layers. (The neighbouring modules must be "
            "updated by the user.)",
            UserWarning,
            stacklevel=2,
        )

    # GroMo lists this override; the work is done by ``_added_parameters`` and its two ends below.
    _compute_optimal_added_parameters = GrowingModule._compute_optimal_added_parameters

    def _added_parameters_previous(self, options: GrowthOptions) -> GrowingModule:
        """The previous module of the new neurons.

        Raises:
            ValueError: no previous module.
            NotImplementedError: ``update_previous`` with a merge / non-linear previous module.
        """
        previous = self._previous_module_for("the optimal added parameters cannot be computed")
        if options.update_previous and not isinstance(previous, LinearGrowingModule):
            raise added_parameters_not_implemented(previous)
        return previous

    def _install_added_parameters(
        self, options: GrowthOptions, previous: GrowingModule, alpha: torch.Tensor, omega: torch.Tensor,
        eigenvalues: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """New neurons as layers: ``extended_input_layer`` = Linear(k → out) holding ω (zero bias),
        previous ``extended_output_layer`` = Linear(in_p → k) holding α.

        Returns:
            (α weight (k, in_p), α bias (k,) or None, ω (out, k), eigenvalues (k,)).
        """
        k = eigenvalues.shape[0]
        ensure(alpha.shape[0] == k and omega.shape[1] == k, lambda: (
            "alpha and omega should have the same number of added neurons.but got "
            f"{alpha.shape} and {omega.shape}."
        ))
        ensure(omega.shape[0] == self.out_features, lambda: (
            f"omega should have the same number of output features ({omega.shape[0]}) as the layer "
            f"({self.out_features})."
        ))
        previous_bias = bool(getattr(previous, "use_bias", False))
        if previous_bias:
            alpha_weight, alpha_bias = alpha[:, :-1], alpha[:, -1]
        else:
            alpha_weight, alpha_bias = alpha, None
        self.eigenvalues_extension = eigenvalues
        self.extended_input_layer = self.layer_of_tensor(
            omega,
            bias=torch.zeros(self.out_features, device=omega.device, dtype=omega.dtype)
            if self.use_bias else None,
        )
        if options.update_previous:
            previous.extended_output_layer = previous.layer_of_tensor(alpha_weight, alpha_bias)
        return alpha_weight, alpha_bias, omega, eigenvalues

    # ----- extensions -----------------------------------------------------------------------

    def get_fan_in_from_layer(self, layer: nn.Module | None = None, num_neurons: int | None = None) -> int:
        """``layer.in_features`` or ``num_neurons``.

        Raises:
            AssertionError: layer not an nn.Linear, or neither argument given.
        """
        source = self._fan_in_source(layer, num_neurons)
        return source.in_features if isinstance(source, nn.Module) else source

    def create_layer_in_extension(self, extension_size: int) -> None:
        """``extended_input_layer = Linear(extension_size → out, bias=False)`` (default init)."""
        self.extended_input_layer = nn.Linear(
            extension_size, self.out_features, bias=False, device=self.device, dtype=self.weight.dtype
        )

    def create_layer_out_extension(self, extension_size: int) -> None:
        """``extended_output_layer = Linear(in → extension_size, bias=use_bias)`` (default init)."""
        self.extended_output_layer = nn.Linear(
            self.in_features, extension_size, bias=self.use_bias, device=self.device,
            dtype=self.weight.dtype,
        )
