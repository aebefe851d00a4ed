"""GroMo's ``gromo.modules.linear_growing_module``: growing fully-connected layers (TINY, TMLR 2024).

``LinearGrowingModule`` wraps an ``nn.Linear``; its statistics come from one
``gromo_kernels.layer_statistics(kind="linear", ...)`` call per batch (see
:mod:`gromo.modules.growing_module`). Inputs may carry extra token dimensions ``(n, …, d)``: sums run
over every token, the sample count is the batch size ``n`` only (GroMo's convention).

Deliberate differences from GroMo:
* the cross-covariance with a ``LinearMergeGrowingModule`` predecessor includes this layer's bias
  column (GroMo omits it, so ``tensor_n`` then fails its shape assertion when ``use_bias``);
* the "safe forward" of a zero-input layer returns zeros of shape ``(*leading, out)`` (GroMo returns
  ``(n, out)`` even for inputs with token dimensions); like GroMo it ignores the bias and is
  attached to the original layer only;
* new layers (deltas, extensions, surgery) are created in the dtype of the tensors they hold
  (GroMo creates float32 layers), and the merge's full activity uses the predecessors' dtype;
* the merge's previous S and M are computed in one gromo_kernels call and the concatenated
  predecessor activity is built once per batch (GroMo rebuilds it for each statistic).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules._growth_options import GrowthOptions
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule
from gromo.utils._assertions import ensure
from gromo.utils.tensor_statistic import TensorStatistic
from gromo.utils.utils import get_correct_device

__all__ = ["LinearGrowingModule", "LinearMergeGrowingModule"]


def _zero_input_linear_hook(layer: nn.Linear, args: tuple[Any, ...], output: torch.Tensor):
    """GroMo's safe forward: a Linear without inputs outputs zeros (bias ignored)."""
    if layer.in_features == 0:
        x = args[0]
        return torch.zeros(
            *x.shape[:-1], layer.out_features, device=x.device, dtype=output.dtype, requires_grad=True
        )
    return None


class LinearMergeGrowingModule(MergeGrowingModule):
    """Merge of linear growing modules (its input is the sum of their outputs).

    Args:
        post_merge_function: activation after the merge.
        previous_modules, next_modules: neighbours.
        allow_growing: stored.
        in_features: width of the merged tensor.
        device: device.
        name: name.
    """

    def __init__(
        self,
        post_merge_function: nn.Module = nn.Identity(),
        previous_modules: list[GrowingModule | MergeGrowingModule] | None = None,
        next_modules: list[GrowingModule | MergeGrowingModule] | None = None,
        allow_growing: bool = False,
        in_features: int | None = None,
        device: torch.device | None = None,
        name: str | None = None,
    ) -> None:
        self.in_features = in_features
        self._full_activity_cache: tuple[tuple[torch.Tensor, ...], torch.Tensor] | None = None
        super().__init__(
            post_merge_function=post_merge_function,
            previous_modules=previous_modules,
            next_modules=next_modules,
            allow_growing=allow_growing,
            tensor_s_shape=None if in_features is None else (in_features + 1, in_features + 1),
            device=device,
            name=name,
        )

    @property
    def out_features(self) -> int:
        """= in_features."""
        return self.in_features

    @property
    def input_volume(self) -> int:
        """= in_features."""
        return self.in_features

    @property
    def output_volume(self) -> int:
        """= in_features."""
        return self.in_features

    def set_next_modules(self, next_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Set the successors.

        Raises:
            AssertionError: a successor's in_features differs from out_features.
        Warns:
            UserWarning: the tensor S already holds samples.
        """
        next_modules = list(next_modules) if next_modules else []
        ensure(all(module.in_features == self.out_features for module in next_modules), lambda: (
            f"The output features of {self.name} ({self.out_features}) must match the input features "
            f"of the next modules. Found {[module.in_features for module in next_modules]}. "
            "(in_features of the next modules)"
        ))
        self._store_next_modules(next_modules)

    def set_previous_modules(self, previous_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Set the predecessors and (re)create the previous S (total, total) and M (total, in).

        Raises:
            TypeError: a predecessor is neither a LinearGrowingModule nor a merge.
            ValueError: a predecessor's output volume differs from in_features.
        Warns:
            UserWarning: the previous statistics already hold samples.
        """
        previous_modules = list(previous_modules) if previous_modules else []
        for module in previous_modules:
            if not isinstance(module, (LinearGrowingModule, MergeGrowingModule)):
                raise TypeError(
                    "The previous modules must be LinearGrowingModule instances or MergeGrowingModule). "
                    f"(got {type(module).__name__})"
                )
            if module.output_volume != self.in_features:
                raise ValueError(
                    "The input features must match the output volume of the previous modules. "
                    f"(The output volume of {getattr(module, 'name', module)} is {module.output_volume}, "
                    f"expected in_features={self.in_features}.)"
                )
        self._store_previous_modules(previous_modules)

    def update_size(self) -> None:
        """Follow the predecessors' sizes; recreate statistics whose declared shape changed.

        S is declared ``(in + use_bias)²`` (``use_bias`` may be set to False, as in GroMo).
        """
        if self.previous_modules:
            self.in_features = self.previous_modules[0].out_features
        self._resize_statistics(self.in_features + self.use_bias)
        self._full_activity_cache = None

    @torch.no_grad()
    def construct_full_activity(self) -> torch.Tensor:
        """``B = [x̃_1, …, x̃_k]`` (n, total): the predecessors' inputs, each followed by its ones column.

        Built once per batch (cached on the identity of the predecessors' inputs).

        Raises:
            AssertionError: no predecessors.
        """
        ensure(self.previous_modules, (
            f"No previous modules for {self.name}. (There are no previous modules to build the "
            "activity from.)"
        ))
        growing = self._growing_predecessors()
        inputs = tuple(module.input for module in growing)
        cached = self._full_activity_cache
        if cached is not None and len(cached[0]) == len(inputs) and all(
            a is b for a, b in zip(cached[0], inputs)
        ):
            return cached[1]
        reference = inputs[0] if inputs else self.input
        full = torch.ones(
            reference.shape[0], self.total_in_features, dtype=reference.dtype, device=reference.device
        )
        index = 0
        for module, x in zip(growing, inputs):
            width = module.in_features
            full[:, index: index + width] = torch.flatten(x, 1)
            index += width + module.use_bias
        self._full_activity_cache = (inputs, full)
        return full

    def compute_previous_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ BᵀB, n) over the full activity B (n, total)."""
        return self._previous_statistic("s")

    def compute_previous_m_update(self) -> tuple[torch.Tensor, int]:
        """(Σ Bᵀ dA, n) with dA the gradient of the merge input: (total, in)."""
        return self._previous_statistic("m")

    @torch.no_grad()
    def compute_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ ããᵀ, n) of the activity, with a ones column when ``use_bias``: (in+b, in+b).

        Raises:
            AssertionError: the activity is not stored.
        """
        ensure(self.activity is not None, (
            f"The input must be stored to compute the update of S. (error in {self.name}: the "
            "activity is not stored)"
        ))
        return gk.linear_input_cov(self.activity, bias=self.use_bias), int(self.activity.shape[0])

    def reset_computation(self) -> None:
        """As MergeGrowingModule.reset_computation, also forgetting the full activity."""
        super().reset_computation()
        self._full_activity_cache = None

    def delete_update(self, include_previous: bool = False) -> None:
        """As MergeGrowingModule.delete_update, also forgetting the full activity."""
        super().delete_update(include_previous=include_previous)
        self._full_activity_cache = None


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
        "_tensor_s": ("s", frozenset({"x"})),
        "tensor_m": ("m", frozenset({"x", "grad"})),
        "covariance_loss_gradient": ("e", frozenset({"grad"})),
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
            post_layer_function=post_layer_function,
            extended_post_layer_function=extended_post_layer_function,
            allow_growing=allow_growing,
            previous_module=previous_module,
            next_module=next_module,
            device=device,
            name=name,
            target_in_neurons=target_in_features,
            initial_in_neurons=in_features,
        )
        self.use_bias = use_bias

    # ----- sizes --------------------------------------------------------------------------

    @property
    def in_features(self) -> int:
        """Fan-in."""
        return self.layer.in_features

    @property
    def in_neurons(self) -> int:
        """= in_features."""
        return self.layer.in_features

    @property
    def out_features(self) -> int:
        """Fan-out."""
        return self.layer.out_features

    @property
    def input_volume(self) -> int:
        """= in_features."""
        return self.in_features

    @property
    def output_volume(self) -> int:
        """= out_features."""
        return self.out_features

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
            return (
                f"LinearGrowingModule({self._name})(in_features={self.in_features}, "
                f"out_features={self.out_features}, use_bias={self.use_bias})"
            )
        return super().__str__(verbose=verbose)

    # ----- statistics hooks -----------------------------------------------------------------

    def _patch_layer_forward(self, layer: nn.Module) -> None:
        layer.register_forward_hook(_zero_input_linear_hook)

    def _statistics_accept_previous(self, previous: GrowingModule) -> bool:
        return isinstance(previous, LinearGrowingModule)

    def _statistics_placeholder_input(self, sources: dict[str, torch.Tensor]) -> torch.Tensor:
        reference = sources.get("x_prev", sources.get("grad"))
        ensure(reference is not None, f"{self.name}: no stored tensor to compute statistics from.")
        return reference.new_zeros(*reference.shape[:-1], 0)

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
        previous = self.previous_module
        if previous is None:
            raise ValueError(f"No previous module for {self.name}. Thus M_{{-2}} is not defined.")
        if isinstance(previous, LinearGrowingModule):
            gradient = self._gradient(desired_activation)
            if desired_activation is not None:
                with torch.no_grad():
                    return (
                        gk.linear_input_grad(previous.input, gradient, bias=previous.use_bias),
                        int(gradient.shape[0]),
                    )
            return self._layer_statistic("m_prev")
        if isinstance(previous, LinearMergeGrowingModule):
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
        raise NotImplementedError(
            f"The computation of M_{{-2}} is not implemented yet for {type(previous)} as previous module."
        )

    def compute_cross_covariance_update(self) -> tuple[torch.Tensor, int]:
        """(Σ x̃₋₂ x̃ᵀ, n): (in_p+b_p, in+b).

        With a ``LinearMergeGrowingModule`` predecessor the result keeps this layer's bias column
        (``(total, in+1)`` when ``use_bias``); GroMo drops it, which makes ``tensor_n`` fail its shape
        check for a layer with a bias.

        Raises:
            ValueError: no previous module.
            NotImplementedError: previous module neither linear nor a linear merge.
        """
        previous = self.previous_module
        if previous is None:
            raise ValueError(f"No previous module for {self.name}. Thus P is not defined.")
        if isinstance(previous, LinearGrowingModule):
            self.input
            return self._layer_statistic("cross_cov")
        if isinstance(previous, LinearMergeGrowingModule):
            x = self.input
            with torch.no_grad():
                full = previous.construct_full_activity()
                return (
                    gk.linear_cross_cov(full, x, bias_prev=False, bias=self.use_bias),
                    int(x.shape[0]),
                )
        raise NotImplementedError(
            f"The computation of P is not implemented yet for {type(previous)} as previous module."
        )

    def compute_covariance_loss_gradient_update(self) -> tuple[torch.Tensor, int]:
        """(Σ dA dAᵀ, n): (out, out).

        Raises:
            AssertionError: pre-activity not stored or no gradient.
        """
        ensure(self.store_pre_activity, (
            "The pre-activity must be stored to compute the update of the gradient covariance. "
            f"(error in {self.name})"
        ))
        self._gradient(None)
        return self._layer_statistic("e")

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
            use_bias = self.use_bias
            ensure(use_bias is (bias is not None), (
                f"The new layer should have a bias ({bias is not None=}) if and only if the main layer "
                f"bias (use_bias ={use_bias!r}) is not None."
            ))
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
            ensure(bias is not None, (
                f"The bias of the extension should be provided because the layer {self.name} has a bias"
            ))
            ensure(bias.shape == (weight.shape[0],), lambda: (
                f"{bias.shape[0]=} should be equal to {weight.shape[0]=} (bias shape "
                f"{tuple(bias.shape)})"
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
            self._tensor_s = TensorStatistic(
                (width, width), update_function=self.compute_s_update, device=self.device,
                name=f"S({self.name})",
            )
        self.tensor_m = TensorStatistic(
            (width, self.out_features), update_function=self.compute_m_update, device=self.device,
            name=f"M({self.name})",
        )
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
        if added_in_features > 0:
            if matrix_extension is None:
                matrix_extension = torch.zeros(
                    self.out_features, added_in_features, device=self.device, dtype=self.weight.dtype
                )
            else:
                ensure(matrix_extension.shape == (self.out_features, added_in_features), lambda: (
                    f"matrix_extension should have shape {(self.out_features, added_in_features)}, "
                    f"but got {matrix_extension.shape}"
                ))
            self.layer_in_extension(matrix_extension)
        if added_out_features > 0:
            if matrix_extension is None:
                matrix_extension = torch.zeros(
                    added_out_features, self.in_features, device=self.device, dtype=self.weight.dtype
                )
            else:
                ensure(matrix_extension.shape == (added_out_features, self.in_features), lambda: (
                    f"matrix_extension should have shape {(added_out_features, self.in_features)}, "
                    f"but got {matrix_extension.shape}"
                ))
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

    # GroMo lists this override; the work is done by ``_added_parameters``.
    _compute_optimal_added_parameters = GrowingModule._compute_optimal_added_parameters

    def _added_parameters(
        self, options: GrowthOptions
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """New neurons as layers: ``extended_input_layer`` = Linear(k → out) holding ω (zero bias),
        previous ``extended_output_layer`` = Linear(in_p → k) holding α (§5.5).

        Returns:
            (α weight (k, in_p), α bias (k,) or None, ω (out, k), eigenvalues (k,)).
        Raises:
            ValueError: no previous module.
            NotImplementedError: ``update_previous`` with a merge / non-linear previous module.
        """
        previous = self.previous_module
        if previous is None:
            raise ValueError(
                f"No previous module for {self.name}. Thus the optimal added parameters cannot be computed."
            )
        if options.update_previous and not isinstance(previous, LinearGrowingModule):
            raise NotImplementedError(
                "The computation of the optimal added parameters is not implemented yet for "
                f"{type(previous)} as previous module."
            )
        alpha, omega, eigenvalues = self._auxiliary_compute_alpha_omega(
            **options.as_kwargs(drop=("compute_delta", "update_previous"))
        )
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
        if layer is not None:
            ensure(isinstance(layer, nn.Linear), f"The layer should be a torch.nn.Linear but got {type(layer)}.")
            return layer.in_features
        ensure(num_neurons is not None, "Either layer or num_neurons should be provided.")
        return num_neurons

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
